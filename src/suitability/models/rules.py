"""Suitability rules (DESIGN §2): turn the stated category, the models' view and a product's R-level
into an `allow` / `allow_with_warning` / `deny` / `reassess` decision with bilingual reasons.

The rule table is data (`models/suitability_rules.yaml`), validated once by `load_rules`. The legal
category is always the questionnaire's; the models can only add warnings, trigger re-assessment or
block, never lower a legal bar.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import numbers
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from suitability.specs import C_LEVELS, R_LEVELS, load_spec_file

CLevel = Literal["C1", "C2", "C3", "C4", "C5"]
RLevel = Literal["R1", "R2", "R3", "R4", "R5"]
Initiator = Literal["investor", "platform"]
DecisionKind = Literal["allow", "allow_with_warning", "deny", "reassess"]
Direction = Literal["none", "understated", "overstated"]

#: Care flags a decision can carry.
ELDERLY = "elderly"
VULNERABLE = "vulnerable"
#: DESIGN §2: at most four principal reasons per decision.
MAX_REASONS = 4

# Placeholders each code's texts may use. Every text is formatted against sample values at load,
# so a typo or a placeholder the code cannot fill fails then, not in front of a customer.
_ALWAYS = frozenset({"product_id", "product_risk", "predicted_level", "version"})
_STATED = _ALWAYS | {"stated_level", "allowed"}
_MISMATCH = _STATED | {"confidence", "predicted_allowed"}
#: Decision-reason codes in precedence order, with the decision each one leads to.
REASON_CODES: dict[str, DecisionKind] = {
    "no_questionnaire": "reassess",
    "stale_questionnaire": "reassess",
    "interview_more_cautious": "reassess",
    "interview_more_aggressive": "reassess",
    "lowest_category_limit": "deny",
    "platform_above_category": "deny",
    # A flagged overstatement re-assesses before any product the predicted category does not
    # allow, whether or not the stated one does, so ahead of the investor's own request above
    # the stated category: it is not let through with a warning while the record says a
    # re-assessment is needed first. (What the platform may not recommend stays denied.)
    "overstated_above_predicted": "reassess",
    "investor_above_category": "allow_with_warning",
    "within_category": "allow",
}
WARNING_CODES = (
    "special_risk_warning",
    "understated_risk_education",
    "elderly_care",
    "vulnerable_care",
)
NOTE_CODES = ("overstated_reassess_advised", "churn_attention")
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "no_questionnaire": _ALWAYS,
    "stale_questionnaire": _STATED | {"days", "max_days"},
    "interview_more_cautious": _STATED,
    "interview_more_aggressive": _STATED,
    "lowest_category_limit": _STATED | {"lowest_allowed"},
    "platform_above_category": _STATED,
    "investor_above_category": _STATED,
    "overstated_above_predicted": _MISMATCH,
    "within_category": _STATED,
    "special_risk_warning": _STATED,
    "understated_risk_education": _MISMATCH,
    "elderly_care": _ALWAYS | {"age", "elderly_age"},
    "vulnerable_care": _ALWAYS,
    "overstated_reassess_advised": _MISMATCH,
    "churn_attention": _ALWAYS | {"p_churn"},
}
ALL_CODES: tuple[str, ...] = (*REASON_CODES, *WARNING_CODES, *NOTE_CODES)
_SAMPLE_VALUES: dict[str, Any] = {
    "product_id": "P0001",
    "product_risk": "R4",
    "predicted_level": "C3",
    "version": "SR-0",
    "stated_level": "C2",
    "allowed": "R1–R2",
    "days": 400.0,
    "max_days": 365,
    "lowest_allowed": "R1",
    "confidence": 0.72,
    "predicted_allowed": "R1–R3",
    "age": 67.0,
    "elderly_age": 65,
    "p_churn": 0.55,
}


# --- the rule table -----------------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LowestCategory(_Spec):
    allowed: list[RLevel] = Field(min_length=1)


class Contradiction(_Spec):
    """When the interview contradicts the questionnaire (on decayed tag direction weights)."""

    min_net_weight: float = Field(gt=0)
    aggressive_from: CLevel
    conservative_upto: CLevel

    @model_validator(mode="after")
    def _apart(self) -> Contradiction:
        if C_LEVELS.index(self.conservative_upto) >= C_LEVELS.index(self.aggressive_from):
            raise ValueError(
                f"conservative_upto ({self.conservative_upto}) must be below "
                f"aggressive_from ({self.aggressive_from})"
            )
        return self


class MismatchRule(_Spec):
    min_confidence: float = Field(gt=0, le=1)


class Text(_Spec):
    zh: Annotated[str, Field(min_length=1)]
    en: Annotated[str, Field(min_length=1)]


class RuleTable(_Spec):
    """The versioned suitability rule table (`models/suitability_rules.yaml`)."""

    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    effective_from: dt.date
    matrix: dict[CLevel, list[RLevel]]
    lowest_category: LowestCategory
    questionnaire_max_age_days: int = Field(gt=0)
    contradiction: Contradiction
    mismatch: MismatchRule
    elderly_age: int = Field(gt=0)
    care_tags: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], float] = Field(
        default_factory=dict
    )
    churn_attention: float = Field(gt=0, le=1)
    texts: dict[str, Text]

    @field_validator("matrix")
    @classmethod
    def _monotone_matrix(cls, matrix: dict[str, list[str]]) -> dict[str, list[str]]:
        missing = [c for c in C_LEVELS if c not in matrix]
        if missing:
            raise ValueError(f"every category needs a row; missing {missing}")
        for level, allowed in matrix.items():
            if not allowed:
                raise ValueError(f"{level} allows no product level")
            if len(set(allowed)) != len(allowed):
                raise ValueError(f"{level} lists a product level twice: {allowed}")
        for lower, higher in itertools.pairwise(C_LEVELS):
            dropped = sorted(set(matrix[lower]) - set(matrix[higher]))
            if dropped:
                raise ValueError(
                    f"{higher} must allow everything {lower} allows; it drops {dropped}"
                )
        return matrix

    @field_validator("lowest_category")
    @classmethod
    def _lowest_within_c1(cls, lowest: LowestCategory, info: ValidationInfo) -> LowestCategory:
        matrix = info.data.get("matrix")
        if matrix is not None:
            extra = sorted(set(lowest.allowed) - set(matrix["C1"]))
            if extra:
                raise ValueError(
                    f"the lowest category is a subset of C1; it cannot allow {extra} "
                    f"beyond C1's {matrix['C1']}"
                )
        return lowest

    @field_validator("care_tags")
    @classmethod
    def _positive_weights(cls, care_tags: dict[str, float]) -> dict[str, float]:
        bad = sorted(t for t, w in care_tags.items() if not (math.isfinite(w) and w > 0))
        if bad:
            raise ValueError(f"minimum weights must be positive numbers; check {bad}")
        return care_tags

    @field_validator("texts")
    @classmethod
    def _complete_texts(cls, texts: dict[str, Text]) -> dict[str, Text]:
        missing = [c for c in ALL_CODES if c not in texts]
        unknown = sorted(set(texts) - set(ALL_CODES))
        problems = []
        if missing:
            problems.append(f"missing texts for codes {missing}")
        if unknown:
            problems.append(f"unknown codes {unknown}; known: {list(ALL_CODES)}")
        for code, text in texts.items():
            if code in PLACEHOLDERS:
                for lang in ("zh", "en"):
                    problem = _template_problem(getattr(text, lang), PLACEHOLDERS[code])
                    if problem:
                        problems.append(f"{code}.{lang}: {problem}")
        if problems:
            raise ValueError("; ".join(problems))
        return texts

    @cached_property
    def allowed(self) -> dict[str, frozenset[str]]:
        """Category -> the product levels it may buy."""
        return {level: frozenset(levels) for level, levels in self.matrix.items()}


def _template_problem(template: str, known: frozenset[str]) -> str | None:
    """Why `template` cannot be rendered with the placeholders in `known`, or None if it can."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        return f"malformed template ({exc})"
    names = {f.split(".")[0].split("[")[0] for f in fields}
    if any(n == "" or n.isdigit() for n in names):
        return "positional placeholders ({} or {0}) cannot be filled; name them"
    unknown = sorted(n for n in names if n not in known)
    if unknown:
        shown = ", ".join(f"{{{n}}}" for n in unknown)
        return f"unknown placeholder {shown}; this code may use {sorted(known)}"
    try:
        template.format(**{k: _SAMPLE_VALUES[k] for k in known})
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        return f"cannot be formatted ({type(exc).__name__}: {exc})"
    return None


def load_rules(path: Path | str | None = None) -> RuleTable:
    """Load and validate the rule table (default: `<models>/suitability_rules.yaml`)."""
    if path is None:
        from suitability.settings import get_settings

        path = get_settings().models_path / "suitability_rules.yaml"
    return load_spec_file(RuleTable, path)


# --- inputs -------------------------------------------------------------------------------------


def _number(name: str, value: Any, *, optional: bool = False, lo: float | None = 0.0) -> Any:
    """`value` as a finite float (>= lo), or None when optional and None; else ValueError."""
    if value is None and optional:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        hint = " (use None for missing)" if optional else ""
        raise ValueError(f"{name} must be finite, got {value}{hint}")
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be at least {lo}, got {value}")
    return value


def _level(name: str, value: Any, levels: tuple[str, ...]) -> str:
    if value not in levels:
        raise ValueError(f"{name} must be one of {list(levels)}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class RuleInput:
    """Everything one suitability decision looks at, validated on construction.

    `stated_level` is the questionnaire's category (None: no questionnaire); `tag_up`/`tag_down`
    and `tag_weights` are decayed interview-tag weights; `level_probabilities` is the risk-level
    model's distribution over C1..C5.
    """

    stated_level: str | None
    lowest_category: bool
    questionnaire_age_days: float | None
    age_years: float | None
    tag_up: float
    tag_down: float
    tag_weights: Mapping[str, float]
    predicted_level: str
    level_probabilities: Mapping[str, float]
    p_churn: float | None
    product_id: str
    product_risk: str
    initiated_by: Initiator

    def __post_init__(self) -> None:
        put = object.__setattr__
        if self.stated_level is not None:
            _level("stated_level", self.stated_level, C_LEVELS)
        if not isinstance(self.lowest_category, bool | np.bool_):
            raise ValueError(f"lowest_category must be a bool, got {self.lowest_category!r}")
        put(self, "lowest_category", bool(self.lowest_category))
        age = _number("questionnaire_age_days", self.questionnaire_age_days, optional=True)
        if self.stated_level is not None and age is None:
            raise ValueError("questionnaire_age_days is required when stated_level is given")
        put(self, "questionnaire_age_days", age)
        put(self, "age_years", _number("age_years", self.age_years, optional=True))
        put(self, "tag_up", _number("tag_up", self.tag_up))
        put(self, "tag_down", _number("tag_down", self.tag_down))
        weights = {str(k): _number(f"tag_weights[{k!r}]", v) for k, v in self.tag_weights.items()}
        put(self, "tag_weights", MappingProxyType(weights))
        _level("predicted_level", self.predicted_level, C_LEVELS)
        put(self, "level_probabilities", MappingProxyType(_probabilities(self.level_probabilities)))
        p_churn = _number("p_churn", self.p_churn, optional=True)
        if p_churn is not None and p_churn > 1:
            raise ValueError(f"p_churn must be within [0, 1], got {p_churn}")
        put(self, "p_churn", p_churn)
        if not isinstance(self.product_id, str) or not self.product_id:
            raise ValueError(f"product_id must be a non-empty string, got {self.product_id!r}")
        _level("product_risk", self.product_risk, R_LEVELS)
        _level("initiated_by", self.initiated_by, ("investor", "platform"))


def _probabilities(probabilities: Mapping[str, float]) -> dict[str, float]:
    """C1..C5 -> probability, checked to be a distribution (a float32 model output passes)."""
    keys = set(probabilities)
    if keys != set(C_LEVELS):
        raise ValueError(
            f"level_probabilities must have exactly the keys {list(C_LEVELS)}, got {sorted(keys)}"
        )
    out = {c: _number(f"level_probabilities[{c!r}]", probabilities[c]) for c in C_LEVELS}
    if abs(sum(out.values()) - 1.0) > 1e-3:
        raise ValueError(f"level_probabilities must sum to 1, got {sum(out.values()):.6f}")
    return out


def _missing(value: Any) -> bool:
    """None, NaN, pd.NA and NaT all mean missing."""
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _feature(features: Mapping[str, Any], name: str) -> Any:
    if name not in features:
        raise ValueError(f"features lack {name!r}: pass a row from the feature builder")
    value = features[name]
    return None if _missing(value) else value


def rule_input_from_features(
    features: Mapping[str, Any],
    *,
    predicted_level: str,
    level_probabilities: Mapping[str, float],
    p_churn: float | None,
    product_id: str,
    product_risk: str,
    initiated_by: Initiator,
) -> RuleInput:
    """Build a `RuleInput` from one feature-builder row (a dict or a pandas Series).

    `q_level` 1..5 becomes C1..C5 (missing: no questionnaire); missing tag weights count as 0.
    """
    q_level = _feature(features, "q_level")
    stated: str | None = None
    if q_level is not None:
        level = _number("q_level", q_level, lo=1.0)
        if level not in (1.0, 2.0, 3.0, 4.0, 5.0):
            raise ValueError(f"q_level must be a whole level 1..5, got {q_level!r}")
        stated = C_LEVELS[int(level) - 1]
    lowest = _feature(features, "q_lowest_category")
    if lowest is not None and _number("q_lowest_category", lowest) not in (0.0, 1.0):
        raise ValueError(f"q_lowest_category must be 0 or 1, got {lowest!r}")
    tag_weights = {
        str(name)[4:]: (0.0 if _missing(value) else value)
        for name, value in features.items()
        if str(name).startswith("tag_")
    }
    up, down = _feature(features, "tagdir_up"), _feature(features, "tagdir_down")
    return RuleInput(
        stated_level=stated,
        lowest_category=lowest is not None and float(lowest) == 1.0,
        questionnaire_age_days=_feature(features, "q_days_since"),
        age_years=_feature(features, "age_years"),
        tag_up=0.0 if up is None else up,
        tag_down=0.0 if down is None else down,
        tag_weights=tag_weights,
        predicted_level=predicted_level,
        level_probabilities=level_probabilities,
        p_churn=None if _missing(p_churn) else p_churn,
        product_id=product_id,
        product_risk=product_risk,
        initiated_by=initiated_by,
    )


# --- decisions ----------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mismatch(_Out):
    """Stated vs predicted category. `confidence` is the model's probability mass on the
    predicted side of the stated level (0 when they agree or there is no questionnaire)."""

    direction: Direction
    stated: CLevel | None
    predicted: CLevel
    confidence: float
    flagged: bool
    levels_apart: int


class RuleNote(_Out):
    """One reason, warning or note: a rule code and its rendered zh and en texts."""

    code: str
    zh: str
    en: str


class Decision(_Out):
    """A suitability decision with its reasons, warnings, notes and the audit trace."""

    decision: DecisionKind
    confirmation_required: bool
    reasons: list[RuleNote] = Field(min_length=1)
    warnings: list[RuleNote]
    notes: list[RuleNote]
    care_flags: list[str]
    mismatch: Mismatch
    rule_version: str
    fired: list[str]
    product_id: str
    product_risk: RLevel
    initiated_by: Initiator

    def to_json(self) -> dict[str, Any]:
        """A plain, JSON-able dict (for the HTTP response and the decision record)."""
        return self.model_dump(mode="json")


def assess_mismatch(
    stated_level: str | None,
    predicted_level: str,
    level_probabilities: Mapping[str, float],
    rules: RuleTable,
) -> Mismatch:
    """Compare the questionnaire's category with the model's, with the model's confidence in
    the direction it points; flagged when they differ and confidence >= the table's minimum."""
    _level("predicted_level", predicted_level, C_LEVELS)
    probabilities = _probabilities(level_probabilities)
    if stated_level is None:
        return Mismatch(
            direction="none",
            stated=None,
            predicted=predicted_level,
            confidence=0.0,
            flagged=False,
            levels_apart=0,
        )
    stated = C_LEVELS.index(_level("stated_level", stated_level, C_LEVELS))
    predicted = C_LEVELS.index(predicted_level)
    direction: Direction = "none"
    confidence = 0.0
    if predicted > stated:
        direction = "understated"
        confidence = sum(probabilities[c] for c in C_LEVELS[stated + 1 :])
    elif predicted < stated:
        direction = "overstated"
        confidence = sum(probabilities[c] for c in C_LEVELS[:stated])
    return Mismatch(
        direction=direction,
        stated=stated_level,
        predicted=predicted_level,
        confidence=confidence,
        flagged=direction != "none" and confidence >= rules.mismatch.min_confidence,
        levels_apart=abs(predicted - stated),
    )


def _decision_rules(inp: RuleInput, rules: RuleTable, mismatch: Mismatch) -> list[str]:
    """Codes of the decision rules that hold, in precedence order (`within_category` only when
    nothing else holds and the product is within the stated category)."""
    fired: list[str] = []
    stated = inp.stated_level
    if stated is None:
        fired.append("no_questionnaire")
    else:
        age = inp.questionnaire_age_days
        if age is not None and age > rules.questionnaire_max_age_days:
            fired.append("stale_questionnaire")
        c = rules.contradiction
        rank = C_LEVELS.index(stated)
        if (
            rank >= C_LEVELS.index(c.aggressive_from)
            and inp.tag_down - inp.tag_up >= c.min_net_weight
        ):
            fired.append("interview_more_cautious")
        if (
            rank <= C_LEVELS.index(c.conservative_upto)
            and inp.tag_up - inp.tag_down >= c.min_net_weight
        ):
            fired.append("interview_more_aggressive")
    if inp.lowest_category and inp.product_risk not in rules.lowest_category.allowed:
        fired.append("lowest_category_limit")
    if stated is not None:
        above = inp.product_risk not in rules.allowed[stated]
        if above and inp.initiated_by == "platform":
            fired.append("platform_above_category")
        if (
            mismatch.flagged
            and mismatch.direction == "overstated"
            and inp.product_risk not in rules.allowed[inp.predicted_level]
        ):
            fired.append("overstated_above_predicted")
        if above and inp.initiated_by != "platform":
            fired.append("investor_above_category")
        if not fired:
            fired.append("within_category")
    return fired


def _levels_text(levels: list[str]) -> str:
    """R levels as a reader writes them: 'R1', 'R1–R3', or 'R1/R3' when not contiguous."""
    ranks = sorted(R_LEVELS.index(r) for r in levels)
    if len(ranks) > 1 and ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"{R_LEVELS[ranks[0]]}–{R_LEVELS[ranks[-1]]}"
    return "/".join(R_LEVELS[r] for r in ranks)


def _text_values(inp: RuleInput, rules: RuleTable, mismatch: Mismatch) -> dict[str, Any]:
    """Values for the text placeholders; a code only uses those it is allowed (`PLACEHOLDERS`)."""
    stated = inp.stated_level
    return {
        "product_id": inp.product_id,
        "product_risk": inp.product_risk,
        "predicted_level": inp.predicted_level,
        "version": rules.version,
        "stated_level": stated,
        "allowed": _levels_text(rules.matrix[stated]) if stated else None,
        "days": inp.questionnaire_age_days,
        "max_days": rules.questionnaire_max_age_days,
        "lowest_allowed": _levels_text(rules.lowest_category.allowed),
        "confidence": mismatch.confidence,
        "predicted_allowed": _levels_text(rules.matrix[inp.predicted_level]),
        "age": inp.age_years,
        "elderly_age": rules.elderly_age,
        "p_churn": inp.p_churn,
    }


def _note(code: str, values: Mapping[str, Any], rules: RuleTable) -> RuleNote:
    text = rules.texts[code]
    mine = {k: values[k] for k in PLACEHOLDERS[code]}
    return RuleNote(code=code, zh=text.zh.format(**mine), en=text.en.format(**mine))


def decide(inp: RuleInput, rules: RuleTable) -> Decision:
    """The suitability decision for one customer and one product.

    The first decision rule that holds (precedence in `REASON_CODES`) sets the decision; every
    rule that holds with the same decision is a reason. Warnings and notes are added whatever the
    decision; `fired` lists every code that held, in evaluation order, for the audit record.
    """
    mismatch = assess_mismatch(
        inp.stated_level, inp.predicted_level, inp.level_probabilities, rules
    )
    held = _decision_rules(inp, rules, mismatch)
    decision = REASON_CODES[held[0]]
    reason_codes = [c for c in held if REASON_CODES[c] == decision][:MAX_REASONS]

    warning_codes: list[str] = []
    care_flags: list[str] = []
    if decision == "allow_with_warning":
        warning_codes.append("special_risk_warning")
    if mismatch.flagged and mismatch.direction == "understated":
        warning_codes.append("understated_risk_education")
    if inp.age_years is not None and inp.age_years >= rules.elderly_age:
        warning_codes.append("elderly_care")
        care_flags.append(ELDERLY)
    if any(inp.tag_weights.get(tag, 0.0) >= w for tag, w in rules.care_tags.items()):
        warning_codes.append("vulnerable_care")
        care_flags.append(VULNERABLE)

    note_codes: list[str] = []
    if (
        mismatch.flagged
        and mismatch.direction == "overstated"
        and "overstated_above_predicted" not in reason_codes
    ):
        note_codes.append("overstated_reassess_advised")
    if inp.p_churn is not None and inp.p_churn >= rules.churn_attention:
        note_codes.append("churn_attention")

    values = _text_values(inp, rules, mismatch)
    return Decision(
        decision=decision,
        confirmation_required=decision == "allow_with_warning",
        reasons=[_note(c, values, rules) for c in reason_codes],
        warnings=[_note(c, values, rules) for c in warning_codes],
        notes=[_note(c, values, rules) for c in note_codes],
        care_flags=care_flags,
        mismatch=mismatch,
        rule_version=rules.version,
        fired=[*held, *warning_codes, *note_codes],
        product_id=inp.product_id,
        product_risk=inp.product_risk,
        initiated_by=inp.initiated_by,
    )
