"""Explanations: exact, additive TreeSHAP for both models, reason codes a reader can trust,
global importance that finds the generator's planted drivers, and bounded-memory batches."""

from __future__ import annotations

import math
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import shap

from suitability.data.synth import PLANTED_DRIVERS, generate
from suitability.explain.assessment import assess_churn, assess_risk, feature_hash, stated_level
from suitability.explain.batch import explain_table
from suitability.explain.contributions import (
    LEVEL_SCORE,
    booster_contributions,
    explain_frame,
    raw_outputs,
)
from suitability.explain.importance import global_explanation, planted_check
from suitability.explain.reasons import MAX_REASONS, by_source, format_value, reason_codes
from suitability.models.spec import load_model_spec
from suitability.models.train import train_on_features
from suitability.models.training_table import build_training_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tables(tmp_path_factory, specs) -> dict[str, pd.DataFrame]:
    world = tmp_path_factory.mktemp("world") / "data"
    generate(world, 4000, seed=5)
    out = {}
    for name in ("risk-level", "churn"):
        spec = load_model_spec(name, specs)
        out[name] = build_training_table(spec, world, specs, tmp_path_factory.mktemp(name)).frame
    return out


@pytest.fixture(scope="module")
def trained(tables, specs):
    out = {}
    for name in ("risk-level", "churn"):
        spec = load_model_spec(name, specs)
        spec = spec.model_copy(
            update={"params": {**spec.params, "learning_rate": 0.15}, "early_stopping_rounds": 30}
        )
        out[name] = train_on_features(tables[name], spec, specs)
    return out


def _test_rows(trained, name: str, n: int = 400) -> pd.DataFrame:
    return trained[name].rows("test").head(n)


# --- exact, additive contributions ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["risk-level", "churn"])
def test_base_plus_contributions_equals_the_raw_output_for_every_row(trained, name):
    model = trained[name].model
    frame = _test_rows(trained, name)
    contributions = explain_frame(model, frame)
    raw = raw_outputs(model, frame)
    assert contributions.values.shape == (len(frame), raw.shape[1], len(model.feature_names))
    assert np.abs(contributions.raw - raw).max() < 1e-6


def test_ordinal_outputs_are_the_cuts_and_their_sum(trained):
    model = trained["risk-level"].model
    contributions = explain_frame(model, _test_rows(trained, "risk-level", 50))
    assert contributions.output_names == ("C2+", "C3+", "C4+", "C5+", LEVEL_SCORE)
    cuts = contributions.values[:, :4, :]
    assert np.allclose(contributions.values[:, 4, :], cuts.sum(axis=1))


@pytest.mark.parametrize("name", ["risk-level", "churn"])
def test_native_values_equal_shaps_tree_explainer(trained, name):
    model = trained[name].model
    frame = _test_rows(trained, name, 200)
    x = model.layout.matrix(frame)
    booster = model.boosters[0] if name == "risk-level" else model.booster
    ours, base = booster_contributions(booster, x)
    explainer = shap.TreeExplainer(booster)
    theirs = np.asarray(explainer.shap_values(x))
    assert np.abs(ours[:, 0, :] - theirs).max() < 1e-9
    assert math.isclose(base[0, 0], float(np.ravel(explainer.expected_value)[0]), abs_tol=1e-9)


def test_multiclass_boosters_get_one_output_per_class():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1, "num_threads": 1},
        lgb.Dataset(x, label=y),
        num_boost_round=20,
    )
    values, base = booster_contributions(booster, x[:10])
    assert values.shape == (10, 3, 4) and base.shape == (10, 3)
    raw = booster.predict(x[:10], raw_score=True)
    assert np.abs(base + values.sum(axis=2) - raw).max() < 1e-6


def test_column_order_and_dtypes_cannot_change_a_contribution(trained):
    """Features reach the model by name and categories by vocabulary, never by position."""
    model = trained["churn"].model
    frame = _test_rows(trained, "churn", 100)
    shuffled = frame[list(reversed(frame.columns))].copy()
    for name in model.layout.categories:
        shuffled[name] = shuffled[name].astype(object)  # plain strings instead of categoricals
    assert np.array_equal(explain_frame(model, frame).values, explain_frame(model, shuffled).values)


# --- reason codes ----------------------------------------------------------------------------------


def test_reasons_are_the_largest_contributions_of_used_features(trained, specs):
    model = trained["risk-level"].model
    spec = trained["risk-level"].spec
    frame = _test_rows(trained, "risk-level", 60)
    contributions = explain_frame(model, frame)
    values, _ = contributions.of(LEVEL_SCORE)
    wording = {"up": spec.reasons.up, "down": spec.reasons.down}
    for i, row in enumerate(frame.to_dict(orient="records")):
        reasons = reason_codes(values[i], contributions.feature_names, row, specs, wording)
        assert 1 <= len(reasons) <= MAX_REASONS
        sizes = [abs(r.contribution) for r in reasons]
        assert sizes == sorted(sizes, reverse=True)
        assert sizes[-1] >= np.sort(np.abs(values[i]))[-len(reasons)] - 1e-12
        for r in reasons:
            assert r.feature in model.feature_names and r.feature != "gender"
            assert (r.direction == "up") == (r.contribution > 0)
            assert r.text["zh"].endswith(wording[r.direction].zh)
            assert r.text["en"].endswith(wording[r.direction].en)
            assert r.value_text["zh"] in r.text["zh"] and r.value_text["en"] in r.text["en"]
            assert r.source == specs.features_by_name[r.feature].source


def test_a_signed_selection_keeps_only_that_direction(specs):
    names = ["q_total_score", "age_years", "tagdir_up", "tagdir_down", "n_complaint_90d"]
    contributions = np.array([0.5, -0.9, 0.2, -0.1, 0.0])
    values = dict.fromkeys(names, 1.0)
    wording = {"up": specs_label("↑"), "down": specs_label("↓")}
    up = reason_codes(contributions, names, values, specs, wording, sign=1)
    assert [r.feature for r in up] == ["q_total_score", "tagdir_up"]
    down = reason_codes(contributions, names, values, specs, wording, sign=-1, limit=1)
    assert [r.feature for r in down] == ["age_years"]
    # A zero contribution is never a reason, even when fewer than four are left.
    assert "n_complaint_90d" not in [
        r.feature for r in reason_codes(contributions, names, values, specs, wording)
    ]


def specs_label(text: str):
    from suitability.specs import Label

    return Label(zh=text, en=text)


@pytest.mark.parametrize(
    ("feature", "value", "zh", "en"),
    [
        ("invest_share_high_risk_90d", 0.62, "62%", "62%"),
        ("amt_invest_90d", 12345.6, "12,346元", "CNY 12,346"),
        ("days_since_invest", 30.0, "30天", "30 days"),
        ("q_level", 3.0, "C3", "C3"),
        ("invest_avg_risk_90d", 3.25, "R3.2", "R3.2"),
        ("revealed_minus_stated", 1.0, "+1.0", "+1.0"),
        ("q_lowest_category", 1.0, "是", "yes"),
        ("city_tier", "T1", "一线城市", "tier-1 city"),
        ("days_since_invest", float("nan"), "无记录", "none recorded"),
        ("q_answer_loss_tolerance", 6.0, "6分（30%–50%）", "6 points (30%–50%)"),
    ],
)
def test_values_print_the_way_a_reader_expects(specs, feature, value, zh, en):
    info = specs.features_by_name[feature]
    assert format_value(info, value, specs, "zh") == zh
    assert format_value(info, value, specs, "en") == en


def test_the_issue_example_sentence(specs):
    """“近90天投资中R4及以上产品……占比62%，高于问卷所示风险偏好” from the feature metadata."""
    spec = load_model_spec("risk-level", specs)
    assert spec.stated_reasons is not None
    wording = {"up": spec.stated_reasons.above, "down": spec.stated_reasons.below}
    [reason] = reason_codes(
        np.array([0.8]),
        ["invest_share_high_risk_90d"],
        {"invest_share_high_risk_90d": 0.62},
        specs,
        wording,
    )
    assert reason.text["zh"] == "近90天投资中R4及以上产品的金额占比为62%，高于问卷所示风险偏好"
    assert reason.text["en"].startswith(
        "Share of the amount invested in the last 90 days that went to R4"
    )
    assert reason.text["en"].endswith("is 62%, more appetite than the questionnaire states")


def test_contributions_by_source_add_up(trained, specs):
    model = trained["churn"].model
    contributions = explain_frame(model, _test_rows(trained, "churn", 5))
    values, _ = contributions.of(model.output)
    sums = by_source(values[0], contributions.feature_names, specs)
    assert set(sums) <= {"questionnaire", "behaviour", "interview", "profile"}
    assert math.isclose(sum(sums.values()), values[0].sum(), abs_tol=1e-9)


# --- explained predictions --------------------------------------------------------------------------


def test_stated_level_reasons_explain_the_gap_in_its_direction(trained, specs):
    result = trained["risk-level"]
    frame = _test_rows(trained, "risk-level", 400)
    answers = assess_risk(result.model, frame, specs, result.spec)
    differing = [a for a in answers if a.stated_level and a.stated_level != a.predicted_level]
    assert differing, "some reviewed customers disagree with their questionnaire"
    for answer in differing:
        above = answer.predicted_level > answer.stated_level
        assert answer.stated_reasons
        for reason in answer.stated_reasons:
            assert (reason.contribution > 0) == above
            assert reason.text["zh"].endswith(
                "高于问卷所示风险偏好" if above else "低于问卷所示风险偏好"
            )
    agreeing = [a for a in answers if a.stated_level == a.predicted_level]
    assert all(not a.stated_reasons for a in agreeing)
    assert all(math.isclose(sum(a.probabilities.values()), 1.0) for a in answers)


def test_churn_answers_carry_the_calibrated_probability(trained, specs):
    result = trained["churn"]
    frame = _test_rows(trained, "churn", 30)
    answers = assess_churn(result.model, frame, specs, result.spec)
    assert np.allclose([a.p_churn for a in answers], result.model.predict_proba(frame))
    assert all(
        math.isclose(a.raw, a.base + sum(a.by_source.values()), abs_tol=1e-9) for a in answers
    )


def test_answers_serialise_every_field_as_asdict_does(trained, specs):
    """The hand-written `to_json`s must keep up with their dataclasses: a new field left out
    would silently vanish from responses and audit records."""
    from dataclasses import asdict

    risk = trained["risk-level"]
    frame = _test_rows(trained, "risk-level", 60)
    answers = assess_risk(risk.model, frame, specs, risk.spec)
    assert any(a.stated_reasons for a in answers)
    for answer in answers:
        assert answer.to_json() == asdict(answer)
        for reason in [*answer.reasons, *answer.stated_reasons]:
            assert reason.to_json() == asdict(reason)
    churn = trained["churn"]
    for answer in assess_churn(churn.model, _test_rows(trained, "churn", 20), specs, churn.spec):
        assert answer.to_json() == asdict(answer)


def test_stated_level_reads_the_questionnaire_band():
    assert (
        stated_level(3.0) == "C3"
        and stated_level(float("nan")) is None
        and stated_level(None) is None
    )


def test_feature_hash_is_stable_and_sensitive():
    row = {"a": 1.0, "b": float("nan"), "c": "T1"}
    assert feature_hash(row, ["a", "b", "c"]) == feature_hash(
        dict(reversed(row.items())), ["c", "b", "a"]
    )
    assert feature_hash(row, ["a", "b", "c"]) != feature_hash(
        {**row, "a": 1.0000001}, ["a", "b", "c"]
    )


# --- global explanations -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["risk-level", "churn"])
def test_planted_drivers_rank_among_the_top_global_features(trained, specs, name):
    result = trained[name]
    explanation = global_explanation(result.model, result.rows("test"), specs)
    assert math.isclose(explanation.by_source["share"].sum(), 1.0)
    assert list(explanation.by_feature["rank"]) == list(range(1, len(explanation.by_feature) + 1))
    drivers = {driver: d.patterns for driver, d in PLANTED_DRIVERS[name].items()}
    check = planted_check(explanation.by_feature, drivers)
    assert check["passed"].all(), check.to_string()


def test_a_driver_the_model_does_not_use_fails_the_check():
    by_feature = pd.DataFrame({"feature": ["a", "b"], "mean_abs_shap": [1.0, 0.0], "rank": [1, 2]})
    check = planted_check(by_feature, {"used": ("a",), "unused": ("b",), "absent": ("z*",)})
    assert check.set_index("driver")["passed"].to_dict() == {
        "used": True,
        "unused": False,
        "absent": False,
    }


# --- batches -----------------------------------------------------------------------------------------


def test_batch_explanations_stream_and_match_one_big_call(trained, tmp_path):
    model = trained["churn"].model
    frame = trained["churn"].rows("test").head(1300).reset_index(drop=True)
    source = tmp_path / "features.parquet"
    frame.to_parquet(source, index=False)
    seen = []
    rows = explain_table(
        model,
        source,
        tmp_path / "out.parquet",
        batch_rows=500,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert rows == 1300 and seen == [(500, 1300), (1000, 1300), (1300, 1300)]
    out = pd.read_parquet(tmp_path / "out.parquet")
    values, base = explain_frame(model, frame).of(model.output)
    shap_columns = [f"shap_{n}" for n in model.feature_names]
    assert np.allclose(out[shap_columns].to_numpy(), values, atol=1e-5)
    assert np.allclose(out[f"base_{model.output}"], base)
    assert list(out["customer_id"]) == list(frame["customer_id"])
    assert set(out["reason_1"]) <= set(model.feature_names)


def test_a_table_missing_features_writes_nothing(trained, tmp_path):
    model = trained["churn"].model
    frame = trained["churn"].rows("test").head(50).drop(columns=["n_invest_90d"])
    source = tmp_path / "features.parquet"
    frame.to_parquet(source, index=False)
    with pytest.raises(ValueError, match="n_invest_90d"):
        explain_table(model, source, tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == [source]


def test_batches_need_parquet(trained, tmp_path: Path):
    with pytest.raises(ValueError, match="parquet"):
        explain_table(trained["churn"].model, tmp_path / "x.csv", tmp_path / "out.parquet")
