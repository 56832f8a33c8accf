"""Reason codes: the few features that moved one prediction most, each with its direction, its
value and a sentence in Chinese and English built from the feature catalogue's descriptions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from suitability.specs import FeatureInfo, Label, Source, Specs

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
#: At most this many principal reasons per prediction (DESIGN §2).
MAX_REASONS = 4
SOURCES: tuple[Source, ...] = ("questionnaire", "behaviour", "interview", "profile")
SOURCE_LABELS: dict[str, Label] = {
    "questionnaire": Label(zh="风险问卷", en="questionnaire"),
    "behaviour": Label(zh="交易行为", en="behaviour"),
    "interview": Label(zh="访谈标签", en="interview"),
    "profile": Label(zh="客户资料", en="profile"),
    "other": Label(zh="其他", en="other"),
}
_NONE = {"zh": "无记录", "en": "none recorded"}
_FLAG = {"zh": ("否", "是"), "en": ("no", "yes")}
# Contributions smaller than this (in log-odds) moved nothing a reader would notice.
_NEGLIGIBLE = 1e-6


@dataclass(frozen=True)
class Reason:
    """One principal reason: a feature the model used, which way it pushed, its value."""

    feature: str
    source: str
    direction: Literal["up", "down"]
    contribution: float
    value: float | str | None
    value_text: dict[str, str]
    description: dict[str, str]
    text: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        # What `asdict` gives, without its generic recursion (a dozen reasons per answer).
        return {
            "feature": self.feature,
            "source": self.source,
            "direction": self.direction,
            "contribution": self.contribution,
            "value": self.value,
            "value_text": dict(self.value_text),
            "description": dict(self.description),
            "text": dict(self.text),
        }


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def plain_value(value: Any) -> float | str | None:
    """A JSON-able copy of a feature value (numpy scalars, pandas NA, NaT and NaN -> None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None if pd.isna(value) else str(value)
    return None if math.isnan(number) else number


def category_label(name: str, code: str, specs: Specs, lang: Lang) -> str:
    """A category's wording (`gender` `F` -> 女 / female, `product_category` `structured` ->
    结构化产品 / structured product); the code itself when the specs have none."""
    p, b = specs.profile, specs.behaviour
    tables: dict[str, Mapping[str, Label]] = {
        "gender": p.genders,
        "city_tier": p.city_tiers,
        "income_band": p.income_bands,
        "channel_preference": b.channels,
        "segment": {s.id: Label(zh=s.zh, en=s.en) for s in p.segments},
        "product_category": b.product_categories,
    }
    label = tables.get(name, {}).get(code)
    return getattr(label, lang) if label is not None else code


def _option_label(question: str, score: float, specs: Specs, lang: Lang) -> str | None:
    """The answer behind a question's score, when the score names one option."""
    labels = {
        getattr(o, lang)
        for definition in specs.questionnaires.values()
        for q in definition.questions
        if q.id == question
        for o in q.options
        if o.score == score
    }
    return labels.pop() if len(labels) == 1 else None


def format_value(info: FeatureInfo | None, value: Any, specs: Specs, lang: Lang) -> str:
    """A feature value as a reader wants it: by the catalogue's `display` template or unit."""
    value = plain_value(value)
    if value is None:
        return _NONE[lang]
    if info is None:
        return value if isinstance(value, str) else f"{value:,.4g}"
    if info.is_categorical or isinstance(value, str):
        return category_label(info.name, str(value), specs, lang)
    v = float(value)
    if info.display:
        return info.display.format(value=v)
    zh = lang == "zh"
    match info.unit:
        case "count":
            return f"{v:,.0f}"
        case "amount":
            return f"{v:,.0f}元" if zh else f"CNY {v:,.0f}"
        case "share":
            return f"{v:.0%}"
        case "days":
            return f"{v:,.0f}天" if zh else f"{v:,.0f} days"
        case "years":
            return f"{v:.0f}"
        case "flag":
            return _FLAG[lang][int(v >= 0.5)]
        case "score":
            text = f"{v:.0f}分" if zh else f"{v:.0f} points"
            if info.name.startswith("q_answer_"):
                option = _option_label(info.name.removeprefix("q_answer_"), v, specs, lang)
                if option:
                    text += f"（{option}）" if zh else f" ({option})"
            return text
        case _:
            return f"{v:.2f}"


def sentence(description: str, value_text: str, effect: str, lang: Lang, missing: bool) -> str:
    """ "<description> is <value>, <effect>" in either language."""
    if lang == "zh":
        return (
            f"{description}：{value_text}，{effect}"
            if missing
            else (f"{description}为{value_text}，{effect}")
        )
    return (
        f"{description}: {value_text}, {effect}"
        if missing
        else (f"{description} is {value_text}, {effect}")
    )


def _info(name: str, specs: Specs) -> FeatureInfo | None:
    return specs.features_by_name.get(name)


def reason_codes(
    contributions: np.ndarray,
    feature_names: Sequence[str],
    values: Mapping[str, Any],
    specs: Specs,
    wording: Mapping[str, Label],
    *,
    sign: Literal[1, -1] | None = None,
    limit: int = MAX_REASONS,
) -> list[Reason]:
    """The `limit` largest contributions of one prediction as reasons.

    `contributions` is one row of SHAP values (features in `feature_names` order); `values` the
    feature values the model saw. With `sign`, only contributions pushing that way count (why a
    level is above the stated one, say); otherwise the largest in size, whichever way.
    `wording` maps a direction ("up"/"down", or "above"/"below" via the caller) to how the
    sentence ends."""
    contributions = np.asarray(contributions, dtype=np.float64)
    if sign is None:
        order = np.argsort(-np.abs(contributions), kind="stable")
    else:
        order = np.argsort(-sign * contributions, kind="stable")
    reasons: list[Reason] = []
    for j in order:
        c = float(contributions[j])
        if abs(c) <= _NEGLIGIBLE or (sign is not None and c * sign <= 0):
            break
        name = feature_names[j]
        info = _info(name, specs)
        direction: Literal["up", "down"] = "up" if c > 0 else "down"
        effect = wording[direction]
        raw = values.get(name)
        missing = plain_value(raw) is None
        value_text = {lang: format_value(info, raw, specs, lang) for lang in LANGS}
        description = {lang: (getattr(info, lang) if info is not None else name) for lang in LANGS}
        reasons.append(
            Reason(
                feature=name,
                source=info.source if info is not None else "other",
                direction=direction,
                contribution=c,
                value=plain_value(raw),
                value_text=value_text,
                description=description,
                text={
                    lang: sentence(
                        description[lang], value_text[lang], getattr(effect, lang), lang, missing
                    )
                    for lang in LANGS
                },
            )
        )
        if len(reasons) == limit:
            break
    return reasons


def by_source(
    contributions: np.ndarray, feature_names: Sequence[str], specs: Specs
) -> dict[str, float]:
    """One prediction's contributions summed per source (questionnaire, behaviour, interview,
    profile): which source drove the result, and which way."""
    contributions = np.asarray(contributions, dtype=np.float64)
    if contributions.ndim != 1:
        raise ValueError("by_source takes one row of contributions")
    return {
        source: float(contributions[mask].sum())
        for source, mask in _source_masks(tuple(feature_names), specs).items()
    }


def _source_masks(feature_names: tuple[str, ...], specs: Specs) -> dict[str, np.ndarray]:
    """Which features come from each source (those with any), worked out once per feature list
    and kept with the specs (every answer explains the same few feature lists)."""
    cache = specs.__dict__.setdefault("_source_masks", {})
    if feature_names not in cache:
        sources = [
            info.source if (info := _info(n, specs)) is not None else "other" for n in feature_names
        ]
        masks = {}
        for source in (*SOURCES, "other"):
            mask = np.array([s == source for s in sources], dtype=bool)
            if mask.any():
                masks[source] = mask
        cache[feature_names] = masks
    return cache[feature_names]
