"""Population scoring: the triggers and care flags equal what the single decision fires
(property-based), the dates since which they hold, and — on the demo's registered models —
every number of a score row equals what `explain` says for that customer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suitability.models.rules import (
    ELDERLY,
    VULNERABLE,
    RuleTable,
    assess_mismatch,
    decide,
    load_rules,
    rule_input_from_features,
)
from suitability.scoring.flags import TRIGGERS, mismatches, population_flags, stated_ranks
from suitability.specs import C_LEVELS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rules() -> RuleTable:
    return load_rules(ROOT / "models" / "suitability_rules.yaml")


_maybe = st.one_of(st.none(), st.floats(0, 3000, allow_nan=False))
_weight = st.one_of(st.none(), st.floats(0, 4, allow_nan=False))


@st.composite
def feature_rows(draw) -> dict:
    level = draw(st.one_of(st.none(), st.integers(1, 5)))
    raw = draw(st.lists(st.floats(0.001, 1.0), min_size=5, max_size=5))
    proba = np.asarray(raw) / sum(raw)
    return {
        "q_level": np.nan if level is None else float(level),
        "q_days_since": np.nan if level is None else draw(st.floats(0, 1000)),
        "q_lowest_category": np.nan if level is None else float(draw(st.booleans())),
        "tagdir_up": draw(_weight),
        "tagdir_down": draw(_weight),
        "tag_vulnerable_customer": draw(_weight),
        "age_years": float(draw(st.integers(18, 95))),
        "days_since_interview": draw(_maybe),
        "tenure_days": draw(st.floats(0, 3000)),
        "proba": proba,
        "predicted": int(np.argmax(proba)),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(feature_rows(), min_size=1, max_size=12))
def test_population_flags_hold_exactly_when_the_decision_fires_them(rules, rows):
    frame = pd.DataFrame([{k: v for k, v in r.items() if k not in ("proba", "predicted")}
                          for r in rows]).astype(float)  # fmt: skip
    proba = np.vstack([r["proba"] for r in rows])
    predicted = np.array([r["predicted"] for r in rows])
    stated = stated_ranks(frame["q_level"])
    found = mismatches(stated, predicted, proba, rules)
    flags = population_flags(frame, found, rules, pd.Timestamp("2026-10-01"))
    for i, row in enumerate(rows):
        level = C_LEVELS[row["predicted"]]
        probabilities = dict(zip(C_LEVELS, row["proba"], strict=True))
        values = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                  for k, v in frame.iloc[i].items()}  # fmt: skip
        decision = decide(
            rule_input_from_features(
                values,
                predicted_level=level,
                level_probabilities=probabilities,
                p_churn=None,
                product_id="P1",
                product_risk="R1",
                initiated_by="investor",
            ),
            rules,
        )
        stated_level = C_LEVELS[stated[i]] if stated[i] >= 0 else None
        mismatch = assess_mismatch(stated_level, level, probabilities, rules)
        assert found.direction[i] == mismatch.direction
        assert found.confidence[i] == mismatch.confidence  # the same floats, not nearly
        assert found.flagged[i] == mismatch.flagged
        assert found.levels_apart[i] == mismatch.levels_apart
        for code in (
            "no_questionnaire",
            "stale_questionnaire",
            "interview_more_cautious",
            "interview_more_aggressive",
        ):
            assert flags[code].iloc[i] == (code in decision.fired), (code, values)
        assert flags["elderly"].iloc[i] == (ELDERLY in decision.care_flags)
        assert flags["vulnerable"].iloc[i] == (VULNERABLE in decision.care_flags)
        overstated = mismatch.flagged and mismatch.direction == "overstated"
        assert flags["overstated"].iloc[i] == overstated
        assert flags["understated"].iloc[i] == ("understated_risk_education" in decision.fired)
        triggers = flags["triggers"].iloc[i]
        assert flags["reassess"].iloc[i] == isinstance(triggers, str)
        assert triggers is None or triggers.split(";") == [
            code for code in TRIGGERS if flags[code].iloc[i]
        ]


def test_each_trigger_says_since_when(rules):
    as_of = pd.Timestamp("2026-10-01 09:00:00")
    frame = pd.DataFrame(
        {
            "q_level": [np.nan, 2.0, 5.0, 3.0],
            "q_days_since": [np.nan, 400.5, 10.0, 20.0],
            "q_lowest_category": [np.nan, 0.0, 0.0, 0.0],
            "tagdir_up": [0.0, 0.0, 0.0, 0.0],
            "tagdir_down": [0.0, 0.0, 2.5, 0.0],
            "age_years": [40.0, 50.0, 60.0, 65.0],
            "days_since_interview": [np.nan, np.nan, 3.25, np.nan],
            "tenure_days": [100.0, 900.0, 900.0, 900.0],
        }
    )
    proba = np.tile([0.0, 0.0, 1.0, 0.0, 0.0], (4, 1))
    found = mismatches(stated_ranks(frame["q_level"]), np.full(4, 2), proba, rules)
    flags = population_flags(
        frame,
        found,
        rules,
        as_of,
        birth_date=pd.Series(
            pd.to_datetime(["1986-01-01", "1976-05-05", "1966-03-03", "1961-09-20"])
        ),
    )
    assert flags["no_questionnaire_since"][0] == as_of - pd.Timedelta(days=100)
    answered = as_of - pd.Timedelta(days=400.5)
    assert flags["stale_questionnaire"][1]
    assert flags["stale_questionnaire_since"][1] == answered + pd.Timedelta(days=365)
    assert flags["interview_more_cautious"][2] and flags["triggers"][2] == (
        "interview_more_cautious;overstated"
    )
    assert flags["interview_more_cautious_since"][2] == as_of - pd.Timedelta(days=3.25)
    assert flags["overstated_since"][2] == as_of  # seen now: no history to say more
    # 65 since 2026-09-20, after the questionnaire of 20 days ago
    assert flags["became_elderly"][3] and flags["elderly"][3]
    assert flags["became_elderly_since"][3] == pd.Timestamp("2026-09-20")
    assert pd.isna(flags["became_elderly_since"][0]) and flags["reassess"][3]


def test_a_leap_day_birth_turns_elderly_on_the_first_of_march(rules):
    frame = pd.DataFrame(
        {
            "q_level": [3.0],
            "q_days_since": [30.0],
            "q_lowest_category": [0.0],
            "tagdir_up": [0.0],
            "tagdir_down": [0.0],
            "age_years": [65.0],
            "days_since_interview": [np.nan],
            "tenure_days": [900.0],
        }
    )
    found = mismatches(np.array([2]), np.array([2]), np.tile([0, 0, 1.0, 0, 0], (1, 1)), rules)
    flags = population_flags(
        frame,
        found,
        rules,
        pd.Timestamp("2026-03-10"),
        birth_date=pd.Series(pd.to_datetime(["1960-02-29"])),
    )
    assert flags["became_elderly_since"][0] == pd.Timestamp("2025-03-01")


def test_a_feature_table_without_the_rules_features_is_refused(rules):
    frame = pd.DataFrame({"q_level": [3.0]})
    found = mismatches(np.array([2]), np.array([2]), np.tile([0, 0, 1.0, 0, 0], (1, 1)), rules)
    with pytest.raises(ValueError, match="lacks 'q_days_since'"):
        population_flags(frame, found, rules, pd.Timestamp("2026-03-10"))


# --- on the demo's registered models ----------------------------------------------------------


@pytest.fixture(scope="module")
def scored(demo, tmp_path_factory):
    from suitability import tracking
    from suitability.scoring.population import Scorers, score_population
    from suitability.specs import load_specs

    out = tmp_path_factory.mktemp("scores") / "scores.parquet"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
        tracking.use_store()
        specs = load_specs()
        scorers = Scorers(
            tracking.load_explainer("risk-level@champion", specs),
            tracking.load_explainer("churn@champion", specs),
            load_rules(),
            specs,
        )
        as_of = pd.Timestamp("2026-09-30")
        summary = score_population(demo / "data", as_of, scorers, out)
        yield summary, scorers, as_of


@pytest.mark.slow
def test_a_score_row_says_what_explain_says(scored, demo):
    from suitability.explain.cases import customer_case
    from suitability.scoring.population import read_scores, score_provenance

    summary, scorers, as_of = scored
    scores = read_scores(summary.out).set_index("customer_id")
    assert summary.rows == len(scores) and scores.index.is_unique
    assert summary.reassess == int(scores["reassess"].sum())
    provenance = score_provenance(summary.out)
    assert provenance["rule_version"] == scorers.rules.version
    assert provenance["models"]["churn"]["version"] == scorers.churn.ref.version
    picks = scores.sample(8, random_state=3).index
    for customer in picks:
        case = customer_case(
            demo / "data",
            customer,
            scorers.risk,
            scorers.churn,
            scorers.specs,
            scorers.rules,
            as_of=as_of,
        )
        row = scores.loc[customer]
        assert row["predicted_level"] == case.risk.predicted_level
        stated = row["stated_level"] if isinstance(row["stated_level"], str) else None
        assert stated == case.risk.stated_level
        for level, p in case.risk.probabilities.items():
            assert row[f"p_{level}"] == pytest.approx(p, abs=1e-12)
        assert row["p_churn"] == pytest.approx(case.churn.p_churn, abs=1e-12)
        assert row["mismatch"] == case.mismatch.direction
        assert row["mismatch_confidence"] == pytest.approx(case.mismatch.confidence, abs=1e-12)
        for k, reason in enumerate(case.risk.reasons[:2], start=1):
            assert row[f"risk_reason_{k}"] == reason.feature
            assert row[f"risk_reason_{k}_zh"] == reason.text["zh"]
            assert row[f"risk_reason_{k}_en"] == reason.text["en"]
        for k, reason in enumerate(case.churn.reasons[:2], start=1):
            assert row[f"churn_reason_{k}"] == reason.feature
            assert row[f"churn_reason_{k}_zh"] == reason.text["zh"]


@pytest.mark.slow
def test_scores_carry_no_personal_data(scored, demo):
    summary, _, _ = scored
    table = pq.read_table(summary.out)
    assert not {"name", "phone", "id_number", "birth_date"} & set(table.column_names)
    customers = pd.read_parquet(demo / "data" / "customers")
    text = table.to_pandas().astype(str).to_csv()
    for column in ("name", "phone", "id_number"):
        for value in customers[column].dropna().head(50):
            assert str(value) not in text


def test_scores_go_to_parquet_or_csv_only(tmp_path):
    from suitability.scoring.population import score_population

    with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
        score_population(tmp_path, pd.Timestamp("2026-01-01"), None, tmp_path / "s.xlsx")  # type: ignore[arg-type]
