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

from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from suitability.data.schema import (
    CUSTOMERS,
    EVENTS,
    INTERVIEW_TAGS,
    QUESTIONNAIRE_RESPONSES,
    Column,
    TableSchema,
)
from suitability.specs import R_LEVELS, Specs

#: Upper bounds that keep one request's work bounded (a year of events is a few hundred).
MAX_EVENTS = 20_000
MAX_ANSWERS = 2_000
MAX_TAGS = 2_000
MAX_BATCH = 256
MAX_TEXT = 256
#: Clock skew tolerated before a time counts as "in the future".
FUTURE_SKEW_SECONDS = 300

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


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


def _allowed_rule(values: frozenset[str]) -> str:
    listed = sorted(values)
    shown = ", ".join(listed[:8]) + (f", … {len(listed)} in all" if len(listed) > 8 else "")
    return f"value not allowed (expected one of: {shown})"


def _vocabulary_check(key: str) -> Callable[[str | None, ValidationInfo], str | None]:
    def check(value: str | None, info: ValidationInfo) -> str | None:
        if value is None or info.context is None:
            return value
        allowed = info.context["vocabulary"][key]
        if value not in allowed:
            raise PydanticCustomError("not_allowed", _allowed_rule(allowed))
        return value

    return check


def _naive_time(value: datetime | date) -> datetime | date:
    """Times carry no zone in the data; a time sent with an offset is refused rather than
    silently shifted."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        raise PydanticCustomError(
            "time_zone", "must be a local time without a UTC offset (ISO 8601 YYYY-MM-DDTHH:MM:SS)"
        )
    return value


_TYPES: dict[str, type] = {
    "string": str,
    "timestamp": datetime,
    "date": date,
    "float": float,
    "int": int,
}


def _field(schema: TableSchema, column: Column) -> tuple[Any, Any]:
    kind = _TYPES[column.type]
    constraints: dict[str, Any] = {}
    validators: list[Any] = []
    if column.type == "string":
        constraints.update(min_length=1, max_length=MAX_TEXT)
    if column.type == "float":
        constraints["allow_inf_nan"] = False
    if column.min is not None:
        constraints["ge"] = column.min
    if column.type in ("timestamp", "date"):
        validators.append(AfterValidator(_naive_time))
    if column.allowed is not None:
        validators.append(AfterValidator(_vocabulary_check(f"{schema.name}.{column.name}")))
    annotation: Any = Annotated[kind, Field(**constraints), *validators]
    if column.nullable:
        return annotation | None, None
    return annotation, ...


def _record_model(schema: TableSchema, name: str, doc: str) -> type[BaseModel]:
    fields = {
        c.name: _field(schema, c)
        for c in schema.columns
        if c.name != "customer_id" or schema is CUSTOMERS
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


def _times(model: BaseModel) -> list[tuple[str, datetime]]:
    out = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, datetime):
            out.append((name, value))
    return out


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

    @model_validator(mode="after")
    def _nothing_from_the_future(self, info: ValidationInfo) -> CustomerBundle:
        if info.context is None:
            return self
        limit: datetime = info.context["now"] + timedelta(seconds=FUTURE_SKEW_SECONDS)
        problems: list[tuple[Any, ...]] = []
        if self.as_of is not None and self.as_of > limit:
            problems.append(("as_of",))
        for part in ("profile",):
            for name, value in _times(getattr(self, part)):
                if value > limit:
                    problems.append((part, name))
        for part in ("answers", "events", "tags"):
            for i, record in enumerate(getattr(self, part)):
                for name, value in _times(record):
                    if value > limit:
                        problems.append((part, i, name))
        if problems:
            raise FutureTimes(problems)
        return self


class FutureTimes(ValueError):
    """Times after the request arrived (raised inside validation, reported per field)."""

    def __init__(self, locations: list[tuple[Any, ...]]) -> None:
        super().__init__("must not be in the future")
        self.locations = locations


class ProductRef(BaseModel):
    """The product considered: its risk grade decides; id, category and term are recorded."""

    model_config = _STRICT

    product_id: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    risk_level: Literal[R_LEVELS]  # type: ignore[valid-type]
    category: Annotated[str, Field(max_length=MAX_TEXT)] = ""
    term_days: Annotated[int, Field(ge=0)] | None = None


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

    def __init__(self, problems: list[RequestProblem], status: int = 422) -> None:
        self.problems = problems
        self.status = status
        super().__init__("; ".join(f"{p.field}: {p.rule}" for p in problems[:5]))

    def to_json(self) -> dict[str, Any]:
        return {
            "error": "invalid request",
            "problems": [p.model_dump() for p in self.problems],
        }


def _path(location: tuple[Any, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(body)"


_RULES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "finite_number": "must be a finite number",
    "datetime_type": "must be an ISO 8601 time string",
    "datetime_parsing": "must be an ISO 8601 time (YYYY-MM-DDTHH:MM:SS)",
    "datetime_from_date_parsing": "must be an ISO 8601 time (YYYY-MM-DDTHH:MM:SS)",
    "date_type": "must be an ISO 8601 date string",
    "date_parsing": "must be an ISO 8601 date (YYYY-MM-DD)",
    "date_from_datetime_inexact": "must be a date without a time",
    "date_from_datetime_parsing": "must be an ISO 8601 date (YYYY-MM-DD)",
}


def _rule(error: Mapping[str, Any]) -> str:
    """pydantic's message, which states the rule without the input, or our wording."""
    kind = error["type"]
    if kind in _RULES:
        return _RULES[kind]
    if kind == "json_invalid":
        return "malformed JSON: " + str(error.get("ctx", {}).get("error", "cannot parse"))
    return str(error["msg"])


def parse_request(model: type[BaseModel], body: bytes | str, context: RequestContext) -> Any:
    """Validate a JSON body against `model`; raises `InvalidRequest` naming every problem."""
    try:
        return model.model_validate_json(body, strict=True, context=context.as_dict())
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            location = tuple(error["loc"])
            future = (error.get("ctx") or {}).get("error")
            if isinstance(future, FutureTimes):
                for where in future.locations:
                    problems.append(RequestProblem(field=_path(location + where), rule=str(future)))
                continue
            problems.append(RequestProblem(field=_path(location), rule=_rule(error)))
        raise InvalidRequest(problems) from None
