"""Declared schemas of the six raw tables (DESIGN §4): columns, types, vocabularies and rules.

This module only declares; `contracts` enforces. Allowed values that people may extend (event
types, channels, tags, question ids, profile codes) come from the specs under `features/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from suitability.specs import C_LEVELS, R_LEVELS, Specs

#: Logical column types. In memory: string -> pandas string, timestamp/date -> datetime64[us],
#: float -> float64, int -> Int64 (nullable).
ColumnType = Literal["string", "timestamp", "date", "float", "int"]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = False
    #: Allowed values, from the specs (None: any value).
    allowed: Callable[[Specs], frozenset[str]] | None = None
    #: Inclusive lower bound for numbers.
    min: float | None = None
    #: Optional columns may be absent from the file; present ones are validated.
    optional: bool = False
    #: Personal data: masked on ingest, never echoed in an error message.
    pii: bool = False


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    #: Columns whose combination must be unique.
    unique: tuple[str, ...] = ()
    #: Human-readable rules checked across columns or rows (enforced in `contracts`).
    rules: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _vocab(values: tuple[str, ...]) -> Callable[[Specs], frozenset[str]]:
    frozen = frozenset(values)
    return lambda _specs: frozen


CUSTOMERS = TableSchema(
    name="customers",
    columns=(
        Column("customer_id", "string"),
        Column("birth_date", "date"),
        Column("gender", "string", allowed=lambda s: frozenset(s.profile.genders)),
        Column("city_tier", "string", allowed=lambda s: frozenset(s.profile.city_tiers)),
        Column("income_band", "string", allowed=lambda s: frozenset(s.profile.income_bands)),
        Column("registered_at", "timestamp"),
        Column("channel_preference", "string", allowed=lambda s: frozenset(s.behaviour.channels)),
        Column("name", "string", nullable=True, optional=True, pii=True),
        Column("id_number", "string", nullable=True, optional=True, pii=True),
        Column("phone", "string", nullable=True, optional=True, pii=True),
    ),
    unique=("customer_id",),
    rules=("birth_date before registered_at",),
)

QUESTIONNAIRE_RESPONSES = TableSchema(
    name="questionnaire_responses",
    columns=(
        Column("customer_id", "string"),
        Column("questionnaire_version", "string", allowed=lambda s: frozenset(s.questionnaires)),
        Column("submitted_at", "timestamp"),
        Column("question_id", "string", allowed=lambda s: frozenset(s.question_ids)),
        Column("answer", "string"),
    ),
    unique=("customer_id", "questionnaire_version", "submitted_at", "question_id"),
    rules=(
        "question_id belongs to questionnaire_version",
        "answer is an option of question_id",
        "a submission answers every question of its version",
        "customer_id exists in customers",
    ),
)

EVENTS = TableSchema(
    name="events",
    columns=(
        Column("customer_id", "string"),
        Column("event_time", "timestamp"),
        Column("event_type", "string", allowed=lambda s: frozenset(s.behaviour.event_types)),
        Column("amount", "float", nullable=True, min=0.0),
        Column("product_id", "string", nullable=True),
        Column("product_risk", "string", nullable=True, allowed=_vocab(R_LEVELS)),
        Column("term_days", "int", nullable=True, min=0),
        Column("channel", "string", allowed=lambda s: frozenset(s.behaviour.channels)),
        Column("duration_s", "float", nullable=True, min=0.0),
    ),
    rules=(
        "amount is present for monetary event types",
        "product_risk is present for invest events",
        "customer_id exists in customers",
    ),
)

INTERVIEW_TAGS = TableSchema(
    name="interview_tags",
    columns=(
        Column("customer_id", "string"),
        Column("interview_time", "timestamp"),
        Column("recorded_at", "timestamp"),
        Column("advisor_id", "string"),
        Column("tag", "string", allowed=lambda s: frozenset(s.tags.by_id)),
        Column("note", "string", nullable=True, optional=True, pii=True),
    ),
    rules=("recorded_at >= interview_time", "customer_id exists in customers"),
)

RISK_REVIEWS = TableSchema(
    name="risk_reviews",
    columns=(
        Column("customer_id", "string"),
        Column("reviewed_at", "timestamp"),
        Column("confirmed_level", "string", allowed=_vocab(C_LEVELS)),
    ),
    rules=("customer_id exists in customers",),
)

PRODUCTS = TableSchema(
    name="products",
    columns=(
        Column("product_id", "string"),
        Column("risk_level", "string", allowed=_vocab(R_LEVELS)),
        Column("term_days", "int", min=0),
        Column("category", "string"),
    ),
    unique=("product_id",),
)

TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (CUSTOMERS, QUESTIONNAIRE_RESPONSES, EVENTS, INTERVIEW_TAGS, RISK_REVIEWS, PRODUCTS)
}
