"""The training reference of a model: the distribution of each feature and of the predictions on
the rows it was evaluated on, recorded with the run and compared with later data by `drift`.

Only aggregates are kept (bin edges, counts per bin, a few quantiles), never rows or extremes:
nothing in it identifies a customer, and it stays a few tens of kilobytes however large the
training table. It travels as JSON (`reference_to_json`, `reference_from_json`) with a schema
version, so a reference logged by an older release is refused with a reason, not misread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from suitability.models.estimators import FeatureLayout, ordinal_levels
from suitability.monitoring.binning import (
    category_counts,
    numbers,
    numeric_counts,
    observed_categories,
    quantile_edges,
)

SCHEMA_VERSION = 1
#: Where training logs the reference among the run's artifacts.
REFERENCE_ARTIFACT = "monitoring/reference.json"
Task = Literal["binary", "ordinal"]
#: The monitored prediction columns: a binary model's probability; an ordinal model's
#: predicted level (the median of its distribution) and expected level (1..K).
PROBABILITY = "probability"
LEVEL = "level"
EXPECTED_LEVEL = "expected_level"
_QUANTILES = {"p05": 0.05, "p50": 0.5, "p95": 0.95}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NumericSummary(_Model):
    """Mean, standard deviation and quantiles of the finite values (None when there are none)."""

    mean: float | None
    std: float | None
    p05: float | None
    p50: float | None
    p95: float | None


class NumericReference(_Model):
    """A number's distribution: rows per bin (-inf, e0], (e0, e1], ..., (e_last, inf), and the
    rows where it is missing."""

    kind: Literal["numeric"] = "numeric"
    edges: list[float]
    counts: list[Annotated[int, Field(ge=0)]]
    missing: int = Field(ge=0)
    summary: NumericSummary

    @model_validator(mode="after")
    def _consistent(self) -> NumericReference:
        if len(self.counts) != len(self.edges) + 1:
            raise ValueError(
                f"{len(self.edges)} edges need {len(self.edges) + 1} counts, got {len(self.counts)}"
            )
        if not all(math.isfinite(e) for e in self.edges):
            raise ValueError("edges must be finite numbers")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must increase strictly")
        return self

    @property
    def rows(self) -> int:
        return sum(self.counts) + self.missing

    def bin_counts(self) -> np.ndarray:
        """Rows per bin and missing, laid out as `binning.numeric_counts` counts."""
        return np.array([*self.counts, self.missing], dtype=np.int64)


class CategoricalReference(_Model):
    """A category's distribution: rows per category, and the rows where it is missing."""

    kind: Literal["categorical"] = "categorical"
    categories: list[str]
    counts: list[Annotated[int, Field(ge=0)]]
    missing: int = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> CategoricalReference:
        if len(self.counts) != len(self.categories):
            raise ValueError(
                f"{len(self.categories)} categories need as many counts, got {len(self.counts)}"
            )
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories repeat")
        return self

    @property
    def rows(self) -> int:
        return sum(self.counts) + self.missing

    def bin_counts(self) -> np.ndarray:
        """Rows per category, unseen (none, by construction) and missing, laid out as
        `binning.category_counts` counts."""
        return np.array([*self.counts, 0, self.missing], dtype=np.int64)


ColumnReference = Annotated[NumericReference | CategoricalReference, Field(discriminator="kind")]


class Reference(_Model):
    """A model's training reference: its features' and its predictions' distributions."""

    schema_version: Literal[1] = SCHEMA_VERSION
    task: Task
    classes: list[str]
    bins: int = Field(ge=2)
    rows: int = Field(gt=0)
    features: dict[str, ColumnReference]
    predictions: dict[str, ColumnReference]
    #: Where the rows came from (run, split, table digest): shown in reports, never parsed.
    source: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _same_rows(self) -> Reference:
        uneven = [
            name
            for name, column in (*self.features.items(), *self.predictions.items())
            if column.rows != self.rows
        ]
        if uneven:
            raise ValueError(f"columns {uneven[:5]} do not count {self.rows} rows")
        if not self.features:
            raise ValueError("the reference has no features")
        return self


def prediction_columns(proba: np.ndarray, task: Task, classes: Sequence[str]) -> pd.DataFrame:
    """The monitored prediction columns of a model's probabilities (`predict_proba`): the
    probability of a binary model; the predicted and expected level of an ordinal one."""
    proba = np.asarray(proba, dtype=np.float64)
    if task == "binary":
        if proba.ndim != 1:
            raise ValueError(f"a binary model's probabilities are 1-dimensional, got {proba.shape}")
        return pd.DataFrame({PROBABILITY: proba})
    if proba.ndim != 2 or proba.shape[1] != len(classes):
        raise ValueError(
            f"an ordinal model's probabilities need one column per class {list(classes)}, "
            f"got shape {proba.shape}"
        )
    level, expected = ordinal_levels(proba, classes)
    return pd.DataFrame({LEVEL: pd.Series(level, dtype=object), EXPECTED_LEVEL: expected})


def column_reference(
    column: pd.Series, name: str, bins: int, categories: Sequence[str] | None = None
) -> NumericReference | CategoricalReference:
    """One column's reference: its categories' counts when `categories` (the vocabulary) is
    given, else its counts in quantile bins with a few summary numbers."""
    if categories is not None:
        observed = observed_categories(column, categories)
        counts = category_counts(column, observed)
        return CategoricalReference(
            categories=observed, counts=counts[:-2].tolist(), missing=int(counts[-1])
        )
    values = numbers(column, name)
    edges = quantile_edges(values, bins)
    counts = numeric_counts(values, edges)
    return NumericReference(
        edges=edges.tolist(),
        counts=counts[:-1].tolist(),
        missing=int(counts[-1]),
        summary=_summary(values),
    )


def _summary(values: np.ndarray) -> NumericSummary:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return NumericSummary(mean=None, std=None, p05=None, p50=None, p95=None)
    quantiles = np.quantile(finite, list(_QUANTILES.values()))
    return NumericSummary(
        mean=float(finite.mean()),
        std=float(finite.std()),
        **{key: float(q) for key, q in zip(_QUANTILES, quantiles, strict=True)},
    )


def build_reference(
    features: pd.DataFrame,
    proba: np.ndarray,
    layout: FeatureLayout,
    *,
    task: Task,
    classes: Sequence[str],
    bins: int,
    source: Mapping[str, str] | None = None,
) -> Reference:
    """The reference of a model whose features are `layout` (its categorical features with
    their vocabularies), from a feature table and the model's probabilities on its rows.

    Use rows the model was evaluated on, not trained on (the test split): its predictions
    there are what later predictions should look like; on training rows they are sharper.
    """
    if len(features) == 0:
        raise ValueError("the reference table has no rows")
    layout.check(features)
    if len(proba) != len(features):
        raise ValueError(
            f"{len(proba)} predictions for {len(features)} reference rows; give one per row"
        )
    columns = {
        name: column_reference(features[name], name, bins, layout.categories.get(name))
        for name in layout.names
    }
    predicted = prediction_columns(proba, task, classes)
    predictions = {
        name: column_reference(
            predicted[name], name, bins, list(classes) if name == LEVEL else None
        )
        for name in predicted.columns
    }
    return Reference(
        task=task,
        classes=[str(c) for c in classes],
        bins=bins,
        rows=len(features),
        features=columns,
        predictions=predictions,
        source=dict(source or {}),
    )


def reference_to_json(reference: Reference) -> dict[str, Any]:
    """The reference as plain JSON types (what `mlflow.log_dict` writes)."""
    return reference.model_dump(mode="json")


def reference_from_json(data: Any) -> Reference:
    """A reference read back from its JSON; refuses another schema version or a damaged file,
    naming the key and the reason."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a monitoring reference is a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"the monitoring reference has schema version {version!r}; this release reads "
            f"version {SCHEMA_VERSION} (retrain the model to record a new reference)"
        )
    try:
        return Reference.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()[:10]
        )
        raise ValueError(f"the monitoring reference is not valid: {problems}") from None
