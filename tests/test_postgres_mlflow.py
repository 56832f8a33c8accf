"""The team setup's MLflow store: tracking and registry in PostgreSQL
(`MLFLOW_TRACKING_URI=postgresql://…`). Both models trained from the demo's training tables,
promoted, loaded by alias as the service loads them, served over HTTP, and documented in a model
dossier, all against a throwaway PostgreSQL server; an unreachable one is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from live_server import running_server
from suitability import tracking
from suitability.cli import app
from suitability.serving.keys import add_key

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def test_train_promote_serve_and_report_against_postgresql(
    demo, postgres, tmp_path, monkeypatch, specs
):
    postgres.create_database("mlflow_team")
    uri = postgres.dsn("mlflow_team")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    for name, table in (("churn", "churn_training"), ("risk-level", "risk_level_training")):
        _ok(["train", name, "--features", str(demo / f"{table}.parquet")])
        promoted = json.loads(_ok(["promote", name, "--json"]).strip().splitlines()[-1])
        assert promoted["promoted"]
    listed = json.loads(_ok(["models", "list", "--json"]).strip().splitlines()[-1])
    assert {m["name"] for m in listed} >= {"suitability-churn", "suitability-risk-level"}

    tracking.use_store()
    assert tracking.mlflow.get_tracking_uri().startswith("postgresql+psycopg://")
    explainer = tracking.load_explainer("risk-level@champion", specs, portable=True)
    assert explainer.ref.alias == "champion" and explainer.ref.version == 1

    dossier = tmp_path / "risk.en.html"
    _ok(["report", "model", "risk-level@champion", "--out", str(dossier), "--lang", "en"])
    assert dossier.stat().st_size > 10_000

    keys = tmp_path / "keys.json"
    token = add_key(keys, "matching").token
    body = (Path(__file__).parents[1] / "serving" / "examples" / "churn.json").read_text()
    with running_server(
        demo, str(keys), tmp_path, workers=1, env={"MLFLOW_TRACKING_URI": uri}
    ) as server:
        answer = httpx.post(
            f"{server.url}/churn",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
    assert {m["model"] for m in answer.json()["models"]} == {"churn"}
    assert "postgresql" in server.log_text()


def test_an_unreachable_postgresql_store_is_one_clear_line_without_the_password(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://team:s3cret-pw@127.0.0.1:9/mlflow")
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code != 0
    assert "cannot reach the MLflow store at postgresql://team:***@127.0.0.1:9/mlflow" in (
        result.output
    )
    assert "s3cret-pw" not in result.output and "Traceback" not in result.output
