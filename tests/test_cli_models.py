"""The model commands end to end: train (three data sources), evaluate, promote, models list
and history, the demo; user mistakes give a message and a non-zero exit, never a traceback."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from suitability.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture()
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def _fails(args: list[str], code: int, *needles: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def _telco_like(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """A churn table as users bring them: text-typed numbers with blanks and thousands
    separators, Yes/No target, a free-text column, and ids that repeat."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, n)
    monthly = rng.uniform(20, 120, n).round(2)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n)
    logit = -0.04 * tenure + 0.02 * monthly + np.where(contract == "Month-to-month", 1.0, -1.0) - 1
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    total = [f"{t * m:,.2f}" for t, m in zip(tenure, monthly, strict=True)]
    for i in range(0, n, 97):
        total[i] = " "
    ids = [f"{i:04d}-ABCDE" for i in range(n)]
    for i in range(0, 60):  # 60 ids appear twice
        ids[n - 1 - i] = ids[i]
    return pd.DataFrame(
        {
            "customerID": ids,
            "tenure": tenure.astype(str),
            "MonthlyCharges": monthly,
            "TotalCharges": total,
            "Contract": contract,
            "Comment": [f"called on day {i}" for i in range(n)],
            "Churn": np.where(churn, "Yes", "No"),
        }
    )


def test_flat_table_train_promote_list_history_evaluate_round_trip(store, tmp_path):
    path = tmp_path / "telco.csv"
    _telco_like().to_csv(path, index=False)
    args = ["train", "churn", "--table", str(path), "--target", "Churn", "--id", "customerID"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    run = _last_json(result.stdout)
    # A user's table registers under its own name, never the one serving loads.
    assert run["name"] == "suitability-churn-table" and run["version"] == 1
    assert run["model_uri"] == "models:/suitability-churn-table/1"
    assert 0.6 < run["metrics"]["roc_auc"] <= 1
    # Repeated ids are detected and reported, and kept in one split (grouped), so no customer
    # seen in training is scored in evaluation.
    assert "60 ids appear on more than one row" in result.output
    assert "more than one split" not in result.output
    assert "TotalCharges" not in result.stderr or "not numbers" not in result.stderr

    promoted = _last_json(_ok(["promote", "churn-table", "--json"]))
    assert promoted["promoted"] and promoted["challenger_version"] == 1
    _fails(["promote", "churn-table"], 2, "challenger")  # nothing new to promote

    listed = json.loads(_ok(["models", "list", "--json"]))
    assert any(r["version"] == 1 and "champion" in r["aliases"] for r in listed)
    history = json.loads(_ok(["models", "history", "churn-table", "--json"]))
    assert history[0]["to_version"] == 1 and history[0]["promoted"]

    report = _last_json(_ok(["evaluate", "suitability-churn-table@champion", "--json"]))
    assert report["metrics"]["roc_auc"] == pytest.approx(run["metrics"]["roc_auc"])

    # The registered champion loads with stock MLflow and predicts from a feature frame.
    import mlflow

    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    model = mlflow.pyfunc.load_model("models:/suitability-churn-table@champion")
    frame = pd.DataFrame(
        {
            "tenure": [1.0, 70.0],
            "MonthlyCharges": [110.0, 25.0],
            "TotalCharges": [110.0, 1750.0],
            "Contract": ["Month-to-month", "Two year"],
        }
    )
    p = model.predict(frame)["p_churn"].to_numpy()
    assert p[0] > p[1]

    # A forced promotion needs a reason, and is recorded with it.
    _ok([*args])
    _fails(["promote", "churn-table", "--force"], 2, "--reason")
    _ok(["promote", "churn-table", "--force", "--reason", "audit asked for it", "--by", "alice"])
    history = json.loads(_ok(["models", "history", "churn-table", "--json"]))
    assert history[0]["by"] == "alice" and history[0]["reason"] == "audit asked for it"
    _fails(["models", "history", "x'y"], 2, "is not a model name")


def test_flat_table_with_several_rows_per_id_keeps_each_id_in_one_split(store, tmp_path):
    """Panel data (12 monthly rows per customer): ids are grouped, with and without --time."""
    rng = np.random.default_rng(5)
    ids = np.repeat([f"c{i:03d}" for i in range(400)], 12)
    month = np.tile(pd.date_range("2025-01-01", periods=12, freq="MS"), 400)
    x = rng.normal(size=len(ids))
    frame = pd.DataFrame(
        {
            "cid": ids,
            "month": month.astype(str),
            "x": x,
            "churned": (rng.random(len(ids)) < 1 / (1 + np.exp(-2 * x))).astype(int),
        }
    )
    path = tmp_path / "panel.csv"
    frame.to_csv(path, index=False)
    base = ["train", "churn", "--table", str(path), "--target", "churned", "--id", "cid"]
    for extra in ([], ["--time", "month"]):
        result = runner.invoke(app, [*base, *extra, "--json"])
        assert result.exit_code == 0, result.output
        assert "more than one split" not in result.output
        assert _last_json(result.stdout)["metrics"]["roc_auc"] > 0.7


def test_train_refuses_bad_arguments_with_a_message(store, tmp_path):
    _fails(["train", "churn"], 2, "exactly one data source")
    _fails(["train", "churn", "--table", str(tmp_path / "x.csv")], 2, "--target")
    _fails(["train", "churn", "--data", str(tmp_path / "nope")], 2, "no such folder")
    _fails(["train", "churn", "--features", str(tmp_path / "nope.parquet")], 2, "no such file")
    path = tmp_path / "t.csv"
    _telco_like(200).to_csv(path, index=False)
    _fails(
        ["train", "churn", "--table", str(path), "--target", "Churned", "--id", "customerID"],
        2,
        "Churned",
    )
    _fails(["evaluate", "suitability-nothing@champion"], 2, "suitability-nothing")
    bad_times = tmp_path / "bad.csv"
    pd.DataFrame({"customer_id": ["a", "b"], "as_of": ["2025-01-01", "soon"]}).to_csv(
        bad_times, index=False
    )
    _fails(["train", "churn", "--features", str(bad_times)], 2, "'as_of'", "rows [2]")
    _fails(["train", "sideways", "--data", str(tmp_path)], 2)


def test_demo_trains_registers_and_promotes_both_models(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "demo"
    output = _ok(["demo", "--out", str(out), "--customers", "2500"])
    assert (out / "mlflow.db").is_file()
    assert (out / "churn_training.parquet").is_file()
    assert "mlflow ui --backend-store-uri sqlite:///" in output
    assert output.count("is now @champion") == 2
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(out / 'mlflow.db').resolve()}")
    listed = json.loads(_ok(["models", "list", "--json"]))
    assert {r["name"] for r in listed if "champion" in r["aliases"]} == {
        "suitability-risk-level",
        "suitability-churn",
    }
    # The registered champion loads with stock MLflow and predicts from a feature table.
    import mlflow

    uri = f"sqlite:///{(out / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    features = pd.read_parquet(out / "risk_level_training.parquet").head(50)
    predicted = mlflow.pyfunc.load_model("models:/suitability-risk-level@champion").predict(
        features
    )
    levels = predicted[[f"p_C{i}" for i in range(1, 6)]].to_numpy()
    assert np.allclose(levels.sum(axis=1), 1) and set(predicted["level"]) <= {
        "C1",
        "C2",
        "C3",
        "C4",
        "C5",
    }
    # Retrain from the table the demo kept: a new challenger version.
    run = _last_json(
        _ok(["train", "churn", "--features", str(out / "churn_training.parquet"), "--json"])
    )
    assert run["version"] == 2
    # The demo trained from --data, this from --features: the same table, split and labels,
    # so the two compare (the demo's printed next step, `promote churn`, is not refused).
    promoted = _last_json(_ok(["promote", "churn", "--json"]))
    assert promoted["challenger_version"] == 2 and promoted["champion_version"] == 1
    _fails(["demo", "--out", str(out), "--customers", "2500"], 2, "already holds data")


def test_promote_refuses_a_champion_split_differently(store, tmp_path):
    """A champion whose customers were split with another seed may have trained on the
    challenger's test customers: comparing them would flatter it, so promote asks for --force."""
    path = tmp_path / "telco.csv"
    _telco_like().to_csv(path, index=False)
    args = ["train", "churn", "--table", str(path), "--target", "Churn", "--id", "customerID"]
    _ok(args)
    _ok(["promote", "churn-table"])
    other = tmp_path / "other-seed.yaml"
    other.write_text("model: churn\nflat_split: {seed: 11}\n", encoding="utf-8")
    _ok([*args, "--experiment", str(other)])
    _fails(["promote", "churn-table"], 2, "split or labelled differently", "split.seed 7 → 11")
    _ok(["promote", "churn-table", "--force", "--reason", "new split agreed with risk"])


def test_experiment_cannot_undo_the_churn_embargo(store, tmp_path):
    config = tmp_path / "short-embargo.yaml"
    config.write_text("model: churn\nsplit: {embargo_days: 30}\n", encoding="utf-8")
    _fails(
        ["train", "churn", "--data", str(tmp_path), "--experiment", str(config)],
        1,
        "embargo_days (30) must be at least labels.horizon_days (90)",
    )
    config.write_text("model: churn\nparams: {n_estimators: 5}\n", encoding="utf-8")
    _fails(
        ["train", "churn", "--data", str(tmp_path), "--experiment", str(config)],
        1,
        "set by the trainer",
    )


def test_an_unusable_tracking_uri_is_a_message(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://nowhere")
    _fails(["models", "list"], 2, "error:")


def test_a_flat_table_model_scores_raw_rows_through_stock_mlflow(store, tmp_path):
    """Trained on a CSV, the registered model takes that CSV as stock pandas reads it (ints,
    floats with NaN for blanks, text numbers with thousands separators, id, target and an
    extra column), rows of it in which a blank-holding column has no blank (so it reads as int),
    and `evaluate --table` on the file gives the metrics of those same probabilities."""
    import mlflow
    from sklearn.metrics import log_loss, roc_auc_score

    frame = _telco_like(seed=3)
    frame["tenure"] = frame["tenure"].astype(int)  # an integer column in the file
    dependents = np.arange(len(frame)) % 4
    blanks = np.arange(len(frame)) % 50 == 0  # written as empty fields; whole numbers otherwise
    frame["Dependents"] = pd.array(np.where(blanks, None, dependents), dtype="Int64")
    path = tmp_path / "telco.csv"
    frame.to_csv(path, index=False)
    _ok(["train", "churn", "--table", str(path), "--target", "Churn", "--id", "customerID"])

    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    model = mlflow.pyfunc.load_model("models:/suitability-churn-table/1")
    read = pd.read_csv(path)
    assert read["tenure"].dtype.kind == "i" and read["Dependents"].dtype.kind == "f"
    assert read["TotalCharges"].dtype.kind not in "if"  # "1,234.50" and " ": text
    p = model.predict(read)["p_churn"].to_numpy()
    # the same rows read as text (what `evaluate --table` reads) give the same probabilities
    from suitability.models.flat import read_flat_table

    assert np.array_equal(model.predict(read_flat_table(path))["p_churn"].to_numpy(), p)
    # a few rows without blanks: Dependents reads as int64 now; an extra column is ignored
    rows = frame.iloc[1:40].drop(columns=["Churn"]).assign(NewColumn="x")
    rows.to_csv(tmp_path / "new.csv", index=False)
    new = pd.read_csv(tmp_path / "new.csv")
    assert new["Dependents"].dtype.kind == "i"
    assert np.allclose(model.predict(new)["p_churn"].to_numpy(), p[1:40], rtol=0, atol=1e-12)
    # the signature lists the raw columns; the model's metadata says how each was read
    schema = model.metadata.get_input_schema()
    assert set(schema.required_input_names()) >= {"tenure", "TotalCharges", "Dependents"}
    assert {"customerID", "Churn", "Comment"} <= set(schema.input_names())
    described = {c["name"]: c for c in model.metadata.metadata["raw_columns"]}
    assert described["tenure"]["read_as"] == "string"  # read_flat_table reads CSV as text
    assert described["Contract"]["use"] == "category" and described["Comment"]["use"] == "ignored"

    report = _last_json(_ok(["evaluate", "churn-table@1", "--table", str(path), "--json"]))
    y = (read["Churn"] == "Yes").to_numpy()
    assert report["data"] == "given table" and report["rows"] == len(read)
    assert report["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert report["metrics"]["log_loss"] == pytest.approx(log_loss(y, p), abs=1e-9)
    # a raw table without the target, and a feature-table model given --table: messages
    _fails(["evaluate", "churn-table@1", "--table", str(tmp_path / "new.csv")], 2, "'Churn'")
