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
    #: Inclusive upper bound for numbers: every sum the features take stays exact (see
    #: `MAX_EVENTS_PER_CUSTOMER`), and a misplaced ID number is refused, not summed.
    max: float | None = None
    #: An opaque identifier: any value of `IDENTIFIER` syntax, however it looks (a platform's
    #: ids may be 11-digit numbers), and nothing else, so an e-mail or a name is refused.
    identifier: bool = False
    #: Optional columns may be absent from the file; present ones are validated.
    optional: bool = False
    #: Personal data: masked on ingest, never echoed in an error message.
    pii: bool = False


#: The syntax of every identifier column: letters, digits and `_ . : -`, starting with a
#: letter or digit, at most 64 characters. No `@`, no spaces, no Chinese text.
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
IDENTIFIER_RULE = "must be an identifier (letters, digits, _ . : -, at most 64), not personal data"

#: The largest amount one event may carry (yuan), term (days) and session length (seconds).
MAX_AMOUNT = 1e10
MAX_TERM_DAYS = 36_500
MAX_DURATION_S = 86_400.0
#: The most events one customer may have. With `MAX_AMOUNT`, every window sum of the features
#: (amounts in cents, times a risk grade of at most 5) stays below 2**63 by construction:
#: 1e6 events x 1e12 cents x 5 = 5e18 < 9.2e18.
MAX_EVENTS_PER_CUSTOMER = 1_000_000
MAX_EVENTS_RULE = f"a customer may have at most {MAX_EVENTS_PER_CUSTOMER:,} events"


# --- rules across columns and rows ---------------------------------------------------------------
#
# Each rule is declared once, here, and executed twice: over whole tables by `contracts` (arrow,
# for files of any size) and over one request's typed values by `features.online`; tests prove
# the two refuse the same rows with the same rule. `rule` is the text every error shows.


@dataclass(frozen=True)
class Ordered:
    """`earlier` must not come after `later` (with `strict`, must come before it), where both
    are present; a violation is blamed on `column`, whose value is shown."""

    rule: str
    column: str
    earlier: str
    later: str
    strict: bool

    @property
    def needs(self) -> tuple[str, ...]:
        return (self.earlier, self.later)


@dataclass(frozen=True)
class RequiredWhen:
    """`column` must be present in rows whose `when` is one of `values(specs)`; `show` is the
    column whose value a message shows (None: nothing)."""

    rule: str
    column: str
    when: str
    values: Callable[[Specs], frozenset[str]]
    show: str | None = None

    @property
    def needs(self) -> tuple[str, ...]:
        return (self.when, self.column)


@dataclass(frozen=True)
class Combination:
    """The values of `columns` together must be one of `allowed(specs)`. Checked only where
    every part is present, the leading parts are themselves an allowed start, and the last part
    is within its own column's vocabulary (otherwise another rule already names the problem).
    Blamed on the last column, whose value is shown."""

    rule: str
    columns: tuple[str, ...]
    allowed: Callable[[Specs], frozenset[tuple[str, ...]]]

    @property
    def column(self) -> str:
        return self.columns[-1]

    @property
    def needs(self) -> tuple[str, ...]:
        return self.columns


@dataclass(frozen=True)
class CompleteGroups:
    """Rows sharing `group` form one submission, which must hold a `member` row for each of
    `expected(specs)[row's group[version]]`; blamed on the group's first row."""

    rule: str
    group: tuple[str, ...]
    member: str
    version: str
    expected: Callable[[Specs], dict[str, tuple[str, ...]]]

    @property
    def column(self) -> str:
        return self.member


@dataclass(frozen=True)
class References:
    """Every value of `column` must be a key of the `table` table."""

    rule: str
    column: str
    table: str


RowRule = Ordered | RequiredWhen | Combination
TableRule = RowRule | CompleteGroups | References


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    #: Columns whose combination must be unique.
    unique: tuple[str, ...] = ()
    #: Rules across columns or rows (enforced in `contracts` and `features.online`).
    rules: tuple[TableRule, ...] = field(default=())

    @property
    def row_rules(self) -> tuple[RowRule, ...]:
        return tuple(r for r in self.rules if isinstance(r, Ordered | RequiredWhen | Combination))

    @property
    def complete_groups(self) -> CompleteGroups | None:
        return next((r for r in self.rules if isinstance(r, CompleteGroups)), None)

    @property
    def references_customers(self) -> bool:
        """Whether every customer_id must be one of the customers table's."""
        return any(isinstance(r, References) and r.table == "customers" for r in self.rules)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _vocab(values: tuple[str, ...]) -> Callable[[Specs], frozenset[str]]:
    frozen = frozenset(values)
    return lambda _specs: frozen


def _questions(specs: Specs) -> frozenset[tuple[str, ...]]:
    return frozenset((v, q.id) for v, d in specs.questionnaires.items() for q in d.questions)


def _options(specs: Specs) -> frozenset[tuple[str, ...]]:
    return frozenset(
        (v, q.id, o.id)
        for v, d in specs.questionnaires.items()
        for q in d.questions
        for o in q.options
    )


def _question_ids(specs: Specs) -> dict[str, tuple[str, ...]]:
    return {v: tuple(d.question_ids) for v, d in specs.questionnaires.items()}


#: Rule texts other modules name.
RULE_REFERENCE = "customer_id exists in customers"
RULE_SUBMISSION_COMPLETE = "a submission answers every question of its version"
_REFERENCE = References(RULE_REFERENCE, "customer_id", "customers")


CUSTOMERS = TableSchema(
    name="customers",
    columns=(
        Column("customer_id", "string", identifier=True),
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
    rules=(
        Ordered(
            "birth_date before registered_at",
            "birth_date",
            earlier="birth_date",
            later="registered_at",
            strict=True,
        ),
    ),
)

QUESTIONNAIRE_RESPONSES = TableSchema(
    name="questionnaire_responses",
    columns=(
        Column("customer_id", "string", identifier=True),
        Column("questionnaire_version", "string", allowed=lambda s: frozenset(s.questionnaires)),
        Column("submitted_at", "timestamp"),
        Column("question_id", "string", allowed=lambda s: frozenset(s.question_ids)),
        Column("answer", "string"),
    ),
    unique=("customer_id", "questionnaire_version", "submitted_at", "question_id"),
    rules=(
        Combination(
            "question_id belongs to questionnaire_version",
            ("questionnaire_version", "question_id"),
            _questions,
        ),
        Combination(
            "answer is an option of question_id",
            ("questionnaire_version", "question_id", "answer"),
            _options,
        ),
        CompleteGroups(
            RULE_SUBMISSION_COMPLETE,
            group=("customer_id", "questionnaire_version", "submitted_at"),
            member="question_id",
            version="questionnaire_version",
            expected=_question_ids,
        ),
        _REFERENCE,
    ),
)

EVENTS = TableSchema(
    name="events",
    columns=(
        Column("customer_id", "string", identifier=True),
        Column("event_time", "timestamp"),
        Column("event_type", "string", allowed=lambda s: frozenset(s.behaviour.event_types)),
        Column("amount", "float", nullable=True, min=0.0, max=MAX_AMOUNT),
        Column("product_id", "string", nullable=True, identifier=True),
        Column("product_risk", "string", nullable=True, allowed=_vocab(R_LEVELS)),
        Column("term_days", "int", nullable=True, min=0, max=MAX_TERM_DAYS),
        Column("channel", "string", allowed=lambda s: frozenset(s.behaviour.channels)),
        Column("duration_s", "float", nullable=True, min=0.0, max=MAX_DURATION_S),
    ),
    rules=(
        RequiredWhen(
            "amount is present for monetary event types",
            "amount",
            when="event_type",
            values=lambda s: frozenset(s.behaviour.monetary_event_types),
            show="event_type",
        ),
        RequiredWhen(
            "product_risk is present for invest events",
            "product_risk",
            when="event_type",
            values=_vocab(("invest",)),
        ),
        _REFERENCE,
    ),
)

INTERVIEW_TAGS = TableSchema(
    name="interview_tags",
    columns=(
        Column("customer_id", "string", identifier=True),
        Column("interview_time", "timestamp"),
        Column("recorded_at", "timestamp"),
        Column("advisor_id", "string", identifier=True),
        Column("tag", "string", allowed=lambda s: frozenset(s.tags.by_id)),
        Column("note", "string", nullable=True, optional=True, pii=True),
    ),
    rules=(
        Ordered(
            "recorded_at >= interview_time",
            "recorded_at",
            earlier="interview_time",
            later="recorded_at",
            strict=False,
        ),
        _REFERENCE,
    ),
)

RISK_REVIEWS = TableSchema(
    name="risk_reviews",
    columns=(
        Column("customer_id", "string", identifier=True),
        Column("reviewed_at", "timestamp"),
        Column("confirmed_level", "string", allowed=_vocab(C_LEVELS)),
    ),
    rules=(_REFERENCE,),
)

PRODUCTS = TableSchema(
    name="products",
    columns=(
        Column("product_id", "string", identifier=True),
        Column("risk_level", "string", allowed=_vocab(R_LEVELS)),
        Column("term_days", "int", min=0, max=MAX_TERM_DAYS),
        Column("category", "string", identifier=True),
    ),
    unique=("product_id",),
)

TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (CUSTOMERS, QUESTIONNAIRE_RESPONSES, EVENTS, INTERVIEW_TAGS, RISK_REVIEWS, PRODUCTS)
}
