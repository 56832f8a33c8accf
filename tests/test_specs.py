"""Specs are data: the shipped YAML loads, any questionnaire in the same format scores with no
code change, and a broken spec fails at load with the file, the key and the reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from suitability.features.questionnaire import score_questionnaire
from suitability.specs import SpecError, load_questionnaire, load_specs

ROOT = Path(__file__).resolve().parents[1]

TINY_QUESTIONNAIRE = """
version: TINY-1
title: {zh: 简易问卷, en: Tiny questionnaire}
questions:
  - id: loss
    text: {zh: 可承受损失, en: Loss you can bear}
    options:
      - {id: none, score: 0, zh: 无, en: none}
      - {id: some, score: 5, zh: 一些, en: some}
      - {id: lots, score: 9, zh: 很多, en: a lot}
  - id: years
    text: {zh: 年限, en: Years}
    options:
      - {id: "0", score: 0, zh: 零, en: zero}
      - {id: "1", score: 1, zh: 一, en: one}
bands:
  - {level: C1, min: 0, max: 4}
  - {level: C3, min: 5, max: 9}
  - {level: C5, min: 10, max: 10}
lowest_category:
  - {loss: [none], years: ["0"]}
"""


def test_shipped_specs_load_and_meet_the_issue(specs):
    definition = specs.questionnaires["RQ-2026.1"]
    assert 10 <= len(definition.questions) <= 15
    assert len(specs.tags.tags) >= 25 and len(specs.tags.categories) >= 5
    assert {"goal", "concern", "emotion", "life_event", "risk_signal"} <= set(specs.tags.categories)
    for tag in (
        "interest_high_risk",
        "focus_capital_preservation",
        "liquidity_need",
        "nervous",
        "hesitant",
        "child_education",
    ):
        assert tag in specs.tags.by_id
    assert specs.tags.by_id["interest_high_risk"].zh == "对高风险产品感兴趣"


def test_every_feature_has_zh_and_en_descriptions(specs):
    assert len(specs.features) > 100
    for f in specs.features:
        for text in (f.zh, f.en):
            assert text.strip() and "{" not in text and "}" not in text, f.name
    assert len({f.zh for f in specs.features}) == len(specs.features)
    assert len({f.en for f in specs.features}) == len(specs.features)


def test_any_questionnaire_in_the_format_scores_without_code_change(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_QUESTIONNAIRE, encoding="utf-8")
    definition = load_questionnaire(path)
    assert score_questionnaire({"loss": "lots", "years": "1"}, definition).level == "C5"
    assert score_questionnaire({"loss": "some", "years": "0"}, definition).level == "C3"
    lowest = score_questionnaire({"loss": "none", "years": "0"}, definition)
    assert lowest.lowest_category and lowest.level == "C1" and lowest.total == 0
    not_lowest = score_questionnaire({"loss": "none", "years": "1"}, definition)
    assert not not_lowest.lowest_category and not_lowest.level == "C1"


def test_default_questionnaire_bands_and_lowest_category(specs):
    d = specs.questionnaires["RQ-2026.1"]
    top = {q.id: max(q.options, key=lambda o: o.score).id for q in d.questions}
    bottom = {q.id: min(q.options, key=lambda o: o.score).id for q in d.questions}
    assert score_questionnaire(top, d).level == "C5"
    low = score_questionnaire(bottom, d)
    assert low.level == "C1" and low.lowest_category
    # A high scorer who cannot bear any loss is still in the lowest category.
    assert score_questionnaire({**top, "loss_tolerance": "A"}, d).level == "C1"


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"loss": "some"}, "unanswered questions \\['years'\\]"),
        ({"loss": "some", "years": "1", "extra": "x"}, "unknown question ids \\['extra'\\]"),
        ({"loss": "maybe", "years": "1"}, "answer 'maybe' is not an option of question 'loss'"),
    ],
)
def test_scoring_refuses_bad_answers(tmp_path, answers, message):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_QUESTIONNAIRE, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        score_questionnaire(answers, load_questionnaire(path))


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        (
            ("{level: C1, min: 0, max: 4}", "{level: C1, min: 1, max: 4}"),
            "(top level)",
            "bands cover 1..10 but totals range over 0..10",
        ),
        (
            ("{level: C5, min: 10, max: 10}", "{level: C5, min: 10, max: 8}"),
            "(top level)",
            "band C5 has min 10 above max 8",
        ),
        (
            ("{level: C3, min: 5, max: 9}", "{level: C3, min: 6, max: 9}"),
            "(top level)",
            "leave a gap or overlap",
        ),
        (("score: 5,", "score: five,"), "questions[0].options[1].score", "integer"),
        (
            ("lowest_category:\n  - {loss: [none]", "lowest_category:\n  - {risk: [none]"),
            "(top level)",
            "unknown question 'risk'",
        ),
        (("version: TINY-1", "versio: TINY-1"), "version", "Field required"),
    ],
)
def test_invalid_questionnaire_fails_at_load_with_file_key_reason(tmp_path, edit, key, reason):
    path = tmp_path / "broken.yaml"
    path.write_text(TINY_QUESTIONNAIRE.replace(*edit), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_questionnaire(path)
    text = str(info.value)
    assert str(path) in text and key in text and reason in text


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: [unclosed\n", encoding="utf-8")
    with pytest.raises(SpecError, match="line 2"):
        load_questionnaire(path)


def test_a_new_tag_or_window_is_a_yaml_change(tmp_path):
    copy = tmp_path / "features"
    shutil.copytree(ROOT / "features", copy)
    tags = copy / "tags.yaml"
    tags.write_text(
        tags.read_text(encoding="utf-8")
        + "  - {id: crypto_curious, category: risk_signal, risk_direction: up, zh: 关注加密资产, en: Curious about crypto, description: Asks about crypto assets.}\n",
        encoding="utf-8",
    )
    behaviour = copy / "behaviour.yaml"
    behaviour.write_text(
        behaviour.read_text(encoding="utf-8").replace(
            "windows: [7, 30, 90, 365, 1095]", "windows: [7, 30, 90, 180, 365, 1095]"
        ),
        encoding="utf-8",
    )
    specs = load_specs(copy)
    assert "tag_crypto_curious" in specs.feature_names
    assert "n_invest_180d" in specs.feature_names
    assert specs.features_by_name["n_invest_180d"].zh == "近180天投资次数"


def test_unknown_tag_category_fails_with_file_and_key(tmp_path):
    copy = tmp_path / "features"
    shutil.copytree(ROOT / "features", copy)
    tags = copy / "tags.yaml"
    tags.write_text(
        tags.read_text(encoding="utf-8").replace(
            "category: emotion, risk_direction: down, zh: 紧张",
            "category: mood, risk_direction: down, zh: 紧张",
        ),
        encoding="utf-8",
    )
    with pytest.raises(
        SpecError,
        match=r"tags.yaml: \(top level\): tags\[12\] \(nervous\) has unknown category 'mood'",
    ):
        load_specs(copy)


def test_a_catalogue_feature_the_code_cannot_compute_fails_at_load(tmp_path):
    copy = tmp_path / "features"
    shutil.copytree(ROOT / "features", copy)
    catalogue = copy / "catalogue.yaml"
    catalogue.write_text(
        catalogue.read_text(encoding="utf-8").replace(
            "families:\n",
            "families:\n  - {name: q_mood, source: questionnaire, unit: score, zh: 心情, en: Mood}\n",
            1,
        ),
        encoding="utf-8",
    )
    with pytest.raises(
        SpecError,
        match=r"catalogue.yaml: families\[0\]: the feature code computes no feature named 'q_mood'",
    ):
        load_specs(copy)


def test_core_money_flows_must_stay_monetary(tmp_path):
    copy = tmp_path / "features"
    shutil.copytree(ROOT / "features", copy)
    behaviour = copy / "behaviour.yaml"
    behaviour.write_text(
        behaviour.read_text(encoding="utf-8").replace(
            "redeem: {zh: 赎回, en: redemption, monetary: true}",
            "redeem: {zh: 赎回, en: redemption, monetary: false}",
        ),
        encoding="utf-8",
    )
    with pytest.raises(SpecError, match="event type 'redeem' must be monetary"):
        load_specs(copy)
