"""Specs are data: load and validate the YAML under `features/` into typed, immutable models.

Every spec is validated once, at load; a mistake fails with the file, the key and the reason.
"""

from __future__ import annotations

import itertools
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

C_LEVELS = ("C1", "C2", "C3", "C4", "C5")
R_LEVELS = ("R1", "R2", "R3", "R4", "R5")
Source = Literal["questionnaire", "behaviour", "interview", "profile"]
Unit = Literal[
    "count",
    "amount",
    "share",
    "ratio",
    "days",
    "years",
    "score",
    "level",
    "flag",
    "category",
    "decayed_count",
]
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
NonEmpty = Annotated[str, Field(min_length=1)]


class SpecError(ValueError):
    """A spec file that cannot be used: names the file, the key and the reason."""

    def __init__(self, file: Path | str, problems: list[tuple[str, str]]):
        self.file = str(file)
        self.problems = problems
        lines = [f"{self.file}: {key or '(top level)'}: {reason}" for key, reason in problems]
        super().__init__("invalid spec\n  " + "\n  ".join(lines))


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Label(_Spec):
    zh: NonEmpty
    en: NonEmpty


# --- questionnaire ------------------------------------------------------------------------------


class QuestionOption(_Spec):
    id: NonEmpty
    score: int
    zh: NonEmpty
    en: NonEmpty


class Question(_Spec):
    id: Identifier
    text: Label
    options: list[QuestionOption] = Field(min_length=2)

    @model_validator(mode="after")
    def _unique_options(self) -> Question:
        ids = [o.id for o in self.options]
        if len(set(ids)) != len(ids):
            raise ValueError(
                f"option ids repeat: {sorted(i for i in set(ids) if ids.count(i) > 1)}"
            )
        return self


class ScoreBand(_Spec):
    level: Literal["C1", "C2", "C3", "C4", "C5"]
    min: int
    max: int


class QuestionnaireDefinition(_Spec):
    """A versioned questionnaire: questions with scored options, score bands and the answers
    that put an investor in the lowest category."""

    version: NonEmpty
    title: Label
    questions: list[Question] = Field(min_length=1)
    bands: list[ScoreBand] = Field(min_length=1)
    lowest_category: list[dict[str, list[str]]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> QuestionnaireDefinition:
        qids = [q.id for q in self.questions]
        if len(set(qids)) != len(qids):
            raise ValueError(
                f"question ids repeat: {sorted(i for i in set(qids) if qids.count(i) > 1)}"
            )
        lo = sum(min(o.score for o in q.options) for q in self.questions)
        hi = sum(max(o.score for o in q.options) for q in self.questions)
        bands = sorted(self.bands, key=lambda b: b.min)
        if bands != list(self.bands):
            raise ValueError("bands must be listed in increasing score order")
        for band in bands:
            if band.min > band.max:
                raise ValueError(f"band {band.level} has min {band.min} above max {band.max}")
        if bands[0].min > lo or bands[-1].max < hi:
            raise ValueError(
                f"bands cover {bands[0].min}..{bands[-1].max} but totals range over {lo}..{hi}"
            )
        for a, b in itertools.pairwise(bands):
            if b.min != a.max + 1:
                raise ValueError(
                    f"bands {a.level} (..{a.max}) and {b.level} ({b.min}..) leave a gap or overlap"
                )
            if C_LEVELS.index(b.level) < C_LEVELS.index(a.level):
                raise ValueError(f"band {b.level} follows the higher band {a.level}")
        options = {q.id: {o.id for o in q.options} for q in self.questions}
        for i, condition in enumerate(self.lowest_category):
            if not condition:
                raise ValueError(f"lowest_category[{i}] is empty")
            for qid, answers in condition.items():
                if qid not in options:
                    raise ValueError(f"lowest_category[{i}] names unknown question {qid!r}")
                unknown = sorted(set(answers) - options[qid])
                if unknown:
                    raise ValueError(
                        f"lowest_category[{i}] names unknown answers {unknown} for {qid!r}"
                    )
        return self

    @cached_property
    def scores(self) -> dict[str, dict[str, int]]:
        """question id -> option id -> score."""
        return {q.id: {o.id: o.score for o in q.options} for q in self.questions}

    @property
    def question_ids(self) -> list[str]:
        return [q.id for q in self.questions]


# --- behaviour, tags, profile -------------------------------------------------------------------


class EventType(_Spec):
    zh: NonEmpty
    en: NonEmpty
    monetary: bool


class Trend(_Spec):
    short_days: int = Field(gt=0)
    long_days: int = Field(gt=0)


class BehaviourSpec(_Spec):
    event_types: dict[Identifier, EventType] = Field(min_length=1)
    channels: dict[Identifier, Label] = Field(min_length=1)
    windows: list[Annotated[int, Field(gt=0)]] = Field(min_length=1)
    high_risk_from: Literal["R1", "R2", "R3", "R4", "R5"]
    recency_event_types: list[str]
    revealed_window_days: int
    trend: Trend
    # What reports call a product's `category` (the products table's column); a category
    # without an entry is shown as it is.
    product_categories: dict[Identifier, Label] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> BehaviourSpec:
        if sorted(set(self.windows)) != self.windows:
            raise ValueError("windows must be distinct and increasing")
        unknown = sorted(set(self.recency_event_types) - set(self.event_types))
        if unknown:
            raise ValueError(f"recency_event_types names unknown event types {unknown}")
        for name in ("login", "invest", "redeem", "deposit", "withdraw"):
            if name not in self.event_types:
                raise ValueError(f"event type {name!r} is required by the behaviour features")
        for name in ("invest", "redeem", "deposit", "withdraw"):
            if not self.event_types[name].monetary:
                raise ValueError(f"event type {name!r} must be monetary: amounts feed its features")
        for days in (self.trend.short_days, self.trend.long_days, self.revealed_window_days):
            if days not in self.windows:
                raise ValueError(
                    f"window {days} (trend or revealed) is not one of the windows {self.windows}"
                )
        if self.trend.short_days >= self.trend.long_days:
            raise ValueError("trend.short_days must be shorter than trend.long_days")
        return self

    @property
    def monetary_event_types(self) -> list[str]:
        return [k for k, v in self.event_types.items() if v.monetary]


class Tag(_Spec):
    id: Identifier
    category: str
    risk_direction: Literal["up", "down", "none"]
    zh: NonEmpty
    en: NonEmpty
    description: NonEmpty


class TagTaxonomy(_Spec):
    categories: dict[Identifier, Label] = Field(min_length=1)
    tags: list[Tag] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> TagTaxonomy:
        ids = [t.id for t in self.tags]
        if len(set(ids)) != len(ids):
            raise ValueError(f"tag ids repeat: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
        for i, t in enumerate(self.tags):
            if t.category not in self.categories:
                raise ValueError(f"tags[{i}] ({t.id}) has unknown category {t.category!r}")
        return self

    @cached_property
    def by_id(self) -> dict[str, Tag]:
        return {t.id: t for t in self.tags}


class Segment(_Spec):
    id: Identifier
    min: float
    zh: NonEmpty
    en: NonEmpty


class ProfileSpec(_Spec):
    genders: dict[str, Label] = Field(min_length=1)
    city_tiers: dict[str, Label] = Field(min_length=1)
    income_bands: dict[str, Label] = Field(min_length=1)
    segments: list[Segment] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> ProfileSpec:
        mins = [s.min for s in self.segments]
        if sorted(set(mins)) != mins:
            raise ValueError("segments must have distinct, increasing min values")
        return self


# --- feature catalogue --------------------------------------------------------------------------


class FeatureFamily(_Spec):
    name: NonEmpty
    per: str | list[str] | None = None
    source: Source
    unit: Unit
    zh: NonEmpty
    en: NonEmpty
    #: How reason codes print a value, e.g. "C{value:.0f}"; default: by unit.
    display: str | None = None

    @model_validator(mode="after")
    def _display_formats(self) -> FeatureFamily:
        if self.display is not None:
            try:
                self.display.format(value=1.0)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"display {self.display!r} is not a template over {{value}}: {exc}"
                ) from None
        return self


class CatalogueSpec(_Spec):
    families: list[FeatureFamily] = Field(min_length=1)
    tag_decay_half_life_days: float = Field(gt=0)
    tag_directions: dict[Literal["up", "down"], Label]


class FeatureInfo(_Spec):
    """One feature as readers see it: name, source, unit and descriptions."""

    name: str
    source: Source
    unit: Unit
    zh: str
    en: str
    display: str | None = None

    @property
    def is_categorical(self) -> bool:
        return self.unit == "category"


class Specs(BaseModel):
    """Everything under `features/`, validated and cross-checked."""

    model_config = ConfigDict(frozen=True)

    questionnaires: dict[str, QuestionnaireDefinition]
    behaviour: BehaviourSpec
    tags: TagTaxonomy
    profile: ProfileSpec
    catalogue: CatalogueSpec

    @cached_property
    def question_ids(self) -> list[str]:
        """Question ids across all questionnaire versions, in order of first appearance."""
        seen: dict[str, None] = {}
        for definition in self.questionnaires.values():
            seen.update(dict.fromkeys(definition.question_ids))
        return list(seen)

    @cached_property
    def features(self) -> list[FeatureInfo]:
        """The full, ordered feature list with expanded names and descriptions."""
        return _expand_catalogue(self)

    @cached_property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @cached_property
    def features_by_name(self) -> dict[str, FeatureInfo]:
        return {f.name: f for f in self.features}

    def categories_of(self, feature: str) -> list[str]:
        """The vocabulary of a categorical profile feature, in the kernel's category order."""
        p = self.profile
        vocabularies = {
            "gender": list(p.genders),
            "city_tier": list(p.city_tiers),
            "income_band": list(p.income_bands),
            "channel_preference": list(self.behaviour.channels),
            "segment": [s.id for s in p.segments],
        }
        if feature not in vocabularies:
            raise KeyError(f"{feature!r} is not a categorical feature")
        return vocabularies[feature]


def _vocabularies(specs: Specs) -> dict[str, list[dict[str, Any]]]:
    """Each `per:` vocabulary as a list of template-variable dicts."""
    b, t = specs.behaviour, specs.tags
    question_text: dict[str, Label] = {}
    for definition in specs.questionnaires.values():
        for q in definition.questions:
            question_text.setdefault(q.id, q.text)
    return {
        "windows": [{"window": w} for w in b.windows],
        "event_types": [
            {"event_type": k, "event_type_zh": v.zh, "event_type_en": v.en}
            for k, v in b.event_types.items()
        ],
        "monetary_event_types": [
            {"event_type": k, "event_type_zh": v.zh, "event_type_en": v.en}
            for k, v in b.event_types.items()
            if v.monetary
        ],
        "recency_event_types": [
            {
                "event_type": k,
                "event_type_zh": b.event_types[k].zh,
                "event_type_en": b.event_types[k].en,
            }
            for k in b.recency_event_types
        ],
        "channels": [
            {"channel": k, "channel_zh": v.zh, "channel_en": v.en} for k, v in b.channels.items()
        ],
        "questions": [
            {"question": q, "question_zh": question_text[q].zh, "question_en": question_text[q].en}
            for q in specs.question_ids
        ],
        "tags": [{"tag": x.id, "tag_zh": x.zh, "tag_en": x.en} for x in t.tags],
        "tag_categories": [
            {"category": k, "category_zh": v.zh, "category_en": v.en}
            for k, v in t.categories.items()
        ],
        "tag_directions": [
            {"direction": k, "direction_zh": v.zh, "direction_en": v.en}
            for k, v in specs.catalogue.tag_directions.items()
        ],
    }


def _expand_catalogue(specs: Specs) -> list[FeatureInfo]:
    vocab = _vocabularies(specs)
    constants = {
        "high_risk_from": specs.behaviour.high_risk_from,
        "short": specs.behaviour.trend.short_days,
        "long": specs.behaviour.trend.long_days,
        "revealed": specs.behaviour.revealed_window_days,
    }
    out: list[FeatureInfo] = []
    for i, fam in enumerate(specs.catalogue.families):
        per = [fam.per] if isinstance(fam.per, str) else (fam.per or [])
        unknown = [p for p in per if p not in vocab]
        if unknown:
            raise SpecError(
                "catalogue.yaml",
                [(f"families[{i}].per", f"unknown vocabulary {unknown}; known: {sorted(vocab)}")],
            )
        for combo in itertools.product(*(vocab[p] for p in per)):
            values = dict(constants)
            for part in combo:
                values.update(part)
            try:
                out.append(
                    FeatureInfo(
                        name=fam.name.format(**values),
                        source=fam.source,
                        unit=fam.unit,
                        zh=fam.zh.format(**values),
                        en=fam.en.format(**values),
                        display=fam.display,
                    )
                )
            except KeyError as exc:
                raise SpecError(
                    "catalogue.yaml",
                    [(f"families[{i}]", f"template names unknown placeholder {exc}")],
                ) from None
    names = [f.name for f in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError("catalogue.yaml", [("families", f"feature names repeat: {dupes[:10]}")])
    return out


# --- loading ------------------------------------------------------------------------------------


_M = TypeVar("_M", bound=BaseModel)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise SpecError(path, [("", "file not found")])
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(
            path, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]
        ) from None


def _loc(loc: tuple[Any, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _parse(model: type[_M], data: Any, path: Path) -> _M:
    if not isinstance(data, dict):
        raise SpecError(path, [("", "expected a mapping at the top level")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [(_loc(e["loc"]), re.sub(r"^Value error, ", "", e["msg"])) for e in exc.errors()]
        raise SpecError(path, problems) from None


def load_spec_file(model: type[_M], path: Path | str) -> _M:
    """Read one YAML spec file into `model`, failing with the file, key and reason."""
    path = Path(path)
    return _parse(model, _read_yaml(path), path)


def load_questionnaire(path: Path | str) -> QuestionnaireDefinition:
    """Load one questionnaire definition; any file in the documented format works."""
    path = Path(path)
    return _parse(QuestionnaireDefinition, _read_yaml(path), path)


def load_specs(features_dir: Path | str | None = None) -> Specs:
    """Load and cross-check every spec under `features_dir` (default: settings)."""
    from suitability.settings import get_settings

    root = Path(features_dir) if features_dir is not None else get_settings().features_path
    if not root.is_dir():
        raise SpecError(
            root,
            [
                (
                    "",
                    "specs folder not found (set SUITABILITY_FEATURES_DIR or run from the project folder)",
                )
            ],
        )
    questionnaires: dict[str, QuestionnaireDefinition] = {}
    for path in sorted((root / "questionnaires").glob("*.yaml")):
        definition = load_questionnaire(path)
        if definition.version in questionnaires:
            raise SpecError(path, [("version", f"version {definition.version!r} is defined twice")])
        questionnaires[definition.version] = definition
    if not questionnaires:
        raise SpecError(
            root / "questionnaires", [("", "no questionnaire definitions (*.yaml) found")]
        )
    specs = Specs(
        questionnaires=questionnaires,
        behaviour=_parse(
            BehaviourSpec, _read_yaml(root / "behaviour.yaml"), root / "behaviour.yaml"
        ),
        tags=_parse(TagTaxonomy, _read_yaml(root / "tags.yaml"), root / "tags.yaml"),
        profile=_parse(ProfileSpec, _read_yaml(root / "profile.yaml"), root / "profile.yaml"),
        catalogue=_parse(
            CatalogueSpec, _read_yaml(root / "catalogue.yaml"), root / "catalogue.yaml"
        ),
    )
    _ = specs.features  # expand now so a template mistake fails at load
    from suitability.features.kernel import check_catalogue  # the kernel imports this module

    check_catalogue(specs)
    return specs
