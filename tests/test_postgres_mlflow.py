"""The team setup's MLflow store: tracking and registry in PostgreSQL
(`MLFLOW_TRACKING_URI=postgresql://…`). Both models trained from the demo's training tables,
promoted, loaded by alias as the service loads them, served over HTTP, and documented in a model
dossier, all against a throwaway PostgreSQL server, with a password in the URI that is never
printed; an unreachable server is one clear line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import psycopg
import pytest
from mlflow import MlflowClient
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
#: The throwaway server trusts local connections, so it accepts (and ignores) any password:
#: one in the URI shows that no output ever carries it.
SECRET = "team-s3cret-pw"


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert SECRET not in result.output
    return result.output


def _last_json(output: str) -> dict | list:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture()
def restored_store() -> Iterator[None]:
    """MLflow's process-wide store as it was before the test (the server goes away after it)."""
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri(), dict(tracking._STORE)
    yield
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])
    tracking._STORE.update(before[2])


def test_train_promote_serve_and_report_against_postgresql(
    demo, postgres, tmp_path, monkeypatch, specs, restored_store, caplog
):
    postgres.create_database("mlflow_team")
    uri = postgres.dsn("mlflow_team").replace("postgres@", f"postgres:{SECRET}@")
    artifacts = tmp_path / "shared-artifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(tracking.ARTIFACT_ROOT_ENV, str(artifacts))
    monkeypatch.chdir(tmp_path)
    logged = {}
    for name, table in (("churn", "churn_training"), ("risk-level", "risk_level_training")):
        output = _ok(["train", name, "--features", str(demo / f"{table}.parquet"), "--json"])
        logged[name] = _last_json(output)
        assert logged[name]["tracking_uri"].startswith("postgresql+psycopg://postgres:***@")
        assert _last_json(_ok(["promote", name, "--json"]))["promoted"]
    listed = _last_json(_ok(["models", "list", "--json"]))
    assert {m["name"] for m in listed} >= {"suitability-churn", "suitability-risk-level"}

    # What the CLI wrote is in PostgreSQL, as MLflow's own client reads it back.
    tracking.use_store()
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri()
    assert mlflow.get_tracking_uri().startswith("postgresql+psycopg://")
    client = MlflowClient()
    for name, run in logged.items():
        registered = f"suitability-{name}"
        experiment = client.get_experiment_by_name(f"suitability-{name}")
        assert experiment.artifact_location == (artifacts / f"suitability-{name}").as_uri()
        runs = client.search_runs([experiment.experiment_id])
        assert [r.info.run_id for r in runs] == [run["run_id"]]
        assert runs[0].data.metrics  # metrics and params are rows of the server's tables
        versions = client.search_model_versions(f"name = '{registered}'")
        assert [(int(v.version), v.run_id) for v in versions] == [(1, run["run_id"])]
        assert int(client.get_model_version_by_alias(registered, "champion").version) == 1
    with psycopg.connect(postgres.dsn("mlflow_team")) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM registered_models")}
    assert names == {"suitability-churn", "suitability-risk-level"}
    for name, run in logged.items():  # the artifacts are where the variable said
        assert (artifacts / f"suitability-{name}" / run["run_id"] / "artifacts").is_dir()

    # The service loads by alias from the checked portable form.
    explainer = tracking.load_explainer("risk-level@champion", specs, portable=True)
    assert explainer.ref.alias == "champion" and explainer.ref.version == 1
    assert explainer.ref.run_id == logged["risk-level"]["run_id"]

    dossier = tmp_path / "risk.en.html"
    _ok(["report", "model", "risk-level@champion", "--out", str(dossier), "--lang", "en"])
    assert dossier.stat().st_size > 10_000
    reports = client.list_artifacts(logged["risk-level"]["run_id"], "reports")
    assert [Path(a.path).name for a in reports] == ["risk.en.html"]

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
    log = server.log_text()
    assert "postgresql+psycopg://postgres:***@" in log and SECRET not in log
    # psycopg's note on the pipeline MLflow aborts (and recovers from) is not shown to users.
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")]


def test_an_unreachable_postgresql_store_is_one_clear_line_without_the_password(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://team:s3cret-pw@127.0.0.1:9/mlflow")
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 2
    assert "cannot reach the MLflow store at postgresql://team:***@127.0.0.1:9/mlflow" in (
        result.output
    )
    assert "s3cret-pw" not in result.output and "Traceback" not in result.output


def test_an_unreachable_store_leaves_the_current_one_in_place(restored_store):
    before = mlflow.get_tracking_uri()
    with pytest.raises(ValueError, match=r"127\.0\.0\.1:9\b") as raised:
        tracking.use_store("postgres://team:s3cret-pw@127.0.0.1:9/mlflow")
    assert "s3cret-pw" not in str(raised.value) and "team:***@" in str(raised.value)
    assert mlflow.get_tracking_uri() == before


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@db:5432/mlflow", "postgresql+psycopg://u@db:5432/mlflow"),
        ("postgres://u:p@db/mlflow?sslmode=require", "postgresql+psycopg://u:p@db/mlflow?sslmode=require"),
        ("postgresql+psycopg://u@db/mlflow", "postgresql+psycopg://u@db/mlflow"),
    ],
)  # fmt: skip
def test_postgresql_uris_are_handed_to_mlflow_with_the_installed_driver(given, expected):
    assert tracking.postgres_store_uri(given) == expected


def test_a_driver_that_is_not_installed_is_refused_by_name():
    with pytest.raises(ValueError, match="'psycopg2' is not installed") as raised:
        tracking.postgres_store_uri("postgresql+psycopg2://u:s3cret-pw@db/mlflow")
    assert "s3cret-pw" not in str(raised.value)


def test_psycopgs_note_on_an_aborted_pipeline_is_not_shown(caplog):
    tracking._quiet_logging()
    logging.getLogger("psycopg").warning(
        "error ignored terminating %s: %s", "<psycopg.Pipeline [INERROR]>", "pipeline aborted"
    )
    logging.getLogger("psycopg").warning("any other notice")
    assert [r.getMessage() for r in caplog.records] == ["any other notice"]
