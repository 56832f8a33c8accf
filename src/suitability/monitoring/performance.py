"""Realised performance: once labels have matured (the churn horizon has passed, new risk reviews
are in), the model's metrics on those rows against the test metrics its training run logged.

The metrics are the project's own (`suitability.models.metrics`), so a realised ROC AUC or QWK
means what the logged one means. Each checked metric gets an interval that costs next to
nothing at any number of rows: Hanley and McNeil's standard error for ROC AUC, the normal
interval of a mean for the metrics that are means over rows (log loss, Brier score, accuracy),
and for QWK a bootstrap of the confusion matrix (the metric depends on the rows only through
it, so resampling its cells is resampling the rows). A worsening past a threshold counts only
when that interval lies wholly on the worse side of the logged value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from suitability.models import metrics as m
from suitability.models.estimators import median_level
from suitability.monitoring.reference import Task
from suitability.monitoring.spec import MonitoringSpec, Thresholds
from suitability.monitoring.status import Status, worst

#: Where a training run's test metrics are, among its MLflow metrics (`test_<metric>`).
LOGGED_PREFIX = "test_"
_BOOTSTRAP_DRAWS = 1000
_BOOTSTRAP_SEED = 19
_PROBA_FLOOR = 1e-15


@dataclass(frozen=True)
class MetricCheck:
    """One metric: the logged test value, the realised one with its interval, the verdict.
    `worsening` is positive when the model got worse (a drop in ROC AUC, a rise in log loss)."""

    metric: str
    logged: float | None
    realised: float
    low: float | None
    high: float | None
    worsening: float | None
    status: Status

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "logged": self.logged,
            "realised": _finite(self.realised),
            "low": self.low,
            "high": self.high,
            "worsening": self.worsening,
            "status": self.status,
        }


@dataclass(frozen=True)
class PerformanceCheck:
    """Realised performance on `rows` matured labels: the checked metrics and every metric."""

    task: Task
    rows: int
    checks: tuple[MetricCheck, ...]
    realised: dict[str, float]

    @property
    def status(self) -> Status:
        return worst(c.status for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "rows": self.rows,
            "status": self.status,
            "checks": [c.to_json() for c in self.checks],
            "realised": {k: _finite(v) for k, v in self.realised.items()},
        }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def realised_metrics(
    y: np.ndarray, proba: np.ndarray, task: Task, classes: Sequence[str]
) -> dict[str, float]:
    """The metrics training logs (`test_<metric>`), on matured labels: `y` holds class codes
    (0/1 for churn, 0..K-1 for levels), `proba` the model's probabilities for those rows."""
    if task == "binary":
        return m.binary_metrics(y, proba)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2:
        raise ValueError(f"an ordinal model's probabilities are (rows, classes), got {proba.shape}")
    return m.ordinal_metrics(y, proba, median_level(proba), classes)


def metric_interval(
    metric: str,
    value: float,
    y: np.ndarray,
    proba: np.ndarray,
    task: Task,
    confidence: float,
) -> tuple[float, float] | None:
    """A `confidence` interval of a realised metric, for those that have a cheap one: ROC AUC,
    QWK, and the per-row means (log loss, Brier score, accuracy, within-one accuracy)."""
    if not math.isfinite(value):
        return None
    z = float(norm.ppf(0.5 + confidence / 2))
    y = np.asarray(y)
    if metric == "roc_auc":
        return _around(value, z * _auc_standard_error(value, y))
    if metric == "qwk":
        return _qwk_bootstrap(y, np.asarray(proba, dtype=np.float64), confidence)
    per_row = _per_row(metric, y, np.asarray(proba, dtype=np.float64), task)
    if per_row is None:
        return None
    return _around(value, z * float(per_row.std(ddof=1)) / math.sqrt(per_row.size))


def _around(value: float, half_width: float) -> tuple[float, float]:
    return value - half_width, value + half_width


def _auc_standard_error(auc: float, y: np.ndarray) -> float:
    """Hanley & McNeil (1982): the standard error of an ROC AUC from the AUC and the class sizes."""
    positives = float(np.sum(y == 1))
    negatives = float(y.size - positives)
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    ) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def _per_row(metric: str, y: np.ndarray, proba: np.ndarray, task: Task) -> np.ndarray | None:
    """Each row's share of a metric that is a mean over rows (None for other metrics)."""
    rows = np.arange(y.size)
    if task == "binary":
        y = y.astype(np.float64)
        p = np.clip(proba, _PROBA_FLOOR, 1 - _PROBA_FLOOR)
        if metric == "log_loss":
            return -(y * np.log(p) + (1 - y) * np.log1p(-p))
        if metric == "brier":
            return (proba - y) ** 2
        return None
    predicted = median_level(proba)
    if metric == "log_loss":
        return -np.log(np.clip(proba[rows, y.astype(np.int64)], _PROBA_FLOOR, 1.0))
    if metric == "accuracy":
        return (predicted == y).astype(np.float64)
    if metric == "within_one_accuracy":
        return (np.abs(predicted - y) <= 1).astype(np.float64)
    return None


def _qwk_bootstrap(y: np.ndarray, proba: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of QWK over multinomial redraws of the confusion matrix's cells."""
    k = proba.shape[1]
    matrix = m.confusion(y.astype(np.int64), median_level(proba), k).ravel()
    n = int(matrix.sum())
    rng = np.random.default_rng(_BOOTSTRAP_SEED)
    draws = rng.multinomial(n, matrix / n, size=_BOOTSTRAP_DRAWS).reshape(-1, k, k)
    codes = np.arange(k)
    weights = (codes[:, None] - codes[None, :]) ** 2.0
    expected = np.einsum("bi,bj->bij", draws.sum(axis=2), draws.sum(axis=1)) / n
    chance = (weights * expected).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        kappas = 1.0 - (weights * draws).sum(axis=(1, 2)) / chance
    kappas = kappas[np.isfinite(kappas)]
    tail = (1 - confidence) / 2
    low, high = np.quantile(kappas, [tail, 1 - tail])
    return float(low), float(high)


def metric_status(
    metric: str,
    logged: float | None,
    realised: float,
    interval: tuple[float, float] | None,
    thresholds: Thresholds,
) -> tuple[Status, float | None]:
    """The verdict on one metric and its worsening against the logged value. Past a threshold
    it warns or alerts only if the interval (when there is one) is wholly on the worse side."""
    if logged is None or not math.isfinite(logged):
        return "not_logged", None
    if not math.isfinite(realised):
        return "insufficient", None
    higher = m.greater_is_better(metric)
    worsening = logged - realised if higher else realised - logged
    if interval is not None:
        low, high = interval
        if (high >= logged) if higher else (low <= logged):
            return "ok", worsening
    if worsening >= thresholds.alert:
        return "alert", worsening
    if worsening >= thresholds.warn:
        return "warn", worsening
    return "ok", worsening


def realised_performance(
    y: np.ndarray,
    proba: np.ndarray,
    *,
    task: Task,
    classes: Sequence[str],
    logged: Mapping[str, float],
    spec: MonitoringSpec,
) -> PerformanceCheck:
    """The model's realised metrics on matured labels against its training run's test metrics
    (`logged`: the run's MLflow metrics, `test_roc_auc`, `test_qwk`, ...), each with a verdict
    by the thresholds of its task; below `min_labels` rows, no verdict."""
    settings = spec.performance
    realised = realised_metrics(y, proba, task, classes)
    rows = int(realised["n"])
    thresholds = settings.binary if task == "binary" else settings.ordinal
    enough = rows >= settings.min_labels
    checks = []
    for metric, limits in thresholds.items():
        value = float(realised[metric])
        known = logged.get(f"{LOGGED_PREFIX}{metric}")
        base = None if known is None else float(known)
        interval = (
            metric_interval(metric, value, y, proba, task, settings.confidence) if enough else None
        )
        status, worsening = metric_status(metric, base, value, interval, limits)
        checks.append(
            MetricCheck(
                metric=metric,
                logged=base,
                realised=value,
                low=None if interval is None else interval[0],
                high=None if interval is None else interval[1],
                worsening=worsening,
                status=status if enough or status == "not_logged" else "insufficient",
            )
        )
    return PerformanceCheck(task=task, rows=rows, checks=tuple(checks), realised=realised)
