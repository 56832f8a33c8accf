"""Request bodies of the HTTP service as strict pydantic models, generated from the raw tables'
declared columns (`data.schema`), so a request and a data file obey one contract.

Strict means: JSON types are not coerced (an ID-number string in a numeric field is refused),
unknown keys are refused, NaN and ±inf are refused, values outside the specs' vocabularies and
bounds are refused, and times after the request's arrival are refused. Errors name the field and
the rule and never echo the value (it may be personal data). Rules that span records (complete
questionnaire submissions, answers among a question's options, amounts present for monetary
events …) are the data contracts' own, applied when the bundle is turned into features.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
)
from pydantic_core import PydanticCustomError

from suitability.data.contracts import allowed_rule as _allowed_rule
from suitability.data.schema import (
    CUSTOMERS,
    EVENTS,
    IDENTIFIER,
    INTERVIEW_TAGS,
    PRODUCTS,
    QUESTIONNAIRE_RESPONSES,
    Column,
    TableSchema,
)
from suitability.features.online import Bundle
from suitability.specs import R_LEVELS, Specs

#: Upper bounds that keep one request's work bounded (a year of events is a few hundred).
MAX_EVENTS = 20_000
MAX_ANSWERS = 2_000
MAX_TAGS = 2_000
MAX_BATCH = 256
MAX_TEXT = 256
#: Clock skew tolerated before a time counts as "in the future".
FUTURE_SKEW_SECONDS = 300

# hide_input_in_errors: a refused value (maybe an ID number) must not reach the server log either.
_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True, hide_input_in_errors=True)


def vocabularies(specs: Specs) -> dict[str, frozenset[str]]:
    """The allowed values of every column that has a vocabulary, as `table.column` (computed
    once per service, not per record)."""
    return {
        f"{schema.name}.{column.name}": column.allowed(specs)
        for schema in (CUSTOMERS, QUESTIONNAIRE_RESPONSES, EVENTS, INTERVIEW_TAGS)
        for column in schema.columns
        if column.allowed is not None
    }


class RequestContext:
    """What validation needs besides the body: the vocabularies (from the specs) and the
    arrival time, naive in the service's time zone like every time in the data."""

    def __init__(self, vocabulary: Mapping[str, frozenset[str]], now: datetime) -> None:
        self.vocabulary = vocabulary
        self.now = now

    def as_dict(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary, "now": self.now}


def local_now(time_zone: str) -> datetime:
    """The current time in `time_zone`, without the zone (the data's convention)."""
    return datetime.now(ZoneInfo(time_zone)).replace(tzinfo=None)


# --- record models, one per raw table -------------------------------------------------------------


def _naive_time(value: datetime | date) -> datetime | date:
    """Times carry no zone in the data; a time sent with an offset is refused rather than
    silently shifted."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        raise PydanticCustomError(
            "time_zone", "must be a local time without a UTC offset (ISO 8601 YYYY-MM-DDTHH:MM:SS)"
        )
    return value


def _whole_number(value: Any) -> Any:
    """JSON has one number type and JSON Schema counts 64.0 as an integer; a whole float is
    taken as the integer it is (a fraction, a string or a boolean still is not)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_TYPES: dict[str, type] = {
    "string": str,
    "timestamp": datetime,
    "date": date,
    "float": float,
    "int": int,
}


def _field(column: Column) -> tuple[Any, Any]:
    kind = _TYPES[column.type]
    constraints: dict[str, Any] = {}
    validators: list[Any] = []
    if column.type == "string":
        constraints.update(min_length=1, max_length=MAX_TEXT)
    if column.type == "float":
        constraints["allow_inf_nan"] = False
    if column.min is not None:
        constraints["ge"] = column.min
    if column.max is not None:
        constraints["le"] = int(column.max) if column.type == "int" else column.max
    if column.identifier:
        constraints["pattern"] = IDENTIFIER
    if column.type in ("timestamp", "date"):
        validators.append(AfterValidator(_naive_time))
    if column.type == "int":  # runs before the int check and its bounds
        validators.append(BeforeValidator(_whole_number))
    annotation: Any = Annotated[kind, Field(**constraints), *validators]
    if column.nullable:
        return annotation | None, None
    return annotation, ...


def _record_model(schema: TableSchema, name: str, doc: str) -> type[BaseModel]:
    fields = {
        c.name: _field(c) for c in schema.columns if c.name != "customer_id" or schema is CUSTOMERS
    }
    model = create_model(name, __config__=_STRICT, __doc__=doc, **fields)  # type: ignore[call-overload]
    return model


Profile = _record_model(
    CUSTOMERS,
    "Profile",
    "The customer's profile. Name, ID number and phone are optional and masked on arrival.",
)
Answer = _record_model(
    QUESTIONNAIRE_RESPONSES,
    "Answer",
    "One answer of a questionnaire submission (a submission answers every question).",
)
Event = _record_model(EVENTS, "Event", "One behavioural event.")
Tag = _record_model(INTERVIEW_TAGS, "Tag", "One tag an advisor recorded after an interview.")


# --- request bodies ------------------------------------------------------------------------------


class CustomerBundle(BaseModel):
    """Everything known about one customer: profile, questionnaire answers (the latest
    submission at least), events (as far back as the longest feature window, 1095 days by
    default; older ones are ignored) and interview tags. `as_of` (default: now) is the time the
    answer is for; facts after it are ignored, facts after now are refused."""

    model_config = _STRICT

    profile: Profile  # type: ignore[valid-type]
    answers: Annotated[list[Answer], Field(max_length=MAX_ANSWERS)] = []  # type: ignore[valid-type]
    events: Annotated[list[Event], Field(max_length=MAX_EVENTS)] = []  # type: ignore[valid-type]
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = []  # type: ignore[valid-type]
    as_of: Annotated[datetime | None, AfterValidator(_naive_time)] = None


class ProductRef(BaseModel):
    """The product considered: its risk grade decides; id, category and term are recorded."""

    model_config = _STRICT

    product_id: _field(PRODUCTS.column("product_id"))[0]  # type: ignore[valid-type]
    risk_level: Literal[R_LEVELS]  # type: ignore[valid-type]
    category: _field(PRODUCTS.column("category"))[0] | None = None  # type: ignore[valid-type]
    term_days: _field(PRODUCTS.column("term_days"))[0] | None = None  # type: ignore[valid-type]


class SuitabilityRequest(CustomerBundle):
    """A customer bundle, the product considered, and who initiated the purchase: the investor
    (a request above their category may go ahead with a warning) or the platform (a
    recommendation above their category is never allowed)."""

    product: ProductRef
    initiated_by: Literal["investor", "platform"]


def _batch(model: type[BaseModel], name: str) -> type[BaseModel]:
    return create_model(
        name,
        __config__=_STRICT,
        __doc__=f"Up to {MAX_BATCH} requests answered in one call, in order.",
        requests=(Annotated[list[model], Field(min_length=1, max_length=MAX_BATCH)], ...),  # type: ignore[valid-type]
    )


BatchBundles = _batch(CustomerBundle, "BatchBundles")
BatchSuitability = _batch(SuitabilityRequest, "BatchSuitability")


# --- errors ---------------------------------------------------------------------------------------


class RequestProblem(BaseModel):
    """One thing wrong with a request: where (a JSON path such as `events[3].amount`) and
    which rule it breaks. The offending value is never repeated."""

    field: str
    rule: str


class InvalidRequest(ValueError):
    """A request that breaks its contract; `status` is the HTTP status to answer with."""

    def __init__(self, problems: list[RequestProblem], status: int = 400) -> None:
        self.problems = problems
        self.status = status
        super().__init__("; ".join(f"{p.field}: {p.rule}" for p in problems[:5]))

    def to_json(self) -> dict[str, Any]:
        count = len(self.problems)
        return {
            "error": f"invalid request: {count} problem{'s' if count != 1 else ''}",
            "detail": [p.model_dump() for p in self.problems],
        }


def check_request(request: BaseModel, context: RequestContext) -> None:
    """The rules a JSON schema cannot state: values within the specs' vocabularies and no time
    after the request arrived. Works on any request model (single or batch); raises
    `InvalidRequest` naming every problem."""
    items = getattr(request, "requests", None)
    pairs = (
        [(f"requests[{i}].", r) for i, r in enumerate(items)]
        if items is not None
        else [("", request)]
    )
    problems = [
        p
        for where, item in pairs
        for p in value_problems(item, Bundle.of_request(item), context, where)
    ]
    if problems:
        raise InvalidRequest(problems)


_FUTURE = "must not be after the time the request arrived"
_PARTS = (
    ("profile", CUSTOMERS),
    ("answers", QUESTIONNAIRE_RESPONSES),
    ("events", EVENTS),
    ("tags", INTERVIEW_TAGS),
)


def value_problems(
    request: CustomerBundle, bundle: Bundle, context: RequestContext, where: str = ""
) -> list[RequestProblem]:
    """`check_request` for one bundle, read column by column off its typed values (`bundle`,
    from `Bundle.of_request(request)`): the as-of time, then each record's fields in order."""
    limit = context.now + timedelta(seconds=FUTURE_SKEW_SECONDS)
    problems: list[RequestProblem] = []
    if request.as_of is not None and request.as_of > limit:
        problems.append(RequestProblem(field=f"{where}as_of", rule=_FUTURE))
    for part, schema in _PARTS:
        if part == "profile":
            columns = {k: [v] for k, v in bundle.profile.items()}
        else:
            columns = getattr(bundle, part).columns
        found: list[tuple[int, int, int, str, str]] = []
        for position, column in enumerate(schema.columns):
            values = columns.get(column.name)
            if values is None:
                continue
            if column.type == "timestamp":
                found += [
                    (i, position, 0, column.name, _FUTURE)
                    for i, v in enumerate(values)
                    if v is not None and v > limit
                ]
            allowed = context.vocabulary.get(f"{schema.name}.{column.name}")
            if allowed is not None:
                rule = _allowed_rule(allowed)
                found += [
                    (i, position, 1, column.name, rule)
                    for i, v in enumerate(values)
                    if v is not None and v not in allowed
                ]
        for i, _, _, name, rule in sorted(found):
            path = f"{where}{part}.{name}" if part == "profile" else f"{where}{part}[{i}].{name}"
            problems.append(RequestProblem(field=path, rule=rule))
    return problems
