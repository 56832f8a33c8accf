"""Exact TreeSHAP contributions of our LightGBM models, in their raw (log-odds) output space.

LightGBM computes TreeSHAP natively (`pred_contrib=True`): the same exact values as shap's
`TreeExplainer` for the same trees (a test checks it), and faster (`benchmarks/bench_explain.py`).
Every model gets one shape, whatever its kind:

- binary (churn): one output, the booster's log-odds before calibration (the calibration is a
  monotone map, so it never flips a contribution's direction);
- multiclass: one output per class;
- ordinal (risk level): one output per cut, `C2+` = log-odds of P(level ≥ C2) before the
  calibration (which weighs the cut scores by w ≥ 0: no direction changes), …, `C5+`, plus
  `level_score`, their sum. Under proportional odds every cut shares one latent score, so the sum
  is that score (times K-1) and ranks customers by risk appetite; its contributions say what
  pushed the category up or down.

A flat-table linear candidate (`LinearModel`) has the same outputs (its log-odds, per cut when
ordinal), explained exactly by shap's `LinearExplainer` and summed per feature.

Additivity holds exactly: base + the sum of contributions = the raw output, row by row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from suitability.models.estimators import (
    BinaryLGBM,
    FeatureLayout,
    OrdinalLGBM,
    predict_booster,
)
from suitability.models.linear import LinearModel

LEVEL_SCORE = "level_score"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Contributions:
    """SHAP values of `rows` predictions: `values[i, o, j]` is feature j's contribution to
    output o of row i; `base[i, o]` the expected raw output (the same for every row)."""

    values: np.ndarray  # (rows, outputs, features)
    base: np.ndarray  # (rows, outputs)
    feature_names: tuple[str, ...]
    output_names: tuple[str, ...]
    data: np.ndarray  # (rows, features): the matrix the model saw (categorical codes)

    @property
    def raw(self) -> np.ndarray:
        """The model's raw outputs, rebuilt from base and contributions: (rows, outputs)."""
        return self.base + self.values.sum(axis=2)

    def __len__(self) -> int:
        return self.values.shape[0]

    def output(self, name: str) -> int:
        try:
            return self.output_names.index(name)
        except ValueError:
            raise KeyError(f"no output {name!r}; outputs: {', '.join(self.output_names)}") from None

    def of(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(contributions (rows, features), base (rows,)) of one output."""
        k = self.output(name)
        return self.values[:, k, :], self.base[:, k]

    def with_level_score(self) -> Contributions:
        """Add the ordinal `level_score` output (the sum over the cut outputs)."""
        if LEVEL_SCORE in self.output_names:
            return self
        return Contributions(
            values=np.concatenate([self.values, self.values.sum(axis=1, keepdims=True)], axis=1),
            base=np.concatenate([self.base, self.base.sum(axis=1, keepdims=True)], axis=1),
            feature_names=self.feature_names,
            output_names=(*self.output_names, LEVEL_SCORE),
            data=self.data,
        )


def booster_contributions(booster: lgb.Booster, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LightGBM's native TreeSHAP for a float matrix: (values (rows, outputs, features), base
    (rows, outputs)), at the booster's best iteration when it was early-stopped."""
    n_features = booster.num_feature()
    iteration = booster.best_iteration if booster.best_iteration > 0 else None
    flat = np.asarray(predict_booster(booster, x, pred_contrib=True, num_iteration=iteration))
    outputs = flat.shape[1] // (n_features + 1)  # multiclass: one block of F+1 per class
    blocks = flat.reshape(len(x), outputs, n_features + 1)
    return blocks[:, :, :n_features], blocks[:, :, n_features]


def cut_names(classes: Sequence[str]) -> tuple[str, ...]:
    """Names of an ordinal model's cut outputs: `C2+` is P(level ≥ C2), and so on."""
    return tuple(f"{c}+" for c in classes[1:])


Explained = OrdinalLGBM | BinaryLGBM | LinearModel


def output_names(model: Explained) -> tuple[str, ...]:
    if model.task == "ordinal":
        return (*cut_names(model.classes), LEVEL_SCORE)
    return (model.output,)


def explain_matrix(
    model: Explained, x: np.ndarray, layout: FeatureLayout | None = None
) -> Contributions:
    """Contributions for a float matrix already in the model's feature order."""
    layout = layout or model.layout
    if isinstance(model, LinearModel):
        return _explain_linear(model, layout.frame_of_matrix(x), x)
    if isinstance(model, OrdinalLGBM):
        parts = [booster_contributions(b, x) for b in model.boosters]
        values = np.concatenate([p[0] for p in parts], axis=1)
        base = np.concatenate([p[1] for p in parts], axis=1)
        return Contributions(
            values, base, layout.names, cut_names(model.classes), x
        ).with_level_score()
    if isinstance(model, BinaryLGBM):
        if model.booster is None:
            raise ValueError("the churn model is not fitted")
        values, base = booster_contributions(model.booster, x)
        return Contributions(values, base, layout.names, (model.output,), x)
    raise TypeError(f"cannot explain a {type(model).__name__}")


def _explain_linear(model: LinearModel, frame: pd.DataFrame, x: np.ndarray) -> Contributions:
    values, base = model.contributions(frame)
    names = cut_names(model.classes) if model.task == "ordinal" else (model.output,)
    explained = Contributions(values, base, model.layout.names, names, x)
    return explained.with_level_score() if model.task == "ordinal" else explained


def explain_frame(model: Explained, frame: pd.DataFrame) -> Contributions:
    """Contributions for a feature frame. Features are looked up by name and categorical
    values coded over the model's recorded vocabulary (`FeatureLayout.matrix`): column order
    and pandas dtypes cannot change the result."""
    if isinstance(model, LinearModel):
        return _explain_linear(model, frame, model.layout.matrix(frame))
    return explain_matrix(model, model.layout.matrix(frame))


def raw_outputs(model: Explained, frame: pd.DataFrame) -> np.ndarray:
    """The raw outputs that `explain_frame` decomposes, straight from the model (for checks)."""
    if isinstance(model, LinearModel):
        scores = model.scores(frame)
        if model.task == "ordinal":
            return np.column_stack([scores, scores.sum(axis=1)])
        return scores
    x = model.layout.matrix(frame)
    if isinstance(model, OrdinalLGBM):
        cuts = np.column_stack(
            [
                predict_booster(b, x, raw_score=True, num_iteration=b.best_iteration)
                for b in model.boosters
            ]
        )
        return np.column_stack([cuts, cuts.sum(axis=1)])
    assert model.booster is not None
    raw = predict_booster(
        model.booster, x, raw_score=True, num_iteration=model.booster.best_iteration
    )
    return np.asarray(raw)[:, None]


def iter_explained(
    model: Explained,
    batches: Iterator[pd.DataFrame],
    total_rows: int | None = None,
    progress: Progress | None = None,
) -> Iterator[tuple[pd.DataFrame, Contributions]]:
    """Explain a stream of feature batches one at a time, so memory stays bounded by the batch
    size whatever the table's length."""
    done = 0
    for batch in batches:
        contributions = explain_frame(model, batch)
        done += len(batch)
        if progress:
            progress(done, total_rows or done)
        yield batch, contributions
