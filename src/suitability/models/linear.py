"""The linear candidate of flat-table training: a regularised logistic regression on one-hot
categories and scaled numbers, beside LightGBM (small real tables are often linear).

It answers like the LightGBM models, so tracking, evaluation, promotion and explanations treat
both alike: binary, one output (the log-odds); ordinal, one cumulative logistic regression per cut
(P(level > k), as `OrdinalLGBM`'s cuts), the distribution repaired to be monotone and the
predicted level its median. Its strength of regularisation is chosen on the validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from suitability.models.estimators import (
    FeatureLayout,
    Progress,
    cumulative_to_proba,
    linear_columns,
    ordinal_frame,
)

#: Inverse regularisation strengths tried on the validation split (scikit-learn's `C`).
C_GRID: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
KIND = "logistic_regression"


class LinearModel:
    """Logistic regression(s) on `linear_columns`: one for a binary task, one per cut for an
    ordinal one, all with the `C` of least validation log loss."""

    kind = KIND

    def __init__(
        self,
        layout: FeatureLayout,
        task: Literal["binary", "ordinal"],
        *,
        classes: Sequence[str] = ("0", "1"),
        output: str = "p_churn",
        seed: int = 7,
        grid: Sequence[float] = C_GRID,
    ) -> None:
        self.layout = layout
        self.task = task
        self.classes = tuple(classes)
        self.output = output
        self.seed = seed
        self.grid = tuple(grid)
        self.C: float | None = None
        self.columns: ColumnTransformer | None = None
        self.cuts: list[LogisticRegression] = []
        self.validation_log_loss: dict[float, float] = {}
        # The matrix's mean over the rows the columns were fitted on (SHAP's background).
        self.mean: np.ndarray | None = None

    @property
    def feature_names(self) -> list[str]:
        return list(self.layout.names)

    @property
    def best_iterations(self) -> list[int]:
        return []

    @property
    def calibration(self) -> str:
        return "none"

    def _labels(self, y: np.ndarray) -> list[np.ndarray]:
        y = np.asarray(y)
        if self.task == "binary":
            return [y.astype(np.int8)]
        return [(y > k).astype(np.int8) for k in range(len(self.classes) - 1)]

    def _fit_cuts(self, z: np.ndarray, y: np.ndarray, c: float) -> list[LogisticRegression]:
        return [
            LogisticRegression(C=c, max_iter=5000, random_state=self.seed).fit(z, labels)
            if len(np.unique(labels)) == 2
            else _Constant(float(labels.mean()))
            for labels in self._labels(y)
        ]

    def fit(
        self,
        x_train: pd.DataFrame,
        y_train: np.ndarray,
        x_valid: pd.DataFrame,
        y_valid: np.ndarray,
        progress: Progress | None = None,
        cluster: object | None = None,
    ) -> LinearModel:
        """Fit the columns on the training rows, then one model per `C` of the grid; keep the
        `C` with the least validation log loss (of the level distribution when ordinal)."""
        self.columns = linear_columns(self.layout).fit(self.layout.frame(x_train))
        z_train = self.columns.transform(self.layout.frame(x_train))
        z_valid = self.columns.transform(self.layout.frame(x_valid))
        self.mean = z_train.mean(axis=0)
        best: tuple[float, float, list[LogisticRegression]] | None = None
        self.validation_log_loss = {}
        for i, c in enumerate(self.grid):
            cuts = self._fit_cuts(z_train, y_train, c)
            proba = self._proba(_scores(cuts, z_valid))
            loss = _log_loss(proba, y_valid, self.task)
            self.validation_log_loss[c] = loss
            if best is None or loss < best[0]:
                best = (loss, c, cuts)
            if progress:
                progress(i + 1, len(self.grid))
        assert best is not None
        _, self.C, self.cuts = best
        return self

    def refit(
        self,
        frames: Sequence[pd.DataFrame],
        ys: Sequence[np.ndarray],
        progress: Progress | None = None,
        cluster: object | None = None,
    ) -> LinearModel:
        """Finalise: the columns and the model(s) again on all of `frames` with the chosen C."""
        assert self.C is not None, "fit first"
        frame = pd.concat([self.layout.frame(f) for f in frames])
        self.columns = linear_columns(self.layout).fit(frame)
        z = self.columns.transform(frame)
        self.mean = z.mean(axis=0)
        self.cuts = self._fit_cuts(z, np.concatenate([np.asarray(y) for y in ys]), self.C)
        if progress:
            progress(1, 1)
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The matrix the regression(s) read."""
        assert self.columns is not None, "fit first"
        return self.columns.transform(self.layout.frame(frame))

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Log-odds, one column per output (binary: one; ordinal: one per cut)."""
        return _scores(self.cuts, self.transform(frame))

    def _proba(self, scores: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            return expit(scores[:, 0])
        return cumulative_to_proba(expit(scores))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self._proba(self.scores(frame))

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        proba = self.predict_proba(frame)
        if self.task == "binary":
            return pd.DataFrame({self.output: proba}, index=frame.index)
        return ordinal_frame(proba, self.classes, frame.index)

    def groups(self) -> np.ndarray:
        """For each column of `transform`'s matrix, the position of the feature it comes from
        (a number's value and its missing indicator, a category's one-hot columns)."""
        assert self.columns is not None, "fit first"
        names = list(self.layout.names)
        out: list[int] = []
        for name, pipeline, columns in self.columns.transformers_:
            if name == "remainder" or not len(columns):
                continue
            first = pipeline.steps[0][1]
            if name == "numeric":
                out += [names.index(c) for c in columns]
                indicator = first.indicator_
                if indicator is not None:
                    out += [names.index(columns[j]) for j in indicator.features_]
            else:
                encoder = pipeline.steps[-1][1]
                for c, categories in zip(columns, encoder.categories_, strict=True):
                    out += [names.index(c)] * len(categories)
        return np.asarray(out, dtype=np.int64)

    def contributions(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Exact SHAP values of each output's log-odds (shap's `LinearExplainer`, features
        independent, the training rows' mean as background), summed per feature: (values (rows,
        outputs, features), base (rows, outputs))."""
        import shap

        z = self.transform(frame)
        groups = self.groups()
        n_features = len(self.layout.names)
        assert self.mean is not None
        background = shap.maskers.Independent(self.mean[None, :], max_samples=1)
        values = np.zeros((len(z), len(self.cuts), n_features))
        base = np.zeros((len(z), len(self.cuts)))
        for o, cut in enumerate(self.cuts):
            coef, intercept = _coefficients(cut, z.shape[1])
            explainer = shap.LinearExplainer((coef, intercept), background)
            phi = np.asarray(explainer.shap_values(z), dtype=np.float64).reshape(len(z), -1)
            np.add.at(values[:, o, :], (slice(None), groups), phi)
            base[:, o] = float(np.ravel(explainer.expected_value)[0])
        return values, base


def _scores(cuts: Sequence[LogisticRegression], z: np.ndarray) -> np.ndarray:
    return np.column_stack([cut.decision_function(z) for cut in cuts])


def _coefficients(cut: object, width: int) -> tuple[np.ndarray, float]:
    if isinstance(cut, _Constant):
        return np.zeros(width), cut.logit
    assert isinstance(cut, LogisticRegression)
    return cut.coef_[0].astype(np.float64), float(cut.intercept_[0])


def _log_loss(proba: np.ndarray, y: np.ndarray, task: str) -> float:
    if task == "binary":
        return float(log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1]))
    rows = np.arange(len(y))
    return float(-np.mean(np.log(np.clip(proba[rows, np.asarray(y)], 1e-15, 1.0))))


class _Constant:
    """A cut whose training labels hold one class: its rate, as log-odds, for every row."""

    def __init__(self, rate: float) -> None:
        rate = min(max(rate, 1e-6), 1 - 1e-6)
        self.logit = float(np.log(rate / (1 - rate)))

    def decision_function(self, z: np.ndarray) -> np.ndarray:
        return np.full(len(z), self.logit)
