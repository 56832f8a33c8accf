"""The synthetic generator: contracts of the files it writes, determinism, the planted structure
of the world, and the exact churn probability against Monte Carlo."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from suitability.data import synth
from suitability.data.schema import TABLES
from suitability.data.synth import (
    CHUNK_CUSTOMERS,
    CHURN_HORIZON_DAYS,
    PART_TABLES,
    arrow_schema,
    churn_probability,
    generate,
    quit_hazard,
    simulate_quit_and_invest,
)
from suitability.specs import C_LEVELS, R_LEVELS, Specs

#: Two chunks, the second partial, so determinism across workers is tested on a real split.
N_WORLD = CHUNK_CUSTOMERS + 1_500
SEED = 11


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "world"
    calls: list[tuple[int, int]] = []
    generate(out, N_WORLD, SEED, workers=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 2), (1, 2), (2, 2)]
    return out


def _read(world: Path, table: str) -> pd.DataFrame:
    return pq.read_table(world / table).to_pandas()


@pytest.fixture(scope="module")
def events(world: Path) -> pd.DataFrame:
    return _read(world, "events")


@pytest.fixture(scope="module")
def truth(world: Path) -> pd.DataFrame:
    return _read(world, "ground_truth")


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- determinism ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_seed_gives_identical_bytes_for_any_number_of_workers(world: Path, tmp_path: Path):
    again = tmp_path / "again"
    generate(again, N_WORLD, SEED, workers=1)
    first, second = _files(world), _files(again)
    assert sorted(first) == sorted(second)
    assert "events/part-00001.parquet" in first
    for name, data in first.items():
        assert data == second[name], f"{name} differs between workers=2 and workers=1"


def test_different_seed_gives_different_data(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, 300, 1, workers=1)
    generate(b, 300, 2, workers=1)
    for table in ("customers", "events", "ground_truth"):
        assert not pq.read_table(a / table).equals(pq.read_table(b / table)), table


# --- contracts of the written files --------------------------------------------------------------


def test_layout_and_summary(world: Path):
    for table in PART_TABLES:
        assert sorted(p.name for p in (world / table).iterdir()) == [
            "part-00000.parquet",
            "part-00001.parquet",
        ]
    assert (world / "products.parquet").is_file()
    meta = json.loads((world / "synth.json").read_text(encoding="utf-8"))
    assert meta["n_customers"] == N_WORLD and meta["seed"] == SEED
    assert meta["start"] == "2024-07-01" and meta["end"] == "2026-10-01"
    assert meta["snapshots"][0] == "2025-01-01" and meta["snapshots"][-1] == "2026-07-01"
    for table in PART_TABLES:
        written = sum(pq.read_metadata(p).num_rows for p in (world / table).iterdir())
        assert meta["rows"][table] == written, table
    assert meta["rows"]["products"] == pq.read_metadata(world / "products.parquet").num_rows
    assert not [p for p in world.parent.iterdir() if p.name.startswith(".")], "temp folder left"


@pytest.mark.parametrize("table", [*PART_TABLES, "products"])
def test_parquet_schema_matches_declared_schema(world: Path, table: str):
    paths = (
        [world / "products.parquet"] if table == "products" else sorted((world / table).iterdir())
    )
    expected = arrow_schema(table)
    if table in TABLES:
        assert expected.names == TABLES[table].column_names
    for path in paths:
        schema = pq.read_schema(path)
        assert schema.remove_metadata().equals(expected), f"{path.name}: {schema}"
        assert not schema.metadata or b"pandas" not in schema.metadata


def test_vocabularies(world: Path, specs: Specs, events: pd.DataFrame):
    customers = _read(world, "customers")
    assert set(customers["gender"]) <= set(specs.profile.genders)
    assert set(customers["city_tier"]) == set(specs.profile.city_tiers)
    assert set(customers["income_band"]) == set(specs.profile.income_bands)
    assert set(customers["channel_preference"]) <= set(specs.behaviour.channels)
    assert set(events["event_type"]) == set(specs.behaviour.event_types)
    assert set(events["channel"]) == set(specs.behaviour.channels)
    assert set(events["product_risk"].dropna()) == set(R_LEVELS)
    tags = _read(world, "interview_tags")
    assert set(tags["tag"]) <= set(specs.tags.by_id)
    reviews = _read(world, "risk_reviews")
    assert set(reviews["confirmed_level"]) == set(C_LEVELS)
    q = _read(world, "questionnaire_responses")
    assert set(q["questionnaire_version"]) == set(specs.questionnaires)
    definition = specs.questionnaires[q["questionnaire_version"].iloc[0]]
    assert set(q["question_id"]) == set(definition.question_ids)
    for qid, answers in q.groupby("question_id")["answer"]:
        assert set(answers) <= set(definition.scores[qid]), qid


def test_customers_ids_and_pii(world: Path, specs: Specs):
    c = _read(world, "customers")
    assert c["customer_id"].is_unique and c["customer_id"].is_monotonic_increasing
    assert c["customer_id"].iloc[0] == "C0000001" and c["customer_id"].iloc[-1] == f"C{N_WORLD:07d}"
    birth = pd.to_datetime(c["birth_date"])
    assert (birth < c["registered_at"]).all()
    age = (pd.Timestamp("2024-07-01") - birth).dt.days / 365.25
    assert age.min() >= 18 and age.max() <= 85
    assert 0.10 <= (age >= 65).mean() <= 0.15
    assert 0.05 <= (c["registered_at"] >= pd.Timestamp("2024-07-01")).mean() <= 0.35

    ids = c["id_number"]
    assert ids.str.fullmatch(r"\d{17}[\dX]").all()
    assert (ids.str[6:14] == birth.dt.strftime("%Y%m%d")).all()
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    digits = np.array([[int(ch) for ch in s[:17]] for s in ids])
    assert (np.array(list("10X98765432"))[(digits @ weights) % 11] == ids.str[17].to_numpy()).all()
    male = ids.str[16].astype(int) % 2 == 1
    if "M" in specs.profile.genders:
        assert (male == (c["gender"] == "M")).all()
    assert c["phone"].str.fullmatch(r"1[35789]\d{9}").all()
    assert c["name"].str.len().between(2, 3).all()
    assert c["name"].str.fullmatch(r"[\u4e00-\u9fff]+").all()


def test_events_rules(world: Path, events: pd.DataFrame, specs: Specs):
    products = pq.read_table(world / "products.parquet").to_pandas().set_index("product_id")
    assert 350 <= len(products) <= 450 and set(products["risk_level"]) == set(R_LEVELS)
    start, end = pd.Timestamp("2024-07-01"), pd.Timestamp("2026-10-01")
    assert events["event_time"].min() >= start and events["event_time"].max() < end
    assert events["event_time"].max() - events["event_time"].min() >= pd.Timedelta(days=700)
    monetary = events["event_type"].isin(specs.behaviour.monetary_event_types)
    assert (
        events.loc[monetary, "amount"].notna().all()
        and events.loc[~monetary, "amount"].isna().all()
    )
    assert (events["amount"].dropna() >= 0).all()
    with_product = events["event_type"].isin(["invest", "redeem"])
    assert events.loc[with_product, ["product_id", "product_risk", "term_days"]].notna().all().all()
    allowed = with_product | (events["event_type"] == "product_view")
    assert events.loc[~allowed, "product_id"].isna().all()
    known = events.dropna(subset=["product_id"])
    assert (
        known["product_risk"].to_numpy()
        == products.loc[known["product_id"], "risk_level"].to_numpy()
    ).all()
    assert (
        known["term_days"].to_numpy() == products.loc[known["product_id"], "term_days"].to_numpy()
    ).all()
    sessions = events["event_type"].isin(["login", "product_view"])
    assert (
        events.loc[sessions, "duration_s"].notna().all()
        and events.loc[~sessions, "duration_s"].isna().all()
    )
    # Registered before acting.
    reg = _read(world, "customers").set_index("customer_id")["registered_at"]
    assert (events["event_time"].to_numpy() >= reg.loc[events["customer_id"]].to_numpy()).all()
    assert len(events) / N_WORLD >= 50, "too few events per customer"


def test_events_sorted_within_parts_and_parts_in_customer_order(world: Path):
    last = ""
    for path in sorted((world / "events").iterdir()):
        part = pq.read_table(path, columns=["customer_id", "event_time"])
        cid = part["customer_id"].to_numpy(zero_copy_only=False)
        t = part["event_time"].to_numpy()
        assert cid[0] > last
        same = cid[1:] == cid[:-1]
        assert ((cid[1:] > cid[:-1]) | (same & (t[1:] >= t[:-1]))).all()
        last = cid[-1]


def test_interviews_reviews_and_questionnaires(world: Path, specs: Specs):
    tags = _read(world, "interview_tags")
    assert (tags["recorded_at"] >= tags["interview_time"]).all()
    assert (tags["recorded_at"] - tags["interview_time"]).max() <= pd.Timedelta(days=20)
    assert tags["advisor_id"].str.fullmatch(r"A\d{4}").all()
    per_interview = tags.groupby(["customer_id", "interview_time"]).size()
    assert per_interview.between(1, 4).all()
    assert 0.5 <= tags["customer_id"].nunique() / N_WORLD <= 0.7
    notes = tags["note"].dropna()
    assert 0 < len(notes) < 0.3 * len(tags) and notes.str.contains(r"1[35789]\d{9}").any()

    reviews = _read(world, "risk_reviews")
    counts = reviews["customer_id"].value_counts()
    assert (
        0.33 <= (counts == 1).sum() / N_WORLD <= 0.45
        and 0.07 <= (counts == 2).sum() / N_WORLD <= 0.13
    )

    q = _read(world, "questionnaire_responses")
    definition = specs.questionnaires[q["questionnaire_version"].iloc[0]]
    per_submission = q.groupby(["customer_id", "submitted_at"])["question_id"]
    assert (per_submission.nunique() == len(definition.questions)).all()
    assert (per_submission.size() == len(definition.questions)).all()
    assert 0.88 <= q["customer_id"].nunique() / N_WORLD <= 0.96


# --- ground truth and the planted structure -------------------------------------------------------


def test_ground_truth_probabilities(truth: pd.DataFrame, world: Path):
    levels = truth[[f"p_{c.lower()}" for c in C_LEVELS]].to_numpy()
    assert np.allclose(levels.sum(axis=1), 1.0) and (levels >= 0).all() and (levels <= 1).all()
    p = truth["p_churn"]
    assert p.dropna().between(0, 1).all()
    reg = _read(world, "customers").set_index("customer_id")["registered_at"]
    registered = reg.loc[truth["customer_id"]].to_numpy() <= truth["snapshot"].to_numpy()
    assert (p.notna().to_numpy() == registered).all()
    assert (p[truth["quit"]] == 1.0).all()
    assert truth["snapshot"].nunique() == 19 and len(truth) == 19 * N_WORLD
    # Confirmed levels: C3 most common, C5 rare, C1 ~12–15 %.
    share = levels.mean(axis=0)
    assert share.argmax() == 2 and 0.04 <= share[4] <= 0.09 and 0.10 <= share[0] <= 0.16


def test_planted_misstatement_shares(truth: pd.DataFrame):
    first = truth.drop_duplicates("customer_id")
    share = first["misstatement"].value_counts(normalize=True)
    assert 0.085 <= share["understate"] <= 0.115 and 0.038 <= share["overstate"] <= 0.062
    assert (first.loc[first["misstatement"] == "understate", "stated_shift"] < -0.3).all()
    assert (first.loc[first["misstatement"] == "overstate", "stated_shift"] > 0.3).all()
    assert (first.loc[first["misstatement"] == "none", "stated_shift"] == 0).all()


def _latest_band(q: pd.DataFrame, specs: Specs) -> pd.Series:
    definition = specs.questionnaires[q["questionnaire_version"].iloc[0]]
    scores = [definition.scores[a][b] for a, b in zip(q["question_id"], q["answer"], strict=True)]
    totals = q.assign(score=scores).groupby(["customer_id", "submitted_at"])["score"].sum()
    latest = totals.reset_index().sort_values("submitted_at").groupby("customer_id").tail(1)
    edges = [b.max for b in definition.bands]
    band = np.searchsorted(edges, latest["score"].to_numpy()) + 1
    return pd.Series(band, index=latest["customer_id"])


def test_understaters_behave_above_their_questionnaire(
    world: Path, events: pd.DataFrame, truth: pd.DataFrame, specs: Specs
):
    invest = events[events["event_type"] == "invest"]
    risk = invest["product_risk"].str[1].astype(float) * invest["amount"]
    revealed = (
        risk.groupby(invest["customer_id"]).sum() / invest.groupby("customer_id")["amount"].sum()
    )
    band = _latest_band(_read(world, "questionnaire_responses"), specs)
    kind = truth.drop_duplicates("customer_id").set_index("customer_id")["misstatement"]
    gap = (revealed - band).dropna().groupby(kind).mean()
    assert gap["understate"] > 0.3
    assert gap["understate"] > gap["none"] + 0.5 > gap["overstate"] + 1.0


def test_interview_up_tags_reveal_understaters(world: Path, truth: pd.DataFrame, specs: Specs):
    tags = _read(world, "interview_tags")
    up = {t.id for t in specs.tags.tags if t.risk_direction == "up"}
    share_up = tags["tag"].isin(up).groupby(tags["customer_id"]).mean()
    band = _latest_band(_read(world, "questionnaire_responses"), specs)
    kind = truth.drop_duplicates("customer_id").set_index("customer_id")["misstatement"]
    frame = pd.DataFrame({"up": share_up, "band": band, "kind": kind}).dropna()
    low_band = frame[frame["band"] <= 2]
    by_kind = low_band.groupby("kind")["up"].mean()
    assert by_kind["understate"] > by_kind["none"] + 0.1


def test_churn_probability_matches_realised_labels(events: pd.DataFrame, truth: pd.DataFrame):
    """End to end: the generated invest events follow the process the exact formula assumes."""
    invest = events.loc[events["event_type"] == "invest", ["customer_id", "event_time"]]
    invest = invest.sort_values(["customer_id", "event_time"])
    key = invest["customer_id"].to_numpy().astype(object)
    rows = truth[truth["p_churn"].notna()]
    labels = np.empty(len(rows), dtype=bool)
    times = invest["event_time"].to_numpy()
    for snap, idx in rows.groupby("snapshot").indices.items():
        t = np.datetime64(snap)
        h = t + np.timedelta64(CHURN_HORIZON_DAYS, "D")
        window = invest[(times > t) & (times <= h)]
        labels[idx] = ~rows["customer_id"].iloc[idx].isin(set(window["customer_id"])).to_numpy()
    assert key.size  # there are invests at all
    realised, expected = labels.mean(), rows["p_churn"].mean()
    assert abs(realised - expected) < 0.01, (realised, expected)


# --- the exact churn probability ------------------------------------------------------------------


def _monte_carlo(
    rng: np.random.Generator,
    lam: np.ndarray,
    days: np.ndarray,
    base_log_hazard: np.ndarray,
    known: tuple[int, int],
    p_complaint: np.ndarray,
    p_life: np.ndarray,
    draws: int,
) -> float:
    """Simulate the monthly process forward with the generator's own step function."""
    alive = np.ones(draws, dtype=bool)
    invested = np.zeros(draws, dtype=bool)
    complained = np.full(draws, known[0])
    life = np.full(draws, known[1])
    for j in range(len(days)):
        if j > 0:  # last month's indicators, drawn independently
            complained = rng.random(draws) < p_complaint[j - 1]
            life = rng.random(draws) < p_life[j - 1]
        hazard = quit_hazard(np.full(draws, base_log_hazard[j]), complained, life)
        quit_after, n_invest = simulate_quit_and_invest(
            rng, hazard, np.full(draws, lam[j]), np.full(draws, float(days[j]))
        )
        invested |= alive & (n_invest > 0)
        alive &= ~np.isfinite(quit_after)
    return float(np.mean(~invested))


@pytest.mark.parametrize(
    "lam_month, log_r, known, p_c, p_l, days",
    [
        (1.0, -8.0, (0, 0), 0.02, 0.01, (31, 30, 29)),
        (0.3, -7.0, (1, 0), 0.2, 0.05, (31, 30, 29)),
        (0.1, -6.0, (0, 1), 0.5, 0.3, (30, 31, 28, 1)),
        (2.5, -6.5, (1, 1), 0.1, 0.4, (28, 31, 30, 1)),
        (0.6, -5.5, (0, 0), 0.35, 0.2, (31, 31, 28)),
    ],
)
def test_churn_probability_matches_monte_carlo(lam_month, log_r, known, p_c, p_l, days):
    rng = np.random.default_rng(42)
    h = len(days)
    season = np.array([1.0, 0.8, 1.25, 0.9])[:h]
    lam = lam_month / 30.44 * season
    base = log_r + np.array([0.0, 0.3, -0.2, 0.5])[:h]
    pcs = p_c * np.array([1.0, 1.5, 0.5])[: h - 1]
    pls = p_l * np.array([1.0, 0.5, 1.5])[: h - 1]
    combos = np.array([(0, 0), (0, 1), (1, 0), (1, 1)], dtype=float)
    later_h = np.stack(
        [quit_hazard(np.full(4, base[j]), combos[:, 0], combos[:, 1]) for j in range(1, h)]
    )[None]
    later_w = np.stack(
        [
            [(1 - c) * (1 - ell), (1 - c) * ell, c * (1 - ell), c * ell]
            for c, ell in zip(pcs, pls, strict=True)
        ]
    )[None]
    exact = churn_probability(
        lam[None, :], np.array(days), quit_hazard(np.array([base[0]]), *known), later_h, later_w
    )[0]
    draws = 20_000
    mc = _monte_carlo(rng, lam, np.array(days), base, known, pcs, pls, draws)
    se = np.sqrt(max(exact * (1 - exact), 1e-4) / draws)
    assert abs(mc - exact) < 4 * se + 1e-3, (mc, exact)


def test_churn_probability_edge_cases():
    days = np.array([31.0, 30.0, 29.0])
    hazard = np.full((2, 2, 4), 1e-3)
    weights = np.full((2, 2, 4), 0.25)
    # Never investing: churn is certain. A huge invest rate: churn is nearly impossible.
    p = churn_probability(
        np.array([[0.0, 0.0, 0.0], [50.0, 50.0, 50.0]]), days, np.full(2, 1e-3), hazard, weights
    )
    assert p[0] == pytest.approx(1.0) and p[1] < 1e-4


# --- refusals and atomicity -----------------------------------------------------------------------


def test_refuses_bad_arguments(tmp_path: Path):
    out = tmp_path / "x"
    with pytest.raises(ValueError, match="n_customers"):
        generate(out, 0, 1)
    with pytest.raises(ValueError, match="months"):
        generate(out, 10, 1, months=23)
    with pytest.raises(ValueError, match="ISO date"):
        generate(out, 10, 1, start="01/07/2024")
    with pytest.raises(ValueError, match="first day of a month"):
        generate(out, 10, 1, start="2024-07-15")
    with pytest.raises(ValueError, match="seed"):
        generate(out, 10, -1)
    with pytest.raises(ValueError, match="workers"):
        generate(out, 10, 1, workers=0)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_refuses_non_empty_output_but_accepts_an_empty_one(tmp_path: Path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ValueError, match="not empty"):
        generate(busy, 10, 1)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    summary = generate(empty, 25, 1, workers=1)
    assert summary.rows["customers"] == 25 and (empty / "synth.json").is_file()


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(*args: object, **kwargs: object) -> dict[str, int]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(synth, "_write_chunk", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate(tmp_path / "out", 10, 1, workers=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_failure_in_the_worker_pool_path_leaves_nothing_behind(tmp_path: Path):
    def stop_after_first(done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt  # e.g. Ctrl-C in the CLI's progress loop

    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "out", CHUNK_CUSTOMERS + 10, 1, workers=2, progress=stop_after_first)
    assert list(tmp_path.iterdir()) == []


def test_generate_chunk_is_pure_and_typed(specs: Specs):
    tables = synth.generate_chunk(specs, 5, 0, 40, date(2024, 7, 1), 24)
    assert set(tables) == set(PART_TABLES)
    for name, table in tables.items():
        assert isinstance(table, pa.Table) and table.schema.equals(arrow_schema(name)), name
    assert tables["customers"].num_rows == 40
