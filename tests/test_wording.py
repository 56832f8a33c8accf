"""The words reports print for the code's names, in Chinese and English: model descriptions,
product categories, planted drivers and promotion reasons. Each is declared once (YAML or one
table), validated, and complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from suitability.data import synth
from suitability.explain.reasons import category_label
from suitability.models.promotion import GIVEN, reason_code, reason_text, recorded_code
from suitability.models.spec import ExperimentConfig, load_model_spec, model_spec_path
from suitability.specs import SpecError, load_spec_file

CJK = re.compile(r"[\u4e00-\u9fff]")


# --- model descriptions ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["risk-level", "churn"])
def test_every_model_is_described_in_chinese_and_english(specs, name):
    described = load_model_spec(name, specs).description
    assert described is not None
    assert CJK.search(described.zh) and not CJK.search(described.en)
    # the Chinese says it in Chinese: no English words beyond the names of methods and scores
    latin = set(re.findall(r"[A-Za-z]{3,}", described.zh)) - {
        "LightGBM",
        "Platt",
        "sigmoid",
        "ROC",
        "AUC",
    }
    assert not latin, latin


def test_a_description_in_one_language_only_fails_at_load(tmp_path: Path, specs):
    text = model_spec_path("churn").read_text(encoding="utf-8")
    start = text.index("description:")
    end = text.index("task:", start)
    broken = tmp_path / "churn.yaml"
    broken.write_text(text[:start] + "description: only English\n" + text[end:], encoding="utf-8")
    with pytest.raises(SpecError, match="description"):
        load_model_spec("churn", specs, models_dir=tmp_path)


def test_an_experiment_may_describe_itself_in_one_text_or_both(tmp_path: Path, specs):
    spec = load_model_spec("churn", specs)
    one = tmp_path / "one.yaml"
    one.write_text("model: churn\ndescription: a quick try\n", encoding="utf-8")
    applied = load_spec_file(ExperimentConfig, one).apply(spec)
    assert applied.description is not None
    assert applied.description.zh == applied.description.en == "a quick try"
    both = tmp_path / "both.yaml"
    both.write_text("model: churn\ndescription: {zh: 试一试, en: a try}\n", encoding="utf-8")
    applied = load_spec_file(ExperimentConfig, both).apply(spec)
    assert applied.description is not None and applied.description.zh == "试一试"
    unchanged = tmp_path / "none.yaml"
    unchanged.write_text("model: churn\n", encoding="utf-8")
    assert load_spec_file(ExperimentConfig, unchanged).apply(spec).description == spec.description


# --- product categories and planted drivers ----------------------------------------------------------


def test_every_product_category_the_generator_writes_is_worded(specs):
    worded = specs.behaviour.product_categories
    for _, category, _, _ in synth._PRODUCT_LINES:
        assert category in worded, category
        assert CJK.search(worded[category].zh) and not CJK.search(worded[category].en)
    assert category_label("product_category", "structured", specs, "zh") == "结构化产品"
    assert category_label("product_category", "structured", specs, "en") == "structured product"
    # a category of a user's own, outside the catalogue, is shown as it is
    assert category_label("product_category", "crypto_basket", specs, "zh") == "crypto_basket"


def test_every_planted_driver_is_worded():
    for drivers in synth.PLANTED_DRIVERS.values():
        for name, driver in drivers.items():
            assert CJK.search(driver.label.zh) and not CJK.search(driver.label.en), name
            assert driver.patterns, name


# --- promotion reasons ---------------------------------------------------------------------------


def test_the_registry_keeps_the_english_promotion_reasons():
    """MLflow tags, the alias history and the CLI show what they always showed."""
    assert reason_code(None, None) == "no_champion"
    assert reason_code(1, None) == "champion_unscored"
    assert reason_code(1, 0.8) == "compared"
    kw = {"metric": "roc_auc", "challenger": 0.81234567, "champion": 0.8, "higher": True}
    assert reason_text("no_champion", "en", **kw) == "no champion yet"
    assert (
        reason_text("champion_unscored", "en", **kw)
        == "the champion could not be scored on the challenger's test split"
    )
    assert reason_text("compared", "en", **kw) == (
        "challenger roc_auc 0.812346 > champion 0.8 (higher is better) on the challenger's "
        "test split"
    )
    lower = {"metric": "log_loss", "challenger": 0.5, "champion": 0.4, "higher": False}
    assert reason_text("compared", "en", **lower) == (
        "challenger log_loss 0.5 >= champion 0.4 (lower is better) on the challenger's test split"
    )


@pytest.mark.parametrize("code", ["no_champion", "champion_unscored", "compared"])
def test_promotion_reasons_read_in_chinese(code):
    text = reason_text(
        code, "zh", metric="ROC AUC（排序区分能力）", challenger=0.81, champion=0.8, higher=True
    )
    assert CJK.search(text)
    assert not set(re.findall(r"[A-Za-z]{3,}", text)) - {"ROC", "AUC"}, text


def test_decisions_recorded_before_reason_codes_get_theirs():
    """An old record's English text is matched to the code that would have written it; a
    person's own reason stays theirs."""
    old = {"metric": "qwk", "challenger": 0.82, "higher": True}
    assert recorded_code("no champion yet", champion=None, champion_version=None, **old) == (
        "no_champion"
    )
    compared = (
        "challenger qwk 0.82 > champion 0.8 (higher is better) on the challenger's test split"
    )
    assert recorded_code(compared, champion=0.8, champion_version=1, **old) == "compared"
    assert recorded_code("audit asked for it", champion=0.8, champion_version=1, **old) == GIVEN


def test_the_history_reads_codes_and_infers_old_ones():
    from suitability.tracking import _history_entry

    params = {
        "at": "2026-01-01T00:00:00+00:00",
        "model": "suitability-churn",
        "from_version": "none",
        "to_version": "1",
        "promoted": "True",
        "forced": "False",
        "metric": "roc_auc",
        "challenger_value": "0.79",
        "champion_value": "none",
        "reason": "no champion yet",
        "by": "demo",
    }
    assert _history_entry(params)["reason_code"] == "no_champion"
    assert _history_entry({**params, "reason_code": GIVEN})["reason_code"] == GIVEN
    assert _history_entry({**params, "metric": "not_a_metric"})["reason_code"] == GIVEN
