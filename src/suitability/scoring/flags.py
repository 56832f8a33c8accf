"""The re-assessment triggers and care flags of DESIGN §2 for a whole population at once, from
the feature table and the risk model's probabilities, by the thresholds of the rule table.

The suitability decision (`models.rules.decide`) applies the same rules to one customer and
one product; here they are applied without a product, column by column. Tests prove that every
trigger a decision can fire holds here exactly when it fires there (`tests/test_scoring.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from suitability.models.rules import RuleTable
from suitability.specs import C_LEVELS

#: Triggers of a re-assessment, in the order a worklist names them.
TRIGGERS: tuple[str, ...] = (
    "no_questionnaire",
    "stale_questionnaire",
    "interview_more_cautious",
    "interview_more_aggressive",
    "overstated",
    "understated",
    "became_elderly",
)
#: Flags that ask for care whatever is decided.
CARE_FLAGS: tuple[str, ...] = ("elderly", "vulnerable", "lowest_category")


@dataclass(frozen=True)
class Mismatches:
    """Stated vs predicted category for many customers (`models.rules.assess_mismatch`'s
    fields, as arrays): direction none/understated/overstated, the model's probability on the
    predicted side of the stated level, whether that reaches the rule table's minimum, and how
    many levels apart they are."""

    direction: np.ndarray
    confidence: np.ndarray
    flagged: np.ndarray
    levels_apart: np.ndarray


def stated_ranks(q_level: pd.Series | np.ndarray) -> np.ndarray:
    """The questionnaire's level (`q_level` 1..5) as 0..4, -1 without a questionnaire."""
    level = pd.to_numeric(pd.Series(q_level), errors="coerce").to_numpy(dtype=np.float64)
    ranks = np.full(level.shape, -1, dtype=np.int64)
    known = np.isfinite(level)
    ranks[known] = np.clip(np.rint(level[known]), 1, len(C_LEVELS)).astype(np.int64) - 1
    return ranks


def mismatches(
    stated: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, rules: RuleTable
) -> Mismatches:
    """`assess_mismatch` for each row: `stated` and `predicted` are ranks 0..4 (stated -1: no
    questionnaire), `probabilities` one row of C1..C5 per customer."""
    n = len(stated)
    confidence = np.zeros(n, dtype=np.float64)
    for rank in range(len(C_LEVELS)):
        rows = stated == rank
        up = rows & (predicted > rank)
        down = rows & (predicted < rank)
        # Summed in level order, as the single decision does: the same floats.
        confidence[up] = probabilities[up][:, rank + 1 :].sum(axis=1)
        confidence[down] = probabilities[down][:, :rank].sum(axis=1)
    has = stated >= 0
    direction = np.full(n, "none", dtype=object)
    direction[has & (predicted > stated)] = "understated"
    direction[has & (predicted < stated)] = "overstated"
    flagged = (direction != "none") & (confidence >= rules.mismatch.min_confidence)
    apart = np.where(has, np.abs(predicted - stated), 0)
    return Mismatches(direction, confidence, flagged, apart)


def _column(features: pd.DataFrame, name: str) -> np.ndarray:
    if name not in features.columns:
        raise ValueError(f"the feature table lacks {name!r}: build it with `suitability features`")
    return pd.to_numeric(features[name], errors="coerce").to_numpy(dtype=np.float64)


def population_flags(
    features: pd.DataFrame,
    mismatch: Mismatches,
    rules: RuleTable,
    as_of: pd.Timestamp,
    *,
    registered_at: pd.Series | None = None,
    birth_date: pd.Series | None = None,
) -> pd.DataFrame:
    """One boolean column per trigger and care flag, `reassess` (any trigger), `triggers`
    (their codes, `;`-joined, in `TRIGGERS` order; None without any) and, per trigger, `<code>_since`: the
    date since which it holds (registration without a questionnaire, the day the questionnaire
    went stale, the last interview, the birthday that made the customer elderly; the as-of
    date for a model mismatch, which is seen only now). `registered_at` / `birth_date`, from
    the customers table in the features' row order, make those two dates exact."""
    n = len(features)
    stated = stated_ranks(features["q_level"]) if "q_level" in features else np.full(n, -1)
    has = stated >= 0
    days = _column(features, "q_days_since")
    up, down = _column(features, "tagdir_up"), _column(features, "tagdir_down")
    up, down = np.nan_to_num(up, nan=0.0), np.nan_to_num(down, nan=0.0)
    age = _column(features, "age_years")
    c = rules.contradiction
    net = c.min_net_weight
    out = pd.DataFrame(index=features.index)

    out["no_questionnaire"] = ~has
    out["stale_questionnaire"] = has & (days > rules.questionnaire_max_age_days)
    out["interview_more_cautious"] = (
        has & (stated >= C_LEVELS.index(c.aggressive_from)) & (down - up >= net)
    )
    out["interview_more_aggressive"] = (
        has & (stated <= C_LEVELS.index(c.conservative_upto)) & (up - down >= net)
    )
    out["overstated"] = mismatch.flagged & (mismatch.direction == "overstated")
    out["understated"] = mismatch.flagged & (mismatch.direction == "understated")
    elderly = np.nan_to_num(age, nan=-1.0) >= rules.elderly_age
    # Younger than the threshold when the questionnaire was answered, old enough now.
    age_then = age - np.nan_to_num(days, nan=0.0) / 365.25
    out["became_elderly"] = has & elderly & (age_then < rules.elderly_age)

    out["elderly"] = elderly
    vulnerable = np.zeros(n, dtype=bool)
    for tag, weight in rules.care_tags.items():
        column = f"tag_{tag}"
        if column in features.columns:
            vulnerable |= np.nan_to_num(_column(features, column), nan=0.0) >= weight
    out["vulnerable"] = vulnerable
    lowest = _column(features, "q_lowest_category") if "q_lowest_category" in features else None
    out["lowest_category"] = np.zeros(n, bool) if lowest is None else np.nan_to_num(lowest) == 1

    reassess = out[list(TRIGGERS)].to_numpy()
    out["reassess"] = reassess.any(axis=1)
    names = np.asarray(TRIGGERS, dtype=object)
    joined = [";".join(names[row]) if row.any() else None for row in reassess]
    out["triggers"] = pd.Series(joined, index=out.index, dtype=object)

    when = pd.Timestamp(as_of)
    answered = _before(when, days)
    registered = (
        pd.to_datetime(registered_at).to_numpy(dtype="datetime64[ns]")
        if registered_at is not None
        else _before(when, _column(features, "tenure_days"))
    )
    stale = answered + np.timedelta64(rules.questionnaire_max_age_days, "D")
    interview = _before(when, _column(features, "days_since_interview"))
    turned = _birthdays(birth_date, rules.elderly_age, out["became_elderly"].to_numpy())
    now = np.full(n, when.to_datetime64(), dtype="datetime64[ns]")
    out["no_questionnaire_since"] = _where(out["no_questionnaire"], registered)
    out["stale_questionnaire_since"] = _where(out["stale_questionnaire"], stale)
    out["interview_more_cautious_since"] = _where(out["interview_more_cautious"], interview)
    out["interview_more_aggressive_since"] = _where(out["interview_more_aggressive"], interview)
    out["overstated_since"] = _where(out["overstated"], now)
    out["understated_since"] = _where(out["understated"], now)
    out["became_elderly_since"] = _where(out["became_elderly"], turned)
    return out


def _before(when: pd.Timestamp, days: np.ndarray) -> np.ndarray:
    """The times `days` (fractional) before `when`, to the second (NaT where unknown)."""
    delta = pd.to_timedelta(days, unit="D")
    return (when - delta).round("s").to_numpy(dtype="datetime64[ns]")


def _birthdays(birth_date: pd.Series | None, years: int, rows: np.ndarray) -> np.ndarray:
    """The day each customer of `rows` turned `years` old, as the features count age: someone
    born on 29 February is a year older from 1 March in common years."""
    out = np.full(rows.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    if birth_date is None or not rows.any():
        return out
    born = pd.to_datetime(pd.Series(birth_date).to_numpy()[rows])
    parts = pd.DataFrame({"year": born.year + years, "month": born.month, "day": born.day})
    day = pd.to_datetime(parts, errors="coerce")
    leap = day.isna() & born.notna()
    day[leap] = pd.to_datetime(parts[leap].assign(month=3, day=1))
    out[rows] = day.to_numpy(dtype="datetime64[ns]")
    return out


def _where(mask: pd.Series | np.ndarray, dates: np.ndarray) -> np.ndarray:
    out = np.array(dates, dtype="datetime64[ns]", copy=True)
    out[~np.asarray(mask, dtype=bool)] = np.datetime64("NaT")
    return out
