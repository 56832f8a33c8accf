"""The service's OpenAPI document, as the matching service's developers and generated clients
read it: who we are, the bearer key, every status each route answers with its body, typed
answers, the specs' vocabularies as enums (so they follow a YAML change), the time rules and the
examples in `serving/examples/`.

BentoML's generated document is the base (so a new endpoint still appears); `api_document`
rewrites it and is pure; `DocumentedService` installs it as the service's `openapi_spec`, which
both `GET /docs.json` and `bentoml build` read, computed once per process.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bentoml
import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from suitability.data.schema import (
    CUSTOMERS,
    EVENTS,
    INTERVIEW_TAGS,
    QUESTIONNAIRE_RESPONSES,
    CompleteGroups,
    Ordered,
    References,
    RequiredWhen,
    TableSchema,
)
from suitability.serving import responses
from suitability.serving.guard import AUDIT_PREFIX, PUBLIC_PATHS, REQUEST_ID
from suitability.serving.requests import (
    FUTURE_SKEW_SECONDS,
    MAX_ANSWERS,
    MAX_BATCH,
    MAX_EVENTS,
    MAX_TAGS,
    BatchBundles,
    BatchSuitability,
    CustomerBundle,
    SuitabilityRequest,
    vocabularies,
)
from suitability.specs import Specs

OPENAPI_VERSION = "3.1.0"  # pydantic's schemas are JSON Schema 2020-12 (`type: null`)
SECURITY_SCHEME = "apiKey"
_REF = "#/components/schemas/{model}"

#: Each prediction route: its request body, its answer and the example file it shows.
ROUTES: dict[str, tuple[type[BaseModel], type[BaseModel], str]] = {
    "/risk_level": (CustomerBundle, responses.RiskLevelAnswer, "risk_level"),
    "/churn": (CustomerBundle, responses.ChurnAnswer, "churn"),
    "/suitability": (SuitabilityRequest, responses.SuitabilityAnswer, "suitability"),
    "/risk_level/batch": (BatchBundles, responses.RiskLevelBatchAnswer, "risk_level"),
    "/churn/batch": (BatchBundles, responses.ChurnBatchAnswer, "churn"),
    "/suitability/batch": (BatchSuitability, responses.SuitabilityBatchAnswer, "suitability"),
}
AUDIT_ROUTE = f"{AUDIT_PREFIX}{{request_id}}"

#: Where each raw table's records sit in a request body.
_COMPONENTS: dict[str, TableSchema] = {
    "Profile": CUSTOMERS,
    "Answer": QUESTIONNAIRE_RESPONSES,
    "Event": EVENTS,
    "Tag": INTERVIEW_TAGS,
}

#: What each refusal means (the body is always `ErrorBody`).
_STATUSES: dict[int, str] = {
    400: (
        "The body breaks its contract. `detail` names each problem: `{field, rule}` from our "
        "checks (vocabularies, times, rules across records), or `{type, loc, msg}` from the "
        "request schema. Values are never repeated."
    ),
    401: "No key, or a key that is unknown, expired or revoked.",
    403: "This key's role may not use this route.",
    404: "No audit record with this request id.",
    413: "The body is larger than the service's limit.",
    415: "The body is not JSON (`Content-Type: application/json`).",
    500: "An unexpected fault of the service (logged; nothing was audited).",
    503: (
        "At capacity, past the deadline, or the keys file cannot be read: nothing was decided "
        "or audited; retry after `Retry-After` seconds."
    ),
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`."}},
    503: {
        "Retry-After": {
            "schema": {"type": "integer"},
            "description": "Seconds to wait (sent when at capacity or past the deadline).",
        }
    },
}
_PREDICTION_STATUSES = (400, 401, 403, 413, 415, 500, 503)
_AUDIT_STATUSES = (401, 403, 404, 500, 503)

#: Calendar days: every month's days but 29 February, which only leap years have.
_MONTH_DAY = r"((0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
_LEAP_DAY = r"(19(7[26]|8[048]|9[26])|20([02468][048]|[13579][26]))-02-29"
#: Naive local times, to the second or finer, from 1970 (the feature kernel's range): what
#: the data keeps and the service accepts, so that a client or a generator sees the shape.
_LOCAL_TIME = (
    rf"^((19[7-9]\d|20\d{{2}})-{_MONTH_DAY}|{_LEAP_DAY})"
    r"T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?$"
)
_DATE = (
    rf"^((19|20)\d{{2}}-{_MONTH_DAY}"
    r"|(19([02468][48]|[2468]0|[13579][26])|20([02468][048]|[13579][26]))-02-29)$"
)
_TIME_RULE = (
    "Platform-local time without a UTC offset (YYYY-MM-DDTHH:MM:SS), from 1970-01-01 and not "
    "after the time the request arrives."
)

_DESCRIPTION = """\
Risk category (C1–C5), churn risk and product suitability for one customer, or up to \
{max_batch} in one call, each with at most four reasons in Chinese and English, the model \
versions and rule version used, a hash of the feature vector, and a request id under which the \
answer is audited.

**Keys.** Every route except the probes, `/metrics` and this document needs \
`Authorization: Bearer <key>`. Keys are made with `suitability keys add`; the `matching` role \
may call the prediction routes, the `compliance` role may also read `/audit/{{request_id}}`.

**Times.** Every time is platform-local ({time_zone}) **without** a UTC offset \
(`2026-06-16T13:17:44`); a time with an offset is refused rather than shifted. No time may be \
after the moment the request arrives (more than {skew} s of clock skew is refused). `as_of` \
(default: now) is the time the answer is for: facts after it are ignored, and it must not be \
before `profile.registered_at`.

**What to send.** The profile, the questionnaire submissions (a submission answers every \
question of its version), the events of the last {window} days (older ones change nothing) and \
the interview tags. Allowed values come from the platform's specs and are listed as enums below. \
Limits per bundle: {answers:,} answers, {events:,} events, {tags:,} tags; bodies over \
{body:,} bytes are refused. Personal fields (name, ID number, phone) are optional, masked on \
arrival and never stored or answered unmasked.

**Refusals** are JSON `{{"error": …, "detail": […]}}` with a 4xx for a client mistake; a 5xx \
only for the service's own faults or load (503 with `Retry-After`).
"""


def api_document(
    base: Mapping[str, Any],
    specs: Specs,
    examples: Mapping[str, Mapping[str, Any]],
    *,
    version: str,
    time_zone: str,
    max_body_bytes: int,
    window_days: int,
    contact: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """BentoML's generated document (`base`), rewritten: info, the bearer scheme on every
    guarded route, typed request and answer schemas with the specs' vocabularies and the time
    rules, every status with its body, and `examples` (by name: risk_level, churn,
    suitability) on their routes."""
    doc = copy.deepcopy(dict(base))
    doc["openapi"] = OPENAPI_VERSION
    doc["info"] = {
        "title": "suitability",
        "version": version,
        "summary": "Know your investor: risk category, churn risk and product suitability.",
        "description": _DESCRIPTION.format(
            max_batch=MAX_BATCH,
            time_zone=time_zone,
            skew=FUTURE_SKEW_SECONDS,
            window=window_days,
            answers=MAX_ANSWERS,
            events=MAX_EVENTS,
            tags=MAX_TAGS,
            body=max_body_bytes,
        ),
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    }
    if contact:
        doc["info"]["contact"] = dict(contact)
    doc["servers"] = [{"url": "/", "description": "This service"}]
    doc["tags"] = [
        {"name": "Service APIs", "description": "Answers for the matching service."},
        {"name": "Audit", "description": "What was answered, for compliance officers."},
        {"name": "Infrastructure", "description": "Probes and metrics; no key needed."},
    ]
    doc["components"] = {
        "schemas": component_schemas(specs),
        "securitySchemes": {
            SECURITY_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key from `suitability keys add`.",
            }
        },
    }
    paths = doc["paths"]
    for route, (request, answer, example) in ROUTES.items():
        operation = paths[route]["post"]
        operation.pop("x-bentoml-name", None)
        paths[route]["post"] = _prediction(
            operation, request, answer, examples.get(example), route.endswith("/batch")
        )
    paths[AUDIT_ROUTE]["get"] = _audit(paths[AUDIT_ROUTE]["get"])
    for route, item in paths.items():
        for method, operation in item.items():
            if route in PUBLIC_PATHS:
                operation["tags"] = ["Infrastructure"]
                operation["security"] = []
            elif "security" not in operation:
                raise ValueError(f"{method.upper()} {route} is guarded but not documented")
    return doc


def component_schemas(specs: Specs) -> dict[str, Any]:
    """Every request and answer model's JSON schema, with the specs' vocabularies as enums,
    each table's rules in its fields' descriptions, and naive local times."""
    requests = [CustomerBundle, SuitabilityRequest, BatchBundles, BatchSuitability]
    answers = [answer for _, answer, _ in ROUTES.values()]
    _, defs = models_json_schema(
        [(m, "validation") for m in requests]
        + [(m, "serialization") for m in (*answers, responses.ErrorBody, responses.AuditRecord)],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = defs["$defs"]
    vocabulary = vocabularies(specs)
    labels = _labels(specs)
    for component, table in _COMPONENTS.items():
        properties = schemas[component]["properties"]
        for column in table.columns:
            if column.name not in properties:
                continue
            target = _string_schema(properties[column.name])
            key = f"{table.name}.{column.name}"
            if key in vocabulary:
                names = labels.get(key) or {v: None for v in sorted(vocabulary[key])}
                target["enum"] = [v for v in names if v in vocabulary[key]]
                target.pop("pattern", None)
                target.pop("minLength", None)
                target.pop("maxLength", None)
                if labels.get(key):
                    _describe(properties[column.name], _label_list(labels[key]))
            if column.type == "timestamp":
                _local_time(target)
                _describe(properties[column.name], _TIME_RULE)
            if column.type == "date":
                target["pattern"] = _DATE
            if column.pii:
                _describe(properties[column.name], "Personal data: optional, masked on arrival.")
        for rule in table.rules:
            text = _rule_text(rule, specs)
            if text is not None and rule.column in properties:
                _describe(properties[rule.column], text)
            if isinstance(rule, RequiredWhen):
                schemas[component].setdefault("allOf", []).append(_required_when(rule, specs))
    schemas["Answer"]["anyOf"] = _answer_options(specs)
    for bundle in ("CustomerBundle", "SuitabilityRequest"):
        as_of = schemas[bundle]["properties"]["as_of"]
        _local_time(_string_schema(as_of))
        _describe(
            as_of,
            "The time the answer is for (default: now); facts after it are ignored. "
            + _TIME_RULE
            + " Not before profile.registered_at.",
        )
    _describe(schemas["Profile"]["properties"]["registered_at"], "Not after `as_of`.")
    return schemas


def _prediction(
    operation: dict[str, Any],
    request: type[BaseModel],
    answer: type[BaseModel],
    example: Mapping[str, Any] | None,
    batch: bool,
) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": {"$ref": _REF.format(model=request.__name__)}}
    if example is not None:
        value = {"requests": [dict(example)]} if batch else dict(example)
        media["examples"] = {"synthetic": {"summary": "A synthetic customer", "value": value}}
    description = " ".join((operation.get("description") or "").split())
    return {
        "tags": ["Service APIs"],
        "summary": description.split(". ")[0].rstrip("."),
        "description": description,
        "operationId": operation["operationId"].split("__")[-1],
        "security": [{SECURITY_SCHEME: []}],
        "requestBody": {"required": True, "content": {"application/json": media}},
        "responses": {
            "200": {
                "description": "The answer (audited before it is sent).",
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model=answer.__name__)}}
                },
            },
            **_errors(_PREDICTION_STATUSES),
        },
    }


def _audit(operation: dict[str, Any]) -> dict[str, Any]:
    operation = dict(operation)
    for parameter in operation.get("parameters", ()):
        if parameter.get("name") == "request_id":
            parameter["schema"] = {"type": "string", "pattern": REQUEST_ID}
            parameter["description"] = "The `request_id` of an answer."
    operation.update(
        tags=["Audit"],
        description="The audit record of one answer, by the `request_id` it carried. "
        "Needs a key of the `compliance` role.",
        security=[{SECURITY_SCHEME: []}],
        responses={
            "200": {
                "description": "The record.",
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model="AuditRecord")}}
                },
            },
            **_errors(_AUDIT_STATUSES),
        },
    )
    return operation


def _errors(statuses: tuple[int, ...]) -> dict[str, Any]:
    out = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": _STATUSES[status],
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}},
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        out[str(status)] = response
    return out


def _string_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null member of a nullable field's schema (the field's own schema otherwise)."""
    for member in schema.get("anyOf", ()):
        if member.get("type") != "null":
            return member
    return schema


def _describe(schema: dict[str, Any], text: str) -> None:
    old = schema.get("description")
    schema["description"] = f"{old} {text}" if old else text


def _local_time(schema: dict[str, Any]) -> None:
    # RFC 3339's date-time (OpenAPI's `format: date-time`) requires an offset; ours refuse one.
    schema.pop("format", None)
    schema["pattern"] = _LOCAL_TIME


def _labels(specs: Specs) -> dict[str, dict[str, Any]]:
    """The labelled vocabularies (code -> object with zh and en), in the specs' order."""
    return {
        "customers.gender": dict(specs.profile.genders),
        "customers.city_tier": dict(specs.profile.city_tiers),
        "customers.income_band": dict(specs.profile.income_bands),
        "customers.channel_preference": dict(specs.behaviour.channels),
        "events.event_type": dict(specs.behaviour.event_types),
        "events.channel": dict(specs.behaviour.channels),
        "interview_tags.tag": dict(specs.tags.by_id),
    }


def _label_list(labels: Mapping[str, Any]) -> str:
    return "; ".join(f"`{code}` {label.en} ({label.zh})" for code, label in labels.items()) + "."


def _required_when(rule: RequiredWhen, specs: Specs) -> dict[str, Any]:
    """`rule` as JSON Schema: where `when` is one of the values, `column` is present and not
    null."""
    return {
        "if": {"properties": {rule.when: {"enum": sorted(rule.values(specs))}}},
        "then": {"required": [rule.column], "properties": {rule.column: {"not": {"type": "null"}}}},
    }


def _rule_text(rule: Any, specs: Specs) -> str | None:
    if isinstance(rule, RequiredWhen):
        values = ", ".join(sorted(rule.values(specs)))
        return f"Required when {rule.when} is {values}."
    if isinstance(rule, Ordered):
        return f"Rule: {rule.rule}."
    if isinstance(rule, CompleteGroups):
        return f"Rule: {rule.rule} (rows sharing {', '.join(rule.group[1:])})."
    if isinstance(rule, References):
        return None
    return None  # Combination: stated exactly by `Answer`'s anyOf


def _answer_options(specs: Specs) -> list[dict[str, Any]]:
    """One alternative per question of each questionnaire version: its id and its options."""
    return [
        {
            "title": f"{version} {question.id}: {question.text.en}",
            "properties": {
                "questionnaire_version": {"const": version},
                "question_id": {"const": question.id},
                "answer": {
                    "enum": [o.id for o in question.options],
                    "description": "; ".join(f"`{o.id}` {o.en} ({o.zh})" for o in question.options),
                },
            },
        }
        for version, questionnaire in specs.questionnaires.items()
        for question in questionnaire.questions
    ]


# --- examples -------------------------------------------------------------------------------------

#: Personal fields the examples leave out: the document is public, and a realistic-looking
#: name or ID number in it would be copied into tickets and tests.
_EXAMPLE_OMITS = ("name", "id_number", "phone")


def read_examples(folder: Path) -> dict[str, dict[str, Any]]:
    """The request examples in `folder` (`serving/examples/`) by name, without personal
    fields; none when the folder is absent (an installed service without the project)."""
    out = {}
    for name in ("risk_level", "churn", "suitability"):
        path = folder / f"{name}.json"
        if not path.is_file():
            continue
        body = json.loads(path.read_text(encoding="utf-8"))
        body["profile"] = {k: v for k, v in body["profile"].items() if k not in _EXAMPLE_OMITS}
        out[name] = body
    return out


# --- the BentoML service class ----------------------------------------------------------------


class Document(dict[str, Any]):
    """The finished document; `asdict()` is what BentoML's `/docs.json` view calls."""

    def asdict(self) -> dict[str, Any]:
        return dict(self)


# `bentoml build` writes the document with `yaml.dump`, whose representers match exact types.
yaml.add_representer(Document, lambda dumper, doc: dumper.represent_dict(dict(doc)))


class DocumentedService(bentoml.Service):  # type: ignore[type-arg]
    """A BentoML service whose OpenAPI document is `api_document`'s, computed once."""

    @functools.cached_property
    def openapi_spec(self) -> Document:  # type: ignore[override]
        from suitability.serving.bodies import DEFAULT_WINDOW_DAYS
        from suitability.settings import get_settings
        from suitability.specs import load_specs

        settings = get_settings()
        document = api_document(
            super().openapi_spec.asdict(),
            load_specs(),
            read_examples(settings.project_dir / "serving" / "examples"),
            version=importlib.metadata.version("suitability"),
            time_zone=settings.time_zone,
            max_body_bytes=settings.max_body_bytes,
            window_days=DEFAULT_WINDOW_DAYS,
            contact=contact_of(settings),
        )
        return Document(document)


def contact_of(settings: Any) -> dict[str, str]:
    """The API document's contact, from the settings (`SUITABILITY_API_CONTACT_*`)."""
    contact = {"name": settings.api_contact_name}
    if settings.api_contact_email:
        contact["email"] = settings.api_contact_email
    if settings.api_contact_url:
        contact["url"] = settings.api_contact_url
    return contact
