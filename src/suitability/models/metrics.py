"""Evaluation metrics for the ordinal risk-level classifier and the binary churn classifier.

Pure functions over numpy arrays: they check their inputs, never read or write files, and return
plain dicts or frames that tracking can log as they are and reports can compare with baselines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

#: Metrics where a larger value is better. `recall_<label>` metrics are too; their names depend on
#: the labels, so `greater_is_better` recognises them by prefix.
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {"accuracy", "macro_f1", "qwk", "within_one_accuracy", "roc_auc", "pr_auc", "top_decile_lift"}
)
_LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss", "ece", "brier"})
_RECALL_PREFIX = "recall_"
#: Bins of the expected calibration error (equal width on [0, 1]).
_ECE_BINS = 15
#: Probabilities are clipped to at least this before taking logs, so one confident miss gives a
#: large but finite log loss.
_PROBA_FLOOR = 1e-15
#: How far a row of class probabilities may sum from 1 (float32 model outputs drift by ~1e-7).
_ROW_SUM_TOLERANCE = 1e-3
#: Keys that describe the evaluation set rather than a model; `ratios` leaves them out.
_NOT_COMPARED = frozenset({"n", "base_rate"})


def greater_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` means a better model, for sorting and comparisons.

    Raises `ValueError` for a name that is not one of this module's metrics, so that a typo does
    not silently flip a comparison.
    """
    if metric in HIGHER_IS_BETTER or metric.startswith(_RECALL_PREFIX):
        return True
    if metric in _LOWER_IS_BETTER:
        return False
    raise ValueError(
        f"unknown metric {metric!r}: not one of {sorted(HIGHER_IS_BETTER)}, "
        f"{sorted(_LOWER_IS_BETTER)} or recall_<label>"
    )


def ordinal_metrics(
    y_true: np.ndarray, proba: np.ndarray, predicted: np.ndarray, labels: Sequence[str]
) -> dict[str, float]:
    """Metrics of an ordinal classifier whose classes are `labels` in order (codes 0..K-1).

    `proba` holds one row of class probabilities per example; `predicted` is the class the
    model commits to, which need not be the argmax (a cost-sensitive decision rule may differ),
    so the label metrics use it while `log_loss` and `ece` judge the probabilities.

    - `qwk`: Cohen's kappa with quadratic weights, which charges a C1 called C5 sixteen times
      a C1 called C2; NaN when it is undefined (both sides use one and the same class).
    - `within_one_accuracy`: share of predictions at most one level from the truth.
    - `ece`: top-label expected calibration error, the count-weighted mean of
      |accuracy − mean confidence| over 15 equal-width confidence bins.
    - `recall_<label>`: per class; NaN when the class has no rows.
    """
    k = len(labels)
    n = _same_length(y_true=y_true, proba=proba, predicted=predicted)
    y_true, predicted = _codes(y_true, k, "y_true"), _codes(predicted, k, "predicted")
    proba = _class_probabilities(proba, k)

    matrix = confusion(y_true, predicted, k)
    support = matrix.sum(axis=1)
    hits = np.diag(matrix)
    true_proba = proba[np.arange(n), y_true]
    correct = (proba.argmax(axis=1) == y_true).astype(float)

    metrics: dict[str, float] = {
        "accuracy": float(hits.sum() / n),
        "macro_f1": float(
            f1_score(y_true, predicted, labels=range(k), average="macro", zero_division=0)
        ),
        "qwk": _quadratic_weighted_kappa(matrix),
        "within_one_accuracy": float(np.mean(np.abs(predicted - y_true) <= 1)),
        "log_loss": float(-np.mean(np.log(np.clip(true_proba, _PROBA_FLOOR, 1.0)))),
        "ece": _expected_calibration_error(proba.max(axis=1), correct),
    }
    for code, label in enumerate(labels):
        metrics[f"{_RECALL_PREFIX}{label}"] = (
            float(hits[code] / support[code]) if support[code] else math.nan
        )
    metrics["n"] = n
    return metrics


def confusion(y_true: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """k×k counts: rows are the true class, columns the predicted one (codes 0..k-1)."""
    _same_length(y_true=y_true, predicted=predicted)
    y_true, predicted = _codes(y_true, k, "y_true"), _codes(predicted, k, "predicted")
    return np.bincount(y_true * k + predicted, minlength=k * k).reshape(k, k)


def binary_metrics(y_true: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Metrics of a binary classifier from 0/1 outcomes and predicted probabilities `p`.

    - `roc_auc`, `pr_auc` (average precision): NaN when `y_true` holds one class only, since
      ranking cannot be judged without both.
    - `brier`, `log_loss` (probabilities clipped to [1e-15, 1 − 1e-15]).
    - `ece`: count-weighted mean of |observed rate − mean p| over 15 equal-width bins of p.
    - `top_decile_lift`: positive rate among the ceil(n/10) highest scores over the overall
      positive rate; ties at the cut go to the earlier rows (stable sort on −p), so the value
      does not depend on the sort algorithm. NaN when there are no positives.
    - `base_rate`, `n`: describe the evaluation set.
    """
    n = _same_length(y_true=y_true, p=p)
    y, p = _binary_outcomes(y_true), _probabilities(p, "p")

    both_classes = 0 < y.sum() < n
    base_rate = float(y.mean())
    top = np.argsort(-p, kind="stable")[: -(-n // 10)]  # ceil(n/10) without float error
    clipped = np.clip(p, _PROBA_FLOOR, 1.0 - _PROBA_FLOOR)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both_classes else math.nan,
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log1p(-clipped))),
        "ece": _expected_calibration_error(p, y),
        "top_decile_lift": float(y[top].mean() / base_rate) if base_rate > 0 else math.nan,
        "base_rate": base_rate,
        "n": n,
    }


def calibration_table(y_true: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability table: per quantile bin of `p`, the mean prediction, observed rate and count.

    Quantile bins keep every point of the curve backed by about n/bins rows, where equal-width
    bins would leave the sparse high-probability end to a handful. A bin's upper edge is the
    value of `p` at quantile i/bins (no interpolation), so no bin is empty; repeated edges are
    merged, so heavy ties give fewer bins. Bins are numbered 0.. from the lowest predictions.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    _same_length(y_true=y_true, p=p)
    y, p = _binary_outcomes(y_true), _probabilities(p, "p")

    levels = np.arange(1, bins + 1) / bins
    upper_edges = np.unique(np.quantile(p, levels, method="inverted_cdf"))
    # Each row goes to the first bin whose upper edge is at least its prediction.
    bin_of_row = np.searchsorted(upper_edges, p, side="left")
    table = (
        pd.DataFrame({"bin": bin_of_row, "p": p, "y": y})
        .groupby("bin", sort=True)
        .agg(mean_predicted=("p", "mean"), observed_rate=("y", "mean"), count=("y", "size"))
        .reset_index()
    )
    table["bin"] = np.arange(len(table))
    return table


def ratios(model: Mapping[str, float], best: Mapping[str, float]) -> dict[str, float]:
    """`model[key] / best[key]` for every metric both share, to show how close a model comes to
    the best achievable (e.g. the metrics of the generating probabilities on the same rows).

    A ratio above 1 is better for higher-is-better metrics but worse for lower-is-better ones
    (`log_loss`, `ece`, `brier`): a log-loss ratio of 1.2 means 20 % more loss than the best.
    See `greater_is_better`. NaN when the best value is 0 or NaN; `n` and `base_rate` describe
    the data, not the model, and are left out.
    """
    result: dict[str, float] = {}
    for key, value in model.items():
        if key in _NOT_COMPARED or key not in best:
            continue
        reference = float(best[key])
        usable = reference != 0 and not math.isnan(reference)
        result[key] = float(value) / reference if usable else math.nan
    return result


def _quadratic_weighted_kappa(matrix: np.ndarray) -> float:
    """Cohen's kappa of a confusion matrix with weights (i − j)²; NaN when undefined (the
    chance-expected disagreement is zero), as scikit-learn's `cohen_kappa_score` does."""
    k = matrix.shape[0]
    codes = np.arange(k)
    weights = (codes[:, None] - codes[None, :]) ** 2
    expected = np.outer(matrix.sum(axis=1), matrix.sum(axis=0)) / matrix.sum()
    chance_disagreement = float((weights * expected).sum())
    if chance_disagreement == 0:
        return math.nan
    return 1.0 - float((weights * matrix).sum()) / chance_disagreement


def _expected_calibration_error(confidence: np.ndarray, outcome: np.ndarray) -> float:
    """Count-weighted mean |mean outcome − mean confidence| over equal-width bins on [0, 1].

    Bins are right-closed, (i/15, (i+1)/15], with 0 in the first, as in Guo et al. (2017).
    """
    inner_edges = np.linspace(0.0, 1.0, _ECE_BINS + 1)[1:-1]
    bin_of_row = np.searchsorted(inner_edges, confidence, side="left")
    summed_gap = np.bincount(bin_of_row, weights=outcome - confidence, minlength=_ECE_BINS)
    # Σ_bins count·|mean gap| = Σ_bins |summed gap|; divided by n it is the weighted mean.
    return float(np.abs(summed_gap).sum() / len(confidence))


def _same_length(**arrays: np.ndarray) -> int:
    """The common number of rows of `arrays`; raises if they differ or there are none."""
    for name, array in arrays.items():
        if np.ndim(array) == 0:
            raise ValueError(f"{name} must be an array, got a scalar")
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {length}" for name, length in lengths.items())
        raise ValueError(f"inputs differ in length: {described} rows")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"empty input: {', '.join(lengths)} have no rows")
    return n


def _codes(values: np.ndarray, k: int, name: str) -> np.ndarray:
    """`values` as a 1-d int64 array of class codes 0..k-1."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {array.shape}")
    if k < 1:
        raise ValueError(f"need at least one class label, got k={k}")
    # Whole-number floats are accepted: codes often come back from pandas as float64.
    whole_numbers = np.issubdtype(array.dtype, np.integer) or (
        np.issubdtype(array.dtype, np.floating)
        and bool(np.all(np.isfinite(array)))
        and bool(np.all(array == np.round(array)))
    )
    if not whole_numbers:
        raise ValueError(f"{name} must hold integer class codes, got {array.dtype} values")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= k):
        raise ValueError(
            f"{name} has codes from {array.min()} to {array.max()}; expected 0..{k - 1} "
            f"for {k} labels"
        )
    return array


def _class_probabilities(proba: np.ndarray, k: int) -> np.ndarray:
    """`proba` as an (n, k) float array of probability rows that sum to 1."""
    array = np.asarray(proba, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"proba must be 2-dimensional (n, {k}), got shape {array.shape}")
    if array.shape[1] != k:
        raise ValueError(f"proba has {array.shape[1]} columns for {k} labels")
    if not np.all(np.isfinite(array)) or np.any(array < 0) or np.any(array > 1):
        raise ValueError("proba must hold probabilities in [0, 1] (no NaN or infinity)")
    row_sums = array.sum(axis=1)
    off = np.abs(row_sums - 1.0) > _ROW_SUM_TOLERANCE
    if np.any(off):
        first = int(np.argmax(off))
        raise ValueError(
            f"proba rows must sum to 1: {int(off.sum())} do not (row {first} sums to "
            f"{row_sums[first]:.6g})"
        )
    return array


def _probabilities(values: np.ndarray, name: str) -> np.ndarray:
    """`values` as a 1-d float array of probabilities in [0, 1]."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0) or np.any(array > 1):
        raise ValueError(f"{name} must hold probabilities in [0, 1] (no NaN or infinity)")
    return array


def _binary_outcomes(values: np.ndarray) -> np.ndarray:
    """`values` as a 1-d float array of 0/1 outcomes (booleans are accepted)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"y_true must be 1-dimensional, got shape {array.shape}")
    array = array.astype(float)
    if not np.all((array == 0) | (array == 1)):
        raise ValueError("y_true must hold only 0 and 1 (or booleans)")
    return array
