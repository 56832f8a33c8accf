"""Suitability rules: the matching matrix, precedence, mismatch, care flags and notes, the rule
table's validation at load, and building rule inputs from feature rows."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import random_inputs
from suitability.features.kernel import compute_features
from suitability.models.rules import (
    ALL_CODES,
    REASON_CODES,
    Decision,
    RuleInput,
    RuleTable,
    assess_mismatch,
    decide,
    load_rules,
    rule_input_from_features,
)
from suitability.specs import C_LEVELS, R_LEVELS, SpecError

ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = ROOT / "models" / "suitability_rules.yaml"


@pytest.fixture(scope="module")
def rules() -> RuleTable:
    return load_rules(RULES_FILE)


def peaked(level: str) -> dict[str, float]:
    """All probability mass on one level."""
    return {c: float(c == level) for c in C_LEVELS}


def probs(**mass: float) -> dict[str, float]:
    return {c: mass.get(c, 0.0) for c in C_LEVELS}


def make(**overrides: Any) -> RuleInput:
    """A fresh, unremarkable C3 investor asking for an R2 product; override what a case needs."""
    base: dict[str, Any] = {
        "stated_level": "C3",
        "lowest_category": False,
        "questionnaire_age_days": 30.0,
        "age_years": 40.0,
        "tag_up": 0.0,
        "tag_down": 0.0,
        "tag_weights": {},
        "predicted_level": None,
        "level_probabilities": None,
        "p_churn": 0.1,
        "product_id": "P0042",
        "product_risk": "R2",
        "initiated_by": "investor",
    }
    base.update(overrides)
    if base["predicted_level"] is None:
        base["predicted_level"] = base["stated_level"] or "C3"
    if base["level_probabilities"] is None:
        base["level_probabilities"] = peaked(base["predicted_level"])
    return RuleInput(**base)


def codes(notes: list[Any]) -> list[str]:
    return [n.code for n in notes]


# --- the matching matrix ------------------------------------------------------------------------


def _matrix_cases() -> list[tuple[str, str, str, str, bool]]:
    cases = []
    for i, stated in enumerate(C_LEVELS):
        for j, product in enumerate(R_LEVELS):
            for by in ("investor", "platform"):
                if j <= i:
                    expected, confirm = "allow", False
                elif by == "platform":
                    expected, confirm = "deny", False
                else:
                    expected, confirm = "allow_with_warning", True
                cases.append((stated, product, by, expected, confirm))
    return cases


@pytest.mark.parametrize(("stated", "product", "by", "expected", "confirm"), _matrix_cases())
def test_matching_matrix(rules, stated, product, by, expected, confirm):
    d = decide(make(stated_level=stated, product_risk=product, initiated_by=by), rules)
    assert (d.decision, d.confirmation_required) == (expected, confirm)
    assert d.rule_version == rules.version == "SR-2026.2"
    assert len(d.reasons) == 1
    special = "special_risk_warning" in codes(d.warnings)
    assert special == confirm


def test_allow_says_why(rules):
    d = decide(make(stated_level="C3", product_risk="R2"), rules)
    assert codes(d.reasons) == ["within_category"]
    assert "R1–R3" in d.reasons[0].en and "C3" in d.reasons[0].zh and "R2" in d.reasons[0].zh


def test_shipped_matrix_is_the_design_matrix(rules):
    """The table says exactly what DESIGN §2 says."""
    assert {c: list(v) for c, v in rules.matrix.items()} == {
        "C1": ["R1"],
        "C2": ["R1", "R2"],
        "C3": ["R1", "R2", "R3"],
        "C4": ["R1", "R2", "R3", "R4"],
        "C5": ["R1", "R2", "R3", "R4", "R5"],
    }


# --- lowest category ----------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["investor", "platform"])
@pytest.mark.parametrize("product", R_LEVELS)
def test_lowest_category_buys_r1_only_even_when_insisting(rules, product, by):
    d = decide(
        make(stated_level="C1", lowest_category=True, product_risk=product, initiated_by=by), rules
    )
    if product == "R1":
        assert d.decision == "allow"
    else:
        assert d.decision == "deny"
        assert not d.confirmation_required
        assert codes(d.reasons)[0] == "lowest_category_limit"
        assert "special_risk_warning" not in codes(d.warnings)


def test_lowest_category_binds_even_with_a_higher_score_band(rules):
    d = decide(make(stated_level="C3", lowest_category=True, product_risk="R2"), rules)
    assert d.decision == "deny"
    assert codes(d.reasons) == ["lowest_category_limit"]


# --- stale, missing, contradictory information --------------------------------------------------


@pytest.mark.parametrize(
    ("age_days", "expected"),
    [(0.0, "allow"), (364.9, "allow"), (365.0, "allow"), (365.01, "reassess"), (366.0, "reassess")],
)
def test_stale_questionnaire(rules, age_days, expected):
    d = decide(make(questionnaire_age_days=age_days), rules)
    assert d.decision == expected
    if expected == "reassess":
        assert codes(d.reasons) == ["stale_questionnaire"]
        assert "365" in d.reasons[0].zh and "365" in d.reasons[0].en


@pytest.mark.parametrize("by", ["investor", "platform"])
def test_missing_questionnaire_reassesses(rules, by):
    d = decide(
        make(stated_level=None, questionnaire_age_days=None, predicted_level="C4", initiated_by=by),
        rules,
    )
    assert d.decision == "reassess"
    assert codes(d.reasons) == ["no_questionnaire"]
    assert d.mismatch.direction == "none" and d.mismatch.stated is None
    assert not d.mismatch.flagged


@pytest.mark.parametrize(
    ("stated", "up", "down", "expected"),
    [
        ("C4", 0.0, 1.0, "interview_more_cautious"),
        ("C5", 0.5, 1.5, "interview_more_cautious"),
        ("C4", 0.0, 0.99, None),
        ("C4", 2.0, 2.5, None),
        ("C3", 0.0, 5.0, None),
        ("C2", 1.0, 0.0, "interview_more_aggressive"),
        ("C1", 2.0, 0.5, "interview_more_aggressive"),
        ("C2", 0.99, 0.0, None),
        ("C3", 5.0, 0.0, None),
        ("C5", 5.0, 0.0, None),
        ("C1", 0.0, 5.0, None),
    ],
)
def test_interview_contradicting_questionnaire(rules, stated, up, down, expected):
    d = decide(make(stated_level=stated, tag_up=up, tag_down=down, product_risk="R1"), rules)
    if expected is None:
        assert d.decision == "allow"
    else:
        assert d.decision == "reassess"
        assert codes(d.reasons) == [expected]
        assert stated in d.reasons[0].zh and stated in d.reasons[0].en


# --- stated vs predicted ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stated", "predicted", "mass", "direction", "confidence", "flagged", "apart"),
    [
        ("C3", "C3", {"C3": 1.0}, "none", 0.0, False, 0),
        ("C2", "C4", {"C2": 0.3, "C4": 0.7}, "understated", 0.7, True, 2),
        ("C2", "C3", {"C1": 0.1, "C2": 0.35, "C3": 0.4, "C5": 0.15}, "understated", 0.55, False, 1),
        ("C4", "C2", {"C1": 0.25, "C2": 0.5, "C4": 0.25}, "overstated", 0.75, True, 2),
        ("C4", "C3", {"C3": 0.6, "C4": 0.4}, "overstated", 0.6, True, 1),
        ("C4", "C3", {"C3": 0.5, "C4": 0.5}, "overstated", 0.5, False, 1),
    ],
)
def test_assess_mismatch(rules, stated, predicted, mass, direction, confidence, flagged, apart):
    m = assess_mismatch(stated, predicted, probs(**mass), rules)
    assert m.direction == direction
    assert m.confidence == pytest.approx(confidence)
    assert (m.flagged, m.levels_apart, m.stated, m.predicted) == (flagged, apart, stated, predicted)


def test_assess_mismatch_without_questionnaire(rules):
    m = assess_mismatch(None, "C5", peaked("C5"), rules)
    assert (m.direction, m.flagged, m.confidence, m.stated) == ("none", False, 0.0, None)


OVERSTATED = probs(C1=0.1, C2=0.6, C3=0.1, C4=0.2)  # stated C4, predicted C2: P(< C4) = 0.8
WEAKLY_OVERSTATED = probs(C2=0.5, C4=0.5)  # P(< C4) = 0.5: below min_confidence


@pytest.mark.parametrize(
    ("product", "by", "mass", "expected", "reason", "note"),
    [
        ("R3", "investor", OVERSTATED, "reassess", "overstated_above_predicted", False),
        ("R4", "platform", OVERSTATED, "reassess", "overstated_above_predicted", False),
        ("R2", "platform", OVERSTATED, "allow", "within_category", True),
        ("R1", "investor", OVERSTATED, "allow", "within_category", True),
        # above the stated category too: re-assessed, not allowed with a warning (SR-2026.2)
        ("R5", "investor", OVERSTATED, "reassess", "overstated_above_predicted", False),
        ("R5", "platform", OVERSTATED, "deny", "platform_above_category", True),
        (
            "R5",
            "investor",
            WEAKLY_OVERSTATED,
            "allow_with_warning",
            "investor_above_category",
            False,
        ),
        ("R3", "investor", WEAKLY_OVERSTATED, "allow", "within_category", False),
        ("R4", "platform", WEAKLY_OVERSTATED, "allow", "within_category", False),
    ],
)
def test_overstated_reassesses_only_above_the_predicted_level(
    rules, product, by, mass, expected, reason, note
):
    d = decide(
        make(
            stated_level="C4",
            predicted_level="C2",
            level_probabilities=mass,
            product_risk=product,
            initiated_by=by,
        ),
        rules,
    )
    assert d.decision == expected
    assert codes(d.reasons) == [reason]
    assert ("overstated_reassess_advised" in codes(d.notes)) == note
    if reason == "overstated_above_predicted":
        assert "80%" in d.reasons[0].zh and "80%" in d.reasons[0].en
        assert "R1–R2" in d.reasons[0].en


UNDERSTATED = probs(C2=0.3, C4=0.7)  # stated C2, predicted C4: P(> C2) = 0.7


@pytest.mark.parametrize(
    ("product", "by", "expected", "confirm"),
    [
        ("R1", "platform", "allow", False),
        ("R2", "investor", "allow", False),
        ("R3", "platform", "deny", False),
        ("R4", "platform", "deny", False),
        ("R4", "investor", "allow_with_warning", True),
    ],
)
def test_understated_warns_but_never_raises_the_legal_bar(rules, product, by, expected, confirm):
    kwargs = {"stated_level": "C2", "product_risk": product, "initiated_by": by}
    d = decide(make(predicted_level="C4", level_probabilities=UNDERSTATED, **kwargs), rules)
    plain = decide(make(**kwargs), rules)
    assert (d.decision, d.confirmation_required) == (expected, confirm)
    assert (plain.decision, plain.confirmation_required) == (expected, confirm)
    assert "understated_risk_education" in codes(d.warnings)
    assert "understated_risk_education" not in codes(plain.warnings)
    assert d.mismatch.direction == "understated" and d.mismatch.flagged


def test_weak_understatement_adds_no_warning(rules):
    mass = probs(C2=0.45, C3=0.55)  # P(> C2) = 0.55 < 0.6
    d = decide(make(stated_level="C2", predicted_level="C3", level_probabilities=mass), rules)
    assert d.warnings == [] and not d.mismatch.flagged


def test_models_never_lower_a_legal_bar(rules):
    """Whatever the model predicts, a product above the stated category is never plainly
    allowed, and never allowed at all when the platform initiates."""
    for stated in C_LEVELS:
        for predicted in C_LEVELS:
            for product in R_LEVELS:
                for by in ("investor", "platform"):
                    d = decide(
                        make(
                            stated_level=stated,
                            predicted_level=predicted,
                            product_risk=product,
                            initiated_by=by,
                        ),
                        rules,
                    )
                    if product not in rules.matrix[stated]:
                        assert d.decision != "allow"
                        if by == "platform":
                            assert d.decision == "deny"


# --- care flags and notes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "elderly"), [(None, False), (40.0, False), (64.9, False), (65.0, True), (80.0, True)]
)
def test_elderly_care_flag(rules, age, elderly):
    d = decide(make(age_years=age), rules)
    assert d.decision == "allow"
    assert ("elderly" in d.care_flags) == elderly
    assert ("elderly_care" in codes(d.warnings)) == elderly
    if elderly:
        assert f"{age:.0f}" in d.warnings[0].zh


@pytest.mark.parametrize(
    ("weights", "vulnerable"),
    [
        ({}, False),
        ({"vulnerable_customer": 0.49}, False),
        ({"vulnerable_customer": 0.5}, True),
        ({"vulnerable_customer": 2.0, "nervous": 1.0}, True),
        ({"nervous": 5.0}, False),
    ],
)
def test_care_tag_flag(rules, weights, vulnerable):
    d = decide(make(tag_weights=weights, product_risk="R5", initiated_by="platform"), rules)
    assert d.decision == "deny"
    assert ("vulnerable" in d.care_flags) == vulnerable
    assert ("vulnerable_care" in codes(d.warnings)) == vulnerable


@pytest.mark.parametrize(
    ("p_churn", "noted"), [(None, False), (0.0, False), (0.49, False), (0.5, True), (1.0, True)]
)
def test_churn_note_is_informational(rules, p_churn, noted):
    d = decide(make(p_churn=p_churn), rules)
    assert d.decision == "allow" and d.warnings == []
    assert (codes(d.notes) == ["churn_attention"]) == noted
    if noted:
        assert f"{p_churn:.0%}" in d.notes[0].en


def test_elderly_applies_without_questionnaire(rules):
    d = decide(make(stated_level=None, questionnaire_age_days=None, age_years=70.0), rules)
    assert d.decision == "reassess" and d.care_flags == ["elderly"]


# --- precedence ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "decision", "reasons", "fired"),
    [
        (
            {"stated_level": "C1", "lowest_category": True, "questionnaire_age_days": 500.0},
            "reassess",
            ["stale_questionnaire"],
            ["stale_questionnaire", "lowest_category_limit", "investor_above_category"],
        ),
        (
            {"stated_level": "C1", "lowest_category": True, "initiated_by": "platform"},
            "deny",
            ["lowest_category_limit", "platform_above_category"],
            ["lowest_category_limit", "platform_above_category"],
        ),
        (
            {"stated_level": "C1", "lowest_category": True},
            "deny",
            ["lowest_category_limit"],
            ["lowest_category_limit", "investor_above_category"],
        ),
        (
            {
                "stated_level": None,
                "questionnaire_age_days": None,
                "lowest_category": True,
                "tag_down": 9.0,
            },
            "reassess",
            ["no_questionnaire"],
            ["no_questionnaire", "lowest_category_limit"],
        ),
        (
            {"stated_level": "C5", "questionnaire_age_days": 400.0, "tag_down": 3.0},
            "reassess",
            ["stale_questionnaire", "interview_more_cautious"],
            ["stale_questionnaire", "interview_more_cautious"],
        ),
        (
            {"stated_level": "C2", "tag_up": 3.0, "product_risk": "R4", "initiated_by": "platform"},
            "reassess",
            ["interview_more_aggressive"],
            ["interview_more_aggressive", "platform_above_category"],
        ),
    ],
)
def test_precedence(rules, overrides, decision, reasons, fired):
    d = decide(make(**overrides), rules)
    assert d.decision == decision
    assert codes(d.reasons) == reasons
    assert [c for c in d.fired if c in REASON_CODES] == fired
    assert d.confirmation_required == (decision == "allow_with_warning")


# --- texts and JSON -----------------------------------------------------------------------------


SCENARIOS = [
    {},
    {"stated_level": None, "questionnaire_age_days": None},
    {"questionnaire_age_days": 400.0},
    {"stated_level": "C5", "tag_down": 2.0},
    {"stated_level": "C1", "tag_up": 2.0, "product_risk": "R1"},
    {"stated_level": "C1", "lowest_category": True, "product_risk": "R3"},
    {"product_risk": "R5", "initiated_by": "platform"},
    {
        "product_risk": "R4",
        "age_years": 72.0,
        "tag_weights": {"vulnerable_customer": 1.0},
        "p_churn": 0.8,
    },
    {"stated_level": "C4", "predicted_level": "C2", "level_probabilities": OVERSTATED},
    {
        "stated_level": "C4",
        "predicted_level": "C2",
        "level_probabilities": OVERSTATED,
        "product_risk": "R3",
    },
    {"stated_level": "C2", "predicted_level": "C4", "level_probabilities": UNDERSTATED},
]


@pytest.mark.parametrize("overrides", SCENARIOS)
def test_texts_are_rendered_and_json_round_trips(rules, overrides):
    d = decide(make(**overrides), rules)
    out = d.to_json()
    assert json.loads(json.dumps(out, ensure_ascii=False)) == out
    assert Decision.model_validate(out) == d
    assert out["rule_version"] == "SR-2026.2"
    assert d.reasons
    for note in [*d.reasons, *d.warnings, *d.notes]:
        assert note.zh.strip() and note.en.strip()
        assert "{" not in note.zh + note.en and "None" not in note.zh + note.en
    for note in [*d.reasons, *d.warnings]:
        if note.code != "understated_risk_education":
            assert d.product_risk in note.zh and d.product_risk in note.en


def test_above_category_texts_read_as_compliance_texts(rules):
    d = decide(make(stated_level="C2", product_risk="R4", initiated_by="platform"), rules)
    assert d.reasons[0].zh.startswith("该产品风险等级R4高于您的风险承受能力等级C2")
    assert "不得主动向您推荐" in d.reasons[0].zh
    d = decide(make(stated_level="C2", product_risk="R4"), rules)
    assert codes(d.warnings) == ["special_risk_warning"]
    assert "特别风险警示" in d.warnings[0].zh and "in writing" in d.warnings[0].en


# --- the rule table -----------------------------------------------------------------------------


def test_shipped_rule_table_is_complete(rules, specs):
    assert set(rules.texts) == set(ALL_CODES)
    assert set(rules.care_tags) <= set(specs.tags.by_id)
    assert rules.lowest_category.allowed == ["R1"]
    assert rules.questionnaire_max_age_days == 365


def test_load_rules_defaults_to_the_models_folder(rules):
    assert load_rules() == rules


def _set(path: list[Any], value: Any) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "key", "reason"),
    [
        (_set(["matrix", "C3"], ["R1", "R3"]), "matrix", "C3 must allow everything C2 allows"),
        (_set(["matrix", "C2"], ["R1", "R6"]), "matrix.C2[1]", "R5"),
        (_set(["matrix", "C2"], ["R1", "R1"]), "matrix", "twice"),
        (_delete(["matrix", "C5"]), "matrix", "missing ['C5']"),
        (_set(["matrix", "C6"], ["R1"]), "matrix.C6", ""),
        (_delete(["texts", "within_category"]), "texts", "within_category"),
        (_delete(["texts", "churn_attention", "zh"]), "texts.churn_attention.zh", "required"),
        (_set(["texts", "within_category", "en"], "{produt_id} ok"), "texts", "{produt_id}"),
        (_set(["texts", "within_category", "zh"], "过期{days}天"), "texts", "within_category.zh"),
        (_set(["texts", "churn_attention", "en"], "{p_churn:.0q}"), "texts", "formatted"),
        (_set(["texts", "churn_attention", "en"], "{} churn"), "texts", "positional"),
        (_set(["texts", "new_code"], {"zh": "新", "en": "new"}), "texts", "new_code"),
        (_set(["lowest_category", "allowed"], ["R1", "R2"]), "lowest_category", "['R2']"),
        (_set(["contradiction", "conservative_upto"], "C4"), "contradiction", "below"),
        (_set(["care_tags", "vulnerable_customer"], -1.0), "care_tags", "positive"),
        (_set(["mismatch", "min_confidence"], 1.5), "mismatch.min_confidence", ""),
        (_set(["questionnaire_max_age_days"], "365"), "questionnaire_max_age_days", ""),
        (_set(["frobnicate"], 1), "frobnicate", "Extra inputs"),
        (_set(["mismatch", "typo"], 1), "mismatch.typo", "Extra inputs"),
        (_delete(["version"]), "version", "required"),
    ],
)
def test_broken_rule_table_fails_at_load(tmp_path, mutate, key, reason):
    doc = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    mutate(doc)
    broken = tmp_path / "suitability_rules.yaml"
    broken.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_rules(broken)
    assert err.value.file == str(broken)
    assert any(k.startswith(key) and reason in r for k, r in err.value.problems), err.value.problems


def test_missing_rule_file_names_it(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        load_rules(tmp_path / "nope.yaml")


# --- inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"stated_level": "C6"}, "stated_level"),
        ({"predicted_level": "c3", "level_probabilities": peaked("C3")}, "predicted_level"),
        ({"product_risk": "R0"}, "product_risk"),
        ({"initiated_by": "advisor"}, "initiated_by"),
        ({"product_id": ""}, "product_id"),
        ({"level_probabilities": {"C1": 1.0}}, "level_probabilities"),
        ({"level_probabilities": probs(C3=0.9)}, "level_probabilities"),
        ({"level_probabilities": probs(C3=1.2, C4=-0.2)}, "level_probabilities"),
        ({"p_churn": 1.5}, "p_churn"),
        ({"p_churn": math.nan}, "p_churn"),
        ({"tag_up": -1.0}, "tag_up"),
        ({"tag_weights": {"nervous": "lots"}}, "tag_weights"),
        ({"questionnaire_age_days": math.nan}, "questionnaire_age_days"),
        ({"questionnaire_age_days": None}, "questionnaire_age_days"),
        ({"lowest_category": "yes"}, "lowest_category"),
        ({"age_years": True}, "age_years"),
    ],
)
def test_rule_input_rejects_bad_values(overrides, field):
    with pytest.raises(ValueError, match=field):
        make(**overrides)


def test_rule_input_is_frozen_and_accepts_numpy_scalars():
    inp = make(
        tag_up=np.float32(0.5),
        lowest_category=np.bool_(False),
        level_probabilities={c: np.float32(p) for c, p in peaked("C3").items()},
    )
    assert isinstance(inp.tag_up, float) and inp.lowest_category is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        inp.stated_level = "C5"  # type: ignore[misc]
    with pytest.raises(TypeError):
        inp.tag_weights["x"] = 1.0  # type: ignore[index]


CALL = {
    "predicted_level": "C3",
    "level_probabilities": peaked("C3"),
    "p_churn": 0.2,
    "product_id": "P0007",
    "product_risk": "R2",
    "initiated_by": "platform",
}


def test_rule_input_from_features_without_questionnaire(rules):
    row = {
        "q_level": math.nan,
        "q_lowest_category": math.nan,
        "q_days_since": np.nan,
        "age_years": pd.NA,
        "tagdir_up": math.nan,
        "tagdir_down": None,
        "tag_vulnerable_customer": math.nan,
        "tag_nervous": 0.0,
        "tagcat_goal": 1.0,
        "n_login_30d": 4,
    }
    inp = rule_input_from_features(row, **{**CALL, "p_churn": math.nan})
    assert inp.stated_level is None and inp.lowest_category is False
    assert inp.questionnaire_age_days is None and inp.age_years is None and inp.p_churn is None
    assert (inp.tag_up, inp.tag_down) == (0.0, 0.0)
    assert dict(inp.tag_weights) == {"vulnerable_customer": 0.0, "nervous": 0.0}
    assert decide(inp, rules).decision == "reassess"


def test_rule_input_from_a_real_looking_row(rules):
    row = pd.Series(
        {
            "customer_id": "C0001",
            "q_total_score": 38.0,
            "q_level": 4.0,
            "q_lowest_category": 0.0,
            "q_days_since": 120.5,
            "age_years": 67.0,
            "tagdir_up": 0.3,
            "tagdir_down": 1.6,
            "tag_vulnerable_customer": 0.7,
            "tag_nervous": 0.9,
            "tagcat_risk_signal": 0.7,
        }
    )
    inp = rule_input_from_features(row, **CALL)
    assert inp.stated_level == "C4" and inp.lowest_category is False
    assert inp.questionnaire_age_days == 120.5 and inp.age_years == 67.0
    assert (inp.tag_up, inp.tag_down) == (0.3, 1.6)
    assert dict(inp.tag_weights) == {"vulnerable_customer": 0.7, "nervous": 0.9}
    d = decide(inp, rules)
    assert d.decision == "reassess" and codes(d.reasons) == ["interview_more_cautious"]
    assert d.care_flags == ["elderly", "vulnerable"]


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"q_level": 2.5}, "q_level"),
        ({"q_level": 7.0}, "q_level"),
        ({"q_lowest_category": 0.5}, "q_lowest_category"),
        ({"q_days_since": -3.0}, "questionnaire_age_days"),
    ],
)
def test_rule_input_from_features_rejects_bad_rows(row, match):
    base = {
        "q_level": 3.0,
        "q_lowest_category": 0.0,
        "q_days_since": 10.0,
        "age_years": 30.0,
        "tagdir_up": 0.0,
        "tagdir_down": 0.0,
    }
    with pytest.raises(ValueError, match=match):
        rule_input_from_features({**base, **row}, **CALL)
    del base["tagdir_down"]
    with pytest.raises(ValueError, match="tagdir_down"):
        rule_input_from_features(base, **CALL)


def test_every_builder_row_converts_and_decides(specs, rules):
    inputs = random_inputs(specs, n_customers=30, n_events=1500, seed=4)
    ids = inputs.customers["customer_id"].tolist()
    queries = pd.DataFrame({"customer_id": ids, "as_of": pd.Timestamp("2025-03-01").as_unit("us")})
    features = compute_features(inputs, queries, specs)
    seen = set()
    for _, row in features.iterrows():
        inp = rule_input_from_features(row, **CALL)
        assert (inp.stated_level is None) == bool(pd.isna(row["q_level"]))
        assert set(inp.tag_weights) == {t.id for t in specs.tags.tags}
        seen.add(decide(inp, rules).decision)
    assert "reassess" in seen


# --- no decision contradicts its own texts ------------------------------------------------------

#: What each code's text tells the investor about buying *this* product: it must be re-assessed
#: first, it cannot be bought, or it may be bought (after a written confirmation).
_MUST_REASSESS = {
    "no_questionnaire",
    "stale_questionnaire",
    "interview_more_cautious",
    "interview_more_aggressive",
    "overstated_above_predicted",
}
_CANNOT_BUY = {"lowest_category_limit", "platform_above_category"}
_MAY_BUY = {"investor_above_category", "special_risk_warning", "within_category"}


def _says(decision: Decision, rules: RuleTable, inp: RuleInput) -> set[str]:
    """What the decision's reasons, warnings and notes say about this product."""
    said = set()
    for note in (*decision.reasons, *decision.warnings, *decision.notes):
        if note.code in _MUST_REASSESS:
            said.add("reassess")
        elif note.code in _CANNOT_BUY:
            said.add("cannot")
        elif note.code in _MAY_BUY:
            said.add("may")
        elif (
            # "a new risk assessment is needed before buying products outside {predicted}"
            note.code == "overstated_reassess_advised"
            and inp.product_risk not in rules.allowed[inp.predicted_level]
        ):
            said.add("reassess")
    return said


def test_no_decision_carries_a_sentence_that_contradicts_it(rules):
    """Every combination of stated and predicted category, model confidence, product level,
    initiator, lowest category, stale questionnaire and interview contradiction: an allowed
    product is never one a text says must wait for a re-assessment or cannot be bought; a
    refused or re-assessed one is never one a text says may be bought; a written confirmation
    is required exactly when the decision allows with a warning."""
    import itertools

    checked = 0
    for stated, predicted, confident, product, by, lowest, stale, interview in itertools.product(
        [None, *C_LEVELS],
        C_LEVELS,
        (0.55, 0.9),
        R_LEVELS,
        ("investor", "platform"),
        (False, True),
        (False, True),
        (None, "up", "down"),
    ):
        if lowest and stated != "C1":
            continue  # the lowest category is a part of C1
        mass = {predicted: confident}
        if stated is not None and stated != predicted:
            mass[stated] = 1 - confident
        else:
            mass[predicted] = 1.0
        inp = make(
            stated_level=stated,
            predicted_level=predicted,
            level_probabilities=probs(**mass),
            product_risk=product,
            initiated_by=by,
            lowest_category=lowest,
            questionnaire_age_days=400.0 if stale else 30.0,
            tag_up=1.5 if interview == "up" else 0.0,
            tag_down=1.5 if interview == "down" else 0.0,
        )
        d = decide(inp, rules)
        said = _says(d, rules, inp)
        where = (stated, predicted, confident, product, by, lowest, stale, interview, d.decision)
        if d.decision in ("allow", "allow_with_warning"):
            assert not said & {"reassess", "cannot"}, (where, said)
        else:
            assert "may" not in said, (where, said)
        assert d.confirmation_required == (d.decision == "allow_with_warning"), where
        assert ("special_risk_warning" in codes(d.warnings)) == d.confirmation_required, where
        checked += 1
    assert checked > 4000
