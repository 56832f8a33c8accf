"""Request checks beyond the JSON schema: vocabularies and times after arrival, with exact field
paths and rules, in single and batch bodies."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from suitability.serving.requests import (
    BatchSuitability,
    CustomerBundle,
    InvalidRequest,
    RequestContext,
    SuitabilityRequest,
    check_request,
    vocabularies,
)
from suitability.specs import load_specs

EXAMPLES = Path(__file__).resolve().parents[1] / "serving" / "examples"
NOW = datetime(2026, 10, 1, 12, 0, 0)
FUTURE = "must not be after the time the request arrived"


@pytest.fixture(scope="module")
def context() -> RequestContext:
    return RequestContext(vocabularies(load_specs()), NOW)


def body(name: str = "suitability") -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def problems(model: type, data: dict[str, Any], context: RequestContext) -> list[tuple[str, str]]:
    request = model.model_validate_json(json.dumps(data), strict=True)
    try:
        check_request(request, context)
    except InvalidRequest as exc:
        return [(p.field, p.rule) for p in exc.problems]
    return []


def test_the_examples_pass(context):
    assert problems(SuitabilityRequest, body(), context) == []
    assert problems(CustomerBundle, body("churn"), context) == []


def test_each_problem_is_named_by_its_exact_path_and_rule(context):
    data = body()
    data["events"][3]["event_type"] = "teleport"
    data["events"][5]["event_time"] = "2026-10-01T12:06:00"  # 6 minutes ahead: beyond the skew
    data["events"][6]["event_time"] = "2026-10-01T12:04:00"  # 4 minutes ahead: tolerated
    data["tags"][1]["tag"] = "no_such_tag"
    data["profile"]["gender"] = "X"
    data["as_of"] = "2027-01-01T00:00:00"
    found = dict(problems(SuitabilityRequest, data, context))
    assert set(found) == {
        "events[3].event_type",
        "events[5].event_time",
        "tags[1].tag",
        "profile.gender",
        "as_of",
    }
    assert found["events[5].event_time"] == FUTURE
    assert found["as_of"] == FUTURE
    assert found["events[3].event_type"].startswith("value not allowed (expected one of: ")
    assert "invest" in found["events[3].event_type"]
    assert "teleport" not in json.dumps(found) and "no_such_tag" not in json.dumps(found)


def test_batch_items_are_named_by_their_position(context):
    good, bad = body(), body()
    bad["answers"][0]["submitted_at"] = "2030-01-01T00:00:00"
    bad["events"][0]["channel"] = "carrier_pigeon"
    found = problems(BatchSuitability, {"requests": [good, bad]}, context)
    assert sorted(field for field, _ in found) == [
        "requests[1].answers[0].submitted_at",
        "requests[1].events[0].channel",
    ]


def test_birth_dates_are_dates_not_arrival_checked(context):
    data = body()
    data["profile"]["birth_date"] = "1990-01-01"
    assert problems(SuitabilityRequest, data, context) == []


def test_whole_numbers_are_integers_and_nothing_else_is(context):
    """JSON Schema counts 64.0 as an integer (the document says `integer`): it is taken as 64;
    a fraction, a numeric string or a boolean still is not an integer."""
    data = body()
    data["product"]["term_days"] = 90.0
    data["events"][0]["term_days"] = 30.0
    request = SuitabilityRequest.model_validate_json(json.dumps(data), strict=True)
    assert request.product.term_days == 90 and type(request.product.term_days) is int
    assert request.events[0].term_days == 30 and type(request.events[0].term_days) is int
    for wrong in (90.5, "90", True):
        data["product"]["term_days"] = wrong
        with pytest.raises(ValueError, match="term_days"):
            SuitabilityRequest.model_validate_json(json.dumps(data), strict=True)


def test_a_product_without_a_category_is_accepted(context):
    data = body()
    data["product"].pop("category", None)
    request = SuitabilityRequest.model_validate_json(json.dumps(data), strict=True)
    assert request.product.category is None
    data["product"]["category"] = ""
    with pytest.raises(ValueError, match="category"):
        SuitabilityRequest.model_validate_json(json.dumps(data), strict=True)
