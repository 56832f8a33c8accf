"""Evaluation metrics and figures, checked against hand-computed values on tiny inline data."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import cohen_kappa_score

from suitability.explain.charts import plot_words
from suitability.models.metrics import (
    HIGHER_IS_BETTER,
    binary_metrics,
    calibration_table,
    confusion,
    greater_is_better,
    ordinal_metrics,
    ratios,
)
from suitability.models.plots import (
    calibration_figure,
    confusion_matrix_figure,
    ordinal_calibration_figure,
    roc_pr_figure,
)

LABELS = ["C1", "C2", "C3", "C4", "C5"]
WORDS = plot_words("en")


def _one_hot(codes: list[int], k: int = 5) -> np.ndarray:
    return np.eye(k)[codes]


# --- ordinal -------------------------------------------------------------------------------------


def test_perfect_one_hot_predictions_score_perfectly() -> None:
    y = np.array([0, 1, 2, 3, 4, 0, 1])
    metrics = ordinal_metrics(y, _one_hot(list(y)), y, LABELS)
    assert metrics["accuracy"] == 1.0
    assert metrics["macro_f1"] == 1.0
    assert metrics["qwk"] == 1.0
    assert metrics["within_one_accuracy"] == 1.0
    assert metrics["log_loss"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["ece"] == 0.0
    assert all(metrics[f"recall_{label}"] == 1.0 for label in LABELS)
    assert metrics["n"] == 7


def test_qwk_matches_hand_value_and_sklearn() -> None:
    # Two classes: observed agreement 3/4, chance agreement (2·1 + 2·3)/16 = 1/2 → κ = 0.5.
    two = ordinal_metrics(
        np.array([0, 0, 1, 1]), _one_hot([0, 1, 1, 1], 2), np.array([0, 1, 1, 1]), ["lo", "hi"]
    )
    assert two["qwk"] == pytest.approx(0.5)

    y = np.array([0, 1, 2, 3, 4, 2, 1, 0, 3, 2])
    predicted = np.array([0, 2, 2, 4, 3, 1, 1, 1, 0, 2])
    expected = cohen_kappa_score(y, predicted, weights="quadratic", labels=range(5))
    metrics = ordinal_metrics(y, _one_hot(list(predicted)), predicted, LABELS)
    assert metrics["qwk"] == pytest.approx(expected)


def test_qwk_is_nan_when_undefined() -> None:
    y = np.array([2, 2, 2])
    assert math.isnan(ordinal_metrics(y, _one_hot([2, 2, 2]), y, LABELS)["qwk"])


def test_within_one_accuracy_and_recall_per_class() -> None:
    y = np.array([0, 0, 2, 4])
    predicted = np.array([1, 2, 2, 2])  # distances 1, 2, 0, 2
    metrics = ordinal_metrics(y, _one_hot(list(predicted)), predicted, LABELS)
    assert metrics["accuracy"] == 0.25
    assert metrics["within_one_accuracy"] == 0.5
    assert metrics["recall_C1"] == 0.0
    assert math.isnan(metrics["recall_C2"])  # no true C2 rows
    assert metrics["recall_C3"] == 1.0
    assert math.isnan(metrics["recall_C4"])
    assert metrics["recall_C5"] == 0.0


def test_log_loss_uses_probability_of_true_class_and_clips_zero() -> None:
    proba = np.array([[0.5, 0.5, 0.0], [0.25, 0.5, 0.25]])
    y = np.array([0, 2])
    metrics = ordinal_metrics(y, proba, np.array([0, 1]), ["a", "b", "c"])
    assert metrics["log_loss"] == pytest.approx(1.5 * math.log(2))

    zero = ordinal_metrics(np.array([2]), proba[:1], np.array([0]), ["a", "b", "c"])
    assert zero["log_loss"] == pytest.approx(-math.log(1e-15))


def test_top_label_ece_on_crafted_example() -> None:
    # Confidence 0.9 twice, right once: gap 0.4. Confidence 0.7 twice, right both: gap 0.3.
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.7, 0.3], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    metrics = ordinal_metrics(y, proba, proba.argmax(axis=1), ["lo", "hi"])
    assert metrics["ece"] == pytest.approx((2 * 0.4 + 2 * 0.3) / 4)


def test_confusion_counts_rows_true_columns_predicted() -> None:
    matrix = confusion(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0]), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert matrix.dtype.kind == "i"


# --- binary --------------------------------------------------------------------------------------


def test_binary_metrics_hand_values() -> None:
    metrics = binary_metrics(np.array([1, 0]), np.array([0.8, 0.4]))
    assert metrics["roc_auc"] == 1.0
    assert metrics["pr_auc"] == 1.0
    assert metrics["brier"] == pytest.approx((0.2**2 + 0.4**2) / 2)
    assert metrics["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert metrics["base_rate"] == 0.5
    assert metrics["n"] == 2


def test_top_decile_lift_all_positive_top_decile() -> None:
    y = np.zeros(20, dtype=int)
    y[[0, 1, 7, 12]] = 1  # base rate 0.2
    p = np.linspace(0.95, 0.0, 20)  # rows 0 and 1 are the top 10 %
    assert binary_metrics(y, p)["top_decile_lift"] == pytest.approx(1 / 0.2)


def test_top_decile_takes_ceil_of_n_over_ten_exactly() -> None:
    # 0.1 * 30 is 3.0000000000000004 in floats; the top decile must still be 3 rows, not 4.
    y = np.zeros(30, dtype=int)
    y[[0, 1, 2, 9]] = 1
    p = np.linspace(0.99, 0.01, 30)
    assert binary_metrics(y, p)["top_decile_lift"] == pytest.approx(1 / (4 / 30))


def test_top_decile_ties_break_by_row_order() -> None:
    p = np.full(10, 0.5)
    first_positive = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert binary_metrics(first_positive, p)["top_decile_lift"] == pytest.approx(10.0)
    assert binary_metrics(first_positive[::-1].copy(), p)["top_decile_lift"] == 0.0


def test_binary_ece_does_not_cancel_across_bins() -> None:
    # Bins around 0.25 and 0.75 are each off by 0.25 in opposite directions.
    y = np.array([0, 0, 1, 1])
    assert binary_metrics(y, np.array([0.25, 0.25, 0.75, 0.75]))["ece"] == pytest.approx(0.25)
    # Within one bin, over- and under-prediction do cancel: 0.5 vs observed 0.5.
    assert binary_metrics(np.array([0, 1]), np.array([0.5, 0.5]))["ece"] == pytest.approx(0.0)


def test_single_class_gives_nan_auc_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = binary_metrics(np.zeros(5, dtype=int), np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    assert math.isnan(metrics["roc_auc"])
    assert math.isnan(metrics["pr_auc"])
    assert math.isnan(metrics["top_decile_lift"])  # no positives: lift undefined
    assert metrics["brier"] == pytest.approx(np.mean(np.array([0.1, 0.2, 0.3, 0.4, 0.5]) ** 2))


def test_calibration_table_quantile_bins() -> None:
    p = np.arange(1, 101) / 101
    y = (np.arange(100) % 2).astype(int)
    table = calibration_table(y, p, bins=10)
    assert list(table.columns) == ["bin", "mean_predicted", "observed_rate", "count"]
    assert list(table["bin"]) == list(range(10))
    assert list(table["count"]) == [10] * 10
    assert table["observed_rate"].tolist() == [0.5] * 10
    assert table["mean_predicted"].is_monotonic_increasing


def test_calibration_table_merges_tied_edges() -> None:
    p = np.array([0.1] * 6 + [0.9] * 4)
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 0])
    table = calibration_table(y, p, bins=10)
    assert table["count"].tolist() == [6, 4]
    assert table["mean_predicted"].tolist() == pytest.approx([0.1, 0.9])
    assert table["observed_rate"].tolist() == pytest.approx([1 / 6, 3 / 4])
    assert calibration_table(y, np.full(10, 0.3))["count"].tolist() == [10]


# --- comparisons ---------------------------------------------------------------------------------


def test_ratios_divide_shared_metrics_and_skip_data_descriptors() -> None:
    model = {"accuracy": 0.8, "log_loss": 0.6, "ece": 0.1, "qwk": 0.5, "n": 100, "base_rate": 0.2}
    best = {"accuracy": 1.0, "log_loss": 0.5, "ece": 0.0, "qwk": math.nan, "n": 100}
    result = ratios(model, best)
    assert set(result) == {"accuracy", "log_loss", "ece", "qwk"}
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["log_loss"] == pytest.approx(1.2)  # lower is better: 20 % worse than best
    assert math.isnan(result["ece"])  # best is 0
    assert math.isnan(result["qwk"])  # best is NaN


def test_greater_is_better() -> None:
    assert {"accuracy", "qwk", "roc_auc", "top_decile_lift"} <= HIGHER_IS_BETTER
    assert greater_is_better("macro_f1")
    assert greater_is_better("recall_C5")
    assert not greater_is_better("log_loss")
    assert not greater_is_better("ece")
    assert not greater_is_better("brier")
    with pytest.raises(ValueError, match="unknown metric 'acuracy'"):
        greater_is_better("acuracy")


# --- input checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "proba", "predicted", "message"),
    [
        ([0, 1], np.full((2, 4), 0.25), [0, 1], "proba has 4 columns for 5 labels"),
        ([0, 1, 2], _one_hot([0, 1]), [0, 1], "inputs differ in length: y_true has 3"),
        ([], np.empty((0, 5)), [], "empty input"),
        ([0, 5], _one_hot([0, 1]), [0, 1], r"y_true has codes from 0 to 5; expected 0..4"),
        ([0, 1], np.full((2, 5), 0.3), [0, 1], "proba rows must sum to 1"),
        ([0, 1], np.full(2, 0.5), [0, 1], "proba must be 2-dimensional"),
        ([0.5, 1], _one_hot([0, 1]), [0, 1], "y_true must hold integer class codes"),
    ],
)
def test_ordinal_metrics_rejects_bad_input(
    y: list[float], proba: np.ndarray, predicted: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ordinal_metrics(np.array(y), proba, np.array(predicted), LABELS)


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 1], [0.2, 0.4], "inputs differ in length: y_true has 3, p has 2 rows"),
        ([], [], "empty input"),
        ([0, 2], [0.2, 0.4], "y_true must hold only 0 and 1"),
        ([0, 1], [0.2, 1.4], r"p must hold probabilities in \[0, 1\]"),
        ([0, 1], [0.2, np.nan], r"p must hold probabilities in \[0, 1\]"),
    ],
)
def test_binary_metrics_rejects_bad_input(y: list[int], p: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        binary_metrics(np.array(y), np.array(p))


def test_calibration_table_rejects_zero_bins() -> None:
    with pytest.raises(ValueError, match="bins must be at least 1"):
        calibration_table(np.array([0, 1]), np.array([0.2, 0.4]), bins=0)


# --- figures -------------------------------------------------------------------------------------


@pytest.fixture
def churn_curves() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.02, 0.6, 200)
    y = (rng.uniform(size=200) < truth).astype(int)
    noisy = np.clip(truth + rng.normal(0, 0.15, 200), 0, 1)
    return {"model": (y, noisy), "best possible": (y, truth), "constant": (y, np.full(200, 0.3))}


def _saves(figure: Figure, path) -> None:
    figure.savefig(path, dpi=50)
    assert path.stat().st_size > 0


def test_confusion_matrix_figure(tmp_path) -> None:
    matrix = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]])  # an empty row must not divide by 0
    figure = confusion_matrix_figure(matrix, ["C1", "C2", "C3"], "risk level", words=WORDS)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 2  # matrix and colour bar
    _saves(figure, tmp_path / "confusion.png")
    with pytest.raises(ValueError, match=r"matrix has shape \(3, 3\) for 2 labels"):
        confusion_matrix_figure(matrix, ["C1", "C2"], "risk level", words=WORDS)


def test_roc_pr_figure(tmp_path, churn_curves) -> None:
    figure = roc_pr_figure(churn_curves, "churn", words=WORDS)
    assert len(figure.axes) == 2
    roc_legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert any(text.startswith("model (AUC ") for text in roc_legend)
    _saves(figure, tmp_path / "roc_pr.png")


def test_roc_pr_figure_tolerates_single_class(tmp_path) -> None:
    figure = roc_pr_figure(
        {"model": (np.zeros(4, dtype=int), np.full(4, 0.2))}, "churn", words=WORDS
    )
    _saves(figure, tmp_path / "one_class.png")
    with pytest.raises(ValueError, match="curves is empty"):
        roc_pr_figure({}, "churn", words=WORDS)


def test_calibration_figure(tmp_path, churn_curves) -> None:
    figure = calibration_figure(churn_curves, "churn calibration", words=WORDS)
    assert len(figure.axes) == 1
    _saves(figure, tmp_path / "calibration.png")


def test_ordinal_calibration_figure(tmp_path) -> None:
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.ones(5), 100)
    y = np.array([rng.choice(5, p=row) for row in proba])
    figure = ordinal_calibration_figure(y, proba, LABELS, "risk level calibration", words=WORDS)
    assert len(figure.axes) == 5
    _saves(figure, tmp_path / "ordinal_calibration.png")
    with pytest.raises(ValueError, match=r"proba has shape \(100, 5\) for 4 labels"):
        ordinal_calibration_figure(y, proba, LABELS[:4], "risk level calibration", words=WORDS)


def test_plots_import_without_pyplot() -> None:
    code = "import sys, suitability.models.plots; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
