"""Shared fixtures: the project specs, small random datasets built inline (no generator), the
demo world, and a throwaway PostgreSQL server for the team-setup tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pg_cluster import Cluster, postgres_cluster
from suitability.features.kernel import FeatureInputs
from suitability.specs import R_LEVELS, Specs, load_specs

# The ID-pseudonym key of every test and every server a test starts (never a file in $HOME).
os.environ.setdefault("SUITABILITY_PII_KEY", "test-pseudonym-key-" + "0" * 32)


@pytest.fixture(scope="session")
def specs() -> Specs:
    return load_specs()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A PostgreSQL 15 server of this session's own, started on first use, removed after."""
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """`suitability demo` on 2,500 customers, run once per session: synthetic data, both models
    registered and promoted to champion, the demo reports. Tests that need registered models
    point MLFLOW_TRACKING_URI at `demo / "mlflow.db"`."""
    from typer.testing import CliRunner

    from suitability.cli import app

    out = tmp_path_factory.mktemp("demo") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = CliRunner().invoke(
            app, ["demo", "--out", str(out), "--customers", "2500"], catch_exceptions=False
        )
    assert result.exit_code == 0, result.output
    assert "reports" in result.output
    assert "suitability serve --keys" in result.output  # the demo says how to serve its models
    return out


def random_inputs(
    specs: Specs, n_customers: int = 30, n_events: int = 3000, seed: int = 0
) -> FeatureInputs:
    """A messy little world: customers with and without questionnaires, events and interviews,
    sub-second timestamps, ties, nulls where the contract allows them."""
    rng = np.random.default_rng(seed)
    ids = [f"C{i:04d}" for i in range(n_customers)]
    p = specs.profile
    customers = pd.DataFrame(
        {
            "customer_id": pd.Series(ids, dtype="str"),
            "birth_date": (
                pd.Timestamp("1945-01-01")
                + pd.to_timedelta(rng.integers(0, 60 * 365, n_customers), unit="D")
            ).astype("datetime64[us]"),
            "gender": rng.choice(list(p.genders), n_customers),
            "city_tier": rng.choice(list(p.city_tiers), n_customers),
            "income_band": rng.choice(list(p.income_bands), n_customers),
            "registered_at": (
                pd.Timestamp("2022-01-01")
                + pd.to_timedelta(rng.integers(0, 900 * 86400, n_customers), unit="s")
            ).astype("datetime64[us]"),
            "channel_preference": rng.choice(list(specs.behaviour.channels), n_customers),
        }
    )
    definition = next(iter(specs.questionnaires.values()))
    rows = []
    for cid in ids:
        for _ in range(rng.integers(0, 4)):  # 0–3 submissions
            at = pd.Timestamp("2023-01-01") + pd.Timedelta(
                seconds=int(rng.integers(0, 700 * 86400))
            )
            for q in definition.questions:
                rows.append(
                    (cid, definition.version, at, q.id, q.options[rng.integers(len(q.options))].id)
                )
    questionnaire = pd.DataFrame(
        rows,
        columns=["customer_id", "questionnaire_version", "submitted_at", "question_id", "answer"],
    )
    questionnaire["submitted_at"] = questionnaire["submitted_at"].astype("datetime64[us]")

    event_types = list(specs.behaviour.event_types)
    etype = rng.choice(event_types, n_events, p=_type_weights(event_types))
    monetary = np.isin(etype, specs.behaviour.monetary_event_types)
    with_product = np.isin(etype, ["invest", "redeem"])
    micros = rng.integers(0, 760 * 86400 * 1_000_000, n_events)
    micros[: n_events // 10] -= micros[: n_events // 10] % 1_000_000  # some whole-second times
    events = pd.DataFrame(
        {
            "customer_id": rng.choice(
                ids[: max(n_customers - 3, 1)], n_events
            ),  # the last three: no events
            "event_time": (pd.Timestamp("2023-06-01") + pd.to_timedelta(micros, unit="us")).astype(
                "datetime64[us]"
            ),
            "event_type": etype,
            "amount": np.where(monetary, np.round(rng.lognormal(8, 1.5, n_events), 2), np.nan),
            "product_id": np.where(with_product, "P00001", None),
            "product_risk": np.where(with_product, rng.choice(list(R_LEVELS), n_events), None),
            "term_days": pd.array(
                np.where(
                    with_product & (rng.random(n_events) < 0.9),
                    rng.choice([0, 30, 90, 365], n_events),
                    -1,
                ),
                dtype="Int64",
            ),
            "channel": rng.choice(list(specs.behaviour.channels), n_events),
            "duration_s": np.where(monetary, np.nan, rng.exponential(60, n_events)),
        }
    )
    events.loc[events["term_days"] < 0, "term_days"] = pd.NA
    tag_ids = [t.id for t in specs.tags.tags]
    tag_rows = []
    for cid in ids[: n_customers * 2 // 3]:
        for _ in range(rng.integers(0, 3)):
            when = pd.Timestamp("2023-03-01") + pd.Timedelta(
                seconds=int(rng.integers(0, 700 * 86400))
            )
            advisor = f"A{rng.integers(0, 5):03d}"
            for tag in rng.choice(tag_ids, rng.integers(1, 4), replace=False):
                lag = pd.Timedelta(seconds=int(rng.integers(0, 15 * 86400)))
                tag_rows.append((cid, when, when + lag, advisor, tag, None))
    tags = pd.DataFrame(
        tag_rows,
        columns=["customer_id", "interview_time", "recorded_at", "advisor_id", "tag", "note"],
    )
    for col in ("interview_time", "recorded_at"):
        tags[col] = tags[col].astype("datetime64[us]")
    return FeatureInputs(customers=customers, questionnaire=questionnaire, events=events, tags=tags)


def _type_weights(event_types: list[str]) -> np.ndarray:
    base = {"login": 5, "product_view": 4, "invest": 3, "deposit": 2, "redeem": 2, "withdraw": 1}
    w = np.array([base.get(t, 0.5) for t in event_types], dtype=float)
    return w / w.sum()


def only_customer(inputs: FeatureInputs, customer_id: str) -> FeatureInputs:
    """The slice of `inputs` that belongs to one customer (what a single request carries)."""

    def pick(df: pd.DataFrame) -> pd.DataFrame:
        return df[df["customer_id"] == customer_id].reset_index(drop=True)

    return FeatureInputs(
        customers=pick(inputs.customers),
        questionnaire=pick(inputs.questionnaire),
        events=pick(inputs.events),
        tags=pick(inputs.tags),
    )
