"""Training tables: point-in-time features joined with labels that come strictly after them.

Risk level: one row per risk review, features as of just before `reviewed_at`.
Churn: monthly snapshots t of investors active at t (invested in the `active_days` before t),
labelled churned when they make no investment in (t, t + horizon_days].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from suitability.data import io
from suitability.data.storage import Location, locate
from suitability.features.builder import LabelQueries, Progress, build_features
from suitability.features.kernel import EventArrays
from suitability.models.spec import ChurnLabelSpec, ModelSpec
from suitability.specs import C_LEVELS, Specs

ID_COLUMN, TIME_COLUMN = "customer_id", "as_of"
TRUTH_PREFIX = "truth_"
_SECOND = pd.Timedelta(seconds=1)


class NoTrainingRows(ValueError):
    """The data holds nothing to learn from (no reviews, no active investors)."""


@dataclass(frozen=True)
class TrainingTable:
    frame: pd.DataFrame
    label: str
    snapshots: list[pd.Timestamp]
    events: int


def review_queries(reviews: pd.DataFrame) -> pd.DataFrame:
    """One query per risk review, as of the last whole second strictly before `reviewed_at`
    (the kernel counts facts at or before a whole-second as-of, so nothing known at the
    review itself leaks into its features)."""
    as_of = (reviews["reviewed_at"] - pd.Timedelta(microseconds=1)).dt.floor("s")
    return pd.DataFrame(
        {
            ID_COLUMN: reviews["customer_id"].astype("str"),
            TIME_COLUMN: as_of.astype("datetime64[us]"),
            "reviewed_at": reviews["reviewed_at"].astype("datetime64[us]"),
            "confirmed_level": reviews["confirmed_level"].astype("str"),
        }
    )


def churn_snapshots(
    first_event: pd.Timestamp, last_event: pd.Timestamp, labels: ChurnLabelSpec
) -> list[pd.Timestamp]:
    """Month starts t with a full activity window before t and a full label horizon after it
    inside the data: first_event <= t - active_days and t + horizon_days <= last_event."""
    lo = first_event + pd.Timedelta(days=labels.active_days)
    hi = last_event - pd.Timedelta(days=labels.horizon_days)
    if lo > hi:
        return []
    start = lo.to_period("M").to_timestamp()
    if start < lo:
        start = (lo + pd.offsets.MonthBegin(1)).normalize()
    return [t for t in pd.date_range(start, hi, freq="MS")]


def churn_labeller(labels: ChurnLabelSpec, specs: Specs) -> LabelQueries:
    """For the builder: keep the queries of investors active at `as_of` and label them
    `churned` (1 = no investment in (as_of, as_of + horizon_days]) from the chunk's events."""
    types = list(specs.behaviour.event_types)
    kinds = np.array([types.index(k) for k in labels.invest_event_types], dtype=np.int64)
    active = pd.Timedelta(days=labels.active_days)
    horizon = pd.Timedelta(days=labels.horizon_days)

    def label(queries: pd.DataFrame, events: EventArrays, ids: pd.Index) -> pd.DataFrame:
        invest = np.isin(events.etype, kinds)
        q_code = ids.get_indexer(queries["customer_id"]).astype(np.int64)
        q_sec = queries["as_of"].to_numpy("datetime64[s]").astype(np.int64)
        f_code = events.codes[invest].astype(np.int64)
        f_sec = -((-events.times_us[invest]) // 1_000_000)
        before = _count_coded(q_code, q_sec, f_code, f_sec, -active, pd.Timedelta(0))
        after = _count_coded(q_code, q_sec, f_code, f_sec, pd.Timedelta(0), horizon)
        kept = queries.loc[before > 0].reset_index(drop=True)
        kept["churned"] = (after[before > 0] == 0).astype(np.int8)
        return kept

    return label


def count_in_windows(
    queries: pd.DataFrame, facts: pd.DataFrame, lo: pd.Timedelta, hi: pd.Timedelta
) -> np.ndarray:
    """For each query (customer_id, as_of): how many of the customer's facts have event_time in
    (as_of + lo, as_of + hi]. Fact times count to the whole second, rounded up, exactly as the
    feature kernel counts them, so both agree on window edges."""
    if len(queries) == 0:
        return np.zeros(0, dtype=np.int64)
    ids = pd.Index(pd.unique(pd.concat([queries["customer_id"], facts["customer_id"]])))
    q_code = ids.get_indexer(queries["customer_id"]).astype(np.int64)
    f_code = ids.get_indexer(facts["customer_id"]).astype(np.int64)
    f_sec = _ceil_seconds(facts["event_time"])
    q_sec = queries["as_of"].to_numpy("datetime64[s]").astype(np.int64)
    return _count_coded(q_code, q_sec, f_code, f_sec, lo, hi)


def _count_coded(
    q_code: np.ndarray,
    q_sec: np.ndarray,
    f_code: np.ndarray,
    f_sec: np.ndarray,
    lo: pd.Timedelta,
    hi: pd.Timedelta,
) -> np.ndarray:
    """`count_in_windows` on integer customer codes and whole seconds since 1970."""
    if len(q_code) == 0:
        return np.zeros(0, dtype=np.int64)
    origin = min(q_sec.min() - 10**8, f_sec.min() if len(f_sec) else q_sec.min())
    span = np.int64(1) << 32  # seconds: ~136 years either side of the origin
    f_key = np.sort(f_code * span + (f_sec - origin))
    q_base = q_code * span + (q_sec - origin)
    upper = np.searchsorted(f_key, q_base + int(hi.total_seconds()), side="right")
    lower = np.searchsorted(f_key, q_base + int(lo.total_seconds()), side="right")
    return (upper - lower).astype(np.int64)


def _ceil_seconds(times: pd.Series) -> np.ndarray:
    us = times.to_numpy("datetime64[us]").astype(np.int64)
    return -((-us) // 1_000_000)


def build_training_table(
    spec: ModelSpec,
    data_dir: io.DataDir,
    specs: Specs,
    scratch: Path | str,
    *,
    progress: Progress | None = None,
    cluster: object | None = None,
) -> TrainingTable:
    """Features and labels for `spec`'s model from the raw tables of `data_dir`; ground-truth
    columns (`truth_*`) are joined when the folder has them (synthetic data). `scratch` is a
    folder the caller owns (the features are staged there). `cluster`: a `distributed.Client`
    whose workers build the features and labels, partition by partition."""
    out = Path(scratch) / "features.parquet"
    if spec.name == "risk-level":
        reviews = io.load_table(data_dir, "risk_reviews", specs)
        if len(reviews) == 0:
            raise NoTrainingRows(f"{data_dir}: risk_reviews is empty, so no risk-level labels")
        summary = build_features(
            data_dir,
            [],
            out,
            specs,
            queries=review_queries(reviews),
            progress=progress,
            cluster=cluster,
        )
        snapshots: list[pd.Timestamp] = []
    else:
        assert spec.labels is not None
        first, last = io.event_time_range(data_dir)
        snapshots = churn_snapshots(first, last, spec.labels)
        if not snapshots:
            raise NoTrainingRows(
                f"{data_dir}: events span {first:%Y-%m-%d} … {last:%Y-%m-%d}; churn labels need "
                f"{spec.labels.active_days} days of history and {spec.labels.horizon_days} days "
                "of future around at least one month start"
            )
        summary = build_features(
            data_dir,
            snapshots,
            out,
            specs,
            label_queries=churn_labeller(spec.labels, specs),
            progress=progress,
            cluster=cluster,
        )
    frame = pd.read_parquet(out)
    if len(frame) == 0:
        raise NoTrainingRows(f"{data_dir}: no {spec.name} training rows (no active investors?)")
    truth = locate(data_dir) / "ground_truth"
    if truth.is_dir():
        frame = attach_truth(frame, read_truth(truth, spec, frame[ID_COLUMN]), spec)
    return TrainingTable(frame, spec.label, snapshots, summary.events)


def read_truth(folder: Location, spec: ModelSpec, customers: pd.Series) -> pd.DataFrame:
    """The ground-truth rows `attach_truth` needs, read a part at a time (memory bounded by a
    part, not by the world): the model's columns only, the given customers only, and for the
    risk level only each customer's first row."""
    if spec.name == "risk-level":
        columns = ["customer_id", *(f"p_{c.lower()}" for c in C_LEVELS)]
    else:
        columns = ["customer_id", "snapshot", "p_churn"]
    wanted = pa.array(pd.unique(customers.astype(str)), type=pa.string())
    frames = []
    parts = folder.files(".parquet") if folder.is_dir() else [folder]
    for part in parts:
        table = part.parquet().read(columns=columns)
        table = table.filter(pc.is_in(pc.cast(table["customer_id"], pa.string()), value_set=wanted))
        frame = table.to_pandas()
        if spec.name == "risk-level":
            frame = frame.drop_duplicates("customer_id")
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=columns)
    truth = pd.concat(frames, ignore_index=True)
    return truth.drop_duplicates("customer_id") if spec.name == "risk-level" else truth


def attach_truth(frame: pd.DataFrame, truth: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Join the generator's true probabilities: per customer for the level (a customer's true
    tolerance does not move), per customer and snapshot for churn."""
    if spec.name == "risk-level":
        per_customer = truth.drop_duplicates("customer_id").set_index("customer_id")
        columns = {f"p_{c.lower()}": f"{TRUTH_PREFIX}p_{c}" for c in C_LEVELS}
        joined = per_customer[list(columns)].rename(columns=columns)
        return frame.join(joined, on=ID_COLUMN)
    keyed = truth[["customer_id", "snapshot", "p_churn"]].rename(
        columns={"snapshot": TIME_COLUMN, "p_churn": f"{TRUTH_PREFIX}p_churn"}
    )
    keyed[TIME_COLUMN] = keyed[TIME_COLUMN].astype("datetime64[us]")
    keyed["customer_id"] = keyed["customer_id"].astype("str")
    return frame.merge(keyed, on=[ID_COLUMN, TIME_COLUMN], how="left", validate="m:1")
