"""Evaluation figures: confusion matrix, ROC and precision-recall curves, reliability diagrams.

Each function builds a `matplotlib.figure.Figure` directly, never through pyplot, so nothing here
touches the global backend or figure registry; the caller saves or logs the figure and drops it.
Every word a figure shows comes from the caller: titles and curve names as arguments, the fixed
words as `PlotWords` (`explain.charts.plot_words` has them in Chinese and English).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from suitability.models.metrics import binary_metrics, calibration_table

_REFERENCE_STYLE = {"color": "grey", "linestyle": "--", "linewidth": 1}


@dataclass(frozen=True)
class PlotWords:
    """The fixed words of the evaluation figures, in one language. Templates name their fields:
    `{name}` a curve, `{value}` a number."""

    predicted: str  # confusion matrix: columns
    true: str  # confusion matrix: rows
    share_of_true: str  # confusion matrix: colour bar
    chance: str  # the ROC diagonal
    no_curve: str  # "{name} (one class, no curve)"
    with_auc: str  # "{name} (AUC {value:.3f})"
    with_ap: str  # "{name} (AP {value:.3f})"
    base_rate: str  # "base rate {value:.3f}"
    false_positive_rate: str
    true_positive_rate: str
    roc: str
    recall: str
    precision: str
    precision_recall: str
    perfectly_calibrated: str
    mean_predicted: str
    observed_rate: str


def confusion_matrix_figure(
    matrix: np.ndarray, labels: Sequence[str], title: str, *, words: PlotWords
) -> Figure:
    """Confusion matrix with counts in the cells, shaded by each true class's share.

    Shading by row (recall per cell) keeps rare classes readable: with raw counts the
    common middle classes would swamp the colour scale.
    """
    matrix = np.asarray(matrix)
    k = len(labels)
    if matrix.shape != (k, k):
        raise ValueError(f"matrix has shape {matrix.shape} for {k} labels; expected ({k}, {k})")
    row_totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(
        matrix, row_totals, out=np.zeros(matrix.shape, dtype=float), where=row_totals > 0
    )

    figure = Figure(figsize=(1.0 + 0.9 * k, 0.6 + 0.9 * k), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(k):
        for column in range(k):
            axes.text(
                column,
                row,
                f"{int(matrix[row, column]):,}",
                ha="center",
                va="center",
                color="white" if shares[row, column] > 0.5 else "black",
                fontsize=9,
            )
    axes.set_xticks(range(k), labels)
    axes.set_yticks(range(k), labels)
    axes.set_xlabel(words.predicted)
    axes.set_ylabel(words.true)
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label=words.share_of_true)
    return figure


def roc_pr_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, *, words: PlotWords
) -> Figure:
    """ROC (left) and precision-recall (right) curves, one line per named `(y_true, p)` pair.

    Meant to put a model beside its baselines and the best possible scores on the same rows;
    the legends give ROC AUC and average precision. A pair whose `y_true` holds one class has no
    curves and is listed in the legend as such.
    """
    _require_curves(curves)
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    roc_axes, pr_axes = figure.subplots(1, 2)
    roc_axes.plot([0, 1], [0, 1], label=words.chance, **_REFERENCE_STYLE)

    base_rates: set[float] = set()
    for name, (y_true, p) in curves.items():
        metrics = binary_metrics(y_true, p)
        base_rates.add(round(metrics["base_rate"], 6))
        if np.isnan(metrics["roc_auc"]):
            roc_axes.plot([], [], label=words.no_curve.format(name=name))
            pr_axes.plot([], [], label=words.no_curve.format(name=name))
            continue
        false_positive_rate, true_positive_rate, _ = roc_curve(y_true, p)
        precision, recall, _ = precision_recall_curve(y_true, p)
        (line,) = roc_axes.plot(
            false_positive_rate,
            true_positive_rate,
            label=words.with_auc.format(name=name, value=metrics["roc_auc"]),
        )
        pr_axes.plot(
            recall,
            precision,
            drawstyle="steps-post",
            color=line.get_color(),
            label=words.with_ap.format(name=name, value=metrics["pr_auc"]),
        )
    for rate in sorted(base_rates):
        pr_axes.axhline(rate, label=words.base_rate.format(value=rate), **_REFERENCE_STYLE)

    _unit_square(roc_axes, words.false_positive_rate, words.true_positive_rate, words.roc)
    _unit_square(pr_axes, words.recall, words.precision, words.precision_recall)
    roc_axes.legend(loc="lower right", fontsize=8)
    pr_axes.legend(loc="upper right", fontsize=8)
    figure.suptitle(title)
    return figure


def calibration_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    *,
    words: PlotWords,
    bins: int = 10,
) -> Figure:
    """Reliability diagram: observed rate against mean prediction per quantile bin
    (`calibration_table`), one line per named `(y_true, p)` pair, with the diagonal a perfectly
    calibrated model would follow."""
    _require_curves(curves)
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], label=words.perfectly_calibrated, **_REFERENCE_STYLE)
    for name, (y_true, p) in curves.items():
        table = calibration_table(y_true, p, bins=bins)
        axes.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=name)
    _unit_square(axes, words.mean_predicted, words.observed_rate, title)
    axes.legend(loc="upper left", fontsize=8)
    return figure


def ordinal_calibration_figure(
    y_true: np.ndarray,
    proba: np.ndarray,
    labels: Sequence[str],
    title: str,
    *,
    words: PlotWords,
    bins: int = 10,
) -> Figure:
    """One reliability panel per class, each judging that class's probability one-vs-rest.

    Top-label calibration (the `ece` of `ordinal_metrics`) can look fine while the rare extreme
    classes are badly calibrated; per-class panels show where.
    """
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    k = len(labels)
    if proba.ndim != 2 or proba.shape[1] != k:
        raise ValueError(f"proba has shape {proba.shape} for {k} labels; expected (n, {k})")
    if not np.isin(y_true, np.arange(k)).all():
        raise ValueError(f"y_true must hold class codes 0..{k - 1} for {k} labels")
    figure = Figure(figsize=(2.6 * k + 0.4, 3.2), layout="constrained")
    panels = figure.subplots(1, k, sharex=True, sharey=True, squeeze=False)[0]
    for code, (axes, label) in enumerate(zip(panels, labels, strict=True)):
        table = calibration_table(y_true == code, proba[:, code], bins=bins)
        axes.plot([0, 1], [0, 1], **_REFERENCE_STYLE)
        axes.plot(table["mean_predicted"], table["observed_rate"], marker="o")
        _unit_square(axes, words.mean_predicted, words.observed_rate if code == 0 else "", label)
    figure.suptitle(title)
    return figure


def _require_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Refuse an empty mapping, which would otherwise give a figure with nothing to compare."""
    if not curves:
        raise ValueError("curves is empty: give at least one named (y_true, p) pair")


def _unit_square(axes: Axes, xlabel: str, ylabel: str, title: str) -> None:
    """Label `axes` and fix both ranges to [0, 1] with a little margin, square."""
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_aspect("equal")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
