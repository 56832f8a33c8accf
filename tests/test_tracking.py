"""Tracking and registry tests on a throwaway SQLite MLflow store: what a training run logs, the
challenger → champion life cycle with its history, and the registry round trip of a model."""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import io
import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.types.schema import AnyType, DataType

from suitability import tracking
from suitability.models.flat import prepare_flat_table
from suitability.models.spec import ModelSpec, load_model_spec
from suitability.models.train import TrainingResult, train_on_flat_table
from suitability.specs import Specs

pytestmark = [
    pytest.mark.slow,
    # MLflow's SQL store, not ours: SQLAlchemy deprecates a loader strategy it uses.
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]

NAME = "suitability-churn-table"  # flat-table runs register under their own name
N_ROWS = 3000
SOURCE = {"path": "/data/churn.csv", "kind": "table"}


def _table(seed: int = 0) -> pd.DataFrame:
    """A churn table: churn follows a logistic of `a` and `b` (and a little of the city);
    `c` is noise; `d` is a number column with one typo, so preparing it leaves a warning."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=N_ROWS), rng.normal(size=N_ROWS)
    city = rng.choice(["north", "south", "east"], N_ROWS)
    logit = 1.5 * a - b + 0.5 * (city == "north")
    churned = rng.random(N_ROWS) < 1 / (1 + np.exp(-logit))
    d = rng.normal(size=N_ROWS).round(3).astype(str)
    d[7] = "abc"
    return pd.DataFrame(
        {
            "cid": [f"K{i:05d}" for i in range(N_ROWS)],
            "a": a,
            "b": b,
            "c": rng.integers(0, 10, N_ROWS),
            "d": d,
            "city": city,
            "churned": np.where(churned, "yes", "no"),
        }
    )


def _train(frame: pd.DataFrame, spec: ModelSpec) -> TrainingResult:
    flat = prepare_flat_table(frame, target="churned", id_column="cid", task="binary")
    return train_on_flat_table(flat, spec, id_column="cid")


def _quick(spec: ModelSpec, max_rounds: int, **params: object) -> ModelSpec:
    """Few rounds on one thread: LightGBM's OpenMP threads crawl on a busy test machine."""
    params = {**spec.params, "num_threads": 1, **params}
    # LightGBM alone: a worse challenger must stay worse (no linear candidate to rescue it)
    return spec.model_copy(
        update={"max_rounds": max_rounds, "params": params, "flat_candidates": ["lightgbm"]}
    )


@pytest.fixture(scope="module")
def churn_spec(specs: Specs) -> ModelSpec:
    return _quick(load_model_spec("churn", specs), 60)


@pytest.fixture(scope="module")
def good(churn_spec: ModelSpec) -> TrainingResult:
    return _train(_table(), churn_spec)


@pytest.fixture(scope="module")
def worse(churn_spec: ModelSpec) -> TrainingResult:
    """The same features, but a single stump: clearly worse on the same test rows."""
    return _train(_table(), _quick(churn_spec, 1, num_leaves=2))


@pytest.fixture(scope="module")
def other_features(churn_spec: ModelSpec) -> TrainingResult:
    """A model on other columns: its test split lacks what the champion reads."""
    frame = _table().rename(columns={"a": "a2", "b": "b2"}).drop(columns=["city", "c", "d"])
    return _train(frame, churn_spec)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh SQLite store for this module; MLflow's process-wide settings restored after."""
    folder = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        for name in (
            "MLFLOW_TRACKING_URI",
            "MLFLOW_REGISTRY_URI",
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
            "MLFLOW_DISABLE_TELEMETRY",
        ):
            patch.delenv(name, raising=False)
        patch.setattr(tracking, "_STORE", {"uri": None, "artifacts": None})
        uri = tracking.use_store(f"sqlite:///{folder}/mlflow.db")
        assert uri == mlflow.get_tracking_uri() == mlflow.get_registry_uri()
        yield folder
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def life(
    store: Path, good: TrainingResult, worse: TrainingResult, other_features: TrainingResult
) -> dict[str, object]:
    """One model's life, step by step; each test below checks a part of it."""
    steps: dict[str, object] = {}
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        _live(steps, good, worse, other_features)
    steps["stdout"] = stdout.getvalue()
    return steps


def _live(
    steps: dict[str, object],
    good: TrainingResult,
    worse: TrainingResult,
    other_features: TrainingResult,
) -> None:
    steps["first"] = tracking.log_training(good, source=SOURCE)
    steps["first_digest"] = MlflowClient().get_run(steps["first"].run_id).data.params["digest.full"]
    steps["aliases_after_first"] = _aliases()
    steps["first_promotion"] = tracking.promote("churn-table", by="bob")
    steps["aliases_after_promotion"] = _aliases()
    with pytest.raises(ValueError) as nothing:
        tracking.promote(NAME)
    steps["nothing_to_promote"] = str(nothing.value)
    steps["champion_v1_frame"] = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(
        good.rows("test")
    )
    steps["second"] = tracking.log_training(worse, source=SOURCE)
    steps["kept"] = tracking.promote(NAME, by="carol")
    steps["aliases_after_kept"] = _aliases()
    with pytest.raises(ValueError) as no_reason:
        tracking.promote(NAME, force=True, reason="  ")
    steps["no_reason"] = str(no_reason.value)
    steps["forced"] = tracking.promote(
        NAME, force=True, reason="simpler model for the pilot", by="alice"
    )
    steps["aliases_after_forced"] = _aliases()
    steps["third"] = tracking.log_training(other_features, source=SOURCE)
    with pytest.raises(ValueError) as missing:
        tracking.promote(NAME)
    steps["missing_columns"] = str(missing.value)


def _aliases() -> dict[str, int]:
    return {k: int(v) for k, v in MlflowClient().get_registered_model(NAME).aliases.items()}


# --- the store ------------------------------------------------------------------------------------


def test_default_uri_is_a_sqlite_file_in_experiments_unless_the_env_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking.default_tracking_uri(tmp_path)
    assert uri == f"sqlite:///{tmp_path.as_posix()}/experiments/mlflow.db"
    assert not (tmp_path / "experiments").exists()  # nothing created until use_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking.default_tracking_uri(tmp_path) == "http://mlflow.internal:5000"


def test_an_unreachable_server_is_a_clear_error_and_changes_nothing(store: Path) -> None:
    before = mlflow.get_tracking_uri()
    with pytest.raises(ValueError, match="cannot reach the MLflow tracking server"):
        tracking.use_store("http://127.0.0.1:9")
    assert mlflow.get_tracking_uri() == before


def test_experiments_keep_artifacts_beside_the_database(
    store: Path, life: dict[str, object]
) -> None:
    experiment = MlflowClient().get_experiment_by_name("suitability-churn")
    assert experiment.artifact_location == (store / "mlartifacts" / "suitability-churn").as_uri()
    first = life["first"]
    assert isinstance(first, tracking.LoggedRun)
    run_folder = store / "mlartifacts" / "suitability-churn" / first.run_id / "artifacts"
    assert (run_folder / "evaluation" / "test.parquet").is_file()


# --- what a training run logs ----------------------------------------------------------------------


def test_training_run_logs_params_metrics_tags_and_files(
    life: dict[str, object], good: TrainingResult
) -> None:
    first = life["first"]
    assert isinstance(first, tracking.LoggedRun)
    assert first.to_json() == {
        "run_id": first.run_id,
        "experiment_id": first.experiment_id,
        "experiment_name": "suitability-churn",
        "model_uri": f"models:/{NAME}/1",
        "name": NAME,
        "version": 1,
        "tracking_uri": mlflow.get_tracking_uri(),
    }
    client = MlflowClient()
    run = client.get_run(first.run_id)
    assert run.info.run_name.startswith("churn-table-")
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags

    assert params["mode"] == "table"
    assert params["source.path"] == SOURCE["path"]
    assert params["split.method"] == "stratified_random"
    assert params["split.test_rows"] == str(len(good.rows("test")))
    assert params["lgb.num_leaves"] == "31"
    assert set(params) >= {"digest.full", "digest.train", "digest.validation", "digest.test"}
    assert params["digest.test"] == tracking.content_digest(good.rows("test"))
    assert len(params["digest.full"]) == 64

    assert metrics["test_roc_auc"] == pytest.approx(good.metrics["test"]["roc_auc"])
    assert metrics["validation_log_loss"] == pytest.approx(good.metrics["validation"]["log_loss"])
    assert "baseline_logistic_regression_test_roc_auc" in metrics
    assert not any(k.startswith(("best_possible", "ratio_to_best")) for k in metrics)
    assert all(np.isfinite(v) for v in metrics.values())

    assert tags["suitability.model"] == "churn"
    assert tags["suitability.task"] == "binary"
    assert tags["suitability.classes"] == "no,yes"
    assert tags["suitability.label"] == good.label_column
    assert tags["suitability.primary_metric"] == "roc_auc"
    assert tags["suitability.mode"] == "table"
    assert tags["suitability.git_commit"]

    files = _artifact_files(client, first.run_id)
    assert {
        "spec.yaml",
        "split.json",
        "features.csv",
        "warnings.txt",
        "plots/roc_pr.png",
        "plots/calibration.png",
        "evaluation/test.parquet",
        "evaluation/labels.json",
        "evaluation/calibration_curves.json",
    } <= files
    folder = Path(mlflow.artifacts.download_artifacts(run_id=first.run_id, artifact_path=""))
    assert "abc" in (folder / "warnings.txt").read_text()
    assert json.loads((folder / "split.json").read_text())["test_rows"] == len(good.rows("test"))
    assert list(pd.read_csv(folder / "features.csv")["name"]) == list(good.model.feature_names)


def _artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found |= _artifact_files(client, run_id, item.path)
        else:
            found.add(item.path)
    return found


def test_training_run_logs_dataset_lineage(life: dict[str, object], good: TrainingResult) -> None:
    first = life["first"]
    assert isinstance(first, tracking.LoggedRun)
    inputs = MlflowClient().get_run(first.run_id).inputs.dataset_inputs
    by_context = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs
    }
    assert set(by_context) == {"full", "training", "validation", "test"}
    test = by_context["test"]
    assert test.name == "churn-test"
    assert json.loads(test.profile)["num_rows"] == len(good.rows("test"))
    assert json.loads(test.source)["uri"] == SOURCE["path"]
    assert test.digest == tracking.content_digest(good.rows("test"))[:32]


def test_logged_test_split_holds_ids_label_and_features(
    life: dict[str, object], good: TrainingResult
) -> None:
    first = life["first"]
    assert isinstance(first, tracking.LoggedRun)
    frame, labels = tracking.load_test_split(first.run_id)
    assert labels == {
        "task": "binary",
        "classes": ["no", "yes"],
        "label": good.label_column,
        "id_column": "cid",
        "time_column": None,
        "primary_metric": "roc_auc",
        "target": "churned",  # a flat-table model: its raw table's target, for --table
    }
    assert list(frame.columns) == ["cid", good.label_column, *good.model.feature_names]
    assert list(frame["cid"]) == list(good.rows("test")["cid"])
    with pytest.raises(ValueError, match=r"no readable evaluation/test\.parquet"):
        tracking.load_test_split("0" * 32)


def test_nothing_reaches_stdout(
    store: Path, good: TrainingResult, life: dict[str, object], capfd: pytest.CaptureFixture[str]
) -> None:
    """`--json` prints one object as the last stdout line: MLflow must print nothing there."""
    assert life["stdout"] == ""
    logged = tracking.log_training(good, source=SOURCE, register=False)
    assert logged.version is None and logged.model_uri.startswith("models:/m-")
    assert capfd.readouterr().out == ""


# --- the challenger → champion life cycle ---------------------------------------------------------


def test_a_new_version_is_the_challenger(life: dict[str, object]) -> None:
    assert life["aliases_after_first"] == {"challenger": 1}
    version = MlflowClient().get_model_version(NAME, "1")
    first = life["first"]
    assert isinstance(first, tracking.LoggedRun)
    assert version.tags["run_id"] == first.run_id
    assert version.tags["primary_metric"] == "roc_auc"
    assert version.tags["mode"] == "table"
    assert float(version.tags["primary_value"]) > 0.75
    assert "--table" in MlflowClient().get_registered_model(NAME).description
    # the version's description is a model card: purpose, data digest, metric vs baselines
    card = version.description
    assert "trained on a user's table" in card and "用户提供的表" in card
    assert f"sha256 `{life['first_digest'][:16]}" in card
    assert "| model | 模型 |" in card and "| Logistic-regression baseline | 逻辑回归基线 |" in card
    assert "Model 模型: " in card and ("LightGBM" in card or "logistic regression" in card)
    # the model's own metrics are linked to its logged model and to their datasets
    model_id = version.source.removeprefix("models:/")
    metrics = {m.key: m for m in MlflowClient().get_logged_model(model_id).metrics or []}
    assert metrics["test_roc_auc"].dataset_name == "churn-test"
    assert metrics["validation_roc_auc"].dataset_name == "churn-validation"
    run = MlflowClient().get_run(first.run_id)
    assert run.data.metrics["test_roc_auc"] == pytest.approx(metrics["test_roc_auc"].value)
    # the logged model links to its registered version (MLflow's UI: not "Not registered")
    logged = MlflowClient().get_logged_model(version.source.removeprefix("models:/"))
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [{"name": NAME, "version": 1}]


def test_first_promotion_makes_the_challenger_champion(life: dict[str, object]) -> None:
    decision = life["first_promotion"]
    assert isinstance(decision, tracking.Promotion)
    assert decision.promoted and not decision.forced
    assert decision.challenger_version == 1 and decision.champion_version is None
    assert decision.champion_value is None and decision.by == "bob"
    # @challenger stays on the newest version: it names the latest candidate after a promotion
    assert life["aliases_after_promotion"] == {"champion": 1, "challenger": 1}
    assert "the challenger, version 1, is already the champion" in str(life["nothing_to_promote"])
    tags = MlflowClient().get_model_version(NAME, "1").tags
    assert tags["promoted_by"] == "bob" and tags["replaced_version"] == "none"


def test_a_worse_challenger_is_not_promoted(life: dict[str, object]) -> None:
    decision = life["kept"]
    assert isinstance(decision, tracking.Promotion)
    assert not decision.promoted and not decision.forced
    assert decision.challenger_version == 2 and decision.champion_version == 1
    assert decision.challenger_value < decision.champion_value
    assert life["aliases_after_kept"] == {"champion": 1, "challenger": 2}


def test_forcing_needs_a_reason_and_is_recorded(life: dict[str, object]) -> None:
    assert "needs a reason" in str(life["no_reason"])
    decision = life["forced"]
    assert isinstance(decision, tracking.Promotion)
    assert decision.promoted and decision.forced and decision.champion_version == 1
    assert life["aliases_after_forced"] == {"champion": 2, "challenger": 2}
    tags = MlflowClient().get_model_version(NAME, "2").tags
    assert tags["promoted_by"] == "alice"
    assert tags["promotion_reason"] == "simpler model for the pilot"
    assert tags["replaced_version"] == "1"
    assert tags["promoted_at"] == decision.at


def test_history_lists_every_decision_newest_first(life: dict[str, object]) -> None:
    history = tracking.alias_history("churn-table")
    assert [(h["to_version"], h["promoted"], h["forced"], h["by"]) for h in history] == [
        (2, True, True, "alice"),
        (2, False, False, "carol"),
        (1, True, False, "bob"),
    ]
    assert history[0]["reason"] == "simpler model for the pilot"
    assert history[0]["from_version"] == 1 and history[2]["from_version"] is None
    assert history[1]["champion_value"] == pytest.approx(life["kept"].champion_value)
    assert [h["at"] for h in history] == sorted((h["at"] for h in history), reverse=True)
    assert tracking.alias_history(NAME) == history
    # each decision's run names both versions and holds the compared values as metrics,
    # linked to the versions' logged models
    client = MlflowClient()
    experiment = client.get_experiment_by_name(tracking.PROMOTIONS_EXPERIMENT)
    kept = next(
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.params.get("by") == "carol"
    )
    assert kept.data.tags["challenger_model_uri"] == f"models:/{NAME}/2"
    assert kept.data.tags["champion_model_uri"] == f"models:/{NAME}/1"
    assert kept.data.tags["champion_run_id"] == life["first"].run_id
    assert kept.data.metrics["champion_roc_auc"] == pytest.approx(life["kept"].champion_value)
    linked = client.get_logged_model(
        client.get_model_version(NAME, "2").source.removeprefix("models:/")
    )
    assert any(m.key == "challenger_roc_auc" for m in linked.metrics or [])


def test_a_champion_that_cannot_read_the_test_split_asks_for_force(
    life: dict[str, object],
) -> None:
    message = str(life["missing_columns"])
    assert "champion version 2" in message
    assert "a" in message and "city" in message and "--force" in message
    assert _aliases() == {"champion": 2, "challenger": 3}


# --- reading the registry back -------------------------------------------------------------------


def test_list_models(life: dict[str, object]) -> None:
    rows = [r for r in tracking.list_models() if r["name"] == NAME]
    assert [(r["version"], r["aliases"]) for r in rows] == [
        (3, ["challenger"]),
        (2, ["champion"]),
        (1, []),
    ]
    assert rows[-1]["primary_metric"] == "roc_auc" and rows[-1]["mode"] == "table"
    assert rows[-1]["run_id"] == life["first"].run_id
    assert rows[-1]["created"].endswith("+00:00")


def test_resolve_model(life: dict[str, object]) -> None:
    assert tracking.resolve_model("churn-table") == (NAME, f"models:/{NAME}@champion")
    assert tracking.resolve_model(f"{NAME}@challenger") == (NAME, f"models:/{NAME}@challenger")
    assert tracking.resolve_model("churn-table@1") == (NAME, f"models:/{NAME}/1")
    with pytest.raises(
        ValueError, match=r"no registered model 'suitability-nope'.*suitability-churn"
    ):
        tracking.resolve_model("nope")
    with pytest.raises(ValueError, match=r"no 'staging' alias.*champion → 2"):
        tracking.resolve_model("churn-table@staging")
    with pytest.raises(ValueError, match=r"no version 9 \(versions: 1, 2, 3\)"):
        tracking.resolve_model("churn-table@9")
    with pytest.raises(ValueError, match="no registered model"):
        tracking.promote("risk-level")


def test_evaluate_version_on_its_own_split_and_on_a_given_table(
    life: dict[str, object], good: TrainingResult
) -> None:
    own = tracking.evaluate_version(f"{NAME}@1")
    assert own["version"] == 1 and own["data"] == "logged test split"
    assert own["primary_value"] == pytest.approx(good.metrics["test"]["roc_auc"])
    validation = good.rows("validation")
    given = tracking.evaluate_version("churn-table@1", validation)
    assert given["data"] == "given table" and given["rows"] == len(validation)
    # (the rows scored by the registered model: finalised, it has seen them, so this is not the
    # run's validation log loss, which is the early-stopped model's)
    from sklearn.metrics import log_loss

    y = good.y[good.split.rows("validation")]
    expected = log_loss(y, good.model.predict_proba(validation), labels=[0, 1])
    assert given["metrics"]["log_loss"] == pytest.approx(expected)
    # A CSV read by pandas has whole-number columns as int64; the signature says double.
    as_csv = validation.assign(
        c=validation["c"].astype("int64"), city=validation["city"].astype(str)
    )
    assert tracking.evaluate_version("churn-table@1", as_csv)["metrics"] == given["metrics"]
    with pytest.raises(ValueError, match="no label column"):
        tracking.evaluate_version(
            "churn-table@1", good.rows("test").drop(columns=[good.label_column])
        )


# --- the registry round trip ----------------------------------------------------------------------


def test_champion_predicts_like_the_trained_model(
    life: dict[str, object], good: TrainingResult, worse: TrainingResult
) -> None:
    expected = good.model.predict_frame(good.rows("test"))
    first = life["champion_v1_frame"]
    assert isinstance(first, pd.DataFrame)
    assert np.allclose(first["p_churn"], expected["p_churn"])

    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")  # version 2 by now
    features = worse.rows("test")[list(worse.model.feature_names)]
    assert isinstance(features["city"].dtype, pd.CategoricalDtype)
    want = worse.model.predict_frame(features)["p_churn"]
    as_strings = features.assign(city=features["city"].astype(str))
    as_objects = features.assign(city=features["city"].astype(object))
    for frame in (features, as_strings, as_objects):
        got = champion.predict(frame)
        assert list(got.columns) == ["p_churn"]
        assert np.allclose(got["p_churn"], want)


def test_integer_counts_pass_the_signature(store: Path, good: TrainingResult) -> None:
    """The feature builder gives counts as int64 and categories as `category`: both must pass
    MLflow's schema enforcement."""
    table = good.table.assign(c=good.table["c"].astype("int64"))
    # (as a feature-table model: without the raw-row preprocessor of a user's table)
    counted = dataclasses.replace(good, table=table, preprocessor=None, raw_example=None)
    logged = tracking.log_training(counted, source=SOURCE, register=False)
    model = mlflow.pyfunc.load_model(logged.model_uri)
    inputs = {c.name: c.type for c in model.metadata.get_input_schema().inputs}
    assert inputs["c"] == DataType.long and inputs["a"] == DataType.double
    assert isinstance(inputs["city"], AnyType)
    features = table.iloc[good.split.rows("test")][list(good.model.feature_names)]
    got = model.predict(features)
    assert np.allclose(got["p_churn"], good.model.predict_frame(features)["p_churn"])


# --- an ordinal model ----------------------------------------------------------------------------


def test_ordinal_model_logs_its_plots_and_round_trips(
    store: Path, specs: Specs, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    n = 1500
    tolerance, horizon = rng.normal(size=n), rng.normal(size=n)
    latent = 1.2 * tolerance + 0.6 * horizon + rng.logistic(size=n) * 0.7
    level = np.digitize(latent, [-1.5, -0.5, 0.5, 1.5])
    frame = pd.DataFrame(
        {
            "cid": [f"R{i:05d}" for i in range(n)],
            "tolerance": tolerance,
            "horizon": horizon,
            "segment": rng.choice(["retail", "private"], n),
            "level": np.array(["C1", "C2", "C3", "C4", "C5"])[level],
        }
    )
    levels = ["C1", "C2", "C3", "C4", "C5"]
    flat = prepare_flat_table(
        frame, target="level", id_column="cid", task="ordinal", ordinal_order=levels
    )
    spec = _quick(load_model_spec("risk-level", specs), 30)
    result = train_on_flat_table(flat, spec, id_column="cid")
    config = tmp_path / "quick.yaml"
    config.write_text("model: risk-level\nmax_rounds: 30\n")

    logged = tracking.log_training(result, source={"path": "levels.csv"}, experiment_config=config)

    assert logged.name == "suitability-risk-level-table" and logged.version == 1
    client = MlflowClient()
    files = _artifact_files(client, logged.run_id)
    assert {"plots/confusion_matrix.png", "plots/calibration.png", "quick.yaml"} <= files
    folder = Path(mlflow.artifacts.download_artifacts(run_id=logged.run_id, artifact_path=""))
    matrix = json.loads((folder / "evaluation" / "confusion_matrix.json").read_text())
    assert sum(map(sum, matrix["rows_true_columns_predicted"])) == len(result.rows("test"))
    metrics = client.get_run(logged.run_id).data.metrics
    assert metrics["test_qwk"] == pytest.approx(result.metrics["test"]["qwk"])
    assert "test_recall_C1" in metrics

    decision = tracking.promote("risk-level-table")
    assert decision.promoted and decision.by == getpass.getuser()
    model = mlflow.pyfunc.load_model("models:/suitability-risk-level-table@champion")
    test = result.rows("test")
    got, want = model.predict(test), result.model.predict_frame(test)
    assert list(got.columns) == [*(f"p_{c}" for c in levels), "level", "expected_level"]
    assert np.allclose(got[[f"p_{c}" for c in levels]], want[[f"p_{c}" for c in levels]])
    assert list(got["level"]) == list(want["level"])
    evaluated = tracking.evaluate_version("risk-level-table")
    assert evaluated["primary_metric"] == "qwk"
    assert evaluated["primary_value"] == pytest.approx(result.metrics["test"]["qwk"])
