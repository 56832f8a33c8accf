"""Flat-table candidates (LightGBM and a regularised logistic regression, the better on
validation registered, both logged) and the linear model's explanations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from suitability.cli import app
from suitability.models.estimators import FeatureLayout
from suitability.models.linear import LinearModel

runner = CliRunner()


@pytest.fixture()
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def _linear_table(n: int = 900, seed: int = 0) -> pd.DataFrame:
    """Churn that is a logistic function of ten numbers and a category: few rows, where a
    linear model is right and trees only approximate it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10))
    plan = rng.choice(["basic", "plus", "premium"], n)
    weights = np.linspace(0.9, -0.6, 10)
    logit = x @ weights + np.where(plan == "basic", 0.8, -0.4)
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(x.round(4), columns=[f"x{j}" for j in range(10)])
    frame.insert(0, "id", [f"U{i:05d}" for i in range(n)])
    frame["plan"] = plan
    frame.loc[::37, "x3"] = np.nan  # blanks in a number column
    frame["churned"] = np.where(churn, "yes", "no")
    return frame


def _interaction_table(n: int = 4000, seed: int = 1) -> pd.DataFrame:
    """Churn driven by an interaction (same sign of two numbers): no linear model sees it."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    logit = np.where(a * b > 0, 2.0, -2.0)
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "id": [f"V{i:05d}" for i in range(n)],
            "a": a.round(4),
            "b": b.round(4),
            "churned": np.where(churn, "yes", "no"),
        }
    )


def _train(path, *extra: str) -> tuple[dict, str]:
    args = ["train", "churn", "--table", str(path), "--target", "churned", "--id", "id"]
    output = _ok([*args, *extra, "--json"])
    return _last_json(output), output


@pytest.mark.slow
def test_a_linear_table_registers_the_logistic_regression_and_logs_lightgbm_beside_it(
    store, tmp_path
):
    import mlflow
    from mlflow import MlflowClient

    from suitability import tracking

    path = tmp_path / "linear.csv"
    frame = _linear_table()
    frame.to_csv(path, index=False)
    run, output = _train(path)
    # the comparison is printed, on validation, the chosen one marked
    assert "candidates, compared on the validation split" in output
    assert "logistic regression (chosen)" in output and "lightgbm" in output
    assert run["model_kind"] == "logistic_regression"
    kinds = [c["kind"] for c in run["candidates"]]
    assert kinds == ["logistic_regression", "lightgbm"] and run["candidates"][0]["chosen"]
    linear, boosted = (c["validation_metrics"] for c in run["candidates"])
    assert linear["roc_auc"] >= boosted["roc_auc"]
    assert run["validation_metrics"] == linear
    assert run["metrics"] == run["candidates"][0]["test_metrics"]

    client = MlflowClient()
    version = client.get_model_version("suitability-churn-table", "1")
    assert version.tags["model_kind"] == "logistic_regression"
    assert tracking.PORTABLE_SHA256_TAG not in version.tags
    # its model card says what it is and how it was chosen
    assert "Model 模型: regularised logistic regression, finalised" in version.description
    assert "the better of regularised logistic regression, LightGBM" in version.description
    assert "正则化逻辑回归" in version.description
    params = client.get_run(run["run_id"]).data.params
    assert params["model_kind"] == "logistic_regression" and float(params["linear.C"]) > 0
    compared = mlflow.artifacts.load_dict(f"runs:/{run['run_id']}/{tracking.CANDIDATES_ARTIFACT}")
    assert [c["kind"] for c in compared["candidates"]] == kinds
    runner_up = compared["candidates"][1]["logged_model_id"]
    assert runner_up and compared["candidates"][0]["logged_model_id"] is None

    # Both take the file's raw rows through stock MLflow; the registered one is the linear.
    read = pd.read_csv(path)
    chosen = mlflow.pyfunc.load_model("models:/suitability-churn-table/1").predict(read)
    other = mlflow.pyfunc.load_model(f"models:/{runner_up}").predict(read)
    assert chosen.shape == other.shape == (len(read), 1)
    assert not np.allclose(chosen["p_churn"], other["p_churn"])
    # the runner-up's validation metrics are linked to its logged model
    logged = mlflow.get_logged_model(runner_up)
    names = {metric.key for metric in logged.metrics or []}
    assert {"candidate_lightgbm_validation_roc_auc", "candidate_lightgbm_test_roc_auc"} <= names
    # the run's own metrics stay the registered model's
    metrics = client.get_run(run["run_id"]).data.metrics
    assert metrics["test_roc_auc"] == pytest.approx(run["metrics"]["roc_auc"])
    assert metrics["validation_roc_auc"] == pytest.approx(linear["roc_auc"])
    assert metrics["candidate_lightgbm_validation_roc_auc"] == pytest.approx(boosted["roc_auc"])

    report = _last_json(_ok(["evaluate", "churn-table@1", "--table", str(path), "--json"]))
    assert report["rows"] == len(read)
    # serving's loader reads portable forms only: a clear refusal, not a stack trace
    with pytest.raises(ValueError, match="logistic regression trained on a user's table"):
        tracking.load_portable_estimator("suitability-churn-table@challenger")
    # its global explanation is logged (exact linear SHAP)
    global_json = mlflow.artifacts.load_dict(
        f"runs:/{run['run_id']}/{tracking.EXPLANATIONS_DIR}/global.json"
    )
    top = global_json["by_feature"][0]["feature"]
    assert top in {"x0", "x1", "plan"}

    # its dossier names what it is, not the platform model its spec describes
    _ok(["report", "model", "churn-table@1", "--out", str(tmp_path / "dossier.html")])
    dossier = (tmp_path / "dossier.html").read_text(encoding="utf-8")
    assert "在用户提供的表上训练的正则化逻辑回归模型" in dossier
    assert "估计当前活跃的投资者" not in dossier  # (the platform churn model's purpose)
    out = tmp_path / "dossier_en.html"
    _ok(["report", "model", "churn-table@1", "--out", str(out), "--lang", "en"])
    assert "regularised logistic regression trained on a user" in out.read_text(encoding="utf-8")

    # Restricted to LightGBM by an experiment config: no comparison, LightGBM registered.
    config = tmp_path / "only_lightgbm.yaml"
    config.write_text("model: churn\nflat_candidates: [lightgbm]\n", encoding="utf-8")
    run, _ = _train(path, "--experiment", str(config))
    assert run["model_kind"] == "lightgbm" and len(run["candidates"]) == 1


@pytest.mark.slow
def test_an_interaction_table_keeps_lightgbm(store, tmp_path):
    path = tmp_path / "interaction.csv"
    _interaction_table().to_csv(path, index=False)
    run, output = _train(path)
    assert run["model_kind"] == "lightgbm" and "lightgbm (chosen)" in output
    boosted, linear = (c["validation_metrics"] for c in run["candidates"])
    assert boosted["roc_auc"] > linear["roc_auc"] + 0.1


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, FeatureLayout]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": np.where(rng.random(n) < 0.2, np.nan, rng.exponential(3.0, n)),
            "c": pd.Series(rng.choice(["x", "y", "z", None], n), dtype=object),
        }
    )
    return frame, FeatureLayout(("a", "b", "c"), {"c": ("x", "y", "z")})


@pytest.mark.parametrize("task", ["binary", "ordinal"])
def test_linear_contributions_are_exact_and_sum_to_the_log_odds(task):
    """Each output's log-odds = base + the sum of its features' contributions, and a feature's
    contribution is its columns' coefficients times their distance from the training mean
    (one-hot columns and missing indicators added to their feature)."""
    from suitability.explain.contributions import LEVEL_SCORE, explain_frame, raw_outputs

    frame, layout = _frame(1200, seed=2)
    logit = frame["a"] * 1.2 + frame["b"].fillna(0) * 0.3 + (frame["c"] == "x") * 0.9
    rng = np.random.default_rng(3)
    if task == "binary":
        y = (rng.random(len(frame)) < 1 / (1 + np.exp(-(logit - 1)))).astype(int)
        model = LinearModel(layout, "binary", output="p_churn")
    else:
        y = np.clip(np.round(logit + rng.normal(size=len(frame)) + 1), 0, 3).astype(int)
        model = LinearModel(layout, "ordinal", classes=["C1", "C2", "C3", "C4"])
    model.fit(frame[:800], y[:800], frame[800:], y[800:])
    rows = frame[800:900]
    explained = explain_frame(model, rows)
    assert np.allclose(explained.raw, raw_outputs(model, rows), atol=1e-9)
    if task == "ordinal":
        assert explained.output_names[-1] == LEVEL_SCORE
    z = model.transform(rows)
    groups = model.groups()
    for o, cut in enumerate(model.cuts):
        expected = np.zeros((len(rows), 3))
        np.add.at(expected, (slice(None), groups), cut.coef_[0] * (z - model.mean))
        assert np.allclose(explained.values[:, o, :], expected, atol=1e-9)
    # row order and batch size do not change a row's contributions
    alone = explain_frame(model, rows.iloc[[5]])
    assert np.allclose(alone.values[0], explained.values[5], atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(-1e6, 1e6)),
            st.sampled_from(["x", "y", "z", None, "unseen"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_matrix_reads_back_as_the_frame_it_came_from(rows):
    """`frame_of_matrix` inverts `matrix` (unknown categories read as missing, as the model
    sees them), so a linear model explains a matrix as it explains its frame."""
    layout = FeatureLayout(("n", "c"), {"c": ("x", "y", "z")})
    frame = pd.DataFrame(
        {
            "n": [np.nan if v is None else v for v, _ in rows],
            "c": pd.Series([c for _, c in rows], dtype=object),
        }
    )
    x = layout.matrix(frame)
    back = layout.frame_of_matrix(x)
    assert np.array_equal(layout.matrix(back), x, equal_nan=True)
    assert back["c"].tolist() == [c if c in ("x", "y", "z") else None for _, c in rows]


def test_the_spec_refuses_a_candidate_listed_twice_or_unknown(specs):
    from pydantic import ValidationError

    from suitability.models.spec import load_model_spec

    spec = load_model_spec("churn", specs)
    data = spec.model_dump()
    for bad in (["lightgbm", "lightgbm"], ["xgboost"], []):
        with pytest.raises(ValidationError, match="flat_candidates"):
            type(spec).model_validate({**data, "flat_candidates": bad})
