"""Training tables, splits and model behaviour: labels come strictly after features, no customer
crosses splits, and the trained models respect the directions a reviewer would insist on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from suitability.data.synth import generate
from suitability.features.bundle import CustomerBundle, customer_features
from suitability.models.estimators import cumulative_to_proba, median_level
from suitability.models.spec import ExperimentConfig, load_model_spec
from suitability.models.split import split_out_of_time
from suitability.models.train import train_on_features
from suitability.models.training_table import (
    build_training_table,
    churn_snapshots,
    count_in_windows,
    review_queries,
)
from suitability.specs import SpecError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "data"
    generate(out, 4000, seed=11)
    return out


@pytest.fixture(scope="module")
def tables(world, specs, tmp_path_factory) -> dict[str, pd.DataFrame]:
    out = {}
    for name in ("risk-level", "churn"):
        spec = load_model_spec(name, specs)
        out[name] = build_training_table(spec, world, specs, tmp_path_factory.mktemp(name)).frame
    return out


@pytest.fixture(scope="module")
def trained(tables, specs):
    """Both models, with a faster learning rate than the specs' (tests check behaviour, not
    the last point of accuracy)."""
    out = {}
    for name in ("risk-level", "churn"):
        spec = load_model_spec(name, specs)
        spec = spec.model_copy(
            update={"params": {**spec.params, "learning_rate": 0.15}, "early_stopping_rounds": 30}
        )
        out[name] = train_on_features(tables[name], spec, specs)
    return out


# --- labels and point in time ---------------------------------------------------------------------


def test_review_features_are_as_of_strictly_before_the_review():
    reviews = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "reviewed_at": pd.to_datetime(
                ["2025-03-01 10:00:00", "2025-03-01 10:00:00.400"], format="ISO8601"
            ),
            "confirmed_level": ["C2", "C4"],
        }
    )
    q = review_queries(reviews)
    assert list(q["as_of"]) == [
        pd.Timestamp("2025-03-01 09:59:59"),
        pd.Timestamp("2025-03-01 10:00:00"),
    ]
    assert (q["as_of"] < reviews["reviewed_at"]).all()


def _naive_count(queries, facts, lo, hi):
    out = []
    for cid, t in zip(queries["customer_id"], queries["as_of"], strict=True):
        times = facts.loc[facts["customer_id"] == cid, "event_time"].dt.ceil("s")
        out.append(int(((times > t + lo) & (times <= t + hi)).sum()))
    return np.array(out)


def test_count_in_windows_matches_a_naive_count_including_edges():
    rng = np.random.default_rng(3)
    t0 = pd.Timestamp("2025-06-01")
    ids = [f"c{i}" for i in range(30)]
    facts = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, 600),
            "event_time": t0 + pd.to_timedelta(rng.integers(-300, 300, 600) * 86400 // 2, unit="s"),
        }
    )
    # Exact edges: at t (before, counts in the past window), at t + 90 d (counts in the future),
    # at t - 180 d (outside the activity window), sub-second just after t (future).
    edges = pd.DataFrame(
        {
            "customer_id": ["c0", "c1", "c2", "c3"],
            "event_time": [
                t0,
                t0 + pd.Timedelta(days=90),
                t0 - pd.Timedelta(days=180),
                t0 + pd.Timedelta(microseconds=1),
            ],
        }
    )
    facts = pd.concat([facts, edges], ignore_index=True)
    queries = pd.DataFrame({"customer_id": [*ids, "nobody"], "as_of": t0})
    for lo, hi in (
        (pd.Timedelta(days=-180), pd.Timedelta(0)),
        (pd.Timedelta(0), pd.Timedelta(days=90)),
    ):
        assert (
            count_in_windows(queries, facts, lo, hi) == _naive_count(queries, facts, lo, hi)
        ).all()


def test_churn_snapshots_need_history_before_and_a_full_horizon_after(specs):
    labels = load_model_spec("churn", specs).labels
    snaps = churn_snapshots(pd.Timestamp("2024-07-01"), pd.Timestamp("2026-09-30 23:00"), labels)
    assert snaps[0] == pd.Timestamp("2025-01-01")  # 2024-07-01 + 180 d = 2024-12-28
    assert snaps[-1] == pd.Timestamp("2026-07-01")  # + 90 d = 2026-09-29 <= end
    assert churn_snapshots(pd.Timestamp("2025-01-01"), pd.Timestamp("2025-06-01"), labels) == []


def test_churn_labels_agree_with_the_raw_events(tables, world):
    table = tables["churn"]
    events = pd.read_parquet(world / "events", columns=["customer_id", "event_time", "event_type"])
    invest = events[events["event_type"] == "invest"]
    sample = table.sample(300, random_state=1)
    for row in sample.itertuples():
        mine = invest.loc[invest["customer_id"] == row.customer_id, "event_time"]
        before = ((mine > row.as_of - pd.Timedelta(days=180)) & (mine <= row.as_of)).any()
        after = ((mine > row.as_of) & (mine <= row.as_of + pd.Timedelta(days=90))).any()
        assert before, "only investors active at the snapshot are rows"
        assert row.churned == int(not after)
    assert 0.05 < table["churned"].mean() < 0.4


def test_training_tables_ignore_facts_after_their_observation_time(world, tables, specs, tmp_path):
    """Append a copy of every event moved past the data's end: each risk-review row and each
    churn row of the original snapshots keeps its features and label (churn rows look at most
    90 days past their snapshot, inside the original data); churn gains later snapshots."""
    future = tmp_path / "data"
    future.mkdir()
    for item in world.iterdir():
        (future / item.name).symlink_to(item)
    (future / "events").unlink()
    (future / "events").mkdir()
    span = None
    for part in sorted((world / "events").iterdir()):
        events = pd.read_parquet(part)
        span = span or pd.Timedelta(days=900)  # the world spans 27 months (< 900 days)
        later = events.copy()
        later["event_time"] = later["event_time"] + span
        merged = pd.concat([events, later]).sort_values(
            ["customer_id", "event_time"], kind="stable"
        )
        merged.to_parquet(future / "events" / part.name, index=False)
    for name in ("risk-level", "churn"):
        scratch = tmp_path / name
        scratch.mkdir()
        spec = load_model_spec(name, specs)
        again = build_training_table(spec, future, specs, scratch).frame
        before = tables[name]
        if name == "churn":
            again = again[again["as_of"] <= before["as_of"].max()].reset_index(drop=True)
            before = before.drop(columns="truth_p_churn")
            again = again.drop(columns="truth_p_churn")
        pd.testing.assert_frame_equal(again, before)


def test_training_table_rows_have_truth_columns_on_synthetic_data(tables):
    assert tables["churn"]["truth_p_churn"].notna().all()
    p = tables["risk-level"][[f"truth_p_C{i}" for i in range(1, 6)]].to_numpy()
    assert np.allclose(p.sum(axis=1), 1)


# --- split ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["risk-level", "churn"])
def test_split_is_out_of_time_grouped_and_embargoed(tables, specs, name):
    spec = load_model_spec(name, specs)
    table = tables[name]
    split = split_out_of_time(table["customer_id"], table["as_of"], spec.split)
    parts = {s: table.iloc[split.rows(s)] for s in ("train", "validation", "test")}
    ids = {s: set(p["customer_id"]) for s, p in parts.items()}
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    first_eval = min(parts["validation"]["as_of"].min(), parts["test"]["as_of"].min())
    embargo = pd.Timedelta(days=spec.split.embargo_days)
    assert parts["train"]["as_of"].max() + embargo < first_eval
    assert split.boundaries["train_rows"] == len(parts["train"])
    # Same ids, same groups: a retrain on more data never moves a customer between groups.
    again = split_out_of_time(
        table["customer_id"].iloc[::-1], table["as_of"].iloc[::-1], spec.split
    )
    assert (again.assignment[::-1] == split.assignment).all()


def test_split_refuses_a_single_observation_time(specs):
    spec = load_model_spec("churn", specs)
    with pytest.raises(ValueError, match="one observation time"):
        split_out_of_time(
            pd.Series(["a", "b"]), pd.Series(pd.to_datetime(["2025-01-01"] * 2)), spec.split
        )


# --- specs ---------------------------------------------------------------------------------------


def test_model_spec_mistakes_name_file_key_and_reason(specs, tmp_path):
    bad = tmp_path / "churn.yaml"
    text = Path("models/churn.yaml").read_text(encoding="utf-8")
    bad.write_text(text.replace("n_complaint_7d: 1", "n_complaints_7d: 1"), encoding="utf-8")
    with pytest.raises(SpecError, match=r"churn.yaml: monotone: 'n_complaints_7d' is not one"):
        load_model_spec("churn", specs, models_dir=tmp_path)
    bad.write_text(text.replace("primary_metric: roc_auc", "primary_metric: qwk"), encoding="utf-8")
    with pytest.raises(SpecError, match="primary_metric 'qwk' is not a binary metric"):
        load_model_spec("churn", specs, models_dir=tmp_path)


def test_experiment_config_overrides_params_and_checks_the_model(specs, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("model: churn\nexperiment: churn-slow\nparams: {learning_rate: 0.02}\n")
    spec = load_model_spec("churn", specs, experiment=config)
    assert spec.params["learning_rate"] == 0.02 and spec.params["num_leaves"] == 31
    assert spec.experiment_name == "churn-slow"
    with pytest.raises(SpecError, match="this command trains 'risk-level'"):
        load_model_spec("risk-level", specs, experiment=config)
    config.write_text("model: churn\nparams: {objective: regression}\n")
    with pytest.raises(SpecError, match="set by the trainer"):
        load_model_spec("churn", specs, experiment=config)
    assert ExperimentConfig(model="churn").apply(load_model_spec("churn", specs)).params


# --- models --------------------------------------------------------------------------------------


def test_cumulative_probabilities_never_go_negative_and_median_is_monotone():
    rng = np.random.default_rng(0)
    above = rng.random((1000, 4))  # deliberately crossing curves
    proba = cumulative_to_proba(above)
    assert (proba >= 0).all() and np.allclose(proba.sum(axis=1), 1)
    shifted = cumulative_to_proba(np.minimum(above + 0.2, 1))
    assert (median_level(shifted) >= median_level(proba)).all()


def test_ordinal_calibration_keeps_every_level_and_lowers_the_log_loss(tables, specs):
    """The cumulative-logit calibration fitted on validation: the same levels row by row (so
    the same QWK and decisions), a lower validation log loss, non-negative slopes and weights
    (the ordering kept), and the record of before and after."""
    spec = load_model_spec("risk-level", specs)
    spec = spec.model_copy(
        update={"params": {**spec.params, "learning_rate": 0.15}, "early_stopping_rounds": 30}
    )
    table = tables["risk-level"]
    plain = train_on_features(table, spec.model_copy(update={"calibration": "none"}), specs)
    calibrated = train_on_features(
        table, spec.model_copy(update={"calibration": "cumulative_logit"}), specs
    )
    model = calibrated.model
    slopes, weights, _ = model.calibrator
    assert plain.calibration is None and (slopes >= 0).all() and (weights >= 0).all()
    test = calibrated.rows("test")
    assert (model.predict_frame(test)["level"] == plain.model.predict_frame(test)["level"]).all()
    before = model.predict_proba(test, calibrated=False)
    assert np.array_equal(before, plain.model.predict_proba(test))
    assert not np.allclose(model.predict_proba(test), before)  # it did change probabilities
    assert calibrated.metrics["test"]["qwk"] == plain.metrics["test"]["qwk"]
    assert calibrated.metrics["validation"]["log_loss"] < plain.metrics["validation"]["log_loss"]
    assert calibrated.calibration["test_before"] == plain.metrics["test"]
    assert calibrated.calibration["test_after"] == calibrated.metrics["test"]


def test_the_median_is_kept_by_the_nearest_curve():
    """`with_median_of` on random distributions: the median of `own` always, the fitted
    distribution unchanged where its median already agrees, and elsewhere each cumulative cut
    moved only as far as the median needs (to one half, or to just under it)."""
    from suitability.models.estimators import with_median_of

    rng = np.random.default_rng(3)
    fitted, own = rng.dirichlet(np.ones(5), 5000), rng.dirichlet(np.ones(5), 5000)
    kept = with_median_of(fitted, own)
    assert (median_level(kept) == median_level(own)).all()
    agree = median_level(fitted) == median_level(own)
    assert np.array_equal(kept[agree], fitted[agree])
    assert np.allclose(kept.sum(axis=1), 1) and (kept >= 0).all()
    before, after = np.cumsum(fitted, axis=1), np.cumsum(kept, axis=1)
    moved = ~np.isclose(before, after, rtol=0, atol=1e-12)
    # a cut that moved now sits at one half (from above: just under it)
    assert np.allclose(after[moved], 0.5, atol=1e-9)
    assert moved[~agree].any(axis=1).all()


def _cumulative_pairs(rng: np.random.Generator, rows: int, k: int) -> tuple[np.ndarray, ...]:
    """Two cumulative curves per row, the second nowhere above the first (its distribution
    dominates), as level probabilities."""
    a = np.sort(rng.random((rows, k - 1)), axis=1)
    b = np.sort(rng.random((rows, k - 1)), axis=1)
    # some ties and values at one half, where the clamp's edges are
    a[rng.random(a.shape) < 0.05] = 0.5
    low, high = np.minimum(a, b), np.maximum(a, b)

    def proba(c: np.ndarray) -> np.ndarray:
        n = len(c)
        return np.column_stack([c, np.ones(n)]) - np.column_stack([np.zeros(n), c])

    return proba(high), proba(low)


def test_keeping_the_median_keeps_every_direction():
    """If the fitted and the model's own distributions both move up (stochastic dominance),
    the kept distribution moves up too: cut by cut, and so the expected level; the guarantee
    the monotone constraints give survives the calibration."""
    from suitability.models.estimators import with_median_of

    rng = np.random.default_rng(11)
    for k in (2, 3, 5):
        fitted_low, fitted_high = _cumulative_pairs(rng, 20000, k)
        own_low, own_high = _cumulative_pairs(rng, 20000, k)
        low, high = with_median_of(fitted_low, own_low), with_median_of(fitted_high, own_high)
        assert (np.cumsum(high, axis=1) <= np.cumsum(low, axis=1) + 1e-12).all()
        levels = np.arange(1, k + 1)
        assert ((high * levels).sum(axis=1) >= (low * levels).sum(axis=1) - 1e-12).all()
        assert (median_level(high) >= median_level(low)).all()


def test_calibration_must_suit_the_task(specs):
    spec = load_model_spec("risk-level", specs)
    with pytest.raises(
        ValueError,
        match="calibration 'sigmoid' does not apply to ordinal models; use none or cumulative_logit",
    ):
        spec.model_validate({**spec.model_dump(), "calibration": "sigmoid"})
    churn = load_model_spec("churn", specs)
    with pytest.raises(ValueError, match="'cumulative_logit' does not apply to binary models"):
        churn.model_validate({**churn.model_dump(), "calibration": "cumulative_logit"})


def test_models_beat_their_baselines_and_report_best_possible(trained):
    risk, churn = trained["risk-level"], trained["churn"]
    assert risk.metrics["test"]["qwk"] > risk.baselines["questionnaire_band"]["qwk"]
    assert churn.metrics["test"]["roc_auc"] > churn.baselines["recency"]["roc_auc"]
    for result in (risk, churn):
        name, value = result.primary
        assert result.best is not None and result.ratios is not None
        assert result.ratios[name] == pytest.approx(value / result.best[name])
        assert 0.5 < result.ratios[name] <= 1.1


def test_invariance_gender_does_not_move_the_level(trained):
    result = trained["risk-level"]
    test = result.rows("test")
    flipped = test.copy()
    flipped["gender"] = flipped["gender"].map({"F": "M", "M": "F"}).astype(test["gender"].dtype)
    a, b = result.model.predict_frame(test), result.model.predict_frame(flipped)
    pd.testing.assert_frame_equal(a, b)


def test_direction_higher_loss_tolerance_never_lowers_the_level(trained):
    result = trained["risk-level"]
    test = result.rows("test")
    test = test[test["q_answer_loss_tolerance"].notna()]  # a higher answer needs an answer
    base = result.model.predict_frame(test)
    for score in (2.0, 4.0, 6.0, 8.0):
        raised = test.copy()
        old = raised["q_answer_loss_tolerance"]
        new = np.maximum(old, score)
        raised["q_answer_loss_tolerance"] = new
        raised["q_total_score"] = raised["q_total_score"] + (new - old)
        after = result.model.predict_frame(raised)
        codes = {c: i for i, c in enumerate(result.classes)}
        assert (after["level"].map(codes) >= base["level"].map(codes)).all()
        assert (after["expected_level"] >= base["expected_level"] - 1e-9).all()


def test_direction_more_complaints_never_lower_churn_risk(trained):
    result = trained["churn"]
    test = result.rows("test")
    base = result.model.predict_frame(test)["p_churn"]
    more = test.copy()
    for window in (7, 30, 90, 365):
        more[f"n_complaint_{window}d"] = more[f"n_complaint_{window}d"] + 2
    after = result.model.predict_frame(more)["p_churn"]
    assert (after.to_numpy() >= base.to_numpy() - 1e-12).all()
    assert after.mean() > base.mean()


def test_minimum_functionality_textbook_conservative_profile_is_c1_or_c2(trained, specs):
    """A 68-year-old retiree who answers every question at its most cautious option, buys only
    R1 products, and whom an advisor tags loss-averse lands in C1 or C2."""
    definition = next(iter(specs.questionnaires.values()))
    at = pd.Timestamp("2026-01-10 10:00")
    answers = [
        {
            "questionnaire_version": definition.version,
            "submitted_at": at,
            "question_id": q.id,
            "answer": min(q.options, key=lambda o: o.score).id,
        }
        for q in definition.questions
    ]
    events = [
        {
            "event_time": at + pd.Timedelta(days=d),
            "event_type": "invest",
            "amount": 20_000.0,
            "product_id": "P0001",
            "product_risk": "R1",
            "term_days": 90,
            "channel": "branch",
        }
        for d in (1, 60, 120)
    ]
    tags = [
        {"interview_time": at, "recorded_at": at, "advisor_id": "A1", "tag": t}
        for t in ("loss_averse", "focus_capital_preservation", "retirement_planning")
    ]
    profile = {
        "customer_id": "conservative",
        "birth_date": "1958-03-02",
        "gender": "F",
        "city_tier": "T2",
        "income_band": "I2",
        "registered_at": "2025-06-01",
        "channel_preference": "branch",
    }
    bundle = CustomerBundle(profile, answers, events, tags)
    features = customer_features(bundle, pd.Timestamp("2026-06-01"), specs)
    level = trained["risk-level"].model.predict_frame(features)["level"].iloc[0]
    assert level in {"C1", "C2"}


# --- finalising -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["churn", "risk-level"])
def test_finalising_trains_again_on_training_and_validation_rows_with_the_chosen_rounds(
    tables, specs, name
):
    """The rounds and the calibrator come from the early-stopped model (its validation metrics
    are the ones reported); the final boosters have exactly those rounds, on train + validation
    rows, and the early-stopped model's test metrics are kept for the record."""
    spec = load_model_spec(name, specs)
    spec = spec.model_copy(
        update={"params": {**spec.params, "learning_rate": 0.15}, "early_stopping_rounds": 30}
    )
    early = train_on_features(tables[name], spec.model_copy(update={"finalize": False}), specs)
    final = train_on_features(tables[name], spec.model_copy(update={"finalize": True}), specs)
    assert final.params["finalize"] and not early.params["finalize"]
    assert early.early_stopped_test is None
    assert final.metrics["validation"] == early.metrics["validation"]
    assert final.early_stopped_test == early.metrics["test"]
    assert final.params["best_iterations"] == early.params["best_iterations"]
    rows = len(final.split.rows("train")) + len(final.split.rows("validation"))
    if name == "churn":
        pairs = [(early.model.booster, final.model.booster)]
        assert np.array_equal(early.model.calibrator.coef_, final.model.calibrator.coef_)
    else:
        pairs = list(zip(early.model.boosters, final.model.boosters, strict=True))
        for a, b in zip(early.model.calibrator, final.model.calibrator, strict=True):
            assert np.array_equal(a, b)
    for stopped, refit in pairs:
        assert refit.current_iteration() == refit.best_iteration == stopped.best_iteration
    if name == "churn":
        # the same trees as LightGBM trained directly on the training and validation rows
        import lightgbm as lgb

        from suitability.models.estimators import _booster_params

        model = final.model
        x = pd.concat([final.rows("train"), final.rows("validation")])
        y = np.concatenate([final.y[final.split.rows(s)] for s in ("train", "validation")])
        params = _booster_params(spec.params, spec.monotone, model.layout, spec.split.seed)
        direct = lgb.train(
            params,
            lgb.Dataset(
                model.layout.matrix(x, np.float32),
                label=y,
                params=params,
                feature_name=list(model.layout.names),
                categorical_feature=model.layout.categorical_indices,
            ),
            num_boost_round=early.model.booster.best_iteration,
        )
        assert direct.dump_model()["tree_info"] == model.booster.dump_model()["tree_info"]
    assert final.metrics["test"] != early.metrics["test"]
    # the baselines learnt from the same rows as the final model
    assert final.params["baseline_rows"] == rows
    assert early.params["baseline_rows"] == len(early.split.rows("train"))
