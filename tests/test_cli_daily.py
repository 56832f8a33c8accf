"""`suitability score` and `suitability worklist` end to end on the demo's registered models:
the score file and its provenance, the same scores on a Dask cluster, the worklists in every
format, and the clear errors for a user's mistakes (before any model loads)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import worlds
from suitability.cli import app
from suitability.scoring.population import METADATA_KEY, read_scores

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]
runner = CliRunner()


def _run(args: list[str]):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _ok(args: list) -> str:
    result = _run(args)
    assert result.exit_code == 0, result.output
    return result.output


def _fails(args: list, code: int, *needles: str) -> str:
    result = _run(args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def as_of(demo) -> str:
    from suitability.explain.cases import default_as_of

    return str(default_as_of(demo / "data").normalize().date())


@pytest.fixture(scope="module")
def scores(demo, as_of, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("daily") / "scores.parquet"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
        output = _ok(["score", "--data", demo / "data", "--as-of", as_of, "--out", out, "--json"])
    summary = _last_json(output)
    assert summary["out"] == str(out) and summary["rule_version"].startswith("SR-")
    return out


def test_the_score_file_has_one_row_per_registered_customer_and_its_provenance(scores, demo, as_of):
    frame = read_scores(scores)
    customers = pd.read_parquet(
        demo / "data" / "customers", columns=["customer_id", "registered_at"]
    )
    registered = customers[customers["registered_at"] <= pd.Timestamp(as_of)]
    assert sorted(frame["customer_id"]) == sorted(registered["customer_id"])
    provenance = json.loads(pq.read_schema(scores).metadata[METADATA_KEY.encode()])
    assert provenance["as_of"] == pd.Timestamp(as_of).isoformat()
    assert {m["alias"] for m in provenance["models"].values()} == {"champion"}
    assert frame["rule_version"].nunique() == 1
    # the probabilities are distributions and each customer's triggers are spelt out
    level = frame[[f"p_C{k}" for k in range(1, 6)]].sum(axis=1)
    assert ((level - 1).abs() < 1e-9).all()
    assert (frame["reassess"] == frame["triggers"].fillna("").ne("")).all()
    assert frame["risk_reason_1_zh"].notna().all() and frame["churn_reason_1_en"].notna().all()


def test_a_dask_cluster_gives_the_same_scores(scores, demo, as_of, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
    out = tmp_path / "scores.parquet"
    _ok(["score", "--data", demo / "data", "--as-of", as_of, "--out", out, "--cluster", "local:2"])
    pd.testing.assert_frame_equal(read_scores(out), read_scores(scores))


def test_scores_as_csv_feed_the_worklists_too(scores, demo, as_of, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
    csv = tmp_path / "scores.csv"
    _ok(["score", "--data", demo / "data", "--as-of", as_of, "--out", csv])
    back, parquet = read_scores(csv), read_scores(scores)
    assert list(back.columns) == list(parquet.columns)
    pd.testing.assert_frame_equal(back, parquet, check_exact=False, check_dtype=False)
    out = tmp_path / "retention.xlsx"
    _ok(["worklist", "retention", "--scores", csv, "--out", out, "--lang", "en"])
    about = pd.read_excel(out, sheet_name="about", header=None)
    assert "suitability-churn" in about.to_string()


def test_a_previous_score_file_carries_the_dates_triggers_held_since(
    scores, demo, as_of, tmp_path, monkeypatch
):
    """Scored again a week later with --previous: a trigger that held then and still holds
    keeps its earlier date (a model mismatch is otherwise dated by the run that saw it); one
    that appeared since is dated now; the later file records where its dates came from."""
    from suitability.scoring.flags import TRIGGERS

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
    later = str((pd.Timestamp(as_of) + pd.Timedelta(days=7)).date())
    alone, carried = tmp_path / "alone.parquet", tmp_path / "carried.parquet"
    _ok(["score", "--data", demo / "data", "--as-of", later, "--out", alone])
    _ok(["score", "--data", demo / "data", "--as-of", later, "--out", carried,
         "--previous", scores])  # fmt: skip
    before = read_scores(scores).set_index("customer_id")
    fresh = read_scores(alone).set_index("customer_id")
    now = read_scores(carried).set_index("customer_id")
    pd.testing.assert_frame_equal(
        now.drop(columns=[f"{t}_since" for t in TRIGGERS]),
        fresh.drop(columns=[f"{t}_since" for t in TRIGGERS]),
    )
    seen = 0
    for trigger in TRIGGERS:
        column = f"{trigger}_since"
        both = now[trigger] & before[trigger].reindex(now.index, fill_value=False)
        expected = fresh[column].where(
            ~both, pd.concat([fresh[column], before[column].reindex(now.index)], axis=1).min(axis=1)
        )
        pd.testing.assert_series_equal(now[column], expected, check_names=False)
        seen += int((both & (now[column] < fresh[column])).sum())
    assert seen > 0  # some dates did move back
    new = now["overstated"] & ~before["overstated"].reindex(now.index, fill_value=False)
    assert new.any() and (now.loc[new, "overstated_since"] == pd.Timestamp(later)).all()
    provenance = json.loads(pq.read_schema(carried).metadata[METADATA_KEY.encode()])
    assert provenance["since_carried_from"] == pd.Timestamp(as_of).isoformat()
    _fails(["score", "--data", demo / "data", "--as-of", as_of, "--out", tmp_path / "x.parquet",
            "--previous", scores], 2, "not before", "earlier run")  # fmt: skip
    _fails(["score", "--data", demo / "data", "--as-of", later, "--out", tmp_path / "x.parquet",
            "--previous", tmp_path / "none.parquet"], 2, "no such score file")  # fmt: skip
    assert not (tmp_path / "x.parquet").exists()


def test_worklists_in_every_format_and_language(scores, tmp_path):
    frame = read_scores(scores)
    html = tmp_path / "reassess.zh.html"
    output = _ok(["worklist", "reassess", "--scores", scores, "--out", html, "--limit", "40",
                  "--json"])  # fmt: skip
    summary = _last_json(output)
    assert summary == {
        "kind": "reassess",
        "rows": min(40, int(frame["reassess"].sum())),
        "total": int(frame["reassess"].sum()),
        "out": str(html),
    }
    page = html.read_text(encoding="utf-8")
    assert "需重新评估的客户清单" in page and "评分基准时间" in page
    assert "stale_questionnaire" not in page and "no_questionnaire" not in page
    csv = tmp_path / "retention.en.csv"
    _ok(["worklist", "retention", "--scores", scores, "--out", csv, "--lang", "en"])
    listed = pd.read_csv(csv, encoding="utf-8-sig")
    active = frame[frame["active"] & (frame["expected_loss"] > 0)]
    assert len(listed) == len(active)
    assert listed["expected loss (CNY)"].is_monotonic_decreasing
    assert set(listed["customer"]) == set(active["customer_id"])


def test_mistakes_are_named_before_any_model_loads(demo, as_of, tmp_path, monkeypatch):
    # An unusable tracking store: any command that reached the models would fail on it instead.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/no/such/dir/mlflow.db")
    data = demo / "data"
    _fails(["score", "--data", tmp_path / "nope", "--as-of", as_of, "--out", tmp_path / "s.parquet"],
           2, "no such folder")  # fmt: skip
    _fails(["score", "--data", data, "--as-of", "2026-02-30", "--out", tmp_path / "s.parquet"],
           2, "--as-of '2026-02-30' is not a date")  # fmt: skip
    _fails(["score", "--data", data, "--as-of", "2026-01-01T00:00+08:00", "--out",
            tmp_path / "s.parquet"], 2, "has a time zone")  # fmt: skip
    _fails(["score", "--data", data, "--as-of", as_of, "--out", tmp_path / "s.xlsx"],
           2, ".parquet or .csv")  # fmt: skip
    _fails(["worklist", "reassess", "--scores", tmp_path / "none.parquet", "--out",
            tmp_path / "l.csv"], 2, "no such score file")  # fmt: skip
    _fails(["worklist", "reassess", "--scores", tmp_path / "none.parquet", "--out",
            tmp_path / "l.pdf"], 2, ".csv, .xlsx or .html")  # fmt: skip
    assert not list(tmp_path.glob("s.*")) and not list(tmp_path.glob("l.*"))


# --- monitor --------------------------------------------------------------------------------------


def test_monitor_logs_each_check_and_exits_3_on_an_alert(demo, as_of, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
    when = pd.Timestamp(as_of)
    report = tmp_path / "monitor.zh.html"
    plain = _run(["monitor", "churn", "--data", demo / "data", "--as-of", as_of, "--out",
                  report, "--json"])  # fmt: skip
    assert plain.exit_code in (0, 3), plain.output
    summary = _last_json(plain.output)
    assert (plain.exit_code == 3) == (summary["verdict"] == "alert")
    assert report.exists() and "漂移" in report.read_text(encoding="utf-8")
    run = mlflow.get_run(summary["run_id"])
    assert run.data.tags["suitability.verdict"] == summary["verdict"]
    assert mlflow.get_experiment(run.info.experiment_id).name == "suitability-monitoring"

    world = worlds.amounts_and_channels_shift(
        demo / "data", tmp_path / "shifted", when - pd.Timedelta(days=120)
    )
    shifted = _run(["monitor", "churn", "--data", world, "--as-of", as_of, "--no-log",
                    "--json"])  # fmt: skip
    assert shifted.exit_code == 3, shifted.output
    moved = {d["feature"] for d in _last_json(shifted.output)["drifted"] if d["status"] == "alert"}
    assert any(f.startswith("amt_") for f in moved), moved
    assert any("app" in f or "advisor" in f for f in moved), moved
    calm = {d["feature"] for d in summary["drifted"] if d["status"] == "alert"}
    assert not any(f.startswith("amt_") for f in calm - moved)


def test_monitor_names_a_bad_argument(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
    _fails(["monitor", "churn", "--data", demo / "data", "--as-of", "soon"], 2, "soon")
    _fails(["monitor", "churn", "--data", demo / "data", "--as-of", "2026-01-01", "--out",
            tmp_path / "r.txt"], 2, ".html")  # fmt: skip
