"""The feature kernel: definitions checked against a naive per-query reference, point-in-time
leakage, single-customer parity, and window edges."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import only_customer, random_inputs
from suitability.features.kernel import FeatureInputs, _feature_frame, compute_features
from suitability.features.questionnaire import score_questionnaire
from suitability.specs import R_LEVELS, Specs

DAY = pd.Timedelta(days=1)
AS_OFS = ["2024-01-01", "2024-06-15 13:45:10", "2025-03-01", "2025-06-30"]


def _queries(inputs: FeatureInputs, as_ofs: list[str]) -> pd.DataFrame:
    ids = inputs.customers["customer_id"].tolist()
    return pd.DataFrame(
        {
            "customer_id": [c for _ in as_ofs for c in ids],
            "as_of": pd.to_datetime([a for a in as_ofs for _ in ids], format="ISO8601").astype(
                "datetime64[us]"
            ),
        }
    )


def _reference(inputs: FeatureInputs, customer_id: str, t: pd.Timestamp, specs: Specs) -> dict:
    """Straightforward definitions, one query at a time."""
    b = specs.behaviour
    out: dict[str, float] = {}
    ev = inputs.events[
        (inputs.events["customer_id"] == customer_id) & (inputs.events["event_time"] <= t)
    ]
    for w in b.windows:
        win = ev[ev["event_time"] > t - w * DAY]
        for name in b.event_types:
            out[f"n_{name}_{w}d"] = int((win["event_type"] == name).sum())
        for name in b.monetary_event_types:
            out[f"amt_{name}_{w}d"] = round(win.loc[win["event_type"] == name, "amount"].sum(), 2)
        out[f"active_days_{w}d"] = win["event_time"].dt.normalize().nunique()
        inv = win[win["event_type"] == "invest"]
        amt = inv["amount"].sum()
        risk = inv["product_risk"].map({r: i + 1 for i, r in enumerate(R_LEVELS)})
        high = R_LEVELS.index(b.high_risk_from) + 1
        out[f"invest_share_high_risk_{w}d"] = (
            inv.loc[risk >= high, "amount"].sum() / amt if amt else np.nan
        )
        out[f"invest_avg_risk_{w}d"] = (risk * inv["amount"]).sum() / amt if amt else np.nan
        terms = inv["term_days"].dropna()
        out[f"invest_avg_term_{w}d"] = terms.mean() if len(terms) else np.nan
        red = win.loc[win["event_type"] == "redeem", "amount"].sum()
        out[f"redeem_ratio_{w}d"] = red / (amt + red) if amt + red else np.nan
        for c in b.channels:
            out[f"channel_share_{c}_{w}d"] = (win["channel"] == c).mean() if len(win) else np.nan
    for name in b.recency_event_types:
        times = ev.loc[ev["event_type"] == name, "event_time"]
        out[f"days_since_{name}"] = (t - times.max()) / DAY if len(times) else np.nan
    inv_all = ev.loc[ev["event_type"] == "invest", "amount"].sum()
    red_all = ev.loc[ev["event_type"] == "redeem", "amount"].sum()
    out["net_holdings"] = round(inv_all - red_all, 2)

    qr = inputs.questionnaire
    qr = qr[(qr["customer_id"] == customer_id) & (qr["submitted_at"] <= t)]
    out["q_n_submissions"] = qr["submitted_at"].nunique()
    if len(qr):
        latest = qr[qr["submitted_at"] == qr["submitted_at"].max()]
        definition = specs.questionnaires[latest["questionnaire_version"].iloc[0]]
        score = score_questionnaire(
            dict(zip(latest["question_id"], latest["answer"], strict=True)), definition
        )
        out["q_total_score"] = score.total
        out["q_level"] = score.level_number
        out["q_lowest_category"] = float(score.lowest_category)
        out["q_days_since"] = (t - latest["submitted_at"].iloc[0]) / DAY
        for qid, s in score.answer_scores.items():
            out[f"q_answer_{qid}"] = s
    else:
        out["q_total_score"] = np.nan

    tags = inputs.tags[
        (inputs.tags["customer_id"] == customer_id) & (inputs.tags["recorded_at"] <= t)
    ]
    half = specs.catalogue.tag_decay_half_life_days
    weights = 0.5 ** (((t - tags["interview_time"]) / DAY) / half)
    for tag in specs.tags.tags:
        out[f"tag_{tag.id}"] = weights[tags["tag"] == tag.id].sum()
    category = tags["tag"].map({x.id: x.category for x in specs.tags.tags})
    for cat in specs.tags.categories:
        out[f"tagcat_{cat}"] = weights[category == cat].sum()
    out["n_interviews"] = len(tags[["interview_time", "advisor_id"]].drop_duplicates())
    latest_interview = tags["interview_time"].max()
    out["days_since_interview"] = (t - latest_interview.floor("s")) / DAY if len(tags) else np.nan

    cust = inputs.customers.set_index("customer_id").loc[customer_id]
    birth = cust["birth_date"]
    out["age_years"] = t.year - birth.year - ((t.month, t.day) < (birth.month, birth.day))
    out["tenure_days"] = (t - cust["registered_at"]) / DAY
    return out


def test_every_catalogue_feature_is_computed_in_order(specs):
    inputs = random_inputs(specs, n_customers=8, n_events=300)
    features = compute_features(inputs, _queries(inputs, AS_OFS[:1]), specs)
    assert list(features.columns) == ["customer_id", "as_of", *specs.feature_names]
    assert len(features) == 8


@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_matches_naive_reference(specs, seed):
    inputs = random_inputs(specs, n_customers=25, n_events=4000, seed=seed)
    queries = _queries(inputs, AS_OFS)
    features = compute_features(inputs, queries, specs)
    checked = 0
    for i, row in features.iterrows():
        expected = _reference(
            inputs, row["customer_id"], pd.Timestamp(queries["as_of"].iloc[i]), specs
        )
        for name, value in expected.items():
            got = row[name]
            if isinstance(value, float) and np.isnan(value):
                assert np.isnan(got), (name, row["customer_id"], row["as_of"], got)
            else:
                assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (
                    name,
                    row["customer_id"],
                    row["as_of"],
                )
            checked += 1
    assert checked > 10_000


def test_future_facts_change_nothing(specs):
    """Point-in-time: add facts after t (events, a new questionnaire, a tag from an interview
    before t but recorded after t) and every feature at t stays the same."""
    inputs = random_inputs(specs, n_customers=20, n_events=2000, seed=3)
    t = pd.Timestamp("2024-09-01")
    queries = _queries(inputs, [str(t)])
    before = compute_features(inputs, queries, specs)

    ids = inputs.customers["customer_id"]
    late_events = inputs.events.sample(500, random_state=0, replace=True).assign(
        customer_id=np.resize(ids.to_numpy(), 500),
        event_time=(t + pd.to_timedelta(np.arange(500) % 7 + 1, unit="us")).astype(
            "datetime64[us]"
        ),
    )
    definition = next(iter(specs.questionnaires.values()))
    late_answers = pd.DataFrame(
        [
            (c, definition.version, t + pd.Timedelta(seconds=1), q.id, q.options[-1].id)
            for c in ids
            for q in definition.questions
        ],
        columns=inputs.questionnaire.columns,
    ).astype({"submitted_at": "datetime64[us]"})
    late_tags = pd.DataFrame(
        {
            "customer_id": ids,
            "interview_time": (t - 2 * DAY),
            "recorded_at": (t + pd.Timedelta(milliseconds=1)),
            "advisor_id": "A999",
            "tag": "interest_high_risk",
            "note": None,
        }
    ).astype({"interview_time": "datetime64[us]", "recorded_at": "datetime64[us]"})
    with_future = FeatureInputs(
        customers=inputs.customers,
        questionnaire=pd.concat([inputs.questionnaire, late_answers], ignore_index=True),
        events=pd.concat([inputs.events, late_events], ignore_index=True),
        tags=pd.concat([inputs.tags, late_tags], ignore_index=True),
    )
    after = compute_features(with_future, queries, specs)
    pd.testing.assert_frame_equal(before, after, check_exact=True)
    # ... and the same facts are visible once t has passed.
    later = compute_features(with_future, queries.assign(as_of=t + DAY), specs)
    assert (later["n_login_7d"] + later["n_invest_7d"]).sum() > (
        before["n_login_7d"] + before["n_invest_7d"]
    ).sum()
    assert (later["tag_interest_high_risk"] > 0).all()


def test_single_customer_equals_batch_exactly(specs):
    inputs = random_inputs(specs, n_customers=40, n_events=5000, seed=5)
    queries = _queries(inputs, AS_OFS)
    batch = compute_features(inputs, queries, specs)
    for cid in inputs.customers["customer_id"]:
        mine = queries[queries["customer_id"] == cid].reset_index(drop=True)
        # Shuffle the customer's rows: a request need not arrive sorted.
        alone = only_customer(inputs, cid)
        alone = FeatureInputs(
            customers=alone.customers,
            questionnaire=alone.questionnaire.sample(frac=1, random_state=1),
            events=alone.events.sample(frac=1, random_state=1),
            tags=alone.tags.sample(frac=1, random_state=1),
        )
        single = compute_features(alone, mine, specs)
        expected = batch[batch["customer_id"] == cid].reset_index(drop=True)
        pd.testing.assert_frame_equal(single, expected, check_exact=True)


def test_window_edges_and_sub_second_times(specs):
    inputs = random_inputs(specs, n_customers=1, n_events=0, seed=0)
    t = pd.Timestamp("2025-01-10")
    times = [
        t,  # exactly at t: counts
        t + pd.Timedelta(microseconds=1),  # after t: never counts
        t - 7 * DAY,  # exactly at the window start: outside (t - 7d, t]
        t - 7 * DAY + pd.Timedelta(microseconds=1),  # just inside
    ]
    cid = inputs.customers["customer_id"].iloc[0]
    events = pd.DataFrame(
        {
            "customer_id": cid,
            "event_time": pd.to_datetime(times).astype("datetime64[us]"),
            "event_type": "login",
            "amount": np.nan,
            "product_id": None,
            "product_risk": None,
            "term_days": pd.array([pd.NA] * 4, dtype="Int64"),
            "channel": "app",
            "duration_s": 1.0,
        }
    )
    inputs = FeatureInputs(
        inputs.customers, inputs.questionnaire.iloc[:0], events, inputs.tags.iloc[:0]
    )
    row = compute_features(inputs, pd.DataFrame({"customer_id": [cid], "as_of": [t]}), specs).iloc[
        0
    ]
    assert row["n_login_7d"] == 2
    assert row["n_login_30d"] == 3
    assert row["days_since_login"] == 0.0
    assert row["active_days_7d"] == 2  # the calendar days of t and t - 7d + 1µs
    assert np.isnan(row["q_total_score"]) and row["q_n_submissions"] == 0
    assert np.isnan(row["days_since_interview"]) and row["n_interviews"] == 0


def test_categorical_profile_features_use_the_spec_vocabulary(specs):
    inputs = random_inputs(specs, n_customers=5, n_events=100)
    features = compute_features(inputs, _queries(inputs, AS_OFS[:1]), specs)
    assert list(features["gender"].cat.categories) == list(specs.profile.genders)
    assert list(features["segment"].cat.categories) == [s.id for s in specs.profile.segments]
    assert features["n_login_30d"].dtype == np.int64


def test_unknown_customer_in_facts_is_refused(specs):
    inputs = random_inputs(specs, n_customers=3, n_events=50)
    stray = inputs.events.iloc[:1].assign(customer_id="NOBODY")
    bad = FeatureInputs(
        inputs.customers, inputs.questionnaire, pd.concat([inputs.events, stray]), inputs.tags
    )
    with pytest.raises(ValueError, match="NOBODY"):
        compute_features(bad, _queries(inputs, AS_OFS[:1]), specs)


def test_tied_recorded_times_give_the_same_bits_in_any_order(specs):
    """Tags recorded at the same moment from different interviews: the decayed sums must not
    depend on the order the rows arrive in (a file vs a request)."""
    inputs = random_inputs(specs, n_customers=1, n_events=0)
    cid = inputs.customers["customer_id"].iloc[0]
    recorded = pd.Timestamp("2025-01-10 09:00")
    tags = pd.DataFrame(
        {
            "customer_id": cid,
            "interview_time": pd.to_datetime(
                ["2024-03-01 10:00", "2024-11-05 16:20", "2025-01-09 11:11"]
            ),
            "recorded_at": recorded,
            "advisor_id": ["A1", "A2", "A3"],
            "tag": ["nervous", "hesitant", "calm"],
            "note": None,
        }
    ).astype({"interview_time": "datetime64[us]", "recorded_at": "datetime64[us]"})
    query = pd.DataFrame({"customer_id": [cid], "as_of": [pd.Timestamp("2025-02-01")]})
    rows = [
        compute_features(
            FeatureInputs(
                inputs.customers,
                inputs.questionnaire.iloc[:0],
                inputs.events.iloc[:0],
                tags.iloc[order],
            ),
            query,
            specs,
        )
        for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0])
    ]
    for other in rows[1:]:
        pd.testing.assert_frame_equal(rows[0], other, check_exact=True)
    assert rows[0]["n_interviews"].iloc[0] == 3


def test_sub_second_as_of_counts_to_the_whole_second(specs):
    inputs = random_inputs(specs, n_customers=1, n_events=0)
    cid = inputs.customers["customer_id"].iloc[0]
    t = pd.Timestamp("2025-01-10 08:00:00.900")
    events = inputs.events.iloc[:0].copy()
    times = [t - 7 * DAY - pd.Timedelta(milliseconds=500), t - pd.Timedelta(milliseconds=400)]
    for when in times:
        events.loc[len(events)] = [cid, when, "login", np.nan, None, None, pd.NA, "app", 1.0]
    events = events.astype({"event_time": "datetime64[us]"})
    row = compute_features(
        FeatureInputs(
            inputs.customers, inputs.questionnaire.iloc[:0], events, inputs.tags.iloc[:0]
        ),
        pd.DataFrame({"customer_id": [cid], "as_of": [t]}),
        specs,
    ).iloc[0]
    # t counts as 08:00:00, so the window is (Jan 3 08:00:00, Jan 10 08:00:00]: the first login
    # (Jan 3 08:00:00.400) is inside, the second (Jan 10 08:00:00.500) is after t.
    assert row["n_login_7d"] == 1 and row["n_login_30d"] == 1
    assert row["as_of"] == pd.Timestamp("2025-01-10 08:00:00")


@pytest.mark.parametrize("rows", [0, 1, 7])
def test_the_feature_frame_is_the_frame_the_dict_constructor_builds(rows):
    """The block-built feature frame has the same values, dtypes, column order and labels as
    `pd.DataFrame(columns)`, for every column kind the kernel produces."""
    rng = np.random.default_rng(rows)
    columns: dict[str, Any] = {}
    for i in range(24):
        kind = i % 4
        if kind == 0:
            columns[f"f{i}"] = np.where(rng.random(rows) < 0.3, np.nan, rng.normal(size=rows))
        elif kind == 1:
            columns[f"n{i}"] = rng.integers(0, 9, rows)
        elif kind == 2:
            codes = rng.integers(-1, 2, rows)  # -1: missing
            columns[f"c{i}"] = pd.Categorical.from_codes(
                codes, dtype=pd.CategoricalDtype(["a", "b"])
            )
        else:
            columns[f"b{i}"] = rng.random(rows) > 0.5
    names = list(columns)[::-1]
    built = _feature_frame(columns, names)
    expected = pd.DataFrame({name: columns[name] for name in names})
    pd.testing.assert_frame_equal(built, expected, check_exact=True)
    assert built.columns.dtype == expected.columns.dtype
    assert list(built.dtypes) == list(expected.dtypes)


@pytest.mark.slow
def test_sums_at_the_declared_bounds_are_exact_and_one_event_more_is_refused(specs):
    """A million invests of the largest amount in R5 for one customer: every window sum is the
    exact integer (cents times risk included), so no amount can turn a C5 into a C2."""
    from suitability.data.contracts import ContractError
    from suitability.data.schema import MAX_AMOUNT, MAX_EVENTS_PER_CUSTOMER

    inputs = random_inputs(specs, n_customers=2, n_events=10)
    one = inputs.customers.iloc[:1]
    cid = one["customer_id"].iloc[0]
    n = MAX_EVENTS_PER_CUSTOMER
    start = pd.Timestamp(AS_OFS[0]) - pd.Timedelta(days=80)
    events = pd.DataFrame(
        {
            "customer_id": pd.Series([cid] * n, dtype="str"),
            "event_time": (start + pd.to_timedelta(np.arange(n) % 86_400 * 60, unit="s")).astype(
                "datetime64[us]"
            ),
            "event_type": pd.Series(["invest"] * n, dtype="str"),
            "amount": np.full(n, MAX_AMOUNT),
            "product_id": pd.Series(["P1"] * n, dtype="str"),
            "product_risk": pd.Series(["R5"] * n, dtype="str"),
            "term_days": pd.array([36_500] * n, dtype="Int64"),
            "channel": pd.Series([next(iter(specs.behaviour.channels))] * n, dtype="str"),
            "duration_s": np.full(n, np.nan),
        }
    )
    empty = FeatureInputs(one, inputs.questionnaire.iloc[:0], events, inputs.tags.iloc[:0])
    out = compute_features(empty, _queries(empty, AS_OFS[:1]), specs).iloc[0]
    exact = n * int(MAX_AMOUNT * 100)  # Python integers: no overflow
    assert round(out["amt_invest_90d"] * 100) == exact
    assert out["net_holdings"] * 100 == float(exact)
    assert out["invest_avg_risk_90d"] == 5.0 and out["invest_share_high_risk_90d"] == 1.0
    assert out["invest_avg_term_90d"] == 36_500.0
    trend = specs.behaviour.trend
    as_of = pd.Timestamp(AS_OFS[0])
    within = {
        days: int((events["event_time"] > as_of - pd.Timedelta(days=days)).sum())
        for days in (trend.short_days, trend.long_days)
    }
    assert 0 < within[trend.short_days] < within[trend.long_days]
    cents = int(MAX_AMOUNT * 100)
    expected = (within[trend.short_days] * cents * trend.long_days) / (
        within[trend.long_days] * cents * trend.short_days
    )
    assert out["trend_invest_amount"] == pytest.approx(expected, rel=1e-12)
    more = pd.concat([events, events.iloc[:1]], ignore_index=True)
    too_many = FeatureInputs(one, inputs.questionnaire.iloc[:0], more, inputs.tags.iloc[:0])
    with pytest.raises(ContractError, match="at most 1,000,000 events"):
        compute_features(too_many, _queries(too_many, AS_OFS[:1]), specs)
