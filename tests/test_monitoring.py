"""Monitoring: the measures on hand-made distributions, binning, the reference's JSON round trip,
drift that alerts on exactly the shifted columns and not on a resample, prediction drift,
realised performance, the verdict and its MLflow metrics, the zh/en report, the thresholds file,
and the errors bad inputs get."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import chi2, kstwobign

from suitability.explain.render import render_html
from suitability.models.estimators import FeatureLayout
from suitability.models.spec import load_model_spec
from suitability.monitoring.binning import category_counts, numeric_counts, quantile_edges
from suitability.monitoring.drift import (
    binned_ks,
    chi2_homogeneity,
    column_drift,
    drift_status,
    feature_drift,
    js_distance,
    prediction_drift,
    psi,
)
from suitability.monitoring.performance import metric_interval, realised_performance
from suitability.monitoring.reference import (
    EXPECTED_LEVEL,
    LEVEL,
    PROBABILITY,
    Reference,
    build_reference,
    reference_from_json,
    reference_to_json,
)
from suitability.monitoring.report import monitoring_report
from suitability.monitoring.result import monitoring_result
from suitability.monitoring.rows import MonitoringRows, monitoring_rows
from suitability.monitoring.spec import MonitoringSpec, Thresholds, load_monitoring_spec
from suitability.specs import C_LEVELS, SpecError, Specs

ROOT = Path(__file__).resolve().parents[1]
MONITORING_FILE = ROOT / "models" / "monitoring.yaml"
ROWS = 20_000
#: Share of rows with a non-zero amount, by look-back window (longer windows: more activity).
_ACTIVE = {"7d": 0.2, "30d": 0.4, "90d": 0.6, "365d": 0.8, "1095d": 0.9}
_CHANNEL_MIX = [0.45, 0.25, 0.15, 0.1, 0.05]
_SHIFTED_MIX = [0.1, 0.15, 0.15, 0.25, 0.35]


@pytest.fixture(scope="module")
def spec() -> MonitoringSpec:
    return load_monitoring_spec(MONITORING_FILE)


@pytest.fixture(scope="module")
def layout(specs: Specs) -> FeatureLayout:
    """The churn model's 190 features (the catalogue without gender)."""
    names = tuple(n for n in specs.feature_names if n != "gender")
    return FeatureLayout(
        names,
        {
            n: tuple(specs.categories_of(n))
            for n in names
            if specs.features_by_name[n].is_categorical
        },
    )


def catalogue_frame(
    specs: Specs, rows: int, seed: int, channel_mix: list[float] = _CHANNEL_MIX
) -> pd.DataFrame:
    """A feature frame shaped like the catalogue's: amounts that are zero for the inactive,
    counts, questionnaire scores, shares with missing values, day counts, flags, categories."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {"customer_id": [f"C{seed}-{i:06d}" for i in range(rows)]}
    for info in specs.features:
        window = info.name.rsplit("_", 1)[-1]
        active = _ACTIVE.get(window, 0.7)
        match info.unit:
            case "amount":
                amounts = np.round(rng.lognormal(9, 1.2, rows), 2)
                columns[info.name] = amounts * (rng.random(rows) < active)
            case "count":
                columns[info.name] = rng.poisson(10 * active, rows)
            case "decayed_count":
                columns[info.name] = rng.exponential(0.5, rows) * (rng.random(rows) < 0.2)
            case "share" | "ratio":
                columns[info.name] = np.where(rng.random(rows) < 0.3, np.nan, rng.beta(2, 3, rows))
            case "days":
                days = rng.exponential(60, rows).round()
                columns[info.name] = np.where(rng.random(rows) < 0.1, np.nan, days)
            case "years":
                columns[info.name] = rng.integers(18, 80, rows)
            case "score" | "level":
                columns[info.name] = rng.integers(1, 6, rows)
            case "flag":
                columns[info.name] = (rng.random(rows) < 0.05).astype(np.int64)
            case "category":
                categories = specs.categories_of(info.name)
                mix = channel_mix if info.name == "channel_preference" else None
                if mix is None:
                    mix = list(np.full(len(categories), 1 / len(categories)))
                columns[info.name] = pd.Categorical(
                    rng.choice(categories, rows, p=mix), categories=categories
                )
    return pd.DataFrame(columns)


@pytest.fixture(scope="module")
def reference_frame(specs: Specs) -> pd.DataFrame:
    return catalogue_frame(specs, ROWS, seed=1)


def _churn_probabilities(rows: int, seed: int, a: float = 2.0, b: float = 5.0) -> np.ndarray:
    return np.random.default_rng(seed).beta(a, b, rows)


@pytest.fixture(scope="module")
def reference(reference_frame: pd.DataFrame, layout: FeatureLayout, spec) -> Reference:
    return build_reference(
        reference_frame,
        _churn_probabilities(ROWS, 1),
        layout,
        task="binary",
        classes=["0", "1"],
        bins=spec.bins,
        source={"run": "r1", "split": "test"},
    )


@pytest.fixture(scope="module")
def shifted(specs: Specs) -> pd.DataFrame:
    """Another sample of the same world in which investment amounts over a year triple and
    the preferred channels move from the app to advisors and the phone."""
    frame = catalogue_frame(specs, ROWS, seed=2, channel_mix=_SHIFTED_MIX)
    frame["amt_invest_365d"] *= 3
    return frame


# --- measures on hand-made distributions ---------------------------------------------------------


def test_psi_of_hand_made_distributions():
    assert psi(np.array([50, 50]), np.array([25, 75]), 1e-4) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5)
    )
    assert psi(np.array([10, 30, 60]), np.array([1, 3, 6]), 1e-4) == pytest.approx(0.0)
    # A bin empty in the reference counts at the floor share, so the PSI stays finite.
    assert psi(np.array([100, 0]), np.array([90, 10]), 1e-4) == pytest.approx(
        (0.9 - 1) * math.log(0.9) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    )
    # Symmetric in its two arguments.
    assert psi(np.array([3, 7]), np.array([6, 4]), 1e-4) == pytest.approx(
        psi(np.array([6, 4]), np.array([3, 7]), 1e-4)
    )


def test_jensen_shannon_distance_runs_from_zero_to_one():
    assert js_distance(np.array([5, 5]), np.array([50, 50])) == pytest.approx(0.0)
    assert js_distance(np.array([10, 0]), np.array([0, 10])) == pytest.approx(1.0)


def test_chi_square_homogeneity_on_a_known_table_ignores_bins_nobody_uses():
    statistic, p = chi2_homogeneity(np.array([10, 20]), np.array([20, 10]))
    assert statistic == pytest.approx(4 * 25 / 15)  # every expected count is 15
    assert p == pytest.approx(chi2.sf(4 * 25 / 15, 1))
    assert chi2_homogeneity(np.array([10, 0, 20]), np.array([20, 0, 10])) == pytest.approx(
        (statistic, p)
    )
    assert chi2_homogeneity(np.array([0, 7]), np.array([0, 9])) == (0.0, 1.0)


def test_binned_kolmogorov_smirnov_is_the_largest_gap_of_the_cumulative_shares():
    statistic, p = binned_ks(np.array([50, 50]), np.array([100, 0]))
    assert statistic == pytest.approx(0.5)
    assert p == pytest.approx(kstwobign.sf(0.5 * math.sqrt(100 * 100 / 200)))
    assert binned_ks(np.array([20, 30, 50]), np.array([2, 3, 5])) == pytest.approx((0.0, 1.0))


def test_status_needs_both_the_effect_size_and_a_significant_test():
    limits = Thresholds(warn=0.1, alert=0.25)
    common = {"thresholds": limits, "significance": 0.01, "min_rows": 100}
    assert drift_status(0.3, 1e-9, 1000, **common) == "alert"
    assert drift_status(0.15, 1e-9, 1000, **common) == "warn"
    assert drift_status(0.05, 1e-9, 1000, **common) == "ok"  # significant but small
    assert drift_status(0.9, 0.2, 1000, **common) == "ok"  # large but could be chance
    assert drift_status(0.9, 1e-9, 99, **common) == "insufficient"
    assert drift_status(0.9, 1e-9, 1000, report_only=True, **common) == "warn"


# --- binning -------------------------------------------------------------------------------------


def test_quantile_edges_give_a_heavy_value_its_own_bin_and_cut_the_rest_at_quantiles():
    values = np.concatenate([np.zeros(60), np.arange(1, 41)]).astype(float)
    edges = quantile_edges(values, 10)
    assert edges.tolist() == [0.0, 10.0, 20.0, 30.0]
    assert numeric_counts(values, edges).tolist() == [60, 10, 10, 10, 10, 0]


def test_quantile_edges_of_scores_constants_and_missing_values():
    scores = np.repeat([1.0, 2.0, 3.0, 4.0, 5.0], 20)
    edges = quantile_edges(scores, 10)
    assert edges.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    # Each score alone in its bin; above the largest, an empty bin; then missing.
    assert numeric_counts(scores, edges).tolist() == [20, 20, 20, 20, 20, 0, 0]
    constant = np.full(30, 7.0)
    assert numeric_counts(constant, quantile_edges(constant, 10)).tolist() == [30, 0, 0]
    nothing = np.full(5, np.nan)
    assert quantile_edges(nothing, 10).size == 0
    assert numeric_counts(nothing, quantile_edges(nothing, 10)).tolist() == [0, 5]


@settings(max_examples=200, deadline=None)
@given(
    values=arrays(
        np.float64,
        st.integers(0, 60),
        elements=st.sampled_from([-np.inf, np.inf, np.nan, -1.5, 0.0, 0.0, 1.0, 2.5, 4.0, 1e6]),
    ),
    edges=st.lists(st.sampled_from([-1.5, 0.0, 1.0, 2.5, 4.0]), max_size=5, unique=True),
)
def test_counting_by_comparisons_equals_a_binary_search(values, edges):
    edges = np.sort(np.asarray(edges, dtype=np.float64))
    # NaN sorts after +inf, so with +inf appended a binary search puts it in the missing bin.
    expected = np.bincount(
        np.searchsorted(np.append(edges, np.inf), values, side="left"), minlength=edges.size + 2
    )
    assert numeric_counts(values, edges).tolist() == expected.tolist()


def test_category_counts_name_unseen_and_missing_values_alike_for_text_and_categoricals():
    text = pd.Series(["a", "b", None, "zz", "a"], dtype=object)
    assert category_counts(text, ["a", "b", "c"]).tolist() == [2, 1, 0, 1, 1]
    coded = pd.Series(pd.Categorical(text, categories=["zz", "b", "a"]))
    assert category_counts(coded, ["a", "b", "c"]).tolist() == [2, 1, 0, 1, 1]


# --- the reference -------------------------------------------------------------------------------


def test_reference_round_trips_through_json_and_holds_no_rows(reference, reference_frame):
    text = json.dumps(reference_to_json(reference), allow_nan=False)
    again = reference_from_json(json.loads(text))
    assert again == reference
    assert set(again.features) == set(reference_frame.columns) - {"customer_id", "gender"}
    assert "C1-000" not in text  # no customer id
    assert len(text) < 100_000  # aggregates, not 20,000 rows of 190 features
    amounts = again.features["amt_invest_365d"]
    assert amounts.kind == "numeric"
    assert sum(amounts.counts) + amounts.missing == ROWS
    channel = again.features["channel_preference"]
    assert channel.kind == "categorical"
    assert channel.categories[0] == "app"


def test_an_ordinal_reference_records_levels_and_expected_levels(layout, reference_frame):
    rows = len(reference_frame)
    proba = np.random.default_rng(3).dirichlet(np.ones(5), rows)
    reference = build_reference(
        reference_frame, proba, layout, task="ordinal", classes=list(C_LEVELS), bins=10
    )
    assert list(reference.predictions) == [LEVEL, EXPECTED_LEVEL]
    levels = reference.predictions[LEVEL]
    assert levels.kind == "categorical"
    assert levels.categories == list(C_LEVELS)
    assert sum(levels.counts) == rows
    assert reference_from_json(json.loads(json.dumps(reference_to_json(reference)))) == reference


def test_a_reference_of_another_schema_or_damaged_is_refused(reference):
    data = reference_to_json(reference)
    with pytest.raises(ValueError, match="schema version 2"):
        reference_from_json({**data, "schema_version": 2})
    damaged = json.loads(json.dumps(data))
    damaged["features"]["amt_invest_365d"]["counts"].pop()
    with pytest.raises(ValueError, match=r"features\.amt_invest_365d.*edges need"):
        reference_from_json(damaged)
    with pytest.raises(ValueError, match="JSON object"):
        reference_from_json([1, 2])


# --- drift ---------------------------------------------------------------------------------------


def test_a_shifted_frame_alerts_exactly_on_the_shifted_features(reference, shifted, spec):
    drift = feature_drift(reference, shifted, spec)
    flagged = {c.name: c.status for c in drift if c.status != "ok"}
    assert flagged == {"amt_invest_365d": "alert", "channel_preference": "alert"}
    amounts = next(c for c in drift if c.name == "amt_invest_365d")
    assert amounts.current_mean == pytest.approx(3 * amounts.reference_mean, rel=0.1)
    assert amounts.test == "ks" and amounts.p_value < 1e-10
    channel = next(c for c in drift if c.name == "channel_preference")
    assert channel.test == "chi2" and channel.psi > 0.25


def test_a_resample_of_the_same_distribution_raises_almost_no_alarm(specs, reference, spec):
    drift = feature_drift(reference, catalogue_frame(specs, ROWS, seed=3), spec)
    assert len(drift) == 190
    alarms = [c.name for c in drift if c.status in ("warn", "alert")]
    assert len(alarms) <= 0.02 * len(drift), alarms
    assert max(c.psi for c in drift) < 0.05


def test_drift_does_not_depend_on_the_order_of_the_rows(reference, shifted, spec):
    shuffled = shifted.sample(frac=1.0, random_state=5)
    assert feature_drift(reference, shuffled, spec) == feature_drift(reference, shifted, spec)


def test_too_few_current_rows_give_no_verdict(reference, shifted, spec):
    drift = feature_drift(reference, shifted.head(spec.min_rows - 1), spec)
    assert {c.status for c in drift} == {"insufficient"}


def test_a_report_only_feature_is_measured_but_never_alerts(reference, shifted, spec):
    quiet = spec.model_copy(
        update={"features": spec.features.model_copy(update={"report_only": ["amt_invest_365d"]})}
    )
    drift = {c.name: c for c in feature_drift(reference, shifted, quiet)}
    assert drift["amt_invest_365d"].status == "warn"
    assert drift["amt_invest_365d"].report_only
    assert drift["channel_preference"].status == "alert"


def test_unseen_categories_and_missing_values_are_bins_of_their_own(reference, spec):
    column = reference.features["channel_preference"]
    current = pd.Series(["app"] * 600 + ["metaverse"] * 300 + [None] * 100, dtype=object)
    drift = column_drift(
        "channel_preference",
        column,
        current,
        thresholds=spec.features.psi,
        test="chi2",
        significance=0.01,
        epsilon=spec.epsilon,
        min_rows=spec.min_rows,
    )
    assert drift.bins[-2].kind == "unseen" and drift.current_shares[-2] == pytest.approx(0.3)
    assert drift.bins[-1].kind == "missing" and drift.current_shares[-1] == pytest.approx(0.1)
    assert drift.status == "alert"


def test_prediction_drift_is_found_when_predictions_shift(reference, spec):
    same = prediction_drift(reference, _churn_probabilities(ROWS, 4), spec)
    assert [(c.name, c.status) for c in same] == [(PROBABILITY, "ok")]
    higher = prediction_drift(reference, _churn_probabilities(ROWS, 4, a=4.0, b=4.0), spec)
    assert [(c.name, c.status) for c in higher] == [(PROBABILITY, "alert")]


def test_ordinal_prediction_drift_sees_levels_move_up(layout, reference_frame, spec):
    rng = np.random.default_rng(6)
    before = rng.dirichlet([4, 3, 2, 1, 1], ROWS)
    reference = build_reference(
        reference_frame, before, layout, task="ordinal", classes=list(C_LEVELS), bins=spec.bins
    )
    stable = prediction_drift(reference, rng.dirichlet([4, 3, 2, 1, 1], ROWS), spec)
    assert {c.status for c in stable} == {"ok"}
    moved = prediction_drift(reference, rng.dirichlet([1, 1, 2, 3, 4], ROWS), spec)
    assert {c.name: c.status for c in moved} == {LEVEL: "alert", EXPECTED_LEVEL: "alert"}


# --- realised performance ------------------------------------------------------------------------


def _binary_outcomes(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(1.5, 4, rows)
    return (rng.random(rows) < p).astype(np.int64), p


def test_realised_performance_flags_a_drop_when_labels_are_shuffled(spec):
    y, p = _binary_outcomes(5000, 7)
    # What training logged: the same model's metrics on another sample of the same world.
    test_y, test_p = _binary_outcomes(5000, 8)
    at_training = realised_performance(
        test_y, test_p, task="binary", classes=["0", "1"], logged={}, spec=spec
    )
    logged = {f"test_{k}": v for k, v in at_training.realised.items()}
    same = realised_performance(y, p, task="binary", classes=["0", "1"], logged=logged, spec=spec)
    assert same.status == "ok"
    shuffled = np.random.default_rng(9).permutation(y)
    broken = realised_performance(
        shuffled, p, task="binary", classes=["0", "1"], logged=logged, spec=spec
    )
    checks = {c.metric: c for c in broken.checks}
    assert checks["roc_auc"].status == "alert"
    assert checks["roc_auc"].worsening > 0.2
    assert checks["roc_auc"].high < logged["test_roc_auc"]


def test_realised_performance_flags_noisy_risk_reviews(spec):
    rng = np.random.default_rng(10)
    levels = rng.integers(0, 5, 4000)
    proba = np.full((4000, 5), 0.05)
    proba[np.arange(4000), levels] = 0.8
    logged = {"test_qwk": 0.9, "test_log_loss": 0.7}
    good = realised_performance(
        levels, proba, task="ordinal", classes=list(C_LEVELS), logged=logged, spec=spec
    )
    assert {c.metric: c.status for c in good.checks}["qwk"] == "ok"
    noisy = np.where(rng.random(4000) < 0.5, rng.integers(0, 5, 4000), levels)
    bad = realised_performance(
        noisy, proba, task="ordinal", classes=list(C_LEVELS), logged=logged, spec=spec
    )
    checks = {c.metric: c for c in bad.checks}
    assert checks["qwk"].status == "alert" and checks["log_loss"].status == "alert"
    assert checks["qwk"].low <= checks["qwk"].realised <= checks["qwk"].high


def test_performance_without_enough_labels_or_logged_values_gives_no_verdict(spec):
    y, p = _binary_outcomes(spec.performance.min_labels - 1, 11)
    few = realised_performance(
        1 - y, p, task="binary", classes=["0", "1"], logged={"test_roc_auc": 0.99}, spec=spec
    )
    assert {c.metric: c.status for c in few.checks} == {
        "roc_auc": "insufficient",
        "log_loss": "not_logged",
    }


def test_auc_interval_at_chance_is_the_mann_whitney_null_interval():
    # At AUC 0.5, Hanley and McNeil's variance is (n + m + 1) / (12 n m).
    y = np.repeat([0, 1], 100)
    low, high = metric_interval("roc_auc", 0.5, y, np.full(200, 0.3), "binary", 0.95)
    half_width = 1.959964 * math.sqrt(201 / (12 * 100 * 100))
    assert (low, high) == pytest.approx((0.5 - half_width, 0.5 + half_width), abs=1e-6)


# --- the result and the report -------------------------------------------------------------------


@pytest.fixture(scope="module")
def result(reference, shifted, spec):
    y, p = _binary_outcomes(2000, 12)
    performance = realised_performance(
        np.random.default_rng(13).permutation(y),
        p,
        task="binary",
        classes=["0", "1"],
        logged={"test_roc_auc": 0.8, "test_log_loss": 0.5},
        spec=spec,
    )
    return monitoring_result(
        reference,
        shifted,
        _churn_probabilities(ROWS, 14, a=4.0, b=4.0),
        spec,
        model="suitability-churn",
        version="3",
        as_of="2026-07-01",
        performance=performance,
    )


def test_the_verdict_alerts_and_its_metrics_suit_mlflow(result):
    assert result.verdict == "alert" and result.alerting
    drifted = result.drifted_features()
    assert {c.name for c in drifted} == {"channel_preference", "amt_invest_365d"}
    assert drifted[0].psi >= drifted[1].psi
    metrics = result.metrics()
    assert metrics["alert"] == 1.0 and metrics["features_alert"] == 2.0
    assert metrics["feature_status.amt_invest_365d"] == 3.0
    assert metrics["prediction_status.probability"] == 3.0
    assert metrics["performance_status.roc_auc"] == 3.0
    assert all(re.fullmatch(r"[A-Za-z0-9_\-. /]+", key) for key in metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    json.dumps(result.to_json(), allow_nan=False)


def test_the_report_names_features_by_their_descriptions_in_zh_and_en(result, specs):
    drifted = [c.name for c in result.drifted_features()]
    for lang in ("zh", "en"):
        document = monitoring_report(result, specs, lang)
        text = "\n".join(document.text())
        for name in drifted:
            assert getattr(specs.features_by_name[name], lang) in text
        page = render_html(document)
        assert page.startswith("<!DOCTYPE html>")
        assert page.count("data:image/png;base64,") >= 4  # PSI, two distributions, predictions
    zh_text = "\n".join(monitoring_report(result, specs, "zh").text())
    assert not any(name in zh_text for name in drifted)
    assert "告警" in zh_text and "偏好渠道" in zh_text
    en_text = "\n".join(monitoring_report(result, specs, "en").text())
    assert "Alert: action needed. 2 features shifted past the alert line." in en_text


def test_a_stable_report_lists_the_largest_psis_and_says_labels_have_not_matured(
    specs, reference, spec
):
    stable = monitoring_result(
        reference,
        catalogue_frame(specs, 2000, seed=15),
        _churn_probabilities(2000, 16),
        spec,
        model="suitability-churn",
        version="3",
        as_of="2026-07-01",
    )
    assert stable.verdict == "ok"
    text = "\n".join(monitoring_report(stable, specs, "en").text())
    assert "No feature reached the watch line" in text
    assert "No labels have matured" in text


# --- the thresholds file and bad inputs -----------------------------------------------------------


def test_the_shipped_thresholds_load_and_name_catalogue_features(specs):
    spec = load_monitoring_spec(MONITORING_FILE, specs=specs)
    assert spec.features.psi.warn < spec.features.psi.alert
    assert set(spec.performance.binary) >= {"roc_auc"}
    assert set(spec.performance.ordinal) >= {"qwk"}


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        ({"features": {"psi": {"warn": 0.3, "alert": 0.2}}}, "features.psi", "must not be above"),
        ({"performance": {"binary": {"auc": {"warn": 0.1, "alert": 0.2}}}}, "performance", "auc"),
        ({"bins": 1}, "bins", "greater than or equal to 2"),
        ({"min_rowz": 10}, "min_rowz", "Extra inputs"),
        ({"features": {"numeric_test": "t-test"}}, "features.numeric_test", "'ks' or 'chi2'"),
    ],
)
def test_a_malformed_thresholds_file_names_the_file_key_and_reason(tmp_path, change, key, reason):
    data = yaml.safe_load(MONITORING_FILE.read_text(encoding="utf-8"))
    for top, value in change.items():
        data[top] = {**data[top], **value} if isinstance(value, dict) else value
    path = tmp_path / "monitoring.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_monitoring_spec(path)
    message = str(info.value)
    assert str(path) in message and key in message and reason in message


def test_a_report_only_feature_outside_the_catalogue_is_refused(tmp_path, specs):
    data = yaml.safe_load(MONITORING_FILE.read_text(encoding="utf-8"))
    data["features"]["report_only"] = ["tenure_dayz"]
    path = tmp_path / "monitoring.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(SpecError, match=r"features\.report_only: 'tenure_dayz' is not in"):
        load_monitoring_spec(path, specs=specs)


def test_bad_current_data_get_clear_errors(reference, shifted, spec):
    with pytest.raises(ValueError, match="lacks features of the reference: amt_invest_365d"):
        feature_drift(reference, shifted.drop(columns=["amt_invest_365d"]), spec)
    with pytest.raises(ValueError, match="has no rows"):
        feature_drift(reference, shifted.head(0), spec)
    as_text = shifted.assign(age_years=shifted["age_years"].astype(str))
    with pytest.raises(ValueError, match=r"'age_years' holds .* values, but the reference"):
        feature_drift(reference, as_text, spec)
    with pytest.raises(ValueError, match="10 predictions for 20000 current rows"):
        monitoring_result(
            reference, shifted, np.zeros(10), spec, model="m", version="1", as_of="2026-07-01"
        )
    with pytest.raises(ValueError, match="no current predictions"):
        prediction_drift(reference, np.zeros(0), spec)


def test_a_reference_needs_rows_and_one_prediction_per_row(layout, reference_frame):
    with pytest.raises(ValueError, match="reference table has no rows"):
        build_reference(
            reference_frame.head(0), np.zeros(0), layout, task="binary", classes=["0", "1"], bins=10
        )
    with pytest.raises(ValueError, match="3 predictions for 20000 reference rows"):
        build_reference(
            reference_frame, np.zeros(3), layout, task="binary", classes=["0", "1"], bins=10
        )
    with pytest.raises(ValueError, match="feature table lacks columns the model needs: age_years"):
        build_reference(
            reference_frame.drop(columns=["age_years"]),
            np.zeros(ROWS),
            layout,
            task="binary",
            classes=["0", "1"],
            bins=10,
        )


# --- a generated world (built once for the tests below) ------------------------------------------

AS_OF = pd.Timestamp("2026-07-01")
TRAINED_UNTIL = pd.Timestamp("2026-01-01")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from suitability.data.synth import generate

    out = tmp_path_factory.mktemp("monitoring") / "world"
    generate(out, 6000, seed=19, workers=1)
    return out


@pytest.fixture(scope="module")
def churn_rows(world, specs, tmp_path_factory) -> MonitoringRows:
    spec = load_model_spec("churn", specs, models_dir=ROOT / "models")
    return monitoring_rows(
        spec, world, AS_OF, TRAINED_UNTIL, specs, tmp_path_factory.mktemp("churn-rows")
    )


@pytest.mark.slow
def test_monitoring_rows_are_the_population_now_and_the_labels_matured_since_training(
    churn_rows, world, specs, tmp_path
):
    current, matured = churn_rows.current, churn_rows.matured
    assert set(current["as_of"]) == {AS_OF}
    assert "churned" not in current.columns
    assert (current["days_since_invest"] <= 180).all()  # the churn model's population: active
    # Month starts after training whose 90-day horizon has passed by the as-of date.
    assert sorted(set(matured["as_of"])) == list(
        pd.date_range("2026-02-01", "2026-04-01", freq="MS")
    )
    assert set(matured["churned"]) == {0, 1}

    risk = load_model_spec("risk-level", specs, models_dir=ROOT / "models")
    reviews = monitoring_rows(risk, world, AS_OF, TRAINED_UNTIL, specs, tmp_path)
    assert reviews.current is reviews.matured
    assert (reviews.current["as_of"] > TRAINED_UNTIL).all()
    assert (reviews.current["reviewed_at"] <= AS_OF).all()
    assert set(reviews.current["confirmed_level"]) <= set(C_LEVELS)
    with pytest.raises(ValueError, match="2026-01-01 is not after the model's training data"):
        monitoring_rows(risk, world, TRAINED_UNTIL, AS_OF, specs, tmp_path)


@pytest.mark.slow
def test_a_generated_world_alerts_on_tripled_amounts_and_a_new_channel_mix_only(
    churn_rows, layout, spec
):
    """The active investors of a synthetic world, split in two: the second half against the
    first raises no alarm; with its amounts tripled and its app and advisor channel shares
    swapped, it alerts on those features and on no other."""
    features = churn_rows.current
    first = np.random.default_rng(20).random(len(features)) < 0.5
    reference = build_reference(
        features[first],
        np.full(int(first.sum()), 0.2),
        layout,
        task="binary",
        classes=["0", "1"],
        bins=spec.bins,
    )
    later = features[~first].reset_index(drop=True)
    calm = feature_drift(reference, later, spec)
    assert sum(c.status in ("warn", "alert") for c in calm) <= 0.02 * len(calm)
    assert not [c.name for c in calm if c.status == "alert"]

    amounts = [n for n in layout.names if n.startswith("amt_") or n == "net_holdings"]
    later[amounts] *= 3
    swapped = {}
    for window in ("7d", "30d", "90d", "365d", "1095d"):
        app, advisor = f"channel_share_app_{window}", f"channel_share_advisor_{window}"
        swapped[app], swapped[advisor] = later[advisor], later[app]
    later = later.assign(**swapped)
    drift = feature_drift(reference, later, spec)
    alerts = {c.name for c in drift if c.status == "alert"}
    assert alerts <= set(amounts) | set(swapped)
    assert {"amt_invest_365d", "net_holdings", "channel_share_app_365d"} <= alerts
