"""The prediction service through its ASGI app (BentoML's own app, in-process): the answers the
matching service gets, the 4xx for every kind of client mistake, keys and roles, the audit
trail, and parity with the batch pipeline for 100 customers."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from live_server import kill_all, running_server
from suitability.explain.assessment import feature_hash
from suitability.serving import responses
from suitability.serving.audit import AuditLog, open_audit
from suitability.serving.keys import add_key
from suitability.settings import get_settings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]

EXAMPLES = Path(__file__).resolve().parents[1] / "serving" / "examples"
BODY_LIMIT = 4_000_000


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    return {
        "path": str(path),
        "matching": add_key(path, "matching").token,
        "compliance": add_key(path, "compliance").token,
    }


@pytest.fixture(scope="module")
def client(demo, keys, tmp_path_factory) -> Iterator[TestClient]:
    audit = tmp_path_factory.mktemp("audit") / "audit.sqlite"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
        patch.setenv("SUITABILITY_KEYS_FILE", keys["path"])
        patch.setenv("SUITABILITY_AUDIT_DB", str(audit))
        patch.setenv("SUITABILITY_MAX_BODY_BYTES", str(BODY_LIMIT))
        get_settings.cache_clear()
        from suitability.serving.service import Suitability

        with TestClient(Suitability.to_asgi()) as test_client:
            yield test_client
    get_settings.cache_clear()


def post(client: TestClient, path: str, body: Any, key: str | None, **headers: str):
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    headers.setdefault("Content-Type", "application/json")
    data = body if isinstance(body, bytes | str) else json.dumps(body, ensure_ascii=False)
    return client.post(path, content=data, headers=headers)


# --- answers ----------------------------------------------------------------------------------


def _check_reasons(reasons: list[dict]) -> None:
    assert 1 <= len(reasons) <= 4
    for reason in reasons:
        assert reason["text"]["zh"] and reason["text"]["en"]
        assert reason["direction"] in ("up", "down")


def _check_common(body: dict, models: set[str]) -> None:
    assert len(body["request_id"]) == 32
    assert len(body["feature_hash"]) == 64
    assert body["rule_version"] == "SR-2026.2"
    assert {m["model"] for m in body["models"]} == models
    for m in body["models"]:
        assert m["alias"] == "champion" and m["version"] >= 1 and m["run_id"]


def test_each_endpoint_answers_its_example_with_reasons_and_provenance(client, keys):
    risk = post(client, "/risk_level", example("risk_level"), keys["matching"])
    assert risk.status_code == 200, risk.text
    body = risk.json()
    responses.RiskLevelAnswer.model_validate(body)  # the documented answer, no more, no less
    _check_common(body, {"risk-level"})
    assert body["risk_level"]["predicted_level"] in ("C1", "C2", "C3", "C4", "C5")
    assert sum(body["risk_level"]["probabilities"].values()) == pytest.approx(1.0)
    _check_reasons(body["risk_level"]["reasons"])
    assert body["mismatch"]["direction"] in ("none", "understated", "overstated")

    churn = post(client, "/churn", example("churn"), keys["matching"])
    assert churn.status_code == 200, churn.text
    body = churn.json()
    responses.ChurnAnswer.model_validate(body)
    _check_common(body, {"churn"})
    assert 0.0 < body["churn"]["p_churn"] < 1.0
    _check_reasons(body["churn"]["reasons"])

    decision = post(client, "/suitability", example("suitability"), keys["matching"])
    assert decision.status_code == 200, decision.text
    body = decision.json()
    responses.SuitabilityAnswer.model_validate(body)
    _check_common(body, {"risk-level", "churn"})
    assert body["decision"]["decision"] in ("allow", "allow_with_warning", "deny", "reassess")
    assert body["decision"]["rule_version"] == "SR-2026.2"
    assert body["product"]["product_id"] == example("suitability")["product"]["product_id"]


def test_personal_data_is_masked_in_responses_and_the_audit_log(client, keys):
    sent = example("suitability")
    raw = [sent["profile"][k] for k in ("name", "phone", "id_number")]
    answer = post(client, "/suitability", sent, keys["matching"])
    assert answer.status_code == 200
    for value in raw:
        assert value not in answer.text
    assert answer.json()["customer"]["phone"].count("*") == 4
    record = client.get(
        f"/audit/{answer.json()['request_id']}",
        headers={"Authorization": f"Bearer {keys['compliance']}"},
    )
    assert record.status_code == 200
    for value in raw:
        assert value not in record.text


def test_the_audit_record_holds_what_was_answered(client, keys):
    answer = post(client, "/suitability", example("suitability"), keys["matching"]).json()
    record = client.get(
        f"/audit/{answer['request_id']}",
        headers={"Authorization": f"Bearer {keys['compliance']}"},
    ).json()
    responses.AuditRecord.model_validate(record)
    assert record["endpoint"] == "/suitability"
    assert record["caller_role"] == "matching"
    assert record["feature_hash"] == answer["feature_hash"]
    assert record["rule_version"] == answer["rule_version"]
    assert record["decision"] == answer["decision"]["decision"]
    assert record["outputs"]["churn"]["p_churn"] == answer["churn"]["p_churn"]
    assert (
        record["outputs"]["risk_level"]["predicted_level"]
        == (answer["risk_level"]["predicted_level"])
    )
    assert [m["version"] for m in record["models"]] == [m["version"] for m in answer["models"]]
    assert record["reasons"]["churn"] == [r["text"] for r in answer["churn"]["reasons"]]


def test_batch_answers_in_order_each_with_its_own_audited_request_id(client, keys):
    one, two = example("churn"), example("churn")
    two["events"] = two["events"][: len(two["events"]) // 2]
    batch = post(client, "/churn/batch", {"requests": [one, two]}, keys["matching"])
    assert batch.status_code == 200, batch.text
    responses.ChurnBatchAnswer.model_validate(batch.json())
    results = batch.json()["results"]
    single = post(client, "/churn", one, keys["matching"]).json()
    assert results[0]["churn"]["p_churn"] == single["churn"]["p_churn"]
    assert results[0]["feature_hash"] == single["feature_hash"]
    assert results[1]["feature_hash"] != single["feature_hash"]
    ids = [r["request_id"] for r in results]
    assert ids == [f"{batch.json()['request_id']}-{i}" for i in range(2)]
    for request_id in ids:
        got = client.get(
            f"/audit/{request_id}", headers={"Authorization": f"Bearer {keys['compliance']}"}
        )
        assert got.status_code == 200


def test_a_large_batch_answers_what_single_calls_answer(client, keys, demo):
    """From `KERNEL_FROM` bundles on, a batch's features come from the batch kernel: every
    answer is still the single call's, field for field."""
    from suitability.data.io import read_customer_records
    from suitability.explain.assessment import KERNEL_FROM
    from suitability.explain.cases import default_as_of
    from suitability.serving.bodies import request_body

    data = demo / "data"
    as_of = default_as_of(data)
    customers = pd.read_parquet(data / "customers", columns=["customer_id", "registered_at"])
    ids = customers[customers["registered_at"] <= as_of]["customer_id"].head(KERNEL_FROM + 2)
    product = {"product_id": "P00001", "risk_level": "R3"}
    bodies = [
        request_body(
            read_customer_records(data, c), as_of, product=product, initiated_by="platform"
        )
        for c in ids
    ]
    batch = post(client, "/suitability/batch", {"requests": bodies}, keys["matching"])
    assert batch.status_code == 200, batch.text
    responses.SuitabilityBatchAnswer.model_validate(batch.json())
    for body, got in zip(bodies, batch.json()["results"], strict=True):
        single = post(client, "/suitability", body, keys["matching"])
        assert single.status_code == 200, single.text
        want = single.json()
        assert {**got, "request_id": None} == {**want, "request_id": None}


# --- keys and roles ---------------------------------------------------------------------------


def test_missing_or_invalid_keys_get_401_and_the_wrong_role_403(client, keys):
    body = example("churn")
    assert post(client, "/churn", body, None).status_code == 401
    assert post(client, "/churn", body, "suit_not-a-key").status_code == 401
    wrong = post(client, "/churn", body, None, Authorization=f"Basic {keys['matching']}")
    assert wrong.status_code == 401
    audit = client.get("/audit/anything", headers={"Authorization": f"Bearer {keys['matching']}"})
    assert audit.status_code == 403
    assert post(client, "/churn", body, keys["compliance"]).status_code == 200
    missing = client.get(
        "/audit/no-such-id", headers={"Authorization": f"Bearer {keys['compliance']}"}
    )
    assert missing.status_code == 404


def test_an_unknown_path_or_method_with_a_valid_key_is_404_or_405(client, keys):
    """Asked with a valid key, a path the service does not have is 404 (before any body check:
    a POST without JSON is not 415), a known path with another method 405 with Allow; without
    a key, 401 either way (the endpoints are not revealed)."""
    auth = {"Authorization": f"Bearer {keys['matching']}"}
    for method in ("GET", "POST", "PUT", "DELETE"):
        answer = client.request(method, "/nope", headers=auth)
        assert answer.status_code == 404, (method, answer.text)
        assert "no endpoint /nope" in answer.json()["error"] and "/suitability" in answer.text
    assert post(client, "/churn/batch/extra", example("churn"), keys["matching"]).status_code == 404
    wrong = client.get("/churn", headers=auth)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert client.get("/nope").status_code == 401
    compliance = {"Authorization": f"Bearer {keys['compliance']}"}
    assert client.post("/audit/x", headers=compliance).status_code == 405
    assert client.get("/audit/", headers=compliance).status_code == 404
    for odd in ("/audit/%0A%C3%85", "/audit/a%20b", "/audit/" + "f" * 200):
        answer = client.get(odd, headers=compliance)
        assert answer.status_code == 404, odd
        assert answer.json() == {"error": "no audit record with this request id"}


def test_keys_never_reach_the_logs(client, keys, caplog):
    caplog.set_level("DEBUG")
    post(client, "/churn", example("churn"), keys["matching"])
    post(client, "/churn", {"bad": 1}, keys["matching"])
    client.get("/audit/x", headers={"Authorization": f"Bearer {keys['matching']}"})
    assert keys["matching"] not in caplog.text


def test_probes_and_openapi_need_no_key(client):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    document = client.get("/docs.json").json()
    for path in ("/risk_level", "/churn", "/suitability", "/risk_level/batch"):
        assert path in document["paths"]
    request = document["components"]["schemas"]["SuitabilityRequest"]
    assert {"initiated_by", "events", "product"} <= set(request["properties"])
    assert document["info"]["title"] == "suitability"


# --- bad input ----------------------------------------------------------------------------------


def test_oversized_bodies_get_413_and_other_content_types_415(client, keys):
    big = example("churn")
    big["events"] = big["events"] * (BODY_LIMIT // len(json.dumps(big["events"])) + 2)
    assert post(client, "/churn", big, keys["matching"]).status_code == 413
    body = json.dumps(example("churn"))
    for content_type in ("text/plain", "application/vnd.bentoml+pickle", "application/x-pickle"):
        answer = post(client, "/churn", body, keys["matching"], **{"Content-Type": content_type})
        assert answer.status_code == 415, content_type


def _mutate(path: str, value: Any) -> dict[str, Any]:
    body = example("churn")
    *parents, last = path.split(".")
    target: Any = body
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return body


_DELETE = object()
ID_NUMBER = "110105199001011234"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("events.0.amount", ID_NUMBER, "events"),  # a string in a numeric field: not coerced
        ("events.0.amount", -5.0, "events"),
        ("events.0.event_type", "teleport", "events"),
        ("events.0.channel", "carrier_pigeon", "events"),
        ("events.0.product_risk", "R9", "events"),
        ("events.0.term_days", 1.5, "events"),
        ("events.0.event_time", "2999-01-01T00:00:00", "events"),
        ("events.0.event_time", "yesterday", "events"),
        ("events.0.event_time", "2026-01-01T00:00:00+08:00", "events"),
        ("events.0.secret", 1, "events"),
        ("tags.0.tag", "no_such_tag", "tags"),
        ("answers.0.question_id", "Q_unknown", "answers"),
        ("answers.0.answer", "not-an-option", "answers"),
        ("profile.gender", "X", "profile"),
        ("profile.birth_date", 19800101, "profile"),
        ("profile.customer_id", 12345, "profile"),
        ("profile.registered_at", _DELETE, "profile"),
        ("as_of", "2999-01-01T00:00:00", "as_of"),
        ("as_of", "1990-01-01T00:00:00", "as_of"),  # before the customer registered
        ("unknown_top_level", True, "unknown_top_level"),
    ],
)
def test_each_client_mistake_is_a_400_naming_the_field_without_the_value(
    client, keys, path, value, field
):
    answer = post(client, "/churn", _mutate(path, value), keys["matching"])
    assert answer.status_code == 400, answer.text
    text = answer.text
    assert field in text
    if isinstance(value, str) and len(value) > 3:
        assert value not in text


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'{"profile": {"customer_id": "C1", "amount": NaN}}',
        b'{"profile": 1e999}',
        b"",
    ],
)
def test_malformed_bodies_are_400_never_500(client, keys, raw):
    answer = post(client, "/churn", raw, keys["matching"])
    assert answer.status_code == 400, answer.text


def test_non_finite_amounts_are_refused(client, keys):
    body = json.dumps(example("churn")).replace('"amount": ', '"amount": NaN, "x": ', 1)
    assert post(client, "/churn", body, keys["matching"]).status_code == 400
    body = example("churn")
    text = json.dumps(body)
    first = text.index('"amount": ') + len('"amount": ')
    end = text.index(",", first)
    infinite = text[:first] + "1e999" + text[end:]
    answer = post(client, "/churn", infinite, keys["matching"])
    assert answer.status_code == 400 and "finite" in answer.text


def test_a_bad_request_leaves_no_audit_record(client, keys, tmp_path):
    from suitability.serving.audit import AuditLog

    before = len(AuditLog(get_settings().audit_db))
    post(client, "/churn", _mutate("tags.0.tag", "no_such_tag"), keys["matching"])
    batch = {"requests": [example("churn"), _mutate("tags.0.tag", "no_such_tag")]}
    answer = post(client, "/churn/batch", batch, keys["matching"])
    assert answer.status_code == 400
    assert "requests[1].tags[0].tag" in answer.text
    incomplete = example("churn")
    incomplete["answers"] = incomplete["answers"][1:]
    answer = post(
        client, "/churn/batch", {"requests": [example("churn"), incomplete]}, keys["matching"]
    )
    assert answer.status_code == 400
    assert "requests[1].answers" in answer.text
    assert len(AuditLog(get_settings().audit_db)) == before


# --- parity with the batch pipeline -----------------------------------------------------------


def test_http_features_and_predictions_equal_the_batch_pipelines_for_100_customers(
    client, keys, demo, specs, tmp_path, monkeypatch
):
    from suitability import tracking
    from suitability.data.io import read_customer_records
    from suitability.explain.cases import default_as_of
    from suitability.features.builder import build_features
    from suitability.serving.bodies import request_body

    data = demo / "data"
    as_of = default_as_of(data)
    build_features(data, [as_of], tmp_path / "features.parquet", specs)
    batch = pd.read_parquet(tmp_path / "features.parquet").sort_values("customer_id")
    batch = batch.head(100).reset_index(drop=True)
    assert len(batch) == 100

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
    tracking.use_store()
    risk = tracking.load_estimator("risk-level@champion").model  # the training-time artifact
    churn = tracking.load_estimator("churn@champion").model
    expected_risk = risk.predict_frame(batch)
    expected_churn = churn.predict_proba(batch)
    names = [*risk.feature_names, *churn.feature_names]

    bodies = [request_body(read_customer_records(data, cid), as_of) for cid in batch["customer_id"]]
    answers: list[dict] = []
    for start in range(0, len(bodies), 20):
        got = post(
            client,
            "/risk_level/batch",
            {"requests": bodies[start : start + 20]},
            keys["matching"],
        )
        assert got.status_code == 200, got.text
        answers += got.json()["results"]
    churned = post(client, "/churn/batch", {"requests": bodies[:50]}, keys["matching"]).json()
    churned = (
        churned["results"]
        + post(client, "/churn/batch", {"requests": bodies[50:]}, keys["matching"]).json()[
            "results"
        ]
    )

    for i, values in enumerate(batch.to_dict("records")):
        assert answers[i]["customer"]["customer_id"] == values["customer_id"]
        assert answers[i]["feature_hash"] == feature_hash(values, risk.feature_names), i
        assert churned[i]["feature_hash"] == feature_hash(values, churn.feature_names), i
        assert answers[i]["risk_level"]["predicted_level"] == expected_risk["level"].iloc[i]
        got = [answers[i]["risk_level"]["probabilities"][c] for c in risk.classes]
        want = expected_risk[[f"p_{c}" for c in risk.classes]].iloc[i].to_numpy()
        assert np.array_equal(np.asarray(got), want), i
        assert churned[i]["churn"]["p_churn"] == expected_churn[i], i
    assert names  # both models' features were compared


# --- the real server: start-up, binding, metrics, durability under SIGKILL ----------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_2xx_is_in_the_audit_log_after_the_server_is_killed_mid_load(
    demo, keys, tmp_path, backend, request
):
    # Two workers: two processes append to the one audit log, each durably.
    target: str = str(tmp_path / "audit.sqlite")
    env = {}
    if backend == "postgresql":
        postgres = request.getfixturevalue("postgres")
        name = f"served_{os.getpid()}_{int(time.time())}"
        postgres.create_database(name)
        target = env["SUITABILITY_AUDIT_URL"] = postgres.dsn(name)
    with running_server(demo, keys["path"], tmp_path, workers=2, env=env) as server:
        server.wait_logged("Service suitability initialized", 2)  # both workers take load
        body = json.dumps(example("churn"))
        headers = {
            "Authorization": f"Bearer {keys['matching']}",
            "Content-Type": "application/json",
        }
        answered: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=10) as http:
                while not stop.is_set():
                    try:
                        got = http.post(f"{server.url}/churn", content=body, headers=headers)
                    except httpx.HTTPError:
                        return  # the server is gone
                    if got.status_code == 200:
                        answered.append(got.json()["request_id"])

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(answered) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
        kill_all(server.process)  # mid-load: requests are in flight
        stop.set()
        for t in threads:
            t.join(timeout=30)
    server_log = server.log_text()
    assert f"127.0.0.1:{server.port}" in server_log  # bound to this machine only
    assert "with 2 worker(s)" in server_log
    assert server_log.count("Service suitability initialized") == 2
    assert keys["matching"] not in server_log
    assert 'bentoml_service_request_total{endpoint="/churn"' in metrics
    assert len(answered) >= 40
    stored = open_audit(target, create=False)
    missing = [r for r in answered if stored.get(r) is None]
    print(f"{backend}: {len(answered)} acknowledged, {len(answered) - len(missing)} found")
    assert not missing, f"{len(missing)} answered requests are not in the audit log"
    for request_id in answered:
        record = stored.get(request_id)
        assert record is not None and record.feature_hash and record.outputs["churn"]


def test_serve_hands_its_options_to_bentoml(demo, keys, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from suitability.cli import app

    started: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(
        os, "environ", dict(os.environ)
    )  # the command sets variables for its server
    monkeypatch.setattr(os, "execv", lambda _, argv: started.append((argv, dict(os.environ))))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
    monkeypatch.delenv("SUITABILITY_WORKERS", raising=False)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        audit = tmp_path / "a.sqlite"
        result = runner.invoke(
            app,
            ["serve", "--keys", keys["path"], "--port", "3999", "--workers", "3",
             "--audit-db", str(audit)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["serve", "--keys", keys["path"]])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["serve", "--keys", keys["path"], "--workers", "0"])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "--workers" in result.output
        monkeypatch.setenv("SUITABILITY_WORKERS", "none")
        get_settings.cache_clear()
        result = runner.invoke(app, ["serve", "--keys", keys["path"]])
        assert result.exit_code == 2 and result.exception is not None
        assert "SUITABILITY_WORKERS" in result.output and "Traceback" not in result.output
    finally:
        get_settings.cache_clear()
    (argv, env), (_, default_env) = started
    assert argv[argv.index("--port") + 1] == "3999"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert env["SUITABILITY_WORKERS"] == "3"
    assert env["SUITABILITY_AUDIT_DB"] == str(audit.resolve())
    assert default_env["SUITABILITY_WORKERS"] == str(len(os.sched_getaffinity(0)))


def test_workers_default_to_the_usable_cpus_and_must_be_positive(monkeypatch):
    from pydantic import ValidationError

    from suitability.settings import Settings, SettingsError

    monkeypatch.delenv("SUITABILITY_WORKERS", raising=False)
    assert Settings().server_workers == len(os.sched_getaffinity(0))
    monkeypatch.setenv("SUITABILITY_WORKERS", "3")
    assert Settings().server_workers == 3
    monkeypatch.setenv("SUITABILITY_WORKERS", "0")
    with pytest.raises(ValidationError, match="workers"):
        Settings()
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="SUITABILITY_WORKERS: Input should be greater"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_serve_refuses_to_start_without_the_models_alias(demo, keys, monkeypatch):
    from typer.testing import CliRunner

    from suitability.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
    result = CliRunner().invoke(app, ["serve", "--keys", keys["path"], "--alias", "nightly"])
    assert result.exit_code == 2
    assert "nightly" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["serve", "--keys", str(Path(keys["path"]).parent / "no")])
    assert result.exit_code == 2 and "Traceback" not in result.output


# --- under attack: ids, personal data, bounds, duplicate keys, docs, deadlines, logs -------------


def _audited() -> int:
    return len(AuditLog(get_settings().audit_db))


@pytest.mark.parametrize("opaque", ["C13000000001", "13812345678", "110105194912310021"])
def test_ids_that_look_like_phone_or_id_numbers_are_answered_and_audited(client, keys, opaque):
    body = example("suitability")
    body["profile"]["customer_id"] = opaque
    body["product"]["product_id"] = opaque
    body["product"]["category"] = opaque
    answer = post(client, "/suitability", body, keys["matching"])
    assert answer.status_code == 200, answer.text
    record = AuditLog(get_settings().audit_db).get(answer.json()["request_id"])
    assert record is not None and record.customer_id == opaque
    assert record.outputs["product"]["product_id"] == opaque
    # In a batch, such an item is one answer among the others, not a failure of all.
    batch = {"requests": [example("suitability"), body]}
    answers = post(client, "/suitability/batch", batch, keys["matching"])
    assert answers.status_code == 200, answers.text
    assert [r["customer"]["customer_id"] for r in answers.json()["results"]][1] == opaque


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("profile.customer_id", "zhang.san@example.com"),
        ("profile.customer_id", "张三"),
        ("profile.customer_id", "Li Lei"),
        ("product.product_id", "a@b.cn"),
        ("product.category", "王五 13812345678"),
    ],
)
def test_personal_data_in_an_identifier_field_is_refused_naming_the_field(
    client, keys, where, value
):
    body = example("suitability")
    part, name = where.split(".")
    body[part][name] = value
    before = _audited()
    answer = post(client, "/suitability", body, keys["matching"])
    assert answer.status_code == 400, answer.text
    assert [part, name] in [d["loc"] for d in answer.json()["detail"]]
    assert value not in answer.text
    assert _audited() == before


def test_the_id_number_in_answers_is_a_pseudonym_that_gives_nothing_away(client, keys):
    sent = example("suitability")
    raw = sent["profile"]["id_number"]
    answer = post(client, "/suitability", sent, keys["matching"])
    assert answer.status_code == 200
    shown = answer.json()["customer"]["id_number"]
    assert shown.startswith("idh_") and len(shown) == 28
    # Not one run of four of its digits is in any text of the answer (the birth date beside it
    # rebuilds nothing). Numbers are the models' outputs: a contribution such as
    # -0.0936761576152103 may hold four of its digits by chance, but not eight.
    runs = {raw[i : i + 4] for i in range(len(raw) - 3)}
    texts = _strings(answer.json())
    assert not [t for t in texts if any(r in t for r in runs)]
    assert not any(raw[i : i + 8] in answer.text for i in range(len(raw) - 7))


def _strings(value: object) -> list[str]:
    """Every text (keys and values) of a JSON document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*value.keys(), *(t for v in value.values() for t in _strings(v))]
    if isinstance(value, list):
        return [t for v in value for t in _strings(v)]
    return []


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("events.0.amount", 2e16),  # the invest that turned a C5 into a C2
        ("events.0.amount", 230103199402031394),  # an ID number sent as an amount
        ("events.0.amount", 1.7e308),
        ("events.0.amount", 10_000_000_000.01),  # one cent above the bound
        ("events.0.term_days", 10**9),
        ("events.0.duration_s", 1e7),
    ],
)
def test_amounts_terms_and_durations_above_their_bounds_are_refused(client, keys, where, value):
    body = example("suitability")
    invest = next(i for i, e in enumerate(body["events"]) if e["event_type"] == "invest")
    path = where.replace(".0.", f".{invest}.")
    _, _, name = path.split(".")
    body["events"][invest][name] = value
    answer = post(client, "/suitability", body, keys["matching"])
    assert answer.status_code == 400, answer.text
    assert ["events", invest, name] in [d["loc"] for d in answer.json()["detail"]]


def test_an_amount_at_the_bound_is_accepted(client, keys):
    from suitability.data.schema import MAX_AMOUNT

    body = example("suitability")
    invest = next(i for i, e in enumerate(body["events"]) if e["event_type"] == "invest")
    body["events"][invest]["amount"] = MAX_AMOUNT
    body["product"]["term_days"] = 36_500
    answer = post(client, "/suitability", body, keys["matching"])
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"profile": {"customer_id": "C1", "customer_id": "C2"}}', "profile.customer_id"),
        ('{"as_of": "2026-01-01T00:00:00", "as_of": null, "profile": {}}', "as_of"),
        ('{"events": [{}, {"amount": 1, "amount": 2}], "profile": {}}', "events[1].amount"),
    ],
)
def test_duplicate_json_keys_are_refused(client, keys, raw, field):
    before = _audited()
    answer = post(client, "/churn", raw, keys["matching"])
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"] == [
        {"field": field, "rule": "must not repeat a key of its object"}
    ]
    assert _audited() == before


def test_the_docs_page_loads_nothing_from_anywhere_else(client):
    import re

    page = client.get("/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "http" not in policy
    assert "googletagmanager" not in page.text and "http" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) >= 2
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        assert client.get(asset).status_code == 200, asset
    assert client.get("/docs.json").status_code == 200


def test_a_request_past_its_deadline_is_neither_answered_nor_audited(client, keys, monkeypatch):
    from suitability.serving import service

    for verdicts in ([True], [False, True]):  # before scoring; after scoring, before the audit
        answers = iter(verdicts)
        monkeypatch.setattr(service, "_late", lambda _deadline, a=answers: next(a))
        before = _audited()
        answer = post(client, "/churn", example("churn"), keys["matching"])
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert "nothing was decided or audited" in answer.json()["error"]
        assert _audited() == before
    monkeypatch.undo()
    assert post(client, "/churn", example("churn"), keys["matching"]).status_code == 200


def test_a_client_mistake_is_one_info_line_without_a_traceback(client, keys, caplog):
    caplog.set_level("DEBUG")
    for bad in ({"profile": 3}, {"profile": {"customer_id": 7}}, [1, 2]):
        assert post(client, "/churn", bad, keys["matching"]).status_code == 400
    ours = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(ours) == 3
    assert all(r.levelname == "INFO" and r.exc_info is None for r in ours)
    assert not [r for r in caplog.records if r.levelno >= 40]
    assert "Traceback" not in caplog.text


def test_a_key_removed_from_the_file_stops_working_at_the_next_request(client, keys):
    from suitability.serving.keys import remove_key

    extra = add_key(keys["path"], "matching")
    assert post(client, "/churn", example("churn"), extra.token).status_code == 200
    remove_key(keys["path"], extra.key_id)
    assert post(client, "/churn", example("churn"), extra.token).status_code == 401
    assert post(client, "/churn", example("churn"), keys["matching"]).status_code == 200


# --- under attack, on the real server -----------------------------------------------------------


def _raw_post(port: int, headers: dict[str, str], size: int) -> tuple[int, bytes]:
    """Send headers announcing `size` bytes, then as much of the body as the server takes;
    returns how many body bytes went out and the start of the answer."""
    import socket

    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"POST /churn HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n{head}\r\n".encode()
        )
        sent, chunk = 0, b"x" * 65_536
        with contextlib.suppress(OSError):
            while sent < size:
                sent += s.send(chunk)
        answer = b""
        with contextlib.suppress(OSError):
            answer = s.recv(4096)
    return sent, answer


@pytest.fixture(scope="module")
def live(demo, keys, tmp_path_factory):
    """The real server with 2 workers that may each hold 2 requests."""
    out = tmp_path_factory.mktemp("live")
    with running_server(
        demo, keys["path"], out, workers=2, env={"SUITABILITY_MAX_IN_FLIGHT": "2"}
    ) as server:
        server.wait_logged("Service suitability initialized", 2)
        yield server


def test_a_revoked_key_stops_working_on_a_running_server(live, keys):
    from suitability.serving.keys import remove_key

    extra = add_key(keys["path"], "matching")
    url, body = f"{live.url}/churn", json.dumps(example("churn"))
    headers = {"Authorization": f"Bearer {extra.token}", "Content-Type": "application/json"}
    with httpx.Client(timeout=30) as http:
        assert http.post(url, content=body, headers=headers).status_code == 200
        remove_key(keys["path"], extra.key_id)
        # Every worker re-reads the file at its next request: not one more answer.
        statuses = [http.post(url, content=body, headers=headers).status_code for _ in range(20)]
    assert set(statuses) == {401}


def test_an_early_refusal_closes_the_connection_instead_of_reading_the_body(live, keys):
    size = 50_000_000
    json_type = {"Content-Type": "application/json"}
    for headers, status in (
        ({**json_type, "Authorization": f"Bearer {keys['matching']}"}, b" 413 "),
        (json_type, b" 401 "),
        ({"Authorization": f"Bearer {keys['matching']}", "Content-Type": "text/plain"}, b" 415 "),
    ):
        sent, answer = _raw_post(live.port, headers, size)
        assert status in answer.split(b"\r\n")[0], answer[:80]
        assert b"connection: close" in answer.lower()
        assert sent < size // 2, f"the server read {sent:,} of {size:,} bytes"


def test_overload_is_answered_503_at_once_and_only_answers_are_audited(live, keys):
    from concurrent.futures import ThreadPoolExecutor

    body = json.dumps(example("churn"))
    headers = {"Authorization": f"Bearer {keys['matching']}", "Content-Type": "application/json"}
    audit = AuditLog(live.log.parent / "audit.sqlite")
    before = len(audit)

    def call(_: int) -> httpx.Response:
        with httpx.Client(timeout=60) as http:
            return http.post(f"{live.url}/churn", content=body, headers=headers)

    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(call, range(120)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    busy = [a for a in answers if a.status_code == 503]
    assert busy, "40 concurrent callers against 2 x 2 places: some must be turned away"
    assert all(a.headers["retry-after"] == "1" for a in busy)
    answered = [a.json()["request_id"] for a in answers if a.status_code == 200]
    assert answered
    assert len(audit) - before == len(answered)
    assert all(audit.get(r) is not None for r in answered)


def test_the_server_log_holds_no_traceback_for_client_mistakes(live, keys):
    headers = {"Authorization": f"Bearer {keys['matching']}", "Content-Type": "application/json"}
    with httpx.Client(timeout=30) as http:
        for bad in ('{"profile": 3}', "[1, 2]", '{"profile": {"customer_id": 7}}'):
            assert http.post(f"{live.url}/churn", content=bad, headers=headers).status_code == 400
    log = live.log_text()
    assert "Traceback" not in log and "[ERROR]" not in log
    assert log.count("refused: ") >= 3


def test_workers_die_with_their_supervisor_whatever_kills_it(demo, keys, tmp_path):
    import signal
    import socket

    import psutil

    with running_server(demo, keys["path"], tmp_path, workers=2) as server:
        workers = psutil.Process(server.process.pid).children(recursive=True)
        assert len(workers) >= 2
        # Each worker in a session of its own (as BentoML starts them): killing the group
        # reaches the supervisor only.
        assert all(os.getsid(w.pid) != os.getsid(server.process.pid) for w in workers)
        os.killpg(os.getpgid(server.process.pid), signal.SIGKILL)
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, f"{len(alive)} worker(s) outlived their supervisor"
        with socket.socket() as s:  # the port is free for a restart
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", server.port))
