"""The feature kernel: every feature of `features/catalogue.yaml`, point-in-time, for any set of
(customer, as-of time) queries over canonical tables of those customers.

The batch builder calls it chunk by chunk and serving calls it for one customer, so both produce
the same numbers by construction. Two choices make that exact, not just close:
- every additive quantity is an integer (counts, amounts in cents, terms in days) summed with
  int64 prefix sums, so window sums do not depend on which other customers share the arrays;
- the few float sums (time-decayed tag counts) are accumulated per query in row order with
  `np.bincount`, which adds sequentially, so one customer alone gives the same bits.

Point-in-time: a fact counts for as-of time t only if its timestamp (`event_time`,
`submitted_at`, `recorded_at`) is at or before t. Times are compared at whole seconds: fact times
are rounded up and t is rounded down, so rounding can only exclude a fact, never leak one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from pandas.api.internals import create_dataframe_from_blocks

from suitability.data.contracts import KEEP_PROBLEMS, ContractError, Problem
from suitability.data.schema import MAX_EVENTS_PER_CUSTOMER, MAX_EVENTS_RULE
from suitability.features.encoding import encode, microseconds
from suitability.features.questionnaire import score_columns
from suitability.specs import R_LEVELS, SpecError, Specs

_US_PER_SECOND = 1_000_000
_US_PER_DAY = 86_400 * _US_PER_SECOND
_SECONDS_PER_DAY = 86_400
_MAX_SECOND = (1 << 32) - 1  # keys pack (customer, second since 1970) into one int64


@dataclass(frozen=True)
class FeatureInputs:
    """Canonical, contract-valid tables for a set of customers (PII already masked).

    Each frame has the columns of `suitability.data.schema`; only rows of the customers in
    `customers` may appear in the others.
    """

    customers: pd.DataFrame
    questionnaire: pd.DataFrame
    events: pd.DataFrame
    tags: pd.DataFrame


def _ceil_seconds(us: np.ndarray) -> np.ndarray:
    seconds = -((-us) // _US_PER_SECOND)
    if len(seconds) and (seconds.min() < 0 or seconds.max() > _MAX_SECOND):
        raise ValueError("fact timestamps must lie between 1970 and 2106")
    return seconds


def _keys(codes: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    return (codes.astype(np.int64) << 32) | np.clip(seconds, 0, _MAX_SECOND).astype(np.int64)


def _prefix(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, dtype=np.int64, out=out[1:])
    return out


def _check_event_counts(codes: np.ndarray, customer_ids: pd.Index) -> None:
    """Refuse a customer with more than `MAX_EVENTS_PER_CUSTOMER` events: below it, every
    window sum of amounts is exact in int64 (see `data.schema`)."""
    if len(codes) <= MAX_EVENTS_PER_CUSTOMER:
        return
    counts = np.bincount(codes[codes >= 0])
    over = np.flatnonzero(counts > MAX_EVENTS_PER_CUSTOMER)
    if over.size:
        problems = [
            Problem("events", "customer_id", None, MAX_EVENTS_RULE, str(customer_ids[i]))
            for i in over[:KEEP_PROBLEMS]
        ]
        raise ContractError(problems, total=int(over.size))


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    out = np.full(len(num), np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


class _Sorted:
    """Rows of one fact table sorted by (customer code, timestamp) with packed search keys."""

    def __init__(
        self, codes: np.ndarray, times_us: np.ndarray, ties: Sequence[np.ndarray] = ()
    ) -> None:
        """`ties` order rows with equal customer and time (most significant first) where the
        order would change a float sum, so any input order gives the same bits."""
        step = np.diff(codes)
        already_sorted = not ties and bool(
            np.all((step > 0) | ((step == 0) & (np.diff(times_us) >= 0)))
        )
        # Batch input usually arrives sorted by customer and time; sorting is then a no-op.
        order = (
            np.arange(len(codes))
            if already_sorted
            else np.lexsort((*reversed(ties), times_us, codes))
        )
        self.presorted = already_sorted
        self.order = order
        self.codes = codes[order]
        self.times_us = times_us[order]
        self.keys = _keys(self.codes, _ceil_seconds(self.times_us))

    def upto(self, q_codes: np.ndarray, q_seconds: np.ndarray) -> np.ndarray:
        """Index one past the last row of each query's customer with time <= the query time."""
        return np.searchsorted(self.keys, _keys(q_codes, q_seconds), side="right")

    def start(self, q_codes: np.ndarray) -> np.ndarray:
        """Index of the first row of each query's customer."""
        return np.searchsorted(self.keys, q_codes.astype(np.int64) << 32, side="left")


def _codes(ids: pd.Series, customer_ids: pd.Index) -> np.ndarray:
    codes = encode(ids, customer_ids)
    if len(codes) and codes.min() < 0:
        unknown = pd.Series(ids)[codes < 0].iloc[0]
        raise ValueError(f"customer {unknown!r} has facts but is not among the customers given")
    return codes


def compute_features(inputs: FeatureInputs, queries: pd.DataFrame, specs: Specs) -> pd.DataFrame:
    """Features for each query row (`customer_id`, `as_of`), in query order.

    Returns `customer_id`, `as_of` and every catalogue feature, with counts as int64, categorical
    profile features as pandas categoricals over the spec vocabulary, and the rest as float64
    (NaN where a feature is undefined, e.g. no questionnaire yet or no investment in a window).
    """
    customers = inputs.customers.sort_values("customer_id", kind="stable", ignore_index=True)
    customer_ids = pd.Index(customers["customer_id"])
    if not customer_ids.is_unique:
        raise ValueError("customers must be unique by customer_id")
    q_codes = _codes(queries["customer_id"], customer_ids)
    # As-of times count to the whole second (fact times are rounded up to one): a window is
    # then exactly (t - w, t] with no partial second at either end.
    q_seconds = np.clip(microseconds(queries["as_of"]) // _US_PER_SECOND, 0, _MAX_SECOND)
    q_us = q_seconds * _US_PER_SECOND

    columns: dict[str, np.ndarray | pd.Categorical] = {}
    columns.update(
        _questionnaire_features(inputs.questionnaire, customer_ids, q_codes, q_us, q_seconds, specs)
    )
    behaviour = _behaviour_features(inputs.events, customer_ids, q_codes, q_us, q_seconds, specs)
    columns.update(behaviour)
    columns.update(_interview_features(inputs.tags, customer_ids, q_codes, q_us, q_seconds, specs))
    columns.update(_profile_features(customers, q_codes, q_us, behaviour["net_holdings"], specs))
    revealed = behaviour[f"invest_avg_risk_{specs.behaviour.revealed_window_days}d"]
    columns["revealed_minus_stated"] = revealed - columns["q_level"]

    out = pd.DataFrame(
        {
            "customer_id": queries["customer_id"].to_numpy(),
            "as_of": q_us.view("datetime64[us]"),
        }
    )
    return pd.concat([out, _feature_frame(columns, specs.feature_names)], axis=1)


def _feature_frame(
    columns: dict[str, np.ndarray | pd.Categorical], names: Sequence[str]
) -> pd.DataFrame:
    """The columns as a frame in `names` order, the same frame `pd.DataFrame(columns)` gives,
    built from one 2-D block per numeric dtype: the dict constructor infers and checks two
    hundred columns one by one, the largest single cost of one request's features."""
    numeric: dict[np.dtype, list[int]] = {}
    blocks: list[tuple[np.ndarray | pd.Categorical, np.ndarray]] = []
    n = None
    for j, name in enumerate(names):
        column = columns[name]
        if n is None:
            n = len(column)
        if len(column) != n:
            raise ValueError(f"feature {name!r} has {len(column)} rows, expected {n}")
        if isinstance(column, np.ndarray) and column.ndim == 1 and column.dtype.kind in "biuf":
            numeric.setdefault(column.dtype, []).append(j)
        elif isinstance(column, pd.Categorical):
            blocks.append((column, np.array([j], dtype=np.intp)))
        else:  # anything else: let pandas infer it
            return pd.DataFrame({name: columns[name] for name in names})
    for dtype, positions in numeric.items():
        block = np.stack([columns[names[j]] for j in positions]).astype(dtype, copy=False)
        blocks.append((block, np.array(positions, dtype=np.intp)))
    return create_dataframe_from_blocks(
        blocks, index=pd.RangeIndex(n or 0), columns=pd.Index(list(names))
    )


# --- questionnaire --------------------------------------------------------------------------------


def _questionnaire_features(
    responses: pd.DataFrame,
    customer_ids: pd.Index,
    q_codes: np.ndarray,
    q_us: np.ndarray,
    q_seconds: np.ndarray,
    specs: Specs,
) -> dict[str, np.ndarray]:
    n = len(q_codes)
    subs = score_columns(responses, specs.questionnaires)
    table = _Sorted(_codes(subs["customer_id"], customer_ids), microseconds(subs["submitted_at"]))
    upto = table.upto(q_codes, q_seconds)
    start = table.start(q_codes)
    has = upto > start
    last = np.where(has, upto - 1, 0)
    rows = table.order[last] if len(table.order) else np.zeros(n, dtype=np.int64)

    def pick(values: np.ndarray) -> np.ndarray:
        if len(values) == 0:
            return np.full(n, np.nan)
        return np.where(has, values.astype(np.float64)[rows], np.nan)

    out = {
        "q_total_score": pick(np.asarray(subs["total"])),
        "q_level": pick(np.asarray(subs["level"])),
        "q_lowest_category": pick(np.asarray(subs["lowest"])),
        "q_n_submissions": (upto - start).astype(np.int64),
    }
    submitted = table.times_us[last] if len(table.times_us) else np.zeros(n, dtype=np.int64)
    out["q_days_since"] = np.where(has, (q_us - submitted) / _US_PER_DAY, np.nan)
    for qid in specs.question_ids:
        out[f"q_answer_{qid}"] = pick(np.asarray(subs[f"score_{qid}"]))
    return out


# --- behaviour ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventArrays:
    """The events of a set of customers as the behaviour features read them: one integer array
    per column, rows in any order. The batch builder makes them straight from arrow columns,
    without a pandas frame; `event_arrays` makes them from a canonical frame. Both give the
    same arrays, so the features are the same bits either way."""

    #: Position of the event's customer among the customers given to the kernel.
    codes: np.ndarray
    #: Event time, microseconds since 1970.
    times_us: np.ndarray
    #: Position of event_type in `behaviour.event_types` (-1: unknown).
    etype: np.ndarray
    #: Position of channel in `behaviour.channels` (-1: unknown).
    channel: np.ndarray
    #: Amount in whole cents (0 where there is none).
    cents: np.ndarray
    #: Product risk level R1..R5 as 1..5 (0: none or unknown).
    risk: np.ndarray
    #: Term in days (0 where there is none) and whether there is one.
    term: np.ndarray
    has_term: np.ndarray

    def __len__(self) -> int:
        return len(self.codes)


def cents_of(amount: np.ndarray) -> np.ndarray:
    """Amounts (float yuan, NaN for none) as int64 cents, 0 for none."""
    return np.rint(np.where(np.isnan(amount), 0.0, amount) * 100).astype(np.int64)


def terms_of(term_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Terms (float days, NaN for none) as int64 days (0 for none) and a has-term mask."""
    has_term = ~np.isnan(term_days)
    return np.where(has_term, term_days, 0).astype(np.int64), has_term


def event_arrays(events: pd.DataFrame, customer_ids: pd.Index, specs: Specs) -> EventArrays:
    """A canonical events frame as `EventArrays` for `customer_ids`."""
    b = specs.behaviour
    term, has_term = terms_of(events["term_days"].to_numpy(dtype=np.float64, na_value=np.nan))
    return EventArrays(
        codes=_codes(events["customer_id"], customer_ids),
        times_us=microseconds(events["event_time"]),
        etype=encode(events["event_type"], list(b.event_types)),
        channel=encode(events["channel"], list(b.channels)),
        cents=cents_of(events["amount"].to_numpy(dtype=np.float64, na_value=np.nan)),
        risk=encode(events["product_risk"], R_LEVELS) + 1,
        term=term,
        has_term=has_term,
    )


def _behaviour_features(
    events: pd.DataFrame | EventArrays,
    customer_ids: pd.Index,
    q_codes: np.ndarray,
    q_us: np.ndarray,
    q_seconds: np.ndarray,
    specs: Specs,
) -> dict[str, np.ndarray]:
    b = specs.behaviour
    if isinstance(events, pd.DataFrame):
        events = event_arrays(events, customer_ids, specs)
    table = _Sorted(events.codes, events.times_us)
    _check_event_counts(table.codes, customer_ids)
    o = table.order

    def ordered(values: np.ndarray) -> np.ndarray:
        return values if table.presorted else values[o]

    etype = ordered(events.etype)
    channel = ordered(events.channel)
    cents = ordered(events.cents)
    risk = ordered(events.risk)
    term = ordered(events.term)
    has_term = ordered(events.has_term)
    type_code = {name: i for i, name in enumerate(b.event_types)}
    is_type = {name: etype == i for name, i in type_code.items()}
    invest = is_type["invest"]

    upto = table.upto(q_codes, q_seconds)
    start = table.start(q_codes)
    lows = {
        w: table.upto(q_codes, np.maximum(q_seconds - w * _SECONDS_PER_DAY, 0)) for w in b.windows
    }
    # A window's lower bound never reaches below the customer's first row.
    for w in b.windows:
        lows[w] = np.maximum(lows[w], start)

    def window_sums(values: np.ndarray) -> dict[int, np.ndarray]:
        p = _prefix(values)
        return {w: p[upto] - p[lows[w]] for w in b.windows}

    out: dict[str, np.ndarray] = {}
    counts = {name: window_sums(mask) for name, mask in is_type.items()}
    for name in b.event_types:
        for w in b.windows:
            out[f"n_{name}_{w}d"] = counts[name][w]
    amounts = {
        name: window_sums(np.where(is_type[name], cents, 0)) for name in b.monetary_event_types
    }
    for name in b.monetary_event_types:
        for w in b.windows:
            out[f"amt_{name}_{w}d"] = amounts[name][w] / 100.0

    new_day = np.ones(len(o), dtype=bool)
    if len(o):
        day = table.times_us // _US_PER_DAY
        new_day[1:] = (day[1:] != day[:-1]) | (table.codes[1:] != table.codes[:-1])
    distinct = window_sums(new_day)
    for w in b.windows:
        # The first event inside the window starts a new active day even if an earlier event
        # (outside the window) fell on the same calendar day.
        first_in_window = np.zeros(len(upto), dtype=bool)
        inside = upto > lows[w]
        first_in_window[inside] = ~new_day[lows[w][inside]]
        out[f"active_days_{w}d"] = distinct[w] + first_in_window

    high = R_LEVELS.index(b.high_risk_from) + 1
    invested = amounts["invest"]
    high_risk = window_sums(np.where(invest & (risk >= high), cents, 0))
    risk_weighted = window_sums(np.where(invest & (risk >= 1), cents * risk, 0))
    risk_known = window_sums(np.where(invest & (risk >= 1), cents, 0))
    term_sum = window_sums(np.where(invest & has_term, term, 0))
    term_count = window_sums(invest & has_term)
    total = {w: upto - lows[w] for w in b.windows}
    channel_counts = {c: window_sums(channel == i) for i, c in enumerate(b.channels)}
    for w in b.windows:
        out[f"invest_share_high_risk_{w}d"] = _safe_div(high_risk[w], invested[w])
        out[f"invest_avg_risk_{w}d"] = _safe_div(risk_weighted[w], risk_known[w])
        out[f"invest_avg_term_{w}d"] = _safe_div(term_sum[w], term_count[w])
        out[f"redeem_ratio_{w}d"] = _safe_div(
            amounts["redeem"][w], invested[w] + amounts["redeem"][w]
        )
        out[f"withdraw_ratio_{w}d"] = _safe_div(
            amounts["withdraw"][w], amounts["deposit"][w] + amounts["withdraw"][w]
        )
        for c in b.channels:
            out[f"channel_share_{c}_{w}d"] = _safe_div(channel_counts[c][w], total[w])

    positions = np.arange(len(o), dtype=np.int64)
    for name in b.recency_event_types:
        last_of_type = (
            np.maximum.accumulate(np.where(is_type[name], positions, -1)) if len(o) else positions
        )
        last = last_of_type[np.maximum(upto - 1, 0)] if len(o) else np.full(len(upto), -1)
        found = (upto > start) & (last >= start)
        when = table.times_us[np.where(found, last, 0)] if len(o) else np.zeros(len(upto), np.int64)
        out[f"days_since_{name}"] = np.where(found, (q_us - when) / _US_PER_DAY, np.nan)

    short, long = b.trend.short_days, b.trend.long_days
    out["trend_login"] = _safe_div(counts["login"][short] * long, counts["login"][long] * short)
    # In float: cents times a window length could pass 2**63 (exactly as before below 2**53).
    out["trend_invest_amount"] = _safe_div(
        invested[short].astype(np.float64) * long, invested[long].astype(np.float64) * short
    )
    p_inv = _prefix(np.where(invest, cents, 0))
    p_red = _prefix(np.where(is_type["redeem"], cents, 0))
    out["net_holdings"] = ((p_inv[upto] - p_inv[start]) - (p_red[upto] - p_red[start])) / 100.0
    return out


# --- interview tags -------------------------------------------------------------------------------


def _interview_features(
    tags: pd.DataFrame,
    customer_ids: pd.Index,
    q_codes: np.ndarray,
    q_us: np.ndarray,
    q_seconds: np.ndarray,
    specs: Specs,
) -> dict[str, np.ndarray]:
    taxonomy = specs.tags
    tag_ids = [t.id for t in taxonomy.tags]
    raw_tag = encode(tags["tag"], tag_ids)
    raw_interview = microseconds(tags["interview_time"])
    # Ties on recorded_at are broken by interview time and tag so the decayed sums below add
    # in the same order whatever order the rows came in.
    table = _Sorted(
        _codes(tags["customer_id"], customer_ids),
        microseconds(tags["recorded_at"]),
        ties=(raw_interview, raw_tag),
    )
    o = table.order
    n = len(q_codes)
    categories = list(taxonomy.categories)
    directions = list(specs.catalogue.tag_directions)
    tag_code = raw_tag[o]
    cat_code = np.array([categories.index(t.category) for t in taxonomy.tags], dtype=np.int64)[
        tag_code
    ]
    dir_lookup = np.array(
        [
            directions.index(t.risk_direction) if t.risk_direction in directions else -1
            for t in taxonomy.tags
        ],
        dtype=np.int64,
    )
    dir_code = dir_lookup[tag_code]
    interview_us = raw_interview[o]

    upto = table.upto(q_codes, q_seconds)
    start = table.start(q_codes)
    # Expand (query, visible tag row) pairs; each customer has few tags, so this stays small.
    sizes = upto - start
    query_of_pair = np.repeat(np.arange(n, dtype=np.int64), sizes)
    row_of_pair = np.repeat(start - np.cumsum(sizes) + sizes, sizes) + np.arange(
        sizes.sum(), dtype=np.int64
    )
    age_days = (q_us[query_of_pair] - interview_us[row_of_pair]) / _US_PER_DAY
    weight = np.exp2(-age_days / specs.catalogue.tag_decay_half_life_days)

    def decayed(codes: np.ndarray, k: int) -> np.ndarray:
        keep = codes[row_of_pair] >= 0
        flat = query_of_pair[keep] * k + codes[row_of_pair][keep]
        sums = np.bincount(flat, weights=weight[keep], minlength=n * k)
        return sums.astype(np.float64, copy=False).reshape(n, k)  # int64 when nothing is visible

    out: dict[str, np.ndarray] = {}
    by_tag = decayed(tag_code, len(tag_ids))
    for i, t in enumerate(tag_ids):
        out[f"tag_{t}"] = by_tag[:, i]
    by_cat = decayed(cat_code, len(categories))
    for i, c in enumerate(categories):
        out[f"tagcat_{c}"] = by_cat[:, i]
    by_dir = decayed(dir_code, len(directions))
    for i, d in enumerate(directions):
        out[f"tagdir_{d}"] = by_dir[:, i]

    # An interview is (interview_time, advisor_id); it counts once its first tag is recorded.
    interview_keys = pd.DataFrame(
        {
            "c": table.codes,
            "t": interview_us,
            "a": encode(tags["advisor_id"], tags["advisor_id"].unique())[o],
        }
    )
    first_of_interview = ~interview_keys.duplicated().to_numpy()
    p_first = _prefix(first_of_interview)
    out["n_interviews"] = p_first[upto] - p_first[start]
    # Codes never decrease along the rows, so a running max of packed (customer, second) keys is
    # a per-customer running max of the interview time.
    has = upto > start
    latest_us = np.zeros(n, dtype=np.int64)
    if len(o):
        packed = _keys(table.codes, interview_us // _US_PER_SECOND)
        running = np.maximum.accumulate(packed)
        latest_us = (running[np.maximum(upto - 1, 0)] & _MAX_SECOND) * _US_PER_SECOND
    out["days_since_interview"] = np.where(has, (q_us - latest_us) / _US_PER_DAY, np.nan)
    return out


# --- profile --------------------------------------------------------------------------------------


def _profile_features(
    customers: pd.DataFrame,
    q_codes: np.ndarray,
    q_us: np.ndarray,
    net_holdings: np.ndarray,
    specs: Specs,
) -> dict[str, np.ndarray | pd.Categorical]:
    p = specs.profile
    as_of_year, as_of_month, as_of_day = _calendar(q_us.view("datetime64[us]"))
    birth_year, birth_month, birth_day = _calendar(
        customers["birth_date"].to_numpy("datetime64[us]")[q_codes]
    )
    before_birthday = (as_of_month < birth_month) | (
        (as_of_month == birth_month) & (as_of_day < birth_day)
    )
    registered = microseconds(customers["registered_at"])[q_codes]
    segment_mins = np.array([s.min for s in p.segments])
    segment_idx = np.maximum(np.searchsorted(segment_mins, net_holdings, side="right") - 1, 0)

    def categorical(column: str, vocabulary: Sequence[str]) -> pd.Categorical:
        codes = encode(customers[column], list(vocabulary))[q_codes]
        return pd.Categorical.from_codes(codes, dtype=_categories(tuple(vocabulary)))

    return {
        "age_years": (as_of_year - birth_year - before_birthday).astype(np.float64),
        "tenure_days": (q_us - registered) / _US_PER_DAY,
        "gender": categorical("gender", p.genders),
        "city_tier": categorical("city_tier", p.city_tiers),
        "income_band": categorical("income_band", p.income_bands),
        "channel_preference": categorical("channel_preference", specs.behaviour.channels),
        "segment": pd.Categorical.from_codes(
            segment_idx, dtype=_categories(tuple(s.id for s in p.segments))
        ),
    }


def _calendar(times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month (1-12) and day of month (1-31) of datetime64 values, in numpy (a pandas
    DatetimeIndex and its accessors cost a millisecond for one request's row)."""
    years = times.astype("datetime64[Y]")
    months = times.astype("datetime64[M]")
    days = times.astype("datetime64[D]")
    return (
        years.astype(np.int64) + 1970,
        (months - years.astype("datetime64[M]")).astype(np.int64) + 1,
        (days - months.astype("datetime64[D]")).astype(np.int64) + 1,
    )


@lru_cache(maxsize=64)
def _categories(vocabulary: tuple[str, ...]) -> pd.CategoricalDtype:
    """The categorical dtype of a spec vocabulary, built once (building one validates its
    categories, a noticeable part of a single customer's features)."""
    return pd.CategoricalDtype(list(vocabulary))


def check_catalogue(specs: Specs) -> None:
    """Fail at spec load, not after hours of data loading, when the catalogue names a feature
    the kernel cannot compute: run the kernel once on a customer with no facts."""
    from suitability.data.contracts import empty_frame
    from suitability.data.schema import EVENTS, INTERVIEW_TAGS, QUESTIONNAIRE_RESPONSES

    p = specs.profile
    customer = pd.DataFrame(
        {
            "customer_id": pd.array(["check"], dtype="str"),
            "birth_date": pd.to_datetime(["1980-01-01"]).astype("datetime64[us]"),
            "gender": next(iter(p.genders)),
            "city_tier": next(iter(p.city_tiers)),
            "income_band": next(iter(p.income_bands)),
            "registered_at": pd.to_datetime(["2020-01-01"]).astype("datetime64[us]"),
            "channel_preference": next(iter(specs.behaviour.channels)),
        }
    )
    inputs = FeatureInputs(
        customers=customer,
        questionnaire=empty_frame(QUESTIONNAIRE_RESPONSES),
        events=empty_frame(EVENTS),
        tags=empty_frame(INTERVIEW_TAGS),
    )
    query = pd.DataFrame({"customer_id": ["check"], "as_of": pd.to_datetime(["2021-01-01"])})
    try:
        compute_features(inputs, query, specs)
    except KeyError as exc:
        name = exc.args[0] if exc.args else "?"
        family = next(
            (i for i, f in enumerate(specs.catalogue.families) if _matches(f.name, name)), None
        )
        where = f"families[{family}]" if family is not None else "families"
        raise SpecError(
            "catalogue.yaml", [(where, f"the feature code computes no feature named {name!r}")]
        ) from None


def _matches(template: str, name: str) -> bool:
    import re

    pattern = re.sub(r"\\\{[a-z_]+\\\}", ".+", re.escape(template))
    return re.fullmatch(pattern, name) is not None
