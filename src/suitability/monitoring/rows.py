"""The rows a monitoring run checks, built from raw tables as training builds its table: the
model's population as of the monitoring date (its features drift or not), and the labelled rows
observed after the model's training data ended whose labels are known by that date (its
realised performance).

Churn: the investors active at the as-of time are the current rows; month starts after the
training table's last one whose 90-day horizon has passed by the as-of time are the matured
rows, labelled as in training. Risk level: the risk reviews after the training table's last one,
up to the as-of time, are both, since a review is where the model's population and its labels
meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from suitability.data import io
from suitability.features.builder import build_features
from suitability.models.spec import ModelSpec
from suitability.models.training_table import (
    TIME_COLUMN,
    churn_labeller,
    churn_snapshots,
    review_queries,
)
from suitability.specs import Specs


@dataclass(frozen=True)
class MonitoringRows:
    """Current rows (features of the model's population) and matured rows (features and the
    label column `label`; empty when no label has matured since training)."""

    current: pd.DataFrame
    matured: pd.DataFrame
    label: str


def monitoring_rows(
    spec: ModelSpec,
    data_dir: io.DataDir,
    as_of: pd.Timestamp,
    trained_until: pd.Timestamp,
    specs: Specs,
    scratch: Path | str,
) -> MonitoringRows:
    """The rows to monitor `spec`'s model on as of `as_of`, for a model whose training table
    ended at `trained_until` (its split's `last_time`). `scratch` is a folder the caller owns
    (features are staged there). Only facts up to `as_of` are read into features and labels."""
    if as_of <= trained_until:
        raise ValueError(
            f"the as-of time {_moment(as_of)} is not after the model's training data, which "
            f"end at {_moment(trained_until)}: monitoring compares later data with them"
        )
    scratch = Path(scratch)
    if spec.name == "risk-level":
        reviews = io.load_table(data_dir, "risk_reviews", specs)
        queries = review_queries(reviews)
        new = (queries[TIME_COLUMN] > trained_until) & (queries["reviewed_at"] <= as_of)
        if not new.any():
            raise ValueError(
                f"no risk reviews after the training data ({_moment(trained_until)}) up to "
                f"{_moment(as_of)}: nothing to monitor the risk-level model on yet"
            )
        build_features(data_dir, [], scratch / "reviews.parquet", specs, queries=queries[new])
        reviewed = pd.read_parquet(scratch / "reviews.parquet")
        return MonitoringRows(current=reviewed, matured=reviewed, label=spec.label)
    assert spec.labels is not None  # a churn spec always has them (checked at load)
    labeller = churn_labeller(spec.labels, specs)
    build_features(data_dir, [as_of], scratch / "current.parquet", specs, label_queries=labeller)
    # The labeller keeps the investors active at `as_of`; their labels lie in the future.
    current = pd.read_parquet(scratch / "current.parquet").drop(columns=[spec.label])
    first, last = io.event_time_range(data_dir)
    snapshots = [
        t for t in churn_snapshots(first, min(last, as_of), spec.labels) if t > trained_until
    ]
    matured = pd.DataFrame(columns=[*current.columns, spec.label])
    if snapshots:
        build_features(
            data_dir, snapshots, scratch / "matured.parquet", specs, label_queries=labeller
        )
        matured = pd.read_parquet(scratch / "matured.parquet")
    return MonitoringRows(current=current, matured=matured, label=spec.label)


def _moment(time: pd.Timestamp) -> str:
    """A day as YYYY-MM-DD, any other time to the second."""
    return f"{time:%Y-%m-%d}" if time == time.normalize() else f"{time:%Y-%m-%d %H:%M:%S}"
