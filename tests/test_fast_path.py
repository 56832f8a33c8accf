"""The shortcuts on the per-request path give exactly what the general code gives: the contract
pre-checks against pandera and pandas, the arrow row rules against their pandas definitions,
`sources_used` against its pandas form, categorical coding by category against coding row by
row, and one-thread LightGBM predictions against every thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conftest import only_customer, random_inputs
from suitability.data import contracts
from suitability.data.contracts import ContractError
from suitability.data.schema import TABLES
from suitability.explain.assessment import SourceUse, sources_used
from suitability.features.bundle import CustomerBundle, bundle_inputs
from suitability.features.kernel import FeatureInputs, compute_features
from suitability.features.online import Bundle
from suitability.models.estimators import SINGLE_THREAD_ROWS, layout_for, predict_booster
from suitability.specs import Specs

Record = dict[str, Any]


# --- bundles, good and bad ----------------------------------------------------------------------


def _records(frame: pd.DataFrame) -> list[Record]:
    return [
        {k: (None if not isinstance(v, str) and pd.isna(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def _bundle(inputs: FeatureInputs, customer_id: str) -> tuple[Record, list[Record], ...]:
    one = only_customer(inputs, customer_id)
    return (
        _records(one.customers)[0],
        _records(one.questionnaire),
        _records(one.events),
        _records(one.tags),
    )


def _corrupt(rng: np.random.Generator, parts: tuple, specs: Specs) -> CustomerBundle:
    """A bundle with a random handful of the mistakes requests make (possibly none)."""
    profile, answers, events, tags = parts
    profile = dict(profile)
    answers, events, tags = (
        [dict(a) for a in answers],
        [dict(e) for e in events],
        [dict(t) for t in tags],
    )
    question = next(iter(specs.questionnaires.values())).questions[0]

    def some(rows: list[Record]) -> Record | None:
        return rows[int(rng.integers(len(rows)))] if rows else None

    mistakes: list[Callable[[], None]] = [
        lambda: profile.update(gender="unknown"),
        lambda: profile.update(birth_date=pd.Timestamp("2030-01-01")),
        lambda: profile.update(registered_at="2023-13-40"),
        lambda: profile.update(income_band=None),
        lambda: profile.update(name="张三丰", phone="13812345678"),
        lambda: (r := some(answers)) and r.update(question_id="no_such_question"),
        lambda: (r := some(answers)) and r.update(answer="no_such_option"),
        lambda: (r := some(answers)) and r.update(answer=None),
        lambda: (r := some(answers)) and r.update(questionnaire_version="v999"),
        lambda: answers and answers.pop(int(rng.integers(len(answers)))),
        lambda: answers and answers.append(dict(answers[0])),
        lambda: answers.append(
            {
                "questionnaire_version": next(iter(specs.questionnaires)),
                "submitted_at": "2024-02-02 10:00:00",
                "question_id": question.id,
                "answer": question.options[0].id,
            }
        ),
        lambda: (r := some(events)) and r.update(amount=-5.0),
        lambda: (r := some(events)) and r.update(amount=float("inf")),
        lambda: (r := some(events)) and r.update(amount="12,5"),
        lambda: (r := some(events)) and r.update(event_type="teleport"),
        lambda: (r := some(events)) and r.update(event_type="invest", product_risk=None),
        lambda: (r := some(events)) and r.update(event_type="deposit", amount=None),
        lambda: (r := some(events)) and r.update(term_days=-3),
        lambda: (r := some(events)) and r.update(term_days=2.5),
        lambda: (r := some(events)) and r.update(channel=None),
        lambda: (r := some(events)) and r.update(event_time="yesterday"),
        lambda: (r := some(events)) and r.update(product_risk="R9"),
        lambda: (r := some(tags)) and r.update(recorded_at=pd.Timestamp("2000-01-01")),
        lambda: (r := some(tags)) and r.update(tag="no_such_tag"),
        lambda: (r := some(tags)) and r.update(advisor_id=None),
        lambda: (r := some(tags)) and r.update(note="call 13812345678 or a@b.cn"),
    ]
    for i in rng.choice(len(mistakes), int(rng.integers(0, 4)), replace=False):
        mistakes[i]()
    return CustomerBundle(profile=profile, answers=answers, events=events, tags=tags)


def _general_path(patch: pytest.MonkeyPatch) -> None:
    """Turn off every pre-check, so pandas looks at every whole-table rule, as before."""
    patch.setattr(contracts, "_surely_unique", lambda *_a: False)
    patch.setattr(contracts, "_surely_complete", lambda *_a: False)


def _outcome(bundle: CustomerBundle, specs: Specs) -> FeatureInputs | ContractError:
    try:
        return bundle_inputs(bundle, specs)
    except ContractError as exc:
        return exc


def _assert_same(fast: FeatureInputs | ContractError, slow: FeatureInputs | ContractError) -> None:
    assert type(fast) is type(slow), (fast, slow)
    if isinstance(fast, ContractError):
        assert isinstance(slow, ContractError)
        assert fast.problems == slow.problems
        assert (fast.total, fast.counts) == (slow.total, slow.counts)
        assert str(fast) == str(slow)
        return
    for name in ("customers", "questionnaire", "events", "tags"):
        pd.testing.assert_frame_equal(getattr(fast, name), getattr(slow, name), check_exact=True)


@pytest.mark.parametrize("seed", range(4))
def test_bundles_good_and_bad_validate_the_same_with_and_without_the_shortcuts(specs, seed):
    inputs = random_inputs(specs, n_customers=12, n_events=600, seed=seed)
    rng = np.random.default_rng(seed)
    bad = 0
    for customer_id in inputs.customers["customer_id"]:
        parts = _bundle(inputs, customer_id)
        for _ in range(3):
            bundle = _corrupt(rng, parts, specs)
            fast = _outcome(bundle, specs)
            with pytest.MonkeyPatch.context() as patch:
                _general_path(patch)
                slow = _outcome(bundle, specs)
            _assert_same(fast, slow)
            bad += isinstance(fast, ContractError)
    assert bad > 5  # the comparison covered broken bundles, not only clean ones


# --- row rules: arrow against the pandas definitions ---------------------------------------------


def _pairs(frame: pd.DataFrame, *columns: str) -> pd.Series:
    key = frame[columns[0]]
    for c in columns[1:]:
        key = key + "\x1f" + frame[c]
    return key


def _valid_pairs(specs: Specs) -> list[str]:
    return [f"{v}\x1f{q.id}" for v, d in specs.questionnaires.items() for q in d.questions]


def _valid_answers(specs: Specs) -> list[str]:
    return [
        f"{v}\x1f{q.id}\x1f{o.id}"
        for v, d in specs.questionnaires.items()
        for q in d.questions
        for o in q.options
    ]


def _both(frame: pd.DataFrame, a: str, b: str) -> pd.Series:
    return frame[a].notna() & frame[b].notna()


#: The row rules as they were written in pandas, by rule text.
_PANDAS_RULES: dict[str, Callable[[pd.DataFrame, Specs], pd.Series]] = {
    "birth_date before registered_at": lambda f, _s: (
        _both(f, "birth_date", "registered_at") & ~(f["birth_date"] < f["registered_at"])
    ),
    "question_id belongs to questionnaire_version": lambda f, s: (
        f["questionnaire_version"].isin(list(s.questionnaires))
        & f["question_id"].isin(s.question_ids)
        & ~_pairs(f, "questionnaire_version", "question_id").isin(_valid_pairs(s))
    ),
    "answer is an option of question_id": lambda f, s: (
        _pairs(f, "questionnaire_version", "question_id").isin(_valid_pairs(s))
        & f["answer"].notna()
        & ~_pairs(f, "questionnaire_version", "question_id", "answer").isin(_valid_answers(s))
    ),
    "amount is present for monetary event types": lambda f, s: (
        f["event_type"].isin(s.behaviour.monetary_event_types) & f["amount"].isna()
    ),
    "product_risk is present for invest events": lambda f, _s: (
        (f["event_type"] == "invest").fillna(False) & f["product_risk"].isna()
    ),
    "recorded_at >= interview_time": lambda f, _s: (
        _both(f, "interview_time", "recorded_at") & (f["recorded_at"] < f["interview_time"])
    ),
}


def _messy(frame: pd.DataFrame, rng: np.random.Generator, donors: pd.DataFrame) -> pd.DataFrame:
    """`frame` with values blanked and swapped between rows and columns of the same dtype."""
    out = frame.copy()
    n = len(out)
    for column in out.columns:
        if n == 0:
            break
        blank = rng.random(n) < 0.2
        out.loc[blank, column] = None
        same = [c for c in donors.columns if donors[c].dtype == frame[column].dtype]
        if same and len(donors):
            swap = rng.random(n) < 0.3
            donor = same[int(rng.integers(len(same)))]
            out.loc[swap, column] = (
                donors[donor]
                .sample(int(swap.sum()), replace=True, random_state=int(rng.integers(1 << 30)))
                .to_numpy()
            )
    return out


@pytest.mark.parametrize("seed", range(3))
def test_arrow_row_rules_flag_the_rows_pandas_flags(specs, seed):
    inputs = random_inputs(specs, n_customers=40, n_events=2000, seed=seed)
    rng = np.random.default_rng(seed)
    frames = {
        "customers": inputs.customers,
        "questionnaire_responses": inputs.questionnaire,
        "events": inputs.events,
        "interview_tags": inputs.tags,
    }
    fired = 0
    declared = [(t, r) for t in TABLES.values() for r in t.row_rules]
    assert {r.rule for _, r in declared} == set(_PANDAS_RULES)
    for table, rule in declared:
        frame = frames[table.name]
        questionnaire = table.name == "questionnaire_responses"
        donors = frame.assign(question_id="q_unknown", answer="zz") if questionnaire else frame
        flagged = 0
        for _ in range(5):
            messy = _messy(frame[list(rule.needs)], rng, donors[list(rule.needs)])
            for column in messy.columns:
                messy[column] = messy[column].astype(frame[column].dtype)
            messy.index = pd.RangeIndex(7, 7 + len(messy))  # a later batch
            expected = _PANDAS_RULES[rule.rule](messy, specs)
            got = _rows_of(contracts._violations(rule, messy, table, specs), messy.index)
            want = expected.index.to_numpy()[expected.to_numpy(dtype=bool, na_value=False)] + 1
            np.testing.assert_array_equal(got, want)
            # As validation runs them: on the arrow arrays the frame came from, where a float
            # column may hold NaN as a value (pandas counts it missing).
            arrays = {
                c: pa.array(messy[c].to_numpy(), from_pandas=False)
                if messy[c].dtype.kind == "f"
                else contracts._column(messy, c)
                for c in messy.columns
            }
            columns = contracts._ArrowColumns(messy, arrays)
            on_arrays = _rows_of(contracts._violations(rule, columns, table, specs), messy.index)
            np.testing.assert_array_equal(on_arrays, want)
            flagged += got.size
        fired += flagged > 0
    # Every rule fired somewhere but "question_id belongs to questionnaire_version", which
    # needs a second questionnaire version in the specs.
    assert fired >= len(declared) - 1


# --- sources used ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "as_of",
    ["2023-01-01", "2024-06-30 12:34:56", "2024-06-30 12:34:56.0000015", "2026-01-01"],
)
def test_sources_used_agree_with_the_pandas_form(specs, as_of):
    inputs = random_inputs(specs, n_customers=15, n_events=1500, seed=5)
    when = pd.Timestamp(as_of)
    for customer_id in inputs.customers["customer_id"]:
        one = only_customer(inputs, customer_id)
        bundle = Bundle.of_inputs(one)
        assert sources_used(bundle, when, specs) == _sources_in_pandas(one, when, 365, specs)
        assert sources_used(bundle, when, specs, 30) == _sources_in_pandas(one, when, 30, specs)


def _sources_in_pandas(
    inputs: FeatureInputs, as_of: pd.Timestamp, window_days: int, specs: Specs
) -> list[SourceUse]:
    """`sources_used` as a pandas script would write it: the oracle."""

    def iso(value: Any) -> str | None:
        return None if pd.isna(value) else pd.Timestamp(value).isoformat(timespec="seconds")

    q = inputs.questionnaire[inputs.questionnaire["submitted_at"] <= as_of]
    q = q.assign(
        order=q["questionnaire_version"].map({v: i for i, v in enumerate(specs.questionnaires)})
    )
    latest = q.sort_values(["submitted_at", "order"], kind="stable").iloc[-1] if len(q) else None
    events = inputs.events
    events = events[
        (events["event_time"] <= as_of)
        & (events["event_time"] > as_of - pd.Timedelta(days=window_days))
    ]
    tags = inputs.tags[inputs.tags["recorded_at"] <= as_of]
    return [
        SourceUse(
            "questionnaire",
            int(q["submitted_at"].nunique()),
            iso(latest["submitted_at"]) if latest is not None else None,
            str(latest["questionnaire_version"]) if latest is not None else "",
        ),
        SourceUse("behaviour", len(events), iso(events["event_time"].max()), f"{window_days}d"),
        SourceUse(
            "interview",
            len(tags),
            iso(tags["recorded_at"].max()),
            str(tags["interview_time"].nunique()),
        ),
        SourceUse("profile", 1, iso(inputs.customers["registered_at"].iloc[0]), ""),
    ]


# --- categorical coding ----------------------------------------------------------------------------


def test_categoricals_code_as_their_text_does(specs):
    inputs = random_inputs(specs, n_customers=30, n_events=1000, seed=2)
    queries = pd.DataFrame(
        {
            "customer_id": inputs.customers["customer_id"],
            "as_of": pd.Series(pd.Timestamp("2025-01-01"), index=inputs.customers.index).astype(
                "datetime64[us]"
            ),
        }
    )
    frame = compute_features(inputs, queries, specs)
    names = list(specs.feature_names)
    categorical = [n for n in names if isinstance(frame[n].dtype, pd.CategoricalDtype)]
    assert categorical
    # The model's vocabulary differs from the frame's categories: one known category dropped,
    # one the frame lacks added; one row missing.
    vocabulary = layout_for(frame, names)
    first = categorical[0]
    categories = dict(vocabulary.categories)
    categories[first] = (*categories[first][1:], "not-a-category")
    layout = type(vocabulary)(vocabulary.names, categories)
    frame.loc[0, first] = np.nan
    as_text = frame.assign(**{n: frame[n].astype(object) for n in categorical})
    fast, slow = layout.matrix(frame), layout.matrix(as_text)
    np.testing.assert_array_equal(fast, slow)
    assert np.isnan(fast[0, names.index(first)])
    np.testing.assert_array_equal(layout.matrix(frame), fast)  # again, from the cache


# --- LightGBM threads ------------------------------------------------------------------------------


def test_one_thread_predicts_the_same_bits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=600) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 15, "seed": 1},
        lgb.Dataset(x, y),
        num_boost_round=30,
    )
    for rows in (x[:1], x[:SINGLE_THREAD_ROWS], x):
        for options in ({}, {"raw_score": True}, {"pred_contrib": True}):
            np.testing.assert_array_equal(
                predict_booster(booster, rows, **options), booster.predict(rows, **options)
            )


# --- typed request values -------------------------------------------------------------------------


def _example_bundle(text: bool) -> CustomerBundle:
    """The serving example as the service hands it over (typed values) or as ISO text."""
    import json
    from pathlib import Path

    from suitability.serving.requests import CustomerBundle as Request

    path = Path(__file__).resolve().parents[1] / "serving" / "examples" / "churn.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    if text:
        return CustomerBundle(
            profile=raw["profile"], answers=raw["answers"], events=raw["events"], tags=raw["tags"]
        )
    request = Request.model_validate_json(json.dumps(raw), strict=True)
    return CustomerBundle(
        profile=request.profile.model_dump(),
        answers=[a.model_dump() for a in request.answers],
        events=[e.model_dump() for e in request.events],
        tags=[t.model_dump() for t in request.tags],
    )


def _assert_same_inputs(a: FeatureInputs, b: FeatureInputs) -> None:
    for name in ("customers", "questionnaire", "events", "tags"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)


def test_typed_values_and_their_iso_text_give_the_same_canonical_tables(specs):
    _assert_same_inputs(
        bundle_inputs(_example_bundle(text=False), specs),
        bundle_inputs(_example_bundle(text=True), specs),
    )


def test_a_column_mixing_dates_and_datetimes_keeps_its_times_of_day(specs):
    from datetime import date, datetime

    typed = _example_bundle(text=False)
    events = [dict(e) for e in typed.events]
    first: datetime = events[0]["event_time"]
    events[1]["event_time"] = first.date()  # a date among datetimes: midnight, not a cast
    mixed = bundle_inputs(CustomerBundle(typed.profile, typed.answers, events, typed.tags), specs)
    times = mixed.events["event_time"]
    assert times.iloc[0] == pd.Timestamp(first)
    assert times.iloc[1] == pd.Timestamp(first.date())
    assert isinstance(events[1]["event_time"], date)


def _rows_of(mask: object, index: pd.Index) -> np.ndarray:
    """1-based row numbers of the rows where an arrow `mask` is true (`index`: the frame's)."""
    return index.to_numpy()[contracts._mask_rows(mask)] + 1
