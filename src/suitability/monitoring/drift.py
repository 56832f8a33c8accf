"""Feature and prediction drift: each column of current data against its training reference.

Per column, the current rows are counted in the reference's bins (quantile bins of a number,
its categories, a bin for missing values and one for categories never seen in training), and
the two distributions compared by

- the population stability index, PSI = Σ (c − r) · ln(c / r) over the bins' shares (floored at
  `epsilon`, so a bin empty on one side stays finite): the effect size that decides;
- the Jensen–Shannon distance (base 2, in [0, 1]; `scipy.spatial.distance.jensenshannon`): a
  bounded second effect size for readers who prefer one;
- a test suited to the column: for a number, Kolmogorov–Smirnov on the binned distribution
  (missing values last), the largest gap between the two cumulative shares, with its p-value
  (`scipy.stats.kstwobign`, the Kolmogorov distribution at n·m/(n+m) rows); binning can only
  hide gaps, so it is conservative; for a category (or a number when asked), the chi-square
  test of homogeneity of the 2 × bins table (`scipy.stats.chi2_contingency`), which also counts
  the reference's own sampling noise.

Why the effect size decides and the test only guards: at a million rows every p-value is tiny,
so a test alone alerts on shifts too small to matter; on a few hundred rows the PSI is noisy
(its expectation without any drift is about (bins − 1)·(1/n_ref + 1/n_cur)), so a PSI alone
alerts on chance. A column warns or alerts when its PSI passes the threshold and its test is
significant, and below `min_rows` current rows it gets no verdict at all.

Why scipy and not Evidently or NannyML: both compute their drift tests from the raw reference
frame (Evidently's PSI even draws its bins from reference and current rows together, and
NannyML's Kolmogorov–Smirnov and chi-square methods keep the reference series they were fitted
on), so the reference would have to be the training rows themselves, logged with every run and
read back at every check. Our reference is bins and counts only (nothing identifies a
customer), which is exactly what PSI, a chi-square and a binned Kolmogorov–Smirnov need; scipy
is already a dependency, and the counting is a few numpy calls per column (a million rows by
190 features in under half a second on two cores, twelve times a `pd.cut` loop;
`benchmarks/bench_monitor.py`). Neither library is installed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, kstwobign

from suitability.monitoring.binning import category_counts, numbers, numeric_counts
from suitability.monitoring.reference import (
    CategoricalReference,
    NumericReference,
    Reference,
    prediction_columns,
)
from suitability.monitoring.spec import MonitoringSpec, Thresholds
from suitability.monitoring.status import Status

Test = Literal["ks", "chi2"]


@dataclass(frozen=True)
class Bin:
    """One bin as a reader sees it: a number interval (low, high] (None: unbounded), a single
    value, a category, categories unseen in training, or missing values."""

    kind: Literal["interval", "value", "category", "unseen", "missing"]
    low: float | None = None
    high: float | None = None
    category: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": self.low, "high": self.high, "category": self.category}


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift: effect sizes, the test, the verdict and both distributions."""

    name: str
    kind: Literal["numeric", "categorical"]
    test: Test
    rows: int
    psi: float
    js_distance: float
    statistic: float
    p_value: float
    status: Status
    report_only: bool
    bins: tuple[Bin, ...]
    reference_shares: tuple[float, ...]
    current_shares: tuple[float, ...]
    reference_mean: float | None = None
    current_mean: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "test": self.test,
            "rows": self.rows,
            "psi": _finite(self.psi),
            "js_distance": _finite(self.js_distance),
            "statistic": _finite(self.statistic),
            "p_value": _finite(self.p_value),
            "status": self.status,
            "report_only": self.report_only,
            "reference_mean": self.reference_mean,
            "current_mean": self.current_mean,
            "bins": [b.to_json() for b in self.bins],
            "reference_shares": list(self.reference_shares),
            "current_shares": list(self.current_shares),
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --- measures ------------------------------------------------------------------------------------


def shares(counts: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
    """Counts as shares of their total, each at least `epsilon` (then summing to about 1)."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.maximum(counts / counts.sum(), epsilon)


def psi(reference_counts: np.ndarray, current_counts: np.ndarray, epsilon: float) -> float:
    """Population stability index of two count vectors over the same bins."""
    r, c = shares(reference_counts, epsilon), shares(current_counts, epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen–Shannon distance (base 2: 0 identical, 1 disjoint) of two count vectors."""
    return float(jensenshannon(shares(reference_counts), shares(current_counts), base=2))


def chi2_homogeneity(
    reference_counts: np.ndarray, current_counts: np.ndarray
) -> tuple[float, float]:
    """Pearson's chi-square statistic and p-value for "both samples come from one distribution",
    on the bins either sample uses (without Yates' correction, so statistics of any number of
    bins are alike)."""
    table = np.vstack([reference_counts, current_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def binned_ks(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """The two-sample Kolmogorov–Smirnov statistic on ordered bins (the largest gap between the
    cumulative shares) and its asymptotic p-value (the Kolmogorov distribution at n·m/(n+m)
    rows). The binned statistic is a lower bound of the unbinned one, so the p-value errs
    towards "no drift". (`kstwo`, the exact one-sample law scipy's `ks_2samp` uses, agrees to
    within a few per cent at the rows a verdict needs and costs hundreds of times more.)"""
    n, m = float(np.sum(reference_counts)), float(np.sum(current_counts))
    gap = np.abs(np.cumsum(reference_counts) / n - np.cumsum(current_counts) / m)
    statistic = float(gap.max())
    return statistic, float(kstwobign.sf(statistic * math.sqrt(n * m / (n + m))))


def drift_status(
    psi_value: float,
    p_value: float,
    rows: int,
    *,
    thresholds: Thresholds,
    significance: float,
    min_rows: int,
    report_only: bool = False,
) -> Status:
    """The verdict on one column: by PSI, when the test is significant and there are enough
    rows; a `report_only` column warns at most."""
    if rows < min_rows:
        return "insufficient"
    if p_value >= significance:
        return "ok"
    if psi_value >= thresholds.alert:
        return "warn" if report_only else "alert"
    if psi_value >= thresholds.warn:
        return "warn"
    return "ok"


# --- columns -------------------------------------------------------------------------------------


def reference_bins(reference: NumericReference | CategoricalReference) -> tuple[Bin, ...]:
    """The bins of a column's reference, laid out as its counts (missing last)."""
    if isinstance(reference, CategoricalReference):
        return (
            *(Bin("category", category=c) for c in reference.categories),
            Bin("unseen"),
            Bin("missing"),
        )
    edges = reference.edges
    out = []
    for i in range(len(edges) + 1):
        low = edges[i - 1] if i > 0 else None
        high = edges[i] if i < len(edges) else None
        # (just below v, v] holds v alone: a value the reference isolated.
        if low is not None and high is not None and low == math.nextafter(high, -math.inf):
            out.append(Bin("value", high=high))
        else:
            out.append(Bin("interval", low=low, high=high))
    return (*out, Bin("missing"))


def column_drift(
    name: str,
    reference: NumericReference | CategoricalReference,
    column: pd.Series,
    *,
    thresholds: Thresholds,
    test: Test,
    significance: float,
    epsilon: float,
    min_rows: int,
    report_only: bool = False,
) -> ColumnDrift:
    """One column of current data against its reference. A number that warns or alerts also
    gets its current mean beside the reference's (only those: it costs as much as binning)."""
    values: np.ndarray | None = None
    if isinstance(reference, CategoricalReference):
        current = category_counts(column, reference.categories)
    else:
        values = numbers(column, name)
        current = numeric_counts(values, np.asarray(reference.edges, dtype=np.float64))
    expected = reference.bin_counts()
    psi_value = psi(expected, current, epsilon)
    if test == "ks":
        statistic, p_value = binned_ks(expected, current)
    else:
        statistic, p_value = chi2_homogeneity(expected, current)
    rows = int(current.sum())
    status = drift_status(
        psi_value,
        p_value,
        rows,
        thresholds=thresholds,
        significance=significance,
        min_rows=min_rows,
        report_only=report_only,
    )
    drifted = values is not None and status in ("warn", "alert")
    return ColumnDrift(
        name=name,
        kind=reference.kind,
        test=test,
        rows=rows,
        psi=psi_value,
        js_distance=js_distance(expected, current),
        statistic=statistic,
        p_value=p_value,
        status=status,
        report_only=report_only,
        bins=reference_bins(reference),
        reference_shares=tuple(shares(expected).tolist()),
        current_shares=tuple(shares(current).tolist()),
        reference_mean=reference.summary.mean if isinstance(reference, NumericReference) else None,
        current_mean=_finite_mean(values) if drifted and values is not None else None,
    )


def _finite_mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def check_current(reference: Reference, frame: pd.DataFrame) -> None:
    """The current frame must have rows and every feature of the reference."""
    if len(frame) == 0:
        raise ValueError("the current feature frame has no rows: nothing to compare")
    present = set(frame.columns.tolist())
    missing = [n for n in reference.features if n not in present]
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" … ({len(missing)} in all)" if len(missing) > 10 else ""
        )
        raise ValueError(f"the current feature frame lacks features of the reference: {shown}")


def feature_drift(
    reference: Reference, frame: pd.DataFrame, spec: MonitoringSpec
) -> list[ColumnDrift]:
    """Every feature of the reference, in its order, against the same column of `frame`."""
    check_current(reference, frame)
    settings = spec.features
    report_only = set(settings.report_only)
    return [
        column_drift(
            name,
            column,
            frame[name],
            thresholds=settings.psi,
            test=settings.categorical_test
            if isinstance(column, CategoricalReference)
            else settings.numeric_test,
            significance=settings.significance,
            epsilon=spec.epsilon,
            min_rows=spec.min_rows,
            report_only=name in report_only,
        )
        for name, column in reference.features.items()
    ]


def prediction_drift(
    reference: Reference, proba: np.ndarray, spec: MonitoringSpec
) -> list[ColumnDrift]:
    """The model's current predictions (`predict_proba` on the current rows) against those on
    the reference rows: the probability, or the predicted and the expected level."""
    if len(proba) == 0:
        raise ValueError("no current predictions: nothing to compare")
    columns = prediction_columns(proba, reference.task, reference.classes)
    settings = spec.predictions
    return [
        column_drift(
            name,
            column,
            columns[name],
            thresholds=settings.psi,
            test="chi2" if isinstance(column, CategoricalReference) else "ks",
            significance=settings.significance,
            epsilon=spec.epsilon,
            min_rows=spec.min_rows,
        )
        for name, column in reference.predictions.items()
    ]
