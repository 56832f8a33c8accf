"""Monitoring on generated worlds, end to end: a churn model trained on the world as it was known on
a day and logged (with its reference) to an MLflow store, then checked months later, by the code
`suitability monitor` runs, on the world as it went on, and on copies of it changed after a date
(tests/worlds.py): amounts tripled and the app's share moved to advisors; a downturn in activity;
new reasons for leaving.

The world's history starts five years before the check, so every window feature (up to 1,095
days) is full both in the reference and at the check: a younger world's long windows are still
filling, which is drift too, but the generator's, not the platform's."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest

import worlds
from suitability.monitoring.result import MonitoringResult

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]

TRAINED = pd.Timestamp("2026-06-01")  # the day the model was trained: it saw the world up to here
CHECKED = pd.Timestamp("2026-09-01")  # the monitoring run, three months on
MODEL = "suitability-churn@challenger"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from suitability.data.synth import generate

    out = tmp_path_factory.mktemp("worlds")
    generate(out / "world", 4000, seed=19, start="2021-07-01", months=63, workers=1)
    return out / "world"


@pytest.fixture(scope="module")
def store(world, specs, tmp_path_factory):
    """A store whose churn challenger was trained on `world` as known on TRAINED."""
    from suitability import tracking
    from suitability.models.spec import load_model_spec
    from suitability.models.train import train_on_features
    from suitability.models.training_table import build_training_table

    root = tmp_path_factory.mktemp("store")
    seen = worlds.known_at(world, root / "then", TRAINED)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        tracking.use_store(f"sqlite:///{root / 'mlflow.db'}", artifacts=root / "mlartifacts")
        spec = load_model_spec("churn", specs)
        spec = spec.model_copy(
            update={"params": {**spec.params, "learning_rate": 0.2}, "early_stopping_rounds": 20}
        )
        with tempfile.TemporaryDirectory() as scratch:
            table = build_training_table(spec, seen, specs, scratch).frame
        assert table["as_of"].max() < TRAINED
        tracking.log_training(train_on_features(table, spec, specs), source={"mode": "data"})
        yield root


@pytest.fixture(scope="module")
def check(store, specs):
    from suitability.monitoring.check import check_model
    from suitability.monitoring.spec import load_monitoring_spec

    thresholds = load_monitoring_spec(None, specs=specs)

    def run(data: Path) -> MonitoringResult:
        return check_model(MODEL, data, CHECKED, thresholds, specs)[0]

    return run


@pytest.fixture(scope="module")
def unchanged(world, check) -> MonitoringResult:
    return check(world)


def _show(name: str, result: MonitoringResult) -> None:
    """What the check found, for `pytest -s` (the figures the README quotes)."""
    auc = _auc(result)
    print(
        f"\n{name}: verdict {result.verdict}; features {result.counts()}; "
        f"alerts {sorted(_flagged(result, 'alert'))}; "
        f"predictions {[(p.name, round(p.psi, 3), p.status) for p in result.predictions]}; "
        f"roc_auc logged {auc.logged:.3f} realised {auc.realised:.3f} ({auc.status})"
    )


def _flagged(result: MonitoringResult, *statuses: str) -> dict[str, float]:
    return {c.name: c.psi for c in result.features if c.status in statuses}


def _auc(result: MonitoringResult):
    assert result.performance is not None, "no labels matured"
    (auc,) = [c for c in result.performance.checks if c.metric == "roc_auc"]
    return auc


def test_the_world_as_it_went_on_raises_no_alarm(unchanged):
    _show("unchanged", unchanged)
    assert len(unchanged.features) == 190
    assert _flagged(unchanged, "alert") == {}
    # Warnings ("watch this") on at most 2 % of the features, none on the predictions.
    watched = {c.name for c in unchanged.features if c.status == "warn" and not c.report_only}
    assert len(watched) <= 0.02 * 190, _flagged(unchanged, "warn")
    assert [p.status for p in unchanged.predictions] == ["ok"]
    # Labels matured since training (month starts whose 90 days have passed): no worsening.
    assert _auc(unchanged).status == "ok"
    assert unchanged.verdict in ("ok", "warn")
    # Calendar features move on their own; they are measured, shown, and never alert.
    calendar = {c.name: c for c in unchanged.features if c.report_only}
    assert set(calendar) == {"tenure_days", "q_days_since"}
    assert calendar["tenure_days"].psi > 0.1 and calendar["tenure_days"].status == "warn"


def test_tripled_amounts_and_a_new_channel_mix_alert_on_those_features(world, check, tmp_path):
    shifted = check(
        worlds.amounts_and_channels_shift(world, tmp_path / "w", CHECKED - pd.Timedelta(days=90))
    )
    _show("amounts and channels", shifted)
    alerts = _flagged(shifted, "alert")
    assert shifted.alerting
    assert {"amt_invest_90d", "channel_share_app_90d", "channel_share_advisor_90d"} <= set(alerts)
    moved = ("amt_", "channel_share_", "avg_amount", "net_holdings", "ratio")
    assert all(any(part in name for part in moved) for name in alerts), alerts
    # The churn model hardly uses amounts or channels, so its predictions stay put: prediction
    # drift measures what the model does with the inputs, not the inputs again.
    assert [p.status for p in shifted.predictions] != ["alert"]


def test_a_downturn_in_activity_moves_the_predictions(world, check, tmp_path):
    fallen = check(
        worlds.activity_falls(world, tmp_path / "w", CHECKED - pd.Timedelta(days=90), keep=0.35)
    )
    _show("downturn", fallen)
    assert [p.status for p in fallen.predictions] == ["alert"]
    assert {"n_login_90d", "n_invest_90d"} <= set(_flagged(fallen, "warn", "alert"))


def test_new_reasons_for_leaving_show_as_a_drop_in_realised_auc(world, unchanged, check, tmp_path):
    since = TRAINED - pd.Timedelta(days=61)
    left = check(worlds.leavers_change(world, tmp_path / "w", since, tier="T1", share=1.0))
    _show("new reasons for leaving", left)
    auc, before = _auc(left), _auc(unchanged)
    # Alert: worse than the logged test AUC by at least 0.05, with its whole interval below it.
    assert auc.status == "alert", auc
    assert auc.realised < before.realised - 0.05
    assert left.alerting
