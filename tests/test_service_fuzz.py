"""Schemathesis over the live OpenAPI document of a real `suitability serve`: a bounded number
of generated requests per operation, with a valid key, and not one answer may be a 5xx
(client mistakes are 4xx; overload and deadlines are 503, which the server is not asked for
here)."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from live_server import running_server
from suitability.serving.keys import add_key

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]

#: Generated requests per operation (bounded, so CI stays fast; the probe ran 15,665).
EXAMPLES = 60
SEEN: Counter[str] = Counter()


@pytest.fixture(scope="module")
def served(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz")
    keys = out / "keys.json"
    token = add_key(keys, "compliance").token  # may call every operation
    with running_server(demo, str(keys), out, workers=2) as server:
        yield server, token
    assert server.log_text().count("Traceback") == 0
    assert SEEN["5xx"] == 0, SEEN


@pytest.fixture(scope="module")
def api(served):
    server, _ = served
    return schemathesis.openapi.from_url(f"{server.url}/docs.json")


def test_no_generated_request_gets_a_server_error(served, api):
    # Schemathesis's own pytest plugin does not run under this pytest; its strategies do.
    server, token = served
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 7  # six prediction routes and the audit lookup

    for operation in operations:

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def exercise(case) -> None:
            response = case.call(base_url=server.url, headers=headers)
            SEEN["cases"] += 1
            SEEN["5xx"] += response.status_code >= 500
            SEEN[f"{response.status_code // 100}xx"] += 1
            case.validate_response(response, checks=[not_a_server_error])

        exercise()
    print(f"schemathesis: {dict(SEEN)}")
