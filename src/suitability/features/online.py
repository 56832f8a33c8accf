"""The per-request path: one customer's contract checks, masking and features from typed values,
with no DataFrame and no table engine, and the models' matrices straight from the feature
vector.

The definitions are the batch pipeline's: the rules declared in `data.schema`, the YAML specs
and the feature catalogue. Only the execution differs: `kernel` computes features for millions
of (customer, time) queries with prefix sums over sorted tables; this module computes them for
one customer at one time with a few numpy calls over the request's arrays (sums per window of
one small integer matrix, `np.bincount` for the decayed tag weights). Both follow the same
arithmetic (integer cents and counts, the same float operations in the same order), and
`tests/test_online.py` proves them bit-identical on generated bundles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from suitability.data.contracts import Finding, ProblemLog
from suitability.data.pii import mask_pii_arrays
from suitability.data.schema import (
    CUSTOMERS,
    EVENTS,
    INTERVIEW_TAGS,
    QUESTIONNAIRE_RESPONSES,
    Combination,
    CompleteGroups,
    Ordered,
    RequiredWhen,
    RowRule,
    TableSchema,
)
from suitability.features.kernel import (
    _MAX_SECOND,
    _SECONDS_PER_DAY,
    _US_PER_DAY,
    _US_PER_SECOND,
    FeatureInputs,
    _calendar,
    _safe_div,
    compute_features,
)
from suitability.models.estimators import FeatureLayout
from suitability.specs import C_LEVELS, R_LEVELS, SpecError, Specs

_EPOCH = datetime(1970, 1, 1)
#: Where a time lies outside what the kernel's packed keys hold, both paths refuse it.
RULE_TIME_RANGE = "must lie between 1970-01-01 and 2106-02-07"
_US_PER_DAY_F = float(_US_PER_DAY)

# --- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """One raw table of one customer: column name -> list of typed values (None: missing), in
    record order."""

    columns: dict[str, list[Any]]
    _us: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    def get(self, name: str) -> list[Any]:
        values = self.columns.get(name)
        return values if values is not None else [None] * len(self)

    def us(self, name: str) -> np.ndarray:
        """A time column (no missing values) as int64 microseconds since 1970, converted once
        (the checks, the features and the facts used all read it)."""
        if name not in self._us:
            self._us[name] = _us_array(self.get(name))
        return self._us[name]


@dataclass(frozen=True)
class Bundle:
    """Everything known about one customer, as typed columns per raw table (what a parsed
    request holds, or what the batch contracts produced). The profile's personal data is as it
    came: `masked_profile(s)` gives the masked form answers show; features never read it."""

    profile: dict[str, Any]
    answers: Table
    events: Table
    tags: Table

    @classmethod
    def of_request(cls, request: Any) -> Bundle:
        """From a parsed request model (`serving.requests.CustomerBundle`): attribute reads, one
        list per declared column; free-text notes are not copied (nothing reads them)."""
        profile = {
            c.name: getattr(request.profile, c.name, None)
            for c in CUSTOMERS.columns
            if not c.optional or getattr(request.profile, c.name, None) is not None
        }
        return cls(
            profile=profile,
            answers=_of_records(request.answers, QUESTIONNAIRE_RESPONSES),
            events=_of_records(request.events, EVENTS),
            tags=_of_records(request.tags, INTERVIEW_TAGS),
        )

    @classmethod
    def of_inputs(cls, inputs: FeatureInputs) -> Bundle:
        """From one customer's canonical frames (validated and masked by the batch contracts,
        e.g. `features.bundle.bundle_inputs`)."""
        if len(inputs.customers) != 1:
            raise ValueError(f"expected one customer, got {len(inputs.customers)}")
        row = inputs.customers.iloc[0]
        profile = {c.name: _python(row[c.name]) for c in CUSTOMERS.columns if c.name in row.index}
        return cls(
            profile=profile,
            answers=_of_frame(inputs.questionnaire, QUESTIONNAIRE_RESPONSES),
            events=_of_frame(inputs.events, EVENTS),
            tags=_of_frame(inputs.tags, INTERVIEW_TAGS),
        )


def _of_records(records: Sequence[Any], schema: TableSchema) -> Table:
    names = [c.name for c in schema.columns if c.name != "customer_id" and not c.pii]
    return Table({name: [getattr(r, name) for r in records] for name in names})


def _of_frame(frame: pd.DataFrame, schema: TableSchema) -> Table:
    names = [c.name for c in schema.columns if c.name != "customer_id" and not c.pii]
    return Table(
        {name: [_python(v) for v in frame[name].tolist()] for name in names if name in frame}
    )


def _python(value: Any) -> Any:
    """A frame value as the request would hold it (missing -> None, timestamps -> datetime)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _us(value: datetime | date) -> int:
    """A naive datetime or a date (its midnight) as integer microseconds since 1970."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _US_PER_SECOND + delta.microseconds


def _us_array(values: Sequence[datetime | date]) -> np.ndarray:
    return np.fromiter((_us(v) for v in values), dtype=np.int64, count=len(values))


# --- the plan: everything about the specs, worked out once --------------------------------------


class OnlinePlan:
    """Lookups the per-request path needs, computed once per specs (`plan_of`)."""

    def __init__(self, specs: Specs) -> None:
        b, p = specs.behaviour, specs.profile
        self.specs = specs
        self.names: tuple[str, ...] = tuple(specs.feature_names)
        self.categorical: dict[str, tuple[str, ...]] = {
            "gender": tuple(p.genders),
            "city_tier": tuple(p.city_tiers),
            "income_band": tuple(p.income_bands),
            "channel_preference": tuple(b.channels),
            "segment": tuple(s.id for s in p.segments),
        }
        self.event_types = tuple(b.event_types)
        self.event_code = {name: i for i, name in enumerate(b.event_types)}
        self.channel_code = {name: i for i, name in enumerate(b.channels)}
        self.risk_code = {name: i + 1 for i, name in enumerate(R_LEVELS)}
        self.windows = tuple(b.windows)
        self.monetary = tuple(b.monetary_event_types)
        self.high_risk = R_LEVELS.index(b.high_risk_from) + 1
        self.segment_mins = np.array([s.min for s in p.segments])
        # Questionnaires: per version, (question -> option -> score), bands, lowest conditions.
        self.versions = {v: i for i, v in enumerate(specs.questionnaires)}
        self.scores = {
            v: {q.id: {o.id: o.score for o in q.options} for q in d.questions}
            for v, d in specs.questionnaires.items()
        }
        self.bands = {
            v: (
                np.array([band.min for band in d.bands]),
                np.array([C_LEVELS.index(band.level) + 1 for band in d.bands], dtype=np.float64),
            )
            for v, d in specs.questionnaires.items()
        }
        self.lowest = {v: d.lowest_category for v, d in specs.questionnaires.items()}
        taxonomy = specs.tags
        self.tag_ids = tuple(t.id for t in taxonomy.tags)
        self.tag_code = {t: i for i, t in enumerate(self.tag_ids)}
        self.tag_categories = tuple(taxonomy.categories)
        self.tag_directions = tuple(specs.catalogue.tag_directions)
        self.tag_cat = np.array(
            [self.tag_categories.index(t.category) for t in taxonomy.tags], dtype=np.int64
        )
        self.tag_dir = np.array(
            [
                self.tag_directions.index(t.risk_direction)
                if t.risk_direction in self.tag_directions
                else -1
                for t in taxonomy.tags
            ],
            dtype=np.int64,
        )
        self.half_life = specs.catalogue.tag_decay_half_life_days
        # Columns of the per-event integer matrix whose window sums make the behaviour features.
        self.sums: dict[str, int] = {}
        for name in self.event_types:
            self.sums[f"n_{name}"] = len(self.sums)
        for name in self.monetary:
            self.sums[f"amt_{name}"] = len(self.sums)
        for name in ("high_risk", "risk_weighted", "risk_known", "term_sum", "term_count"):
            self.sums[name] = len(self.sums)
        for name in b.channels:
            self.sums[f"channel_{name}"] = len(self.sums)


def plan_of(specs: Specs) -> OnlinePlan:
    """The plan of `specs`, built on first use and kept with them (specs are immutable). Fails
    with a `SpecError` when the catalogue names a feature this path does not compute."""
    cache = specs.__dict__
    plan = cache.get("_online_plan")
    if plan is None:
        plan = OnlinePlan(specs)
        computed = set(_empty_features(plan))
        if missing := [n for n in plan.names if n not in computed]:
            raise SpecError(
                "catalogue.yaml",
                [("families", f"the per-request path computes no feature named {missing[0]!r}")],
            )
        cache["_online_plan"] = plan
    return plan


def _empty_features(plan: OnlinePlan) -> dict[str, Any]:
    p = plan.specs.profile
    profile = {
        "customer_id": "check",
        "birth_date": date(1980, 1, 1),
        "gender": next(iter(p.genders)),
        "city_tier": next(iter(p.city_tiers)),
        "income_band": next(iter(p.income_bands)),
        "registered_at": datetime(2020, 1, 1),
        "channel_preference": next(iter(plan.specs.behaviour.channels)),
    }
    empty = Table({})
    bundle = Bundle(profile, empty, empty, empty)
    return _feature_values(bundle, _us(datetime(2021, 1, 1)), plan)


# --- checks ---------------------------------------------------------------------------------------

#: Where each raw table sits in a bundle.
PARTS = {
    CUSTOMERS.name: "profile",
    QUESTIONNAIRE_RESPONSES.name: "answers",
    EVENTS.name: "events",
    INTERVIEW_TAGS.name: "tags",
}


def check_bundle(bundle: Bundle, specs: Specs) -> ProblemLog:
    """The data contracts' rules that a typed request can still break once its JSON schema and
    vocabularies have been checked: the row rules and whole-table rules declared in
    `data.schema`, and the time range the feature code can hold. Findings are logged as the
    batch contracts log them (table, column, 1-based row, rule), so both report alike."""
    log = ProblemLog()
    tables = {
        CUSTOMERS.name: Table({k: [v] for k, v in bundle.profile.items()}),
        QUESTIONNAIRE_RESPONSES.name: bundle.answers,
        EVENTS.name: bundle.events,
        INTERVIEW_TAGS.name: bundle.tags,
    }
    for schema in (CUSTOMERS, QUESTIONNAIRE_RESPONSES, EVENTS, INTERVIEW_TAGS):
        table = tables[schema.name]
        if not len(table):
            continue
        for rule in schema.row_rules:
            rows = _violations(rule, table, schema, specs)
            if rows:
                log.add(schema.name, Finding(rule.column, rule.rule, np.array(rows) + 1))
        if schema.unique and schema is not CUSTOMERS:  # one profile is unique by definition
            log.extend(schema.name, _duplicates(table, schema))
        complete = schema.complete_groups
        if complete is not None:
            log.extend(schema.name, _incomplete(table, complete, specs))
    for schema, column in (
        (QUESTIONNAIRE_RESPONSES, "submitted_at"),
        (EVENTS, "event_time"),
        (INTERVIEW_TAGS, "recorded_at"),
    ):
        seconds = _ceil_seconds(tables[schema.name].us(column))
        rows = np.flatnonzero((seconds < 0) | (seconds > _MAX_SECOND)) + 1
        if rows.size:
            log.add(schema.name, Finding(column, RULE_TIME_RANGE, rows))
    return log


def _violations(rule: RowRule, table: Table, schema: TableSchema, specs: Specs) -> list[int]:
    """0-based rows of `table` that break a declared row rule (`contracts._violations` is the
    same rule over a whole table in arrow)."""
    if isinstance(rule, Ordered):
        rows = []
        for i, (a, b) in enumerate(
            zip(table.get(rule.earlier), table.get(rule.later), strict=True)
        ):
            if a is not None and b is not None:
                a_us, b_us = _us(a), _us(b)  # a date is its midnight, as in the batch tables
                if a_us > b_us or (rule.strict and a_us == b_us):
                    rows.append(i)
        return rows
    if isinstance(rule, RequiredWhen):
        values = rule.values(specs)
        pairs = zip(table.get(rule.when), table.get(rule.column), strict=True)
        return [i for i, (when, v) in enumerate(pairs) if when in values and v is None]
    assert isinstance(rule, Combination)
    allowed = rule.allowed(specs)
    starts = {a[:-1] for a in allowed}
    vocabulary = schema.column(rule.column).allowed
    last = vocabulary(specs) if vocabulary is not None else None
    rows = []
    for i, parts in enumerate(zip(*(table.get(c) for c in rule.columns), strict=True)):
        if parts[-1] is None or parts[:-1] not in starts:
            continue
        if last is not None and parts[-1] not in last:
            continue
        if parts not in allowed:
            rows.append(i)
    return rows


def _duplicates(table: Table, schema: TableSchema) -> list[Finding]:
    """Rows whose key (the customer's part left out: it is the profile's) repeats an earlier
    row's, as `contracts._duplicates` words them."""
    key = [c for c in schema.unique if c != "customer_id"]
    seen: dict[tuple[Any, ...], int] = {}
    rows, details = [], []
    for i, values in enumerate(zip(*(table.get(c) for c in key), strict=True)):
        if any(v is None for v in values):
            continue
        first = seen.setdefault(values, i)
        if first != i:
            rows.append(i + 1)
            details.append(f"same as row {first + 1}")
    if not rows:
        return []
    rule = "one row per " + ", ".join(schema.unique)
    return [Finding(schema.unique[-1], rule, np.array(rows), None, label=None)]


def _incomplete(table: Table, rule: CompleteGroups, specs: Specs) -> list[Finding]:
    """One finding per submission that lacks a question of its version, at its first row;
    rows whose question is not one of their version's are another rule's."""
    expected = rule.expected(specs)
    group = [c for c in rule.group if c != "customer_id"]
    answered: dict[tuple[Any, ...], set[Any]] = {}
    first: dict[tuple[Any, ...], int] = {}
    at = group.index(rule.version)
    for i, (key, member) in enumerate(
        zip(zip(*(table.get(c) for c in group), strict=True), table.get(rule.member), strict=True)
    ):
        if any(v is None for v in key) or member not in expected.get(key[at], ()):
            continue
        answered.setdefault(key, set()).add(member)
        first.setdefault(key, i)
    rows = sorted(
        first[key] + 1 for key, got in answered.items() if len(got) < len(expected[key[at]])
    )
    return [Finding(rule.member, rule.rule, np.array(rows), None, label=None)] if rows else []


def masked_profile(profile: Mapping[str, Any]) -> dict[str, str]:
    """The customer as answers show them: the id plus each personal field present, masked by
    the maskers of `data.pii` (the same arrow kernels the batch contracts run)."""
    return masked_profiles([profile])[0]


def masked_profiles(profiles: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """`masked_profile` of each profile, every personal field masked for all of them in one
    run of its masker (each arrow kernel costs the same for one value or a hundred)."""
    out = [{"customer_id": str(p["customer_id"])} for p in profiles]
    for name in _SHOWN_PII:
        present = [i for i, p in enumerate(profiles) if p.get(name) is not None]
        if not present:
            continue
        raw = pa.array([profiles[i][name] for i in present], pa.large_string())
        masked = mask_pii_arrays({name: raw}, CUSTOMERS)[name].to_pylist()
        for i, value in zip(present, masked, strict=True):
            out[i][name] = value
    return out


#: The profile's personal fields an answer shows (masked), in the order it shows them.
_SHOWN_PII = ("name", "phone", "id_number")


# --- features -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureRow:
    """One customer's features at one time. `vector` holds every catalogue feature in catalogue
    order as float64 (categorical features as their position in the specs' vocabulary, NaN
    when missing); `values` the same by name as the batch builder's row reads (categories as
    text, missing as NaN)."""

    as_of: pd.Timestamp
    vector: np.ndarray
    values: dict[str, Any]


def online_features(bundle: Bundle, as_of: datetime | pd.Timestamp, specs: Specs) -> FeatureRow:
    """Every catalogue feature of the bundle's customer as of `as_of`, equal bit for bit to the
    batch kernel's row for the same facts. The bundle must have passed the contracts."""
    plan = plan_of(specs)
    as_of_us = _us(pd.Timestamp(as_of).to_pydatetime(warn=False))
    values = _feature_values(bundle, as_of_us, plan)
    vector = np.array(
        [
            _code(values[n], plan.categorical[n]) if n in plan.categorical else values[n]
            for n in plan.names
        ],
        dtype=np.float64,
    )
    q_sec = min(max(as_of_us // _US_PER_SECOND, 0), _MAX_SECOND)
    as_of_second = pd.Timestamp(q_sec * _US_PER_SECOND, unit="us")
    return FeatureRow(as_of_second, vector, {n: values[n] for n in plan.names})


def kernel_features(
    bundles: Sequence[Bundle], as_ofs: Sequence[datetime], specs: Specs
) -> list[FeatureRow]:
    """`online_features` of many contract-valid bundles through the batch kernel instead
    (`kernel.compute_features` over all of them at once): the same rows, faster from a few
    dozen bundles on (`benchmarks/bench_serve.py` measures where)."""
    plan = plan_of(specs)
    ids = [str(b.profile["customer_id"]) for b in bundles]
    if len(set(ids)) != len(ids):  # the kernel takes one profile per customer
        return [online_features(b, t, specs) for b, t in zip(bundles, as_ofs, strict=True)]
    frames = {
        "customers": _frame(
            [{k: [v] for k, v in b.profile.items() if k in _PROFILE_COLUMNS} for b in bundles],
            ids,
            CUSTOMERS,
        ),
        "questionnaire": _frame([b.answers.columns for b in bundles], ids, QUESTIONNAIRE_RESPONSES),
        "events": _frame([b.events.columns for b in bundles], ids, EVENTS),
        "tags": _frame([b.tags.columns for b in bundles], ids, INTERVIEW_TAGS),
    }
    queries = pd.DataFrame({"customer_id": ids, "as_of": _us_array(as_ofs).view("datetime64[us]")})
    frame = compute_features(FeatureInputs(**frames), queries, specs)
    vectors = np.empty((len(bundles), len(plan.names)), dtype=np.float64)
    for j, name in enumerate(plan.names):
        column = frame[name]
        if name in plan.categorical:
            codes = column.cat.codes.to_numpy()
            vectors[:, j] = np.where(codes < 0, np.nan, codes)
        else:
            vectors[:, j] = column.to_numpy(dtype=np.float64)
    names = list(frame.columns)
    rows = []
    for i, values in enumerate(frame.to_numpy(dtype=object)):
        by_name = dict(zip(names, values, strict=True))
        as_of = pd.Timestamp(by_name["as_of"])
        rows.append(FeatureRow(as_of, vectors[i], {n: by_name[n] for n in plan.names}))
    return rows


_PROFILE_COLUMNS = frozenset(c.name for c in CUSTOMERS.columns if not c.pii)


def _frame(
    tables: Sequence[Mapping[str, list[Any]]],
    ids: Sequence[str],
    schema: TableSchema,
) -> pd.DataFrame:
    """Typed columns of many customers' tables as one frame of the kernel's canonical dtypes
    (the values already passed the contracts)."""
    lengths = [len(next(iter(t.values()), ())) for t in tables]
    data: dict[str, Any] = {
        "customer_id": pd.array(np.repeat(np.array(ids, dtype=object), lengths), dtype="str")
    }
    for column in schema.columns:
        if column.name == "customer_id" or column.pii:
            continue
        values = [v for t, n in zip(tables, lengths, strict=True)
                  for v in t.get(column.name, [None] * n)]  # fmt: skip
        if column.type in ("timestamp", "date"):
            data[column.name] = (
                _us_array(values).view("datetime64[us]")
                if values
                else (np.array([], dtype="datetime64[us]"))
            )
        elif column.type == "float":
            data[column.name] = np.array(
                [np.nan if v is None else v for v in values], dtype=np.float64
            )
        elif column.type == "int":
            data[column.name] = pd.array(values, dtype="Int64")
        else:
            data[column.name] = pd.array(values, dtype="str")
    return pd.DataFrame(data)


def _code(value: Any, vocabulary: tuple[str, ...]) -> float:
    try:
        return float(vocabulary.index(value))
    except ValueError:
        return np.nan


def _feature_values(bundle: Bundle, as_of_us: int, plan: OnlinePlan) -> dict[str, Any]:
    q_sec = min(max(as_of_us // _US_PER_SECOND, 0), _MAX_SECOND)
    q_us = q_sec * _US_PER_SECOND
    out: dict[str, Any] = {}
    out.update(_questionnaire(bundle.answers, q_sec, q_us, plan))
    behaviour = _behaviour(bundle.events, q_sec, q_us, plan)
    out.update(behaviour)
    out.update(_interview(bundle.tags, q_sec, q_us, plan))
    out.update(_profile(bundle.profile, q_us, behaviour["net_holdings"], plan))
    revealed = behaviour[f"invest_avg_risk_{plan.specs.behaviour.revealed_window_days}d"]
    out["revealed_minus_stated"] = revealed - out["q_level"]
    return out


def _ceil_seconds(us: np.ndarray) -> np.ndarray:
    return -((-us) // _US_PER_SECOND)


def _questionnaire(answers: Table, q_sec: int, q_us: int, plan: OnlinePlan) -> dict[str, Any]:
    """The latest submission known by t (by time, then version order on a tie), scored."""
    specs = plan.specs
    when = answers.us("submitted_at")
    versions = answers.get("questionnaire_version")
    known = (_ceil_seconds(when) <= q_sec).tolist()
    visible = {
        (t, plan.versions[v]) for t, v, k in zip(when.tolist(), versions, known, strict=True) if k
    }
    out: dict[str, Any] = {"q_n_submissions": len(visible)}
    nan = np.nan
    if not visible:
        out.update(q_total_score=nan, q_level=nan, q_lowest_category=nan, q_days_since=nan)
        out.update({f"q_answer_{q}": nan for q in specs.question_ids})
        return out
    latest_us, code = max(visible)
    version = list(plan.versions)[code]
    table = plan.scores[version]
    chosen: dict[str, str] = {}
    for t, v, q, a in zip(
        when.tolist(), versions, answers.get("question_id"), answers.get("answer"), strict=True
    ):
        if t == latest_us and v == version:
            chosen[q] = a
    scores = {q: float(table[q][a]) for q, a in chosen.items()}
    total = float(np.nansum(np.array([scores.get(q, nan) for q in specs.question_ids])))
    mins, levels = plan.bands[version]
    level = float(levels[np.searchsorted(mins, total, side="right") - 1])
    lowest = any(
        all(chosen.get(q) in allowed for q, allowed in condition.items())
        for condition in plan.lowest[version]
    )
    out["q_total_score"] = total
    out["q_level"] = 1.0 if lowest else level
    out["q_lowest_category"] = float(lowest)
    out["q_days_since"] = float(q_us - latest_us) / _US_PER_DAY_F
    out.update({f"q_answer_{q}": scores.get(q, nan) for q in specs.question_ids})
    return out


def _behaviour(events: Table, q_sec: int, q_us: int, plan: OnlinePlan) -> dict[str, Any]:
    """Counts and amounts per window from one integer matrix (one row per event, one column per
    quantity) summed over each window's rows: int64 sums, as the kernel's prefix sums."""
    n = len(events)
    times = events.us("event_time")
    seconds = _ceil_seconds(times)
    etype = np.array([plan.event_code[t] for t in events.get("event_type")], dtype=np.int64)
    channel = np.array([plan.channel_code[c] for c in events.get("channel")], dtype=np.int64)
    amount = np.array([0.0 if a is None else a for a in events.get("amount")], dtype=np.float64)
    amount = np.where(np.isnan(amount), 0.0, amount)
    cents = np.rint(amount * 100).astype(np.int64)
    risk = np.array([plan.risk_code.get(r, 0) for r in events.get("product_risk")], dtype=np.int64)
    term_raw = np.array(
        [np.nan if t is None else t for t in events.get("term_days")], dtype=np.float64
    )
    has_term = ~np.isnan(term_raw)
    term = np.where(has_term, term_raw, 0).astype(np.int64)

    s = plan.sums
    m = np.zeros((n, len(s)), dtype=np.int64)
    for i, name in enumerate(plan.event_types):
        m[:, s[f"n_{name}"]] = etype == i
    for name in plan.monetary:
        m[:, s[f"amt_{name}"]] = np.where(etype == plan.event_code[name], cents, 0)
    invest = etype == plan.event_code["invest"]
    m[:, s["high_risk"]] = np.where(invest & (risk >= plan.high_risk), cents, 0)
    m[:, s["risk_weighted"]] = np.where(invest & (risk >= 1), cents * risk, 0)
    m[:, s["risk_known"]] = np.where(invest & (risk >= 1), cents, 0)
    m[:, s["term_sum"]] = np.where(invest & has_term, term, 0)
    m[:, s["term_count"]] = invest & has_term
    for name, i in plan.channel_code.items():
        m[:, s[f"channel_{name}"]] = channel == i

    visible = seconds <= q_sec
    windows = plan.windows
    # Sums (windows, quantities), events in each window, and distinct calendar days.
    sums = np.zeros((len(windows), len(s)), dtype=np.int64)
    total = np.zeros(len(windows), dtype=np.int64)
    active = np.zeros(len(windows), dtype=np.int64)
    day = times // _US_PER_DAY
    for k, w in enumerate(windows):
        inside = visible & (seconds > max(q_sec - w * _SECONDS_PER_DAY, 0))
        sums[k] = m[inside].sum(axis=0)
        total[k] = inside.sum()
        active[k] = len(np.unique(day[inside]))

    out: dict[str, Any] = {}
    for name in plan.event_types:
        column = sums[:, s[f"n_{name}"]]
        for k, w in enumerate(windows):
            out[f"n_{name}_{w}d"] = int(column[k])
    amounts = {name: sums[:, s[f"amt_{name}"]] for name in plan.monetary}
    for name in plan.monetary:
        scaled = amounts[name] / 100.0
        for k, w in enumerate(windows):
            out[f"amt_{name}_{w}d"] = float(scaled[k])
    for k, w in enumerate(windows):
        out[f"active_days_{w}d"] = int(active[k])
    invested = amounts["invest"]
    share = _safe_div(sums[:, s["high_risk"]], invested)
    avg_risk = _safe_div(sums[:, s["risk_weighted"]], sums[:, s["risk_known"]])
    avg_term = _safe_div(sums[:, s["term_sum"]], sums[:, s["term_count"]])
    redeem = _safe_div(amounts["redeem"], invested + amounts["redeem"])
    withdraw = _safe_div(amounts["withdraw"], amounts["deposit"] + amounts["withdraw"])
    channels = {c: _safe_div(sums[:, s[f"channel_{c}"]], total) for c in plan.channel_code}
    for k, w in enumerate(windows):
        out[f"invest_share_high_risk_{w}d"] = float(share[k])
        out[f"invest_avg_risk_{w}d"] = float(avg_risk[k])
        out[f"invest_avg_term_{w}d"] = float(avg_term[k])
        out[f"redeem_ratio_{w}d"] = float(redeem[k])
        out[f"withdraw_ratio_{w}d"] = float(withdraw[k])
        for c, values in channels.items():
            out[f"channel_share_{c}_{w}d"] = float(values[k])

    for name in plan.specs.behaviour.recency_event_types:
        of_type = times[visible & (etype == plan.event_code[name])]
        out[f"days_since_{name}"] = (
            float(q_us - int(of_type.max())) / _US_PER_DAY_F if len(of_type) else np.nan
        )

    trend = plan.specs.behaviour.trend
    short, long = windows.index(trend.short_days), windows.index(trend.long_days)
    logins = sums[:, s["n_login"]]
    out["trend_login"] = float(
        _safe_div(logins[[short]] * trend.long_days, logins[[long]] * trend.short_days)[0]
    )
    out["trend_invest_amount"] = float(
        _safe_div(
            invested[[short]].astype(np.float64) * trend.long_days,
            invested[[long]].astype(np.float64) * trend.short_days,
        )[0]
    )
    held = m[visible]
    net = held[:, [s["amt_invest"]]].sum(axis=0) - held[:, [s["amt_redeem"]]].sum(axis=0)
    out["net_holdings"] = float((net / 100.0)[0])
    return out


def _interview(tags: Table, q_sec: int, q_us: int, plan: OnlinePlan) -> dict[str, Any]:
    """Time-decayed tag weights summed in the kernel's order (by recorded_at, then interview
    time, then tag), interviews counted once, and the days since the latest."""
    recorded = tags.us("recorded_at")
    interview = tags.us("interview_time")
    tag = np.array([plan.tag_code[t] for t in tags.get("tag")], dtype=np.int64)
    order = np.lexsort((tag, interview, recorded))
    visible = order[_ceil_seconds(recorded[order]) <= q_sec]
    seen_us = interview[visible]
    age_days = (q_us - seen_us) / _US_PER_DAY
    weight = np.exp2(-age_days / plan.half_life)
    codes = tag[visible]

    def decayed(by: np.ndarray, k: int) -> np.ndarray:
        keep = by >= 0
        return np.bincount(by[keep], weights=weight[keep], minlength=k).astype(np.float64)

    out: dict[str, Any] = {}
    for i, t in enumerate(decayed(codes, len(plan.tag_ids)).tolist()):
        out[f"tag_{plan.tag_ids[i]}"] = t
    for i, t in enumerate(decayed(plan.tag_cat[codes], len(plan.tag_categories)).tolist()):
        out[f"tagcat_{plan.tag_categories[i]}"] = t
    for i, t in enumerate(decayed(plan.tag_dir[codes], len(plan.tag_directions)).tolist()):
        out[f"tagdir_{plan.tag_directions[i]}"] = t
    advisors = tags.get("advisor_id")
    out["n_interviews"] = len({(int(interview[j]), advisors[j]) for j in visible.tolist()})
    if len(visible):
        latest = min(max(int(seen_us.max()) // _US_PER_SECOND, 0), _MAX_SECOND) * _US_PER_SECOND
        out["days_since_interview"] = float(q_us - latest) / _US_PER_DAY_F
    else:
        out["days_since_interview"] = np.nan
    return out


def _profile(
    profile: Mapping[str, Any], q_us: int, net_holdings: float, plan: OnlinePlan
) -> dict[str, Any]:
    times = np.array([q_us, _us(profile["birth_date"])], dtype=np.int64).view("datetime64[us]")
    years, months, days = _calendar(times)
    before_birthday = months[0] < months[1] or (months[0] == months[1] and days[0] < days[1])
    segment = int(np.searchsorted(plan.segment_mins, net_holdings, side="right")) - 1
    out: dict[str, Any] = {
        "age_years": float(int(years[0]) - int(years[1]) - int(before_birthday)),
        "tenure_days": float(q_us - _us(profile["registered_at"])) / _US_PER_DAY_F,
        "segment": plan.categorical["segment"][max(segment, 0)],
    }
    for name in ("gender", "city_tier", "income_band", "channel_preference"):
        value = profile.get(name)
        out[name] = value if value in plan.categorical[name] else np.nan
    return out


# --- the models' matrices -------------------------------------------------------------------------


class MatrixPlan:
    """How a model's matrix is read off feature vectors: which vector positions, in the
    layout's recorded order, and each categorical's spec code mapped to the layout's code (the
    vocabulary it was trained with), as `FeatureLayout.matrix` codes a frame."""

    def __init__(self, layout: FeatureLayout, specs: Specs) -> None:
        plan = plan_of(specs)
        position = {n: j for j, n in enumerate(plan.names)}
        if unknown := [n for n in layout.names if n not in position]:
            raise ValueError(f"the model reads features the catalogue lacks: {unknown[:5]}")
        self.take = np.array([position[n] for n in layout.names], dtype=np.intp)
        self.codes: list[tuple[int, np.ndarray]] = []
        for j, name in enumerate(layout.names):
            if name in layout.categories:
                vocabulary = plan.categorical.get(name, ())
                trained = list(layout.categories[name])
                lookup = [float(trained.index(v)) if v in trained else np.nan for v in vocabulary]
                self.codes.append((j, np.array([*lookup, np.nan])))  # NaN code -> last: NaN

    def matrix(self, vectors: np.ndarray) -> np.ndarray:
        """The float64 matrix of stacked feature vectors (rows, catalogue features)."""
        x = vectors[:, self.take]
        for j, lookup in self.codes:
            column = x[:, j]
            index = np.where(np.isnan(column), len(lookup) - 1, column).astype(np.intp)
            x[:, j] = lookup[index]
        return x
