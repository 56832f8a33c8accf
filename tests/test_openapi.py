"""The service's OpenAPI document without a server: valid OpenAPI 3.1, ours (not BentoML's
boilerplate), every guarded route behind the bearer scheme with every status it answers, enums
that follow the specs, time patterns that accept exactly the calendar, and examples that obey
their own schemas. What the live service answers against it: tests/test_service_fuzz.py."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

from suitability.serving.openapi import (
    _DATE,
    _LOCAL_TIME,
    ROUTES,
    api_document,
    read_examples,
)
from suitability.specs import load_specs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "serving" / "examples"


@pytest.fixture(scope="module")
def base() -> dict:
    """BentoML's own document for the service (what `api_document` rewrites)."""
    from bentoml import Service

    from suitability.serving.service import Suitability

    return Service.openapi_spec.fget(Suitability).asdict()  # the undecorated property


def document(base: dict, specs=None, examples=None) -> dict:
    return api_document(
        base,
        specs or load_specs(ROOT / "features"),
        read_examples(EXAMPLES) if examples is None else examples,
        version="9.9.9",
        time_zone="Asia/Shanghai",
        max_body_bytes=4_000_000,
        window_days=1095,
    )


def test_the_served_document_is_the_rewritten_one_and_valid_openapi():
    from suitability.serving.service import Suitability

    served = Suitability.openapi_spec.asdict()
    validate(served)  # raises on any violation of the OpenAPI 3.1 schema
    assert served["openapi"] == "3.1.0"
    info = served["info"]
    assert info["title"] == "suitability"
    assert info["version"] == importlib.metadata.version("suitability")
    assert info["contact"]["name"] and "BentoML" not in json.dumps(info)
    assert "without** a UTC offset" in info["description"]
    assert Suitability.openapi_spec is Suitability.openapi_spec  # computed once
    # what `bentoml build` writes: a plain YAML mapping, not a pickled Python object
    assert "!!python" not in yaml.dump(Suitability.openapi_spec)


def test_guarded_routes_need_the_bearer_key_and_document_every_status(base):
    doc = document(base)
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `suitability keys add`.",
    }
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for route, (request, answer, _) in ROUTES.items():
        operation = doc["paths"][route]["post"]
        assert operation["security"] == [{"apiKey": []}], route
        assert set(operation["responses"]) == {
            "200",
            "400",
            "401",
            "403",
            "413",
            "415",
            "500",
            "503",
        }
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{answer.__name__}"}
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{request.__name__}"}
        for status in ("400", "401", "403", "413", "415", "500", "503"):
            content = operation["responses"][status]["content"]["application/json"]
            assert content["schema"] == error, (route, status)
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
        assert "Retry-After" in operation["responses"]["503"]["headers"]
    audit = doc["paths"]["/audit/{request_id}"]["get"]
    assert audit["security"] == [{"apiKey": []}] and "422" not in audit["responses"]
    assert {"200", "401", "403", "404"} <= set(audit["responses"])
    for probe in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert doc["paths"][probe]["get"]["security"] == []
    leftovers = {"InvalidArgument", "NotFound", "InternalServerError", "HTTPValidationError"}
    assert not leftovers & set(doc["components"]["schemas"])
    assert not any(name.endswith("IODescriptor") for name in doc["components"]["schemas"])


def test_answer_and_error_schemas_are_closed_and_typed(base):
    schemas = document(base)["components"]["schemas"]
    risk = schemas["RiskLevel"]
    assert risk["additionalProperties"] is False
    assert risk["properties"]["predicted_level"]["enum"] == ["C1", "C2", "C3", "C4", "C5"]
    decision = schemas["Decision"]["properties"]["decision"]
    assert decision["enum"] == ["allow", "allow_with_warning", "deny", "reassess"]
    detail = json.dumps(schemas["ErrorBody"]["properties"]["detail"])
    assert "RequestProblem" in detail and "SchemaProblem" in detail


def _enum(schemas: dict, component: str, field: str) -> list[str]:
    prop = schemas[component]["properties"][field]
    member = next((m for m in prop.get("anyOf", [prop]) if m.get("type") != "null"), prop)
    return member["enum"]


def test_every_vocabulary_is_an_enum_from_the_specs(base):
    specs = load_specs(ROOT / "features")
    schemas = document(base, specs)["components"]["schemas"]
    assert _enum(schemas, "Event", "event_type") == list(specs.behaviour.event_types)
    assert _enum(schemas, "Event", "channel") == list(specs.behaviour.channels)
    assert _enum(schemas, "Event", "product_risk") == ["R1", "R2", "R3", "R4", "R5"]
    assert _enum(schemas, "Tag", "tag") == list(specs.tags.by_id)
    assert _enum(schemas, "Profile", "gender") == list(specs.profile.genders)
    assert _enum(schemas, "Profile", "city_tier") == list(specs.profile.city_tiers)
    assert _enum(schemas, "Profile", "income_band") == list(specs.profile.income_bands)
    assert _enum(schemas, "Profile", "channel_preference") == list(specs.behaviour.channels)
    assert _enum(schemas, "Answer", "question_id") == sorted(specs.question_ids)
    assert _enum(schemas, "Answer", "questionnaire_version") == list(specs.questionnaires)
    # each question's own options, exactly
    alternatives = schemas["Answer"]["anyOf"]
    assert len(alternatives) == sum(len(q.questions) for q in specs.questionnaires.values())
    first = specs.questionnaires["RQ-2026.1"].questions[0]
    option = next(a for a in alternatives if a["properties"]["question_id"] == {"const": first.id})
    assert option["properties"]["answer"]["enum"] == [o.id for o in first.options]
    # labels in both languages, and the rules across fields
    assert "`login` login (登录)" in schemas["Event"]["properties"]["event_type"]["description"]
    assert "Required when event_type is deposit, invest" in json.dumps(schemas["Event"])
    monetary = schemas["Event"]["allOf"][0]
    assert set(monetary["if"]["properties"]["event_type"]["enum"]) == set(
        specs.behaviour.monetary_event_types
    )
    assert monetary["then"]["required"] == ["amount"]


def test_the_enums_follow_a_change_of_the_specs(base, tmp_path):
    features = tmp_path / "features"
    shutil.copytree(ROOT / "features", features)
    path = features / "behaviour.yaml"
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec["channels"]["wechat"] = {"zh": "微信", "en": "WeChat"}
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    schemas = document(base, load_specs(features))["components"]["schemas"]
    assert "wechat" in _enum(schemas, "Event", "channel")
    assert "`wechat` WeChat (微信)" in schemas["Event"]["properties"]["channel"]["description"]


def test_time_patterns_accept_exactly_the_calendar():
    """Every real date from 1900 (times: from 1970, the features' range) to 2099 matches, and
    no impossible one (31 April, 29 February 2023 or 1900) does."""
    time = re.compile(_LOCAL_TIME.removesuffix("$") + r"\Z")
    day = re.compile(_DATE.removesuffix("$") + r"\Z")
    for year in range(1900, 2100):
        for month in range(1, 13):
            for d in range(1, 32):
                text = f"{year}-{month:02d}-{d:02d}"
                try:
                    dt.date(year, month, d)
                    real = True
                except ValueError:
                    real = False
                assert bool(day.match(text)) is real, text
                stamp = f"{text}T23:59:59"
                assert bool(time.match(stamp)) is (real and year >= 1970), stamp
    assert time.match("2026-06-16T13:17:44.123456")
    for offset in ("2026-06-16T13:17:44Z", "2026-06-16T13:17:44+08:00", "2026-06-16 13:17:44"):
        assert not time.match(offset), offset


def test_times_are_documented_without_an_offset(base):
    text = json.dumps(document(base)["components"]["schemas"])
    assert '"date-time"' not in text  # RFC 3339's date-time requires the offset we refuse
    for bundle in ("CustomerBundle", "SuitabilityRequest"):
        as_of = document(base)["components"]["schemas"][bundle]["properties"]["as_of"]
        assert "registered_at" in as_of["description"]
        assert as_of["anyOf"][0]["pattern"] == _LOCAL_TIME


def test_examples_sit_on_their_routes_obey_their_schemas_and_carry_no_personal_data(base):
    doc = document(base)
    for route, (request, _, _) in ROUTES.items():
        media = doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]
        value = media["examples"]["synthetic"]["value"]
        request.model_validate_json(json.dumps(value))  # strict: JSON mode, as served
        profiles = [r["profile"] for r in value.get("requests", [value])]
        assert all(not {"name", "id_number", "phone"} & set(p) for p in profiles), route
    raw = json.loads((EXAMPLES / "churn.json").read_text(encoding="utf-8"))
    assert raw["profile"].get("id_number")  # the file keeps them (the service masks them)
    for field in ("name", "id_number", "phone"):
        assert raw["profile"][field] not in json.dumps(doc, ensure_ascii=False)


def test_without_the_example_folder_the_document_has_no_examples(base, tmp_path):
    doc = document(base, examples=read_examples(tmp_path / "absent"))
    validate(doc)
    media = doc["paths"]["/churn"]["post"]["requestBody"]["content"]["application/json"]
    assert "examples" not in media


def test_the_contact_is_the_operators(base, monkeypatch):
    from suitability.serving.openapi import contact_of
    from suitability.settings import Settings

    monkeypatch.setenv("SUITABILITY_API_CONTACT_NAME", "Suitability desk")
    monkeypatch.setenv("SUITABILITY_API_CONTACT_EMAIL", "suitability@example.com")
    contact = contact_of(Settings())
    assert contact == {"name": "Suitability desk", "email": "suitability@example.com"}
    doc = api_document(
        base,
        load_specs(ROOT / "features"),
        {},
        version="1",
        time_zone="Asia/Shanghai",
        max_body_bytes=1,
        window_days=1,
        contact=contact,
    )
    validate(doc)
    assert doc["info"]["contact"]["email"] == "suitability@example.com"
