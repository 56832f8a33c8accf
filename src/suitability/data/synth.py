"""Synthetic world generator: latent traits per customer drive the six raw tables (DESIGN §4)
and an exact ground truth (DESIGN §5), so models can be measured against the best possible score.

Each customer has a true risk tolerance τ, liquidity need (raised for a while by monthly life
events), engagement with a per-customer trend, satisfaction with a linear drift, and wealth.
Reviewers confirm a level by an ordered probit on τ; questionnaires report a *stated* tolerance
(τ plus noise plus, for ~15 %, a planted misstatement); behaviour and interview tags follow the
true τ. Investing stops at a quit time whose hazard is piecewise constant per month, so the
probability that an investor makes no investment in the 90 days after a snapshot is computed
exactly (`churn_probability`) and written to `ground_truth`.

Generation is chunked (`CHUNK_CUSTOMERS` per part file), each chunk drawn from its own
`SeedSequence([seed, chunk])`, vectorised with numpy and written by a worker process, so the
output is byte-identical for any number of workers and memory does not grow with N.

Calibration, measured on 20,000 customers (seeds 7 / 8, start 2024-07-01, 27 months, 19
snapshots); "active" = invested in the 180 days before the snapshot, label = no invest in
(t, t + 90 d], realised from the generated events:

- churn label rate among active rows: 19.5 % / 19.5 % (mean p_churn there: 19.4 % / 19.5 %);
  5 % of active rows have already quit (p_churn = 1);
- best possible churn ROC AUC (p_churn vs realised labels, active rows): 0.873 / 0.874
  (0.827 / 0.828 among active rows that have not quit yet);
- confirmed levels (reviews): C1 12.5 %, C2 23.6 %, C3 35.4 %, C4 21.5 %, C5 7.0 %;
  38 % of customers have one review, 10 % two;
- questionnaire band of the latest submission: C1 7 %, C2 29 %, C3 44 %, C4 18 %, C5 1 %;
  8 % of submissions trigger the lowest category; 92 % of customers submit, 1.7 submissions each;
- amount-weighted product risk minus questionnaire band: understaters +0.68, others -0.14,
  overstaters -0.83 (levels); misstatement shares 9.7-10.0 % / 4.9-5.1 %;
- ~93 events per customer (1,000,000 customers -> 93.7 M events), 3.6 % with none; 59 % of
  customers interviewed (1.9 tags per interview); mean engagement 14.5 % lower at the last
  snapshot than at the first (18 months apart).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.special import expit, ndtr, ndtri

from suitability.data.schema import TABLES
from suitability.specs import (
    C_LEVELS,
    R_LEVELS,
    Label,
    QuestionnaireDefinition,
    Specs,
    load_specs,
)

#: Customers per chunk (one part file per table per chunk). Fixed, so the data never depends
#: on how the work is split between processes.
CHUNK_CUSTOMERS = 10_000
#: Events must span at least this many months.
MIN_MONTHS = 24
#: The churn label: no investment in (t, t + CHURN_HORIZON_DAYS days].
CHURN_HORIZON_DAYS = 90
#: First ground-truth snapshot, in months after `start` (features need some history).
FIRST_SNAPSHOT_MONTHS = 6
#: Tables written as part folders, in writing order.
PART_TABLES = (
    "customers",
    "questionnaire_responses",
    "events",
    "interview_tags",
    "risk_reviews",
    "ground_truth",
)
MISSTATEMENTS = ("none", "understate", "overstate")
ProgressCallback = Callable[[int, int], None]

_DAY = 86_400
_NEVER = np.iinfo(np.int64).max // 4
_GENERATOR_VERSION = 1


@dataclass(frozen=True)
class WorldParams:
    """The knobs of the synthetic world that the ground truth depends on (recorded in
    synth.json). Scales: τ and satisfaction are roughly standard normal across customers."""

    #: Cut points c1 < … < c4 on τ for the reviewer's ordered probit.
    level_cutpoints: tuple[float, float, float, float] = (-1.22, -0.38, 0.58, 1.52)
    #: Reviewer noise σ_r on the τ scale: reviewers disagree near band edges.
    reviewer_noise: float = 0.35
    understate_share: float = 0.10
    overstate_share: float = 0.05
    understate_shift: float = -1.4
    overstate_shift: float = 1.2
    shift_sd: float = 0.3
    #: Daily quit hazard r0 and its log-linear effects.
    quit_base_daily: float = 2.5e-4
    quit_beta_satisfaction: float = 0.45
    quit_beta_decline: float = 1.2
    quit_beta_complaint: float = 1.4
    quit_beta_life_event: float = 1.0
    quit_beta_mismatch: float = 0.6
    #: Invest events per month at engagement 1, neutral season and satisfaction.
    invest_per_month: float = 1.3
    #: Engagement trend: log-slope per year ~ N(mean, sd): on average ~21 % lower after 27 months.
    trend_slope_mean: float = -0.13
    trend_slope_sd: float = 0.15
    #: Satisfaction drift per month ~ N(mean, sd).
    satisfaction_drift_mean: float = -0.01
    satisfaction_drift_sd: float = 0.03
    #: Monthly complaint probability: expit(a - b · satisfaction).
    complaint_a: float = -4.3
    complaint_b: float = 0.9
    #: Monthly probability of a life event (raises liquidity need), and for the elderly.
    life_event_monthly: float = 0.011
    life_event_monthly_elderly: float = 0.016


PARAMS = WorldParams()


@dataclass(frozen=True)
class PlantedDriver:
    """A latent the generator plants into a model's label: its name in words (the dossier's
    planted-driver check prints it) and the feature-name patterns (fnmatch) that carry it."""

    label: Label
    patterns: tuple[str, ...]


#: Where the generator plants each model's label drivers. A model trained on this data should
#: rank at least one feature of every driver among its top global features
#: (`explain.importance.planted_check`).
PLANTED_DRIVERS: dict[str, dict[str, PlantedDriver]] = {
    "risk-level": {
        # τ, as the investor states it: attitude answers, total score, band.
        "stated_tolerance": PlantedDriver(
            Label(zh="问卷所述的风险承受意愿", en="Risk tolerance as the questionnaire states it"),
            ("q_answer_*", "q_total_score", "q_level"),
        ),
        # τ, as investments reveal it: the risk mix of what they buy.
        "revealed_appetite": PlantedDriver(
            Label(zh="投资行为体现的风险偏好", en="Risk appetite as investments reveal it"),
            ("invest_share_high_risk_*", "invest_avg_risk_*", "revealed_minus_stated"),
        ),
        # τ and liquidity need, as advisors hear them.
        "interview_signals": PlantedDriver(
            Label(
                zh="访谈中听到的风险偏好与流动性需求",
                en="Risk appetite and liquidity need as advisors hear them",
            ),
            ("tag_*", "tagdir_*", "tagcat_*"),
        ),
    },
    "churn": {
        # Falling engagement (trend slope): fewer logins and invests, longer gaps.
        "engagement_decline": PlantedDriver(
            Label(zh="活跃度下降", en="Declining engagement"),
            (
                "trend_*",
                "days_since_invest",
                "days_since_login",
                "n_login_*",
                "n_invest_*",
                "amt_invest_*",
                "active_days_*",
            ),
        ),
        # Satisfaction: complaints, the service contacts that follow them, dissatisfaction tags.
        "dissatisfaction": PlantedDriver(
            Label(zh="不满意（投诉、客服联系、不满标签）", en="Dissatisfaction"),
            (
                "n_complaint_*",
                "days_since_complaint",
                "n_service_contact_*",
                "days_since_service_contact",
                "tag_*dissatisfied",
                "tag_distrust_platform",
                "tagcat_concern",
            ),
        ),
        # Life events raise liquidity need: withdrawals, redemptions, life-event tags.
        "liquidity_need": PlantedDriver(
            Label(zh="资金流动性需求（人生事件）", en="Liquidity need (life events)"),
            (
                "withdraw_ratio_*",
                "redeem_ratio_*",
                "amt_withdraw_*",
                "n_withdraw_*",
                "amt_redeem_*",
                "n_redeem_*",
                "tag_liquidity_need",
                "tagcat_life_event",
            ),
        ),
    },
}

#: Calendar activity multipliers by month of year: Spring-Festival dip in Jan/Feb, golden-week
#: dip in October, mid-year and year-end bumps.
_SEASONALITY = np.array([0.92, 0.74, 1.05, 1.0, 0.97, 1.08, 1.0, 0.98, 1.02, 0.9, 1.04, 1.22])

#: Life events of the synthetic world; the tag with the same id (if the taxonomy has it) is
#: what an advisor records. Values: liquidity bump.
_LIFE_EVENTS: dict[str, float] = {
    "job_change": 0.35,
    "new_child": 0.5,
    "illness_in_family": 0.6,
    "retirement": 0.4,
    "home_purchase": 0.8,
    "child_education": 0.5,
}
_LIQUIDITY_HALF_LIFE_DAYS = 180.0

#: Preferred-channel weights by age group (<50, 50–64, ≥65), keyed by channel id; channels in
#: behaviour.yaml that are not listed here get the default weight.
_CHANNEL_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "app": (0.62, 0.42, 0.16),
    "web": (0.18, 0.16, 0.06),
    "branch": (0.08, 0.20, 0.36),
    "advisor": (0.07, 0.13, 0.24),
    "phone": (0.05, 0.09, 0.18),
}
_DEFAULT_CHANNEL_WEIGHT = (0.04, 0.04, 0.04)
#: Sessions (login, product_view) happen on these channels when the YAML has them.
_DIGITAL_CHANNELS = ("app", "web")
_SESSION_EVENTS = ("login", "product_view")

#: Product lines: (R-level index, category, number of products, term choices in days).
_PRODUCT_LINES: tuple[tuple[int, str, int, tuple[int, ...]], ...] = (
    (0, "deposit", 30, (90, 180, 365, 730, 1095)),
    (0, "money_market", 40, (0,)),
    (1, "bond_fund", 55, (0, 0, 90, 180)),
    (1, "fixed_income", 55, (7, 30, 90, 180, 365, 730)),
    (2, "mixed_fund", 60, (0, 0, 180, 365)),
    (2, "fixed_income_plus", 50, (90, 180, 365)),
    (3, "equity_fund", 70, (0, 0, 0, 365)),
    (4, "structured", 25, (90, 180, 365)),
    (4, "derivative", 15, (30, 90, 180)),
)
#: Annualised return at maturity by R-level: mean, sd.
_RETURNS = ((0.02, 0.003), (0.03, 0.01), (0.045, 0.03), (0.06, 0.12), (0.05, 0.25))
_N_ADVISORS = 400

#: Factual questions: question id -> (customer fact, cut points between consecutive options in
#: the order the YAML lists them). A question whose option count does not fit is treated as an
#: attitude question.
_FACTUAL_QUESTIONS: dict[str, tuple[str, tuple[float, ...]]] = {
    "age": ("age", (26.0, 41.0, 56.0, 66.0)),
    "annual_income": ("household_income", (1.0, 1e5, 5e5, 1e6)),
    "investable_assets": ("wealth", (5e4, 5e5, 3e6)),
    "experience_years": ("experience", (0.05, 2.0, 5.0, 10.0)),
}
#: Attitude questions: loadings of the option signal on (stated tolerance, liquidity need,
#: standardised experience) and the answer noise; other questions use the default.
_ATTITUDE_LOADINGS: dict[str, tuple[float, float, float, float]] = {
    "liquidity_need": (0.6, -1.6, 0.0, 0.6),
    "products_held": (0.7, 0.0, 0.5, 0.6),
    "knowledge": (0.7, 0.0, 0.4, 0.6),
}
_DEFAULT_ATTITUDE = (1.0, 0.0, 0.0, 0.7)
#: Attitude signals are centred here before the option cut points (shifts the band mix).
_ATTITUDE_CENTRE = -0.2

_TAG_BASE_BY_CATEGORY = {
    "goal": -0.7,
    "concern": -1.0,
    "emotion": -0.7,
    "life_event": -4.0,
    "risk_signal": -1.0,
}
_DISSATISFACTION_TAGS = (
    "service_dissatisfied",
    "return_dissatisfied",
    "frustrated",
    "distrust_platform",
)

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
_GIVEN_CHARS = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红娥玲芬燕彬鹏辉建国文斌宇浩凯健俊帆帅旭宁"
    "龙林欣佳思雨晨子涵梓轩博文嘉怡然琪瑶婷慧颖雪莉倩晓梅兰凤洁琳素云莲真环荣爱妹霞香月莺媛瑞凡"
)
#: Resident-ID region codes (province + prefecture + county) of real districts.
_REGION_CODES = (
    110101, 110105, 110108, 310104, 310115, 440106, 440305, 440104, 330106, 330102, 320102,
    320506, 510107, 420106, 610113, 500103, 370202, 210102, 120101, 430104, 350203, 410105,
    340104, 360102, 450103, 530102, 220102, 230103, 130102, 140105, 150102, 460106, 520102,
)  # fmt: skip
_PHONE_PREFIXES = (
    130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157, 158,
    159, 170, 171, 173, 175, 176, 177, 178, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189,
    191, 193, 195, 196, 197, 198, 199,
)  # fmt: skip
_NOTES = (
    "客户希望了解收益更高的产品",
    "客户表示近期可能需要用钱",
    "客户对上期收益不满意",
    "客户担心本金安全，多次询问是否保本",
    "孩子明年上大学，需要准备学费",
    "客户计划明年买房",
    "Client asked about fees on the bond fund.",
    "Prefers short-term products; will decide next week.",
    "Client wants to move part of the savings into equity funds.",
    "Spouse makes most investment decisions.",
    "客户情绪激动，对客服响应速度不满",
    "Retired last year, lives on pension and interest.",
)
#: Notes that carry a phone number: (text before, text after).
_PHONE_NOTES = (
    ("客户要求回电：", ""),
    ("Call back on ", " after 6pm."),
    ("家属联系电话 ", "，工作日可联系"),
)


# --- public results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSummary:
    """What `generate` wrote: where, with which parameters, how many rows per table."""

    out_dir: Path
    n_customers: int
    seed: int
    start: date
    end: date
    months: int
    n_chunks: int
    snapshots: tuple[date, ...]
    rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The synth.json document (no paths or wall-clock times, so it is reproducible)."""
        return {
            "generator": "suitability.data.synth",
            "generator_version": _GENERATOR_VERSION,
            "n_customers": self.n_customers,
            "seed": self.seed,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "months": self.months,
            "chunk_customers": CHUNK_CUSTOMERS,
            "n_chunks": self.n_chunks,
            "churn_horizon_days": CHURN_HORIZON_DAYS,
            "snapshots": [s.isoformat() for s in self.snapshots],
            "rows": dict(self.rows),
            "parameters": asdict(PARAMS),
        }


# --- arrow schemas ------------------------------------------------------------------------------

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
    "float": pa.float64(),
    "int": pa.int32(),
}

GROUND_TRUTH_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("snapshot", pa.timestamp("us")),
        *[(f"p_{c.lower()}", pa.float64()) for c in C_LEVELS],
        ("p_churn", pa.float64()),
        ("quit", pa.bool_()),
        ("risk_tolerance", pa.float64()),
        ("stated_shift", pa.float64()),
        ("misstatement", pa.string()),
        ("liquidity_need", pa.float64()),
        ("engagement", pa.float64()),
        ("satisfaction", pa.float64()),
    ]
)


def arrow_schema(table: str) -> pa.Schema:
    """The parquet schema `generate` writes for `table` (raw tables follow `schema.TABLES`)."""
    if table == "ground_truth":
        return GROUND_TRUTH_SCHEMA
    return pa.schema([(c.name, _ARROW_TYPES[c.type]) for c in TABLES[table].columns])


# --- the calendar -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Calendar:
    """Calendar months of the window; times are int64 seconds after `start` (naive local)."""

    start: date
    months: int
    month_start_s: np.ndarray  # (months + 1,)
    month_days: np.ndarray  # (months,)
    season: np.ndarray  # (months,)
    snapshot_months: np.ndarray  # month indices of the snapshots

    @property
    def end_s(self) -> int:
        return int(self.month_start_s[-1])

    @property
    def start_us(self) -> int:
        return int(np.datetime64(self.start, "D").astype(np.int64)) * _DAY * 1_000_000

    @property
    def start_day(self) -> int:
        return int(np.datetime64(self.start, "D").astype(np.int64))

    def month_date(self, k: int) -> date:
        return (np.datetime64(self.start, "D") + int(self.month_start_s[k] // _DAY)).item()


def _calendar(start: date, months: int) -> _Calendar:
    first = np.datetime64(start, "M")
    starts = np.arange(first, first + months + 1).astype("datetime64[D]")
    start_s = (starts - starts[0]).astype(np.int64) * _DAY
    days = np.diff(start_s) // _DAY
    month_of_year = (np.arange(first, first + months).astype(np.int64) % 12).astype(int)
    horizon = CHURN_HORIZON_DAYS * _DAY
    snaps = [
        m for m in range(FIRST_SNAPSHOT_MONTHS, months + 1) if start_s[m] + horizon <= start_s[-1]
    ]
    return _Calendar(
        start=start,
        months=months,
        month_start_s=start_s,
        month_days=days,
        season=_SEASONALITY[month_of_year],
        snapshot_months=np.array(snaps, dtype=np.int64),
    )


# --- pure building blocks -----------------------------------------------------------------------


def level_probabilities(tau: np.ndarray, params: WorldParams = PARAMS) -> np.ndarray:
    """P(confirmed level = Ck | τ) for k = 1..5 by the reviewers' ordered probit, shape (n, 5)."""
    cuts = np.asarray(params.level_cutpoints)
    cdf = ndtr((cuts[None, :] - np.asarray(tau, dtype=float)[:, None]) / params.reviewer_noise)
    cdf = np.concatenate([np.zeros((len(cdf), 1)), cdf, np.ones((len(cdf), 1))], axis=1)
    return np.diff(cdf, axis=1)


def quit_hazard(
    base_log_hazard: np.ndarray,
    complained_before: np.ndarray | float,
    life_event_before: np.ndarray | float,
    params: WorldParams = PARAMS,
) -> np.ndarray:
    """Daily quit hazard r_k from its deterministic log part and last month's complaint and life
    event indicators (0/1)."""
    return np.exp(
        base_log_hazard
        + params.quit_beta_complaint * np.asarray(complained_before, dtype=float)
        + params.quit_beta_life_event * np.asarray(life_event_before, dtype=float)
    )


def churn_probability(
    invest_rate: np.ndarray,
    days: np.ndarray,
    first_hazard: np.ndarray,
    later_hazards: np.ndarray,
    later_weights: np.ndarray,
) -> np.ndarray:
    """Exact P(no investment in the horizon) for customers who have not quit at its start.

    The horizon is split into month parts j = 0..H-1 of `days[j]` days. In part j, invests
    arrive at daily rate `invest_rate[:, j]` and quitting (which stops investing for good) at
    daily hazard r_j. For part 0 the hazard is known (`first_hazard`, shape (n,)); for later
    parts it depends on last month's random complaint/life-event indicators, so
    `later_hazards[:, j-1, c]` lists its value for each combination c and `later_weights` their
    probabilities (shape (n, H-1, C)). Parts are independent, so expectations factorise:
    P = Π E[a_j] + Σ_j (Π_{i<j} E[a_i]) E[b_j] with a = e^{-(r+λ)d} (alive, no invest) and
    b = r/(r+λ)(1 - e^{-(r+λ)d}) (quits before investing).
    """
    lam = np.asarray(invest_rate, dtype=float)
    d = np.asarray(days, dtype=float)
    n, h = lam.shape

    def parts(r: np.ndarray, lam_j: np.ndarray, d_j: float) -> tuple[np.ndarray, np.ndarray]:
        total = r + lam_j
        stay = np.exp(-total * d_j)
        with np.errstate(invalid="ignore", divide="ignore"):
            quit_first = np.where(total > 0, r / total, 0.0) * (1.0 - stay)
        return stay, quit_first

    alive = np.ones(n)
    prob = np.zeros(n)
    for j in range(h):
        if j == 0:
            a, b = parts(np.asarray(first_hazard, dtype=float), lam[:, 0], d[0])
        else:
            r = later_hazards[:, j - 1, :]
            w = later_weights[:, j - 1, :]
            a_c, b_c = parts(r, lam[:, j, None], d[j])
            a, b = (w * a_c).sum(axis=1), (w * b_c).sum(axis=1)
        prob += alive * b
        alive = alive * a
    return np.clip(prob + alive, 0.0, 1.0)  # rounding can overshoot 1 by an ulp


def simulate_quit_and_invest(
    rng: np.random.Generator, hazard: np.ndarray, invest_rate: np.ndarray, days: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One month part of the churn process: (days until quitting, inf if not in the part;
    number of invests before quitting or the part's end). Rates are daily and constant."""
    n = len(hazard)
    quit_after = rng.exponential(size=n) / hazard
    exposure = np.minimum(quit_after, days)
    invests = rng.poisson(invest_rate * exposure)
    return np.where(quit_after < days, quit_after, np.inf), invests


def _categorical(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw per row: `u` uniforms (n,), `probs` (n, K) or (K,) rows summing to 1."""
    cdf = np.cumsum(np.broadcast_to(probs, (len(u), probs.shape[-1])), axis=-1)
    cdf /= cdf[:, -1:]
    return np.sum(u[:, None] >= cdf[:, :-1], axis=1)


def _truncated_normal(
    rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float, n: int
) -> np.ndarray:
    a, b = ndtr((lo - mean) / sd), ndtr((hi - mean) / sd)
    return mean + sd * ndtri(a + (b - a) * rng.random(n))


def _ordered_shares(k: int, decay: float) -> np.ndarray:
    """Geometric shares for k ordered categories (first the largest)."""
    w = decay ** np.arange(k)
    return w / w.sum()


# --- products -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Catalogue:
    """The product catalogue as arrays (index = product number - 1)."""

    level: np.ndarray  # int8 0..4
    term_days: np.ndarray  # int32
    category: tuple[str, ...]
    #: Per level: product indices and cumulative popularity, all products / open-ended only.
    by_level: tuple[tuple[np.ndarray, np.ndarray], ...]
    open_by_level: tuple[tuple[np.ndarray, np.ndarray], ...]

    @property
    def n(self) -> int:
        return len(self.level)


def _build_catalogue(seed: int) -> _Catalogue:
    """~400 products R1–R5 with realistic categories and terms, ids in shuffled order."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x50524F44,)))
    levels: list[int] = []
    terms: list[int] = []
    cats: list[str] = []
    for level, category, count, choices in _PRODUCT_LINES:
        levels += [level] * count
        terms += list(rng.choice(np.array(choices), size=count))
        cats += [category] * count
    order = rng.permutation(len(levels))
    level = np.array(levels, dtype=np.int8)[order]
    term = np.array(terms, dtype=np.int32)[order]
    category = tuple(cats[i] for i in order)
    popularity = rng.pareto(1.2, size=len(level)) + 0.2  # a few best sellers per level

    def tables(mask: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        out = []
        for lv in range(len(R_LEVELS)):
            # Fall back to the nearest lower level with products (R5 has no open-ended ones).
            for fallback in range(lv, -1, -1):
                idx = np.flatnonzero((level == fallback) & mask)
                if len(idx):
                    break
            cdf = np.cumsum(popularity[idx])
            out.append((idx, cdf / cdf[-1]))
        return tuple(out)

    return _Catalogue(
        level=level,
        term_days=term,
        category=category,
        by_level=tables(np.ones(len(level), dtype=bool)),
        open_by_level=tables(term == 0),
    )


def _pick_products(
    rng: np.random.Generator, levels: np.ndarray, tables: tuple[tuple[np.ndarray, np.ndarray], ...]
) -> np.ndarray:
    """A product of each requested level, by popularity."""
    u = rng.random(len(levels))
    out = np.empty(len(levels), dtype=np.int32)
    for lv, (idx, cdf) in enumerate(tables):
        mask = levels == lv
        out[mask] = idx[np.minimum(np.searchsorted(cdf, u[mask], side="right"), len(idx) - 1)]
    return out


def products_table(seed: int) -> pa.Table:
    """The `products` table for a seed."""
    cat = _build_catalogue(seed)
    return pa.table(
        {
            "product_id": _prefixed_ids("P", np.arange(1, cat.n + 1), 5),
            "risk_level": _codes_to_strings(cat.level, R_LEVELS),
            "term_days": pa.array(cat.term_days, type=pa.int32()),
            "category": pa.array(list(cat.category), type=pa.string()),
        },
        schema=arrow_schema("products"),
    )


# --- customers ----------------------------------------------------------------------------------


@dataclass
class _Customers:
    """Latent traits and profile of one chunk of customers (times: seconds after start)."""

    first: int
    age0: np.ndarray
    birth_day: np.ndarray  # days after start (negative)
    gender: np.ndarray
    city_tier: np.ndarray
    income_band: np.ndarray
    household_income: np.ndarray
    no_stable_income: np.ndarray
    wealth: np.ndarray
    tau: np.ndarray
    misstatement: np.ndarray  # index into MISSTATEMENTS
    stated_shift: np.ndarray
    stated_bias: np.ndarray
    appetite_bias: np.ndarray
    liquidity_base: np.ndarray
    engagement: np.ndarray
    trend_slope: np.ndarray
    invest_rate: np.ndarray  # daily, at trend 1, season 1, satisfaction 0
    sat0: np.ndarray
    sat_drift: np.ndarray
    reg_s: np.ndarray
    never_active: np.ndarray
    channel_pref: np.ndarray
    digital_channel: np.ndarray
    prior_experience: np.ndarray
    life_rate: np.ndarray

    @property
    def n(self) -> int:
        return len(self.tau)

    @property
    def elderly0(self) -> np.ndarray:
        return self.age0 >= 65


def _age_group(age: np.ndarray) -> np.ndarray:
    return np.where(age >= 65, 2, np.where(age >= 50, 1, 0))


def _channel_probs(specs: Specs) -> np.ndarray:
    """(3 age groups, K channels) preferred-channel probabilities for the YAML's channels."""
    w = np.array(
        [_CHANNEL_WEIGHTS.get(ch, _DEFAULT_CHANNEL_WEIGHT) for ch in specs.behaviour.channels]
    )
    return (w / w.sum(axis=0)).T


def _draw_customers(
    rng: np.random.Generator, n: int, first: int, cal: _Calendar, specs: Specs
) -> _Customers:
    """Latent traits and profile; correlations: τ falls with age, rises with income and wealth."""
    p = PARAMS
    years = cal.months / 12
    elderly = rng.random(n) < 0.12
    age0 = np.where(
        elderly,
        rng.uniform(65.0, 85.0 - years, n),
        _truncated_normal(rng, 38.0, 11.0, 18.0, 64.99, n),
    )
    # Registration: most before start (tenure up to ~8 years), some during the window.
    new = rng.random(n) < 0.18
    tenure_days = np.minimum(8 * 365.25 * rng.beta(1.2, 2.0, n) + 7, (age0 - 18.0) * 365.25)
    reg_s = np.where(
        new,
        (rng.random(n) * (cal.end_s - _DAY)).astype(np.int64),
        -(tenure_days * _DAY).astype(np.int64),
    )
    # birth so that age at start is age0; registration is after the 18th birthday.
    birth_day = -np.ceil(age0 * 365.25).astype(np.int64)

    z_ses = rng.normal(size=n)
    z_income = 0.85 * z_ses + 0.53 * rng.normal(size=n)
    hump = -(((age0 - 45.0) / 20.0) ** 2)
    n_bands = len(specs.profile.income_bands)
    band_cuts = ndtri(np.cumsum(_ordered_shares(n_bands, 0.55))[:-1])
    income_band = np.searchsorted(band_cuts, z_income + 0.3 * hump + 0.15)
    household_income = np.exp(
        np.log(150_000) + 0.85 * z_income + 0.4 * hump + 0.2 * rng.normal(size=n)
    )
    no_stable_income = rng.random(n) < np.where(age0 >= 60, 0.10, np.where(age0 < 24, 0.12, 0.03))
    z_wealth = 0.7 * z_income + 0.71 * rng.normal(size=n)
    wealth = np.exp(np.log(150_000) + 1.1 * z_wealth + 0.35 * np.clip((age0 - 40) / 15, -1, 2))
    n_tiers = len(specs.profile.city_tiers)
    tier_cuts = ndtri(np.arange(1, n_tiers) / n_tiers)
    city_tier = np.searchsorted(tier_cuts, -0.45 * z_income + 0.89 * rng.normal(size=n))
    gender = rng.integers(0, len(specs.profile.genders), n)

    tau = (
        -0.42 * (age0 - 42.0) / 14.0
        + 0.30 * z_income
        + 0.25 * (z_wealth - 0.7 * z_income)
        + 0.80 * rng.normal(size=n)
    )
    u = rng.random(n)
    misstatement = np.where(
        u < p.understate_share, 1, np.where(u < p.understate_share + p.overstate_share, 2, 0)
    )
    shift_mean = np.array([0.0, p.understate_shift, p.overstate_shift])[misstatement]
    shift = shift_mean + p.shift_sd * rng.normal(size=n)
    # A planted misstatement is never negligible: at least half a standard deviation of τ.
    shift = np.where(misstatement == 1, np.minimum(shift, -0.5), np.maximum(shift, 0.5))
    stated_shift = np.where(misstatement > 0, shift, 0.0)

    engagement = rng.lognormal(-0.5 * 0.75**2, 0.75, n)
    never_active = rng.random(n) < 0.03
    propensity = rng.lognormal(-0.5 * 0.5**2, 0.5, n)
    invest_rate = np.where(
        never_active, 0.0, p.invest_per_month / 30.44 * engagement**0.7 * propensity
    )
    group = _age_group(age0)
    probs = _channel_probs(specs)
    channel_pref = _categorical(rng.random(n), probs[group])
    digital = [i for i, ch in enumerate(specs.behaviour.channels) if ch in _DIGITAL_CHANNELS]
    if digital:
        dprobs = probs[:, digital] / probs[:, digital].sum(axis=1, keepdims=True)
        digital_channel = np.array(digital)[_categorical(rng.random(n), dprobs[group])]
        digital_channel = np.where(np.isin(channel_pref, digital), channel_pref, digital_channel)
    else:
        digital_channel = channel_pref
    prior_experience = np.where(
        rng.random(n) < 0.35, 0.0, rng.exponential(2.5, n) * np.clip((age0 - 18) / 20, 0.1, 1.5)
    )
    return _Customers(
        first=first,
        age0=age0,
        birth_day=birth_day,
        gender=gender,
        city_tier=city_tier,
        income_band=income_band,
        household_income=household_income,
        no_stable_income=no_stable_income,
        wealth=wealth,
        tau=tau,
        misstatement=misstatement.astype(np.int8),
        stated_shift=stated_shift,
        stated_bias=0.3 * rng.normal(size=n),
        appetite_bias=0.3 * rng.normal(size=n),
        liquidity_base=rng.beta(2.0, 6.0, n),
        engagement=engagement,
        trend_slope=rng.normal(p.trend_slope_mean, p.trend_slope_sd, n),
        invest_rate=invest_rate,
        sat0=rng.normal(0.2, 1.0, n),
        sat_drift=rng.normal(p.satisfaction_drift_mean, p.satisfaction_drift_sd, n),
        reg_s=reg_s,
        never_active=never_active,
        channel_pref=channel_pref,
        digital_channel=digital_channel,
        prior_experience=prior_experience,
        life_rate=np.where(
            never_active, 0.0, np.where(elderly, p.life_event_monthly_elderly, p.life_event_monthly)
        ),
    )


# --- behaviour ----------------------------------------------------------------------------------


_EVENT_DTYPES: dict[str, type] = {
    "cust": np.int32,
    "sec": np.int64,
    "type": np.int8,
    "amount": np.float64,
    "product": np.int32,
}
#: Event types this world knows how to generate (others in the YAML get a little background).
_KNOWN_EVENT_TYPES = (
    "login",
    "product_view",
    "deposit",
    "invest",
    "redeem",
    "withdraw",
    "complaint",
    "service_contact",
)


class _EventParts:
    """Event columns collected month by month, concatenated once at the end."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {name: [] for name in _EVENT_DTYPES}

    def add(
        self,
        etype: int,
        cust: np.ndarray,
        sec: np.ndarray,
        amount: np.ndarray | None = None,
        product: np.ndarray | None = None,
    ) -> None:
        if etype < 0 or len(cust) == 0:
            return
        m = len(cust)
        self.cols["cust"].append(cust.astype(np.int32))
        self.cols["sec"].append(sec.astype(np.int64))
        self.cols["type"].append(np.full(m, etype, dtype=np.int8))
        self.cols["amount"].append(np.full(m, np.nan) if amount is None else amount)
        self.cols["product"].append(
            np.full(m, -1, dtype=np.int32) if product is None else product.astype(np.int32)
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            k: np.concatenate(v) if v else np.empty(0, dtype=_EVENT_DTYPES[k])
            for k, v in self.cols.items()
        }


@dataclass
class _Behaviour:
    """Simulated behaviour of a chunk plus the monthly quantities the ground truth needs."""

    events: dict[str, np.ndarray]
    quit_s: np.ndarray
    invest_rate: np.ndarray  # (n, K) daily λ_k
    base_log_hazard: np.ndarray  # (n, K)
    p_complaint: np.ndarray  # (n, K)
    p_life: np.ndarray  # (n, K)
    complained: np.ndarray  # (n, K + 1) bool; column k + 1 is month k, column 0 the month before
    life_event: np.ndarray  # (n, K + 1) bool, same layout
    satisfaction: np.ndarray  # (n, K)
    liquidity_at: np.ndarray  # (n, K + 1) extra liquidity need at each month start
    life_cust: np.ndarray  # life events: customer, time, type index into _LIFE_EVENTS
    life_sec: np.ndarray
    life_type: np.ndarray


def _round_cents(x: np.ndarray) -> np.ndarray:
    return np.maximum(np.round(x * 100.0) / 100.0, 0.0)


def _uniform_times(
    rng: np.random.Generator, cust: np.ndarray, lo: np.ndarray, span_s: np.ndarray
) -> np.ndarray:
    """A uniform time in [lo, lo + span) for each entry of `cust` (per-customer lo, span)."""
    return lo[cust] + np.floor(rng.random(len(cust)) * span_s[cust]).astype(np.int64)


def _life_event_weights(age: np.ndarray) -> np.ndarray:
    """(n, len(_LIFE_EVENTS)) relative chances of each life-event type at this age."""
    return np.stack(
        [
            np.where(age < 60, 0.30, 0.03),  # job_change
            np.where((age >= 22) & (age < 43), 0.25, 0.0),  # new_child
            np.where(age >= 65, 0.45, 0.15),  # illness_in_family
            np.where(age >= 58, 0.40, 0.0),  # retirement
            np.where((age >= 25) & (age < 50), 0.22, 0.04),  # home_purchase
            np.where((age >= 35) & (age < 56), 0.25, 0.02),  # child_education
        ],
        axis=1,
    )


def _simulate_behaviour(
    rng: np.random.Generator, c: _Customers, cal: _Calendar, cat: _Catalogue, types: dict[str, int]
) -> _Behaviour:
    """Month-by-month simulation, vectorised over customers.

    Invests and quitting follow exactly the piecewise-constant process of `churn_probability`;
    everything else (sessions, deposits, redemptions, withdrawals, complaints, service contacts)
    is driven by the same latents with burstiness, seasonality and life events.
    """
    p = PARAMS
    n, n_months = c.n, cal.months
    et = {name: types.get(name, -1) for name in _KNOWN_EVENT_TYPES}
    extra_types = [i for name, i in types.items() if name not in et]
    k = np.arange(n_months)
    sat = c.sat0[:, None] + c.sat_drift[:, None] * k[None, :]
    decline = -c.trend_slope[:, None] * (k[None, :] + 0.5) / 12.0
    trend = np.exp(-decline)
    lo = np.maximum(cal.month_start_s[:-1][None, :], c.reg_s[:, None])  # (n, K)
    span_s = np.clip(cal.month_start_s[1:][None, :] - lo, 0, None)
    dur = span_s / _DAY
    frac = dur / cal.month_days[None, :]
    active = ~c.never_active

    lam = c.invest_rate[:, None] * trend * cal.season[None, :] * np.exp(0.2 * sat)
    mismatch = (c.misstatement > 0).astype(float)
    base_log_hazard = (
        np.log(p.quit_base_daily)
        + p.quit_beta_satisfaction * (-sat)
        + p.quit_beta_decline * decline
        + p.quit_beta_mismatch * mismatch[:, None]
    )
    p_complaint = expit(p.complaint_a - p.complaint_b * sat) * frac * active[:, None]
    p_life = c.life_rate[:, None] * frac
    # The month before the window (only matters for month 0's hazard).
    before = c.reg_s < 0
    pc0 = expit(p.complaint_a - p.complaint_b * (c.sat0 - c.sat_drift)) * before * active
    complained = np.concatenate(
        [(rng.random(n) < pc0)[:, None], rng.random((n, n_months)) < p_complaint], axis=1
    )
    life = np.concatenate(
        [(rng.random(n) < c.life_rate * before)[:, None], rng.random((n, n_months)) < p_life],
        axis=1,
    )

    # State at start: some long-standing customers have quit already; open-ended holdings.
    tenure_days = np.minimum(-c.reg_s / _DAY, 720)
    pre_quit = active & before & (rng.random(n) < 1 - np.exp(-2.5e-4 * tenure_days))
    quit_s = np.where(pre_quit, (c.reg_s * rng.random(n)).astype(np.int64), _NEVER)
    quit_s = np.where(pre_quit, np.minimum(quit_s, -1), quit_s)
    holdings = np.where(before & active, c.wealth * rng.uniform(0.02, 0.3, n), 0.0)
    appetite = c.tau + c.appetite_bias
    open_product = _pick_products(
        rng, np.searchsorted(np.asarray(p.level_cutpoints) + 0.2, appetite), cat.open_by_level
    )
    open_product = np.where(holdings > 0, open_product, -1)
    liq_extra = np.zeros(n)
    liquidity_at = np.zeros((n, n_months + 1))
    decay_s = _LIQUIDITY_HALF_LIFE_DAYS / np.log(2) * _DAY
    bumps = np.array(list(_LIFE_EVENTS.values()))
    life_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    parts = _EventParts()
    end_s = cal.end_s
    r_cuts = np.asarray(p.level_cutpoints) + 0.2  # revealed appetite: slightly conservative
    wd_base = 0.3

    def withdraw_after(
        cust: np.ndarray, sec: np.ndarray, amount: np.ndarray, prob: np.ndarray
    ) -> None:
        follow = rng.random(len(cust)) < prob
        wsec = sec[follow] + (rng.exponential(2.0, follow.sum()) * _DAY).astype(np.int64) + 60
        share = rng.uniform(0.3, 1.0, follow.sum())
        parts.add(et["withdraw"], cust[follow], wsec, _round_cents(amount[follow] * share))

    for m in range(n_months):
        lo_m, span_m, dur_m = lo[:, m], span_s[:, m], dur[:, m]
        mid = cal.month_start_s[m] + cal.month_days[m] * _DAY // 2
        alive = active & (quit_s == _NEVER) & (span_m > 0)
        liq_m = liq_extra + c.liquidity_base
        # --- quitting and investing (the exact churn process) ---
        hazard = quit_hazard(base_log_hazard[:, m], complained[:, m], life[:, m])
        quit_after, n_inv = simulate_quit_and_invest(rng, hazard, lam[:, m], dur_m)
        n_inv = np.where(alive, n_inv, 0)
        quits_now = alive & np.isfinite(quit_after)
        exposure_s = np.where(np.isfinite(quit_after), quit_after * _DAY, span_m)
        inv_c = np.repeat(np.arange(n), n_inv)
        inv_s = lo_m[inv_c] + np.floor(rng.random(len(inv_c)) * exposure_s[inv_c]).astype(np.int64)
        quit_in = np.floor(np.where(quits_now, quit_after, 0.0) * _DAY).astype(np.int64)
        quit_s = np.where(quits_now, lo_m + quit_in, quit_s)
        inv_level = np.searchsorted(r_cuts, appetite[inv_c] + rng.normal(0, 0.5, len(inv_c)))
        inv_p = _pick_products(rng, inv_level, cat.by_level)
        inv_amt = _round_cents(
            np.maximum(c.wealth[inv_c] * 0.06 * rng.lognormal(0.0, 0.9, len(inv_c)), 100.0)
        )
        parts.add(et["invest"], inv_c, inv_s, inv_amt, inv_p)
        # Most invests are funded by a deposit shortly before (never before the customer's start).
        dep = rng.random(len(inv_c)) < 0.6
        lag = np.minimum(rng.exponential(3600.0, dep.sum()) + 60, inv_s[dep] - lo_m[inv_c[dep]])
        dep_amt = _round_cents(inv_amt[dep] * rng.uniform(1.0, 1.3, dep.sum()))
        parts.add(et["deposit"], inv_c[dep], inv_s[dep] - lag.astype(np.int64), dep_amt)
        # Term products pay back at maturity (some roll over silently).
        term = cat.term_days[inv_p].astype(np.int64)
        mature = (term > 0) & (rng.random(len(inv_c)) < 0.85)
        mat_s = inv_s[mature] + term[mature] * _DAY
        mu, sd = (np.array(x) for x in zip(*_RETURNS, strict=True))
        lv = cat.level[inv_p[mature]]
        ret = 1 + (mu[lv] + sd[lv] * rng.normal(size=mature.sum())) * term[mature] / 365
        mat_amt = _round_cents(inv_amt[mature] * np.maximum(ret, 0.4))
        parts.add(et["redeem"], inv_c[mature], mat_s, mat_amt, inv_p[mature])
        withdraw_after(inv_c[mature], mat_s, mat_amt, np.full(mature.sum(), wd_base))
        # Open-ended holdings: add this month's open-ended invests, remember the last product.
        opened = term == 0
        holdings += np.bincount(inv_c[opened], weights=inv_amt[opened], minlength=n)
        open_product[inv_c[opened]] = inv_p[opened]  # later invests overwrite earlier ones

        # --- sessions, deposits, service (bursty, seasonal, decaying after quitting) ---
        quit_before_mid = quit_s < mid
        since_quit = np.where(quit_before_mid, (mid - np.minimum(quit_s, mid)) / _DAY, 0.0)
        after_quit = np.where(quit_before_mid, np.exp(-since_quit / 90.0), 1.0)
        burst = np.where(rng.random(n) < 0.12, 1.0 + rng.gamma(2.0, 1.3, n), 1.0)
        level = c.engagement * trend[:, m] * cal.season[m] * burst * dur_m / 30.44 * active
        for name, rate, post in (("login", 1.4, 0.6), ("product_view", 0.6, 0.4)):
            counts = rng.poisson(rate * level * np.where(quit_before_mid, post * after_quit, 1.0))
            cust = np.repeat(np.arange(n), counts)
            sec = _uniform_times(rng, cust, lo_m, span_m)
            prod = None
            if name == "product_view":
                lvl = np.searchsorted(r_cuts, appetite[cust] + rng.normal(0, 0.9, len(cust)))
                prod = np.where(
                    rng.random(len(cust)) < 0.7, _pick_products(rng, lvl, cat.by_level), -1
                )
            parts.add(et[name], cust, sec, product=prod)
        counts = rng.poisson(0.08 * level * np.where(quit_before_mid, 0.1, 1.0))
        cust = np.repeat(np.arange(n), counts)
        amt = _round_cents(np.maximum(c.wealth[cust] * 0.03 * rng.lognormal(0, 1, len(cust)), 50))
        parts.add(et["deposit"], cust, _uniform_times(rng, cust, lo_m, span_m), amt)
        svc_rate = 0.05 * np.exp(-0.6 * sat[:, m]) * dur_m / 30.44 * active
        cust = np.repeat(np.arange(n), rng.poisson(svc_rate))
        parts.add(et["service_contact"], cust, _uniform_times(rng, cust, lo_m, span_m))
        cust = np.flatnonzero(complained[:, m + 1])
        sec = _uniform_times(rng, cust, lo_m, span_m)
        parts.add(et["complaint"], cust, sec)
        follow = rng.random(len(cust)) < 0.5
        after = (rng.exponential(1.0, follow.sum()) * _DAY).astype(np.int64) + 60
        parts.add(et["service_contact"], cust[follow], sec[follow] + after)
        wd_rate = 0.03 * dur_m / 30.44 * active * np.where(quit_before_mid, 2.0, 1.0)
        cust = np.repeat(np.arange(n), rng.poisson(wd_rate))
        amt = _round_cents(np.maximum(c.wealth[cust] * 0.02 * rng.lognormal(0, 1, len(cust)), 50))
        parts.add(et["withdraw"], cust, _uniform_times(rng, cust, lo_m, span_m), amt)
        for etype in extra_types:  # event types this world does not know: a little background
            cust = np.repeat(np.arange(n), rng.poisson(0.05 * level))
            parts.add(etype, cust, _uniform_times(rng, cust, lo_m, span_m))

        # --- life events and redemptions driven by liquidity need ---
        life_c = np.flatnonzero(life[:, m + 1])
        life_s = _uniform_times(rng, life_c, lo_m, span_m)
        ltype = _categorical(rng.random(len(life_c)), _life_event_weights(c.age0[life_c] + m / 12))
        life_parts.append((life_c, life_s, ltype))
        red_rate = 0.06 * np.exp(1.6 * (liq_m - 0.25)) * dur_m / 30.44 * (holdings > 0) * active
        n_red = np.minimum(rng.poisson(red_rate * np.where(quit_before_mid, 0.5, 1.0)), 2)
        cust = np.repeat(np.arange(n), n_red)
        share = np.where(
            n_red[cust] > 1, rng.uniform(0.05, 0.45, len(cust)), rng.uniform(0.1, 0.7, len(cust))
        )
        amt = _round_cents(holdings[cust] * share)
        sec = _uniform_times(rng, cust, lo_m, span_m)
        parts.add(et["redeem"], cust, sec, amt, open_product[cust])
        withdraw_after(cust, sec, amt, wd_base + 0.35 * (liq_m[cust] > 0.6))
        holdings -= np.bincount(cust, weights=amt, minlength=n)
        # Cash-out after quitting.
        cust = np.flatnonzero(quits_now & (holdings > 0) & (rng.random(n) < 0.7))
        sec = quit_s[cust] + (rng.exponential(7.0, len(cust)) * _DAY).astype(np.int64)
        amt = _round_cents(holdings[cust] * rng.uniform(0.5, 1.0, len(cust)))
        parts.add(et["redeem"], cust, sec, amt, open_product[cust])
        withdraw_after(cust, sec, amt, np.full(len(cust), 0.8))
        holdings[cust] -= amt
        holdings = np.maximum(holdings, 0.0)
        # Liquidity need at the next month start (exact exponential decay of each bump).
        liquidity_at[:, m] = liq_extra
        nxt = cal.month_start_s[m + 1]
        bump = bumps[ltype] * rng.uniform(0.7, 1.3, len(life_c)) * np.exp(-(nxt - life_s) / decay_s)
        liq_extra = liq_extra * np.exp(-cal.month_days[m] * _DAY / decay_s)
        liq_extra += np.bincount(life_c, weights=bump, minlength=n)
    liquidity_at[:, n_months] = liq_extra

    ev = parts.arrays()
    keep = ev["sec"] < end_s
    ev = {key: v[keep] for key, v in ev.items()}
    life_cust, life_sec, life_type = (np.concatenate(x) for x in zip(*life_parts, strict=True))
    return _Behaviour(
        events=ev,
        quit_s=quit_s,
        invest_rate=lam,
        base_log_hazard=base_log_hazard,
        p_complaint=p_complaint,
        p_life=p_life,
        complained=complained,
        life_event=life,
        satisfaction=sat,
        liquidity_at=liquidity_at,
        life_cust=life_cust,
        life_sec=life_sec,
        life_type=life_type,
    )


def _finish_events(
    rng: np.random.Generator,
    c: _Customers,
    ev: dict[str, np.ndarray],
    specs: Specs,
    types: dict[str, int],
) -> dict[str, np.ndarray]:
    """Sort events by (customer, time) and add channel and session duration."""
    key = (ev["cust"].astype(np.int64) << 36) | (ev["sec"] << 4) | ev["type"].astype(np.int64)
    order = np.argsort(key, kind="stable")
    ev = {k: v[order] for k, v in ev.items()}
    m = len(order)
    cust = ev["cust"]
    age = c.age0[cust] + ev["sec"] / (365.25 * _DAY)
    probs = _channel_probs(specs)
    other = _categorical(rng.random(m), probs[_age_group(age)])
    channel = np.where(rng.random(m) < 0.75, c.channel_pref[cust], other)
    sessions = np.isin(ev["type"], [types[t] for t in _SESSION_EVENTS if t in types])
    channels = list(specs.behaviour.channels)
    digital = [channels.index(ch) for ch in _DIGITAL_CHANNELS if ch in channels]
    if digital:
        channel = np.where(sessions & ~np.isin(channel, digital), c.digital_channel[cust], channel)
    duration = np.full(m, np.nan)
    for name, median in (("login", 150.0), ("product_view", 50.0)):
        mask = ev["type"] == types.get(name, -1)
        duration[mask] = np.round(rng.lognormal(np.log(median), 0.9, mask.sum()) + 1.0)
    ev["channel"] = channel
    ev["duration"] = duration
    return ev


# --- ground truth -------------------------------------------------------------------------------


def _ground_truth(c: _Customers, b: _Behaviour, cal: _Calendar) -> dict[str, np.ndarray]:
    """One row per customer and snapshot: level probabilities, exact churn probability, latents."""
    n = c.n
    level_p = level_probabilities(c.tau)
    horizon = CHURN_HORIZON_DAYS
    names = ("cust", "snap", "p_churn", "registered", "quit", "liquidity", "engagement")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (*names, "satisfaction")}
    combos = np.array([(0, 0), (0, 1), (1, 0), (1, 1)], dtype=float)
    for m in cal.snapshot_months:
        t = cal.month_start_s[m]
        months, days, left, j = [], [], horizon, m
        while left > 0:
            d = min(int(cal.month_days[j]), left)
            months.append(j)
            days.append(d)
            left -= d
            j += 1
        first = quit_hazard(b.base_log_hazard[:, m], b.complained[:, m], b.life_event[:, m])
        later_h, later_w = [], []
        for k in months[1:]:
            pc_, pl_ = b.p_complaint[:, k - 1], b.p_life[:, k - 1]
            later_h.append(quit_hazard(b.base_log_hazard[:, k, None], combos[:, 0], combos[:, 1]))
            later_w.append(
                np.stack(
                    [(1 - pc_) * (1 - pl_), (1 - pc_) * pl_, pc_ * (1 - pl_), pc_ * pl_], axis=1
                )
            )
        prob = churn_probability(
            b.invest_rate[:, months],
            np.array(days),
            first,
            np.stack(later_h, axis=1),
            np.stack(later_w, axis=1),
        )
        registered = c.reg_s <= t
        quit = registered & (b.quit_s <= t)
        cols["cust"].append(np.arange(n))
        cols["snap"].append(np.full(n, t, dtype=np.int64))
        cols["p_churn"].append(np.where(quit, 1.0, prob))
        cols["registered"].append(registered)
        cols["quit"].append(quit)
        cols["liquidity"].append(c.liquidity_base + b.liquidity_at[:, m])
        cols["engagement"].append(c.engagement * np.exp(c.trend_slope * m / 12.0))
        cols["satisfaction"].append(b.satisfaction[:, m])
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out["level_p"] = level_p[out["cust"]]
    return out


# --- questionnaire, interviews, reviews ---------------------------------------------------------


@dataclass(frozen=True)
class _AnswerModel:
    """How one question is answered: a factual question bins a customer fact by cut points
    (options in listed order); an attitude question bins a noisy signal of stated tolerance
    (options in increasing score order)."""

    order: np.ndarray
    fact: str | None
    cuts: tuple[float, ...]
    loadings: tuple[float, float, float, float]


def _answer_models(definition: QuestionnaireDefinition) -> list[_AnswerModel]:
    out = []
    for q in definition.questions:
        factual = _FACTUAL_QUESTIONS.get(q.id)
        if factual is not None and len(factual[1]) == len(q.options) - 1:
            out.append(
                _AnswerModel(np.arange(len(q.options)), factual[0], factual[1], _DEFAULT_ATTITUDE)
            )
        else:
            order = np.argsort([o.score for o in q.options], kind="stable")
            k = len(q.options)
            # Middle options most common, extremes (incl. lowest-category triggers) rare.
            cuts = tuple(np.linspace(-0.4 * (k - 1), 0.4 * (k - 1), k - 1))
            out.append(
                _AnswerModel(order, None, cuts, _ATTITUDE_LOADINGS.get(q.id, _DEFAULT_ATTITUDE))
            )
    return out


def _questionnaire(
    rng: np.random.Generator,
    c: _Customers,
    cal: _Calendar,
    liq_extra_at: np.ndarray,
    definition: QuestionnaireDefinition,
) -> dict[str, np.ndarray]:
    """Submissions (one at/after registration, some repeated every 12–24 months, ~8 % none)
    and, per submission, the option position chosen for every question."""
    n = c.n
    end_s = cal.end_s
    max_subs = int(np.ceil((end_s - c.reg_s.min()) / (365 * _DAY))) + 1
    submits = rng.random(n) >= 0.08
    resubmits = rng.random(n) < 0.35
    first = c.reg_s + (rng.exponential(2.0, n) * _DAY).astype(np.int64) + 300
    gaps = (rng.uniform(365, 730, (n, max_subs - 1)) * _DAY).astype(np.int64)
    times = first[:, None] + np.concatenate(
        [np.zeros((n, 1), np.int64), np.cumsum(gaps, axis=1)], axis=1
    )
    valid = submits[:, None] & (times < end_s)
    valid[:, 1:] &= resubmits[:, None]
    cust, which = np.nonzero(valid)
    sec = times[cust, which]
    s = len(cust)
    stated = c.tau[cust] + c.stated_shift[cust] + c.stated_bias[cust] + rng.normal(0, 0.25, s)
    years = sec / (365.25 * _DAY)
    facts = {
        "age": c.age0[cust] + years,
        "household_income": np.where(c.no_stable_income[cust], 0.0, c.household_income[cust]),
        "wealth": c.wealth[cust] * np.exp(0.05 * years),
        "experience": c.prior_experience[cust]
        + np.where(c.never_active[cust], 0.0, np.maximum(sec - c.reg_s[cust], 0) / (365.25 * _DAY)),
    }
    month = np.clip(np.searchsorted(cal.month_start_s, sec, side="right") - 1, 0, cal.months)
    liquidity = c.liquidity_base[cust] + np.where(sec >= 0, liq_extra_at[cust, month], 0.0)
    z_exp = (np.log1p(facts["experience"]) - 1.0) / 0.8
    answers = np.empty((s, len(definition.questions)), dtype=np.int64)
    for i, model in enumerate(_answer_models(definition)):
        if model.fact is not None:
            answers[:, i] = np.searchsorted(np.asarray(model.cuts), facts[model.fact], side="right")
            continue
        w_s, w_l, w_e, noise = model.loadings
        signal = (
            w_s * stated + w_l * (liquidity - 0.3) / 0.2 + w_e * z_exp + noise * rng.normal(size=s)
        )
        scale = np.sqrt(w_s**2 * 1.25 + w_l**2 + w_e**2 + noise**2)
        position = np.searchsorted(np.asarray(model.cuts), (signal - _ATTITUDE_CENTRE) / scale)
        answers[:, i] = model.order[position]
    return {"cust": cust, "sec": sec, "answers": answers}


def _interviews(
    rng: np.random.Generator, c: _Customers, b: _Behaviour, cal: _Calendar, specs: Specs
) -> dict[str, np.ndarray]:
    """Interviews (~60 % of customers, more for branch/advisor preference) and their 1–4 tags,
    drawn with probabilities that follow the true latents."""
    n = c.n
    channels = list(specs.behaviour.channels)
    personal = np.isin(channels, ["branch", "advisor"])[c.channel_pref]
    p_any = expit(0.15 + 1.3 * personal + 0.4 * c.elderly0) * np.where(c.never_active, 0.3, 1.0)
    count = np.where(rng.random(n) < p_any, 1 + rng.poisson(0.5 + 0.6 * personal), 0)
    lo = np.maximum(c.reg_s, -365 * _DAY)
    span = cal.end_s - lo
    count = np.where(span > _DAY, count, 0)
    cust = np.repeat(np.arange(n), count)
    day = lo[cust] // _DAY + np.floor(rng.random(len(cust)) * (span[cust] // _DAY)).astype(np.int64)
    sec = np.maximum(
        day * _DAY + (9 * 3600 + rng.random(len(cust)) * 9 * 3600).astype(np.int64), lo[cust]
    )
    order = np.lexsort((sec, cust))
    cust, sec = cust[order], sec[order]
    m = len(cust)
    late = rng.random(m) < 0.2
    lag = np.where(late, rng.uniform(0, 20, m), rng.uniform(0, 3, m))
    recorded = sec + (lag * _DAY).astype(np.int64)
    own_advisor = rng.integers(1, _N_ADVISORS + 1, n)
    advisor = np.where(rng.random(m) < 0.85, own_advisor[cust], rng.integers(1, _N_ADVISORS + 1, m))

    # Latents at interview time.
    month = np.clip(np.searchsorted(cal.month_start_s, sec, side="right") - 1, 0, cal.months - 1)
    inside = sec >= 0
    liq_extra = np.where(inside, b.liquidity_at[cust, month], 0.0)
    liquidity = c.liquidity_base[cust] + liq_extra
    sat = np.where(inside, b.satisfaction[cust, month], c.sat0[cust])
    age = c.age0[cust] + sec / (365.25 * _DAY)
    tau = c.tau[cust]
    recent = np.zeros((m, len(_LIFE_EVENTS)))
    key_i = (cust.astype(np.int64) << 36) + (sec + (1 << 34))
    for j in range(len(_LIFE_EVENTS)):
        sel = b.life_type == j
        key_e = (b.life_cust[sel].astype(np.int64) << 36) + (b.life_sec[sel] + (1 << 34))
        if len(key_e) == 0:
            continue
        key_e = np.sort(key_e)
        # The latest life event of this type at or before the interview, if the same customer.
        pos = np.searchsorted(key_e, key_i, side="right") - 1
        prev = key_e[np.maximum(pos, 0)]
        same = (pos >= 0) & ((prev >> 36) == (key_i >> 36)) & (key_i - prev <= 240 * _DAY)
        recent[:, j] = same

    tags = specs.tags.tags
    logits = np.empty((m, len(tags)))
    for j, tag in enumerate(tags):
        x = np.full(m, _TAG_BASE_BY_CATEGORY.get(tag.category, -1.0))
        if tag.risk_direction == "up":
            x += 1.2 * tau
        elif tag.risk_direction == "down":
            x += -0.9 * tau + 1.2 * (liquidity - 0.3)
        if tag.id in _LIFE_EVENTS:
            x += 5.5 * recent[:, list(_LIFE_EVENTS).index(tag.id)]
        if tag.id == "liquidity_need":
            x += 3.0 * liq_extra
        if tag.id in _DISSATISFACTION_TAGS:
            x += -1.3 * sat - 0.8
        if tag.id == "vulnerable_customer":
            x += np.where(age >= 65, 2.5, -2.5)
        if tag.id == "retirement_planning":
            x += np.where(age >= 50, 1.5, -1.0)
        if tag.id == "overconfident":
            x += 1.0 * (c.misstatement[cust] == 2)
        logits[:, j] = x
    n_tags = 1 + rng.binomial(3, 0.3, m)
    keys = logits + rng.gumbel(size=logits.shape)
    ranked = np.argsort(-keys, axis=1, kind="stable")[:, :4]
    pick = np.arange(4)[None, :] < n_tags[:, None]
    rows = np.repeat(np.arange(m), n_tags)
    has_note = rng.random(m) < 0.12
    note_kind = np.where(rng.random(m) < 0.15, 1, 0)  # 1: carries a phone number
    return {
        "cust": cust[rows],
        "sec": sec[rows],
        "recorded": recorded[rows],
        "advisor": advisor[rows],
        "tag": ranked[pick],
        "note": np.where(has_note, note_kind, -1)[rows],
        "note_pick": rng.integers(0, 1 << 30, m)[rows],
        "note_phone_prefix": rng.integers(0, len(_PHONE_PREFIXES), m)[rows],
        "note_phone_rest": rng.integers(0, 10**8, m)[rows],
    }


def _reviews(rng: np.random.Generator, c: _Customers, cal: _Calendar) -> dict[str, np.ndarray]:
    """~40 % one review, ~10 % two, at random times once a customer has ~2 months of history;
    each confirmed level drawn from the ordered probit."""
    n = c.n
    lo = np.maximum(c.reg_s + 60 * _DAY, 0)
    span = cal.end_s - lo
    u = rng.random(n)
    count = np.where(u < 0.10, 2, np.where(u < 0.50, 1, 0))
    count = np.where((span > _DAY) & ~c.never_active, count, 0)
    cust = np.repeat(np.arange(n), count)
    sec = lo[cust] + np.floor(rng.random(len(cust)) * span[cust]).astype(np.int64)
    order = np.lexsort((sec, cust))
    cust, sec = cust[order], sec[order]
    z = c.tau[cust] + PARAMS.reviewer_noise * rng.normal(size=len(cust))
    level = np.searchsorted(np.asarray(PARAMS.level_cutpoints), z)
    return {"cust": cust, "sec": sec, "level": level}


# --- strings, built with arrow (no per-row Python) ----------------------------------------------


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) ASCII digit bytes of non-negative integers, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values.astype(np.int64)[:, None] // powers[None, :]) % 10 + ord("0")).astype(np.uint8)


def _ascii_strings(chars: np.ndarray) -> pa.Array:
    """A string array from an (n, w) matrix of ASCII bytes."""
    n, w = chars.shape
    offsets = np.arange(n + 1, dtype=np.int32) * w
    data = np.ascontiguousarray(chars, dtype=np.uint8).tobytes()
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


def _prefixed_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    chars = np.concatenate(
        [np.broadcast_to(head, (len(numbers), len(head))), _digits(numbers, width)], axis=1
    )
    return _ascii_strings(chars)


def _codes_to_strings(
    codes: np.ndarray, vocabulary: Sequence[str], null: np.ndarray | None = None
) -> pa.Array:
    """Plain `string` values of `vocabulary[codes]` (nulls where `null`)."""
    indices = pa.array(np.asarray(codes, dtype=np.int32), mask=null)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(vocabulary), pa.string())).cast(
        pa.string()
    )


def _timestamps(cal: _Calendar, sec: np.ndarray) -> pa.Array:
    return pa.array(cal.start_us + sec.astype(np.int64) * 1_000_000, type=pa.timestamp("us"))


def _id_width(n_customers: int) -> int:
    return max(7, len(str(n_customers)))


def _resident_ids(rng: np.random.Generator, birth: np.ndarray, male: np.ndarray) -> pa.Array:
    """18-character PRC resident ids: region, birth date, sequence (odd for men), ISO 7064
    MOD 11-2 check character."""
    n = len(birth)
    days = birth.astype("datetime64[D]")
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    mday = (days - days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    region = np.array(_REGION_CODES)[rng.integers(0, len(_REGION_CODES), n)]
    seq = rng.integers(0, 500, n) * 2 + male.astype(np.int64)  # parity of the 17th digit
    body = np.concatenate(
        [
            _digits(region, 6),
            _digits(year, 4),
            _digits(month, 2),
            _digits(mday, 2),
            _digits(seq, 3),
        ],
        axis=1,
    )
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    check = np.frombuffer(b"10X98765432", dtype=np.uint8)[((body - ord("0")) @ weights) % 11]
    return _ascii_strings(np.concatenate([body, check[:, None]], axis=1))


def _phone_strings(prefix: np.ndarray, rest: np.ndarray) -> pa.Array:
    """11-digit mobile numbers: a real carrier prefix (`_PHONE_PREFIXES[prefix]`) + 8 digits."""
    head = np.array(_PHONE_PREFIXES)[prefix]
    return _ascii_strings(np.concatenate([_digits(head, 3), _digits(rest, 8)], axis=1))


def _names(rng: np.random.Generator, n: int) -> pa.Array:
    """Surname (weighted towards the common ones) plus one or two given characters."""
    surname_w = 1.0 / (np.arange(len(_SURNAMES)) + 3.0)
    surname = _categorical(rng.random(n), surname_w / surname_w.sum())
    given = list(_GIVEN_CHARS)
    first = _codes_to_strings(rng.integers(0, len(given), n), given)
    second_code = np.where(rng.random(n) < 0.7, rng.integers(0, len(given), n), len(given))
    second = _codes_to_strings(second_code, [*given, ""])
    return pc.binary_join_element_wise(
        _codes_to_strings(surname, list(_SURNAMES)), first, second, ""
    )


# --- tables of one chunk ------------------------------------------------------------------------


def generate_chunk(
    specs: Specs, seed: int, chunk: int, n_customers: int, start: date, months: int
) -> dict[str, pa.Table]:
    """All part tables for chunk `chunk` of a world of `n_customers` (pure: no I/O)."""
    cal = _calendar(start, months)
    first = chunk * CHUNK_CUSTOMERS
    n = min(CHUNK_CUSTOMERS, n_customers - first)
    if n <= 0:
        raise ValueError(f"chunk {chunk} is empty for {n_customers} customers")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, chunk]).spawn(7)]
    r_cust, r_beh, r_events, r_q, r_int, r_rev, r_pii = streams
    cat = _build_catalogue(seed)
    types = {name: i for i, name in enumerate(specs.behaviour.event_types)}
    c = _draw_customers(r_cust, n, first, cal, specs)
    b = _simulate_behaviour(r_beh, c, cal, cat, types)
    ev = _finish_events(r_events, c, b.events, specs, types)
    definition = specs.questionnaires[sorted(specs.questionnaires)[-1]]
    q = _questionnaire(r_q, c, cal, b.liquidity_at, definition)
    iv = _interviews(r_int, c, b, cal, specs)
    rv = _reviews(r_rev, c, cal)
    gt = _ground_truth(c, b, cal)

    ids = _prefixed_ids("C", np.arange(first + 1, first + n + 1), _id_width(n_customers))

    def cust_ids(idx: np.ndarray) -> pa.Array:
        return ids.take(pa.array(idx, type=pa.int32()))

    genders = list(specs.profile.genders)
    male = np.array([g == "M" for g in genders])[c.gender]
    birth = cal.start_day + c.birth_day
    customers = pa.table(
        [
            ids,
            pa.array(birth.astype(np.int32), type=pa.date32()),
            _codes_to_strings(c.gender, genders),
            _codes_to_strings(c.city_tier, list(specs.profile.city_tiers)),
            _codes_to_strings(c.income_band, list(specs.profile.income_bands)),
            _timestamps(cal, c.reg_s),
            _codes_to_strings(c.channel_pref, list(specs.behaviour.channels)),
            _names(r_pii, n),
            _resident_ids(r_pii, birth, male),
            _phone_strings(r_pii.integers(0, len(_PHONE_PREFIXES), n), r_pii.integers(0, 10**8, n)),
        ],
        schema=arrow_schema("customers"),
    )

    # Questionnaire: one row per (submission, question); answers via one global option table.
    qids = definition.question_ids
    option_ids = [[o.id for o in qq.options] for qq in definition.questions]
    vocab = sorted({o for opts in option_ids for o in opts})
    option_code = np.full((len(qids), max(map(len, option_ids))), -1)
    for i, opts in enumerate(option_ids):
        option_code[i, : len(opts)] = [vocab.index(o) for o in opts]
    n_q = len(qids)
    qrow_q = np.tile(np.arange(n_q), len(q["cust"]))
    questionnaire = pa.table(
        [
            cust_ids(np.repeat(q["cust"], n_q)),
            _codes_to_strings(np.zeros(len(qrow_q), np.int32), [definition.version]),
            _timestamps(cal, np.repeat(q["sec"], n_q)),
            _codes_to_strings(qrow_q, qids),
            _codes_to_strings(option_code[qrow_q, q["answers"].ravel()], vocab),
        ],
        schema=arrow_schema("questionnaire_responses"),
    )

    product_null = ev["product"] < 0
    prod = np.maximum(ev["product"], 0)
    products = _prefixed_ids("P", np.arange(1, cat.n + 1), 5)
    events = pa.table(
        [
            cust_ids(ev["cust"]),
            _timestamps(cal, ev["sec"]),
            _codes_to_strings(ev["type"], list(specs.behaviour.event_types)),
            pa.array(ev["amount"], mask=np.isnan(ev["amount"])),
            pa.DictionaryArray.from_arrays(
                pa.array(prod.astype(np.int32), mask=product_null), products
            ).cast(pa.string()),
            _codes_to_strings(cat.level[prod], R_LEVELS, product_null),
            pa.array(cat.term_days[prod], type=pa.int32(), mask=product_null),
            _codes_to_strings(ev["channel"], list(specs.behaviour.channels)),
            pa.array(ev["duration"], mask=np.isnan(ev["duration"])),
        ],
        schema=arrow_schema("events"),
    )

    note = iv["note"]
    plain = _codes_to_strings(iv["note_pick"] % len(_NOTES), _NOTES, note != 0)
    phone_tpl = iv["note_pick"] % len(_PHONE_NOTES)
    with_phone = pc.binary_join_element_wise(
        _codes_to_strings(phone_tpl, [a for a, _ in _PHONE_NOTES]),
        _phone_strings(iv["note_phone_prefix"], iv["note_phone_rest"]),
        _codes_to_strings(phone_tpl, [z for _, z in _PHONE_NOTES]),
        "",
    )
    notes = pc.if_else(pa.array(note == 1), with_phone, plain)
    interview_tags = pa.table(
        [
            cust_ids(iv["cust"]),
            _timestamps(cal, iv["sec"]),
            _timestamps(cal, iv["recorded"]),
            _prefixed_ids("A", iv["advisor"], 4),
            _codes_to_strings(iv["tag"], [t.id for t in specs.tags.tags]),
            notes,
        ],
        schema=arrow_schema("interview_tags"),
    )

    risk_reviews = pa.table(
        [
            cust_ids(rv["cust"]),
            _timestamps(cal, rv["sec"]),
            _codes_to_strings(rv["level"], C_LEVELS),
        ],
        schema=arrow_schema("risk_reviews"),
    )

    gc = gt["cust"]
    level_p = gt["level_p"]
    ground_truth = pa.table(
        [
            cust_ids(gc),
            _timestamps(cal, gt["snap"]),
            *[pa.array(level_p[:, i]) for i in range(len(C_LEVELS))],
            pa.array(gt["p_churn"], mask=~gt["registered"]),
            pa.array(gt["quit"]),
            pa.array(c.tau[gc]),
            pa.array(c.stated_shift[gc]),
            _codes_to_strings(c.misstatement[gc], MISSTATEMENTS),
            pa.array(gt["liquidity"]),
            pa.array(gt["engagement"]),
            pa.array(gt["satisfaction"]),
        ],
        schema=GROUND_TRUTH_SCHEMA,
    )
    return {
        "customers": customers,
        "questionnaire_responses": questionnaire,
        "events": events,
        "interview_tags": interview_tags,
        "risk_reviews": risk_reviews,
        "ground_truth": ground_truth,
    }


# --- writing ------------------------------------------------------------------------------------


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd", compression_level=1, row_group_size=1 << 20)


def _part_name(chunk: int) -> str:
    return f"part-{chunk:05d}.parquet"


def _write_chunk(
    root: str, specs: Specs, seed: int, chunk: int, n_customers: int, start: date, months: int
) -> dict[str, int]:
    """Generate one chunk and write its part files under `root`; returns row counts."""
    tables = generate_chunk(specs, seed, chunk, n_customers, start, months)
    rows = {}
    for name, table in tables.items():
        _write_parquet(table, Path(root) / name / _part_name(chunk))
        rows[name] = table.num_rows
    return rows


def _run_chunks(
    tasks: list[tuple[str, Specs, int, int, int, date, int]],
    workers: int,
    chunk_done: Callable[[dict[str, int]], None],
) -> None:
    """Run `_write_chunk` over `tasks`, in this process or a pool of `workers` processes, and
    report each chunk's row counts as it finishes. The first failure cancels the rest."""
    if workers == 1 or len(tasks) == 1:
        for task in tasks:
            chunk_done(_write_chunk(*task))
        return
    ctx = multiprocessing.get_context("spawn")  # never fork a parent that runs arrow threads
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        futures = [pool.submit(_write_chunk, *task) for task in tasks]
        try:
            for future in as_completed(futures):
                chunk_done(future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _parse_start(start: str | date) -> date:
    if isinstance(start, date):
        day = start
    else:
        try:
            day = date.fromisoformat(str(start))
        except ValueError:
            raise ValueError(f"start {start!r} is not an ISO date (YYYY-MM-DD)") from None
    if day.day != 1:
        raise ValueError(f"start {day.isoformat()} must be the first day of a month")
    if not 1990 <= day.year <= 2100:
        raise ValueError(f"start {day.isoformat()} is outside 1990..2100")
    return day


def _check_arguments(out_dir: Path, n_customers: int, seed: int, months: int, workers: int) -> None:
    def whole(value: object) -> bool:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)

    if not whole(n_customers) or n_customers < 1:
        raise ValueError(f"n_customers must be a whole number >= 1, got {n_customers!r}")
    if not whole(seed) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if not whole(months) or not MIN_MONTHS <= months <= 600:
        raise ValueError(
            f"months must be a whole number in {MIN_MONTHS}..600 (events must span at least "
            f"{MIN_MONTHS} months), got {months!r}"
        )
    if not whole(workers) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"output folder {out_dir} exists and is not empty; choose a new one")


def generate(
    out_dir: Path | str,
    n_customers: int,
    seed: int,
    *,
    start: str | date = "2024-07-01",
    months: int = 27,
    workers: int = 2,
    progress: ProgressCallback | None = None,
    specs: Specs | None = None,
) -> SynthSummary:
    """Write a synthetic world of `n_customers` to `out_dir` (which must not exist or be empty).

    Events cover `months` calendar months from `start` (a first of a month). The same
    (n_customers, seed, start, months, specs) give byte-identical files for any `workers`.
    `progress(done_chunks, total_chunks)` is called after each chunk (and once with 0).
    Everything is written to a temporary sibling folder and renamed into place at the end, so a
    failure leaves nothing at `out_dir`.
    """
    out = Path(out_dir)
    first_day = _parse_start(start)
    _check_arguments(out, n_customers, seed, months, workers)
    specs = specs if specs is not None else load_specs()
    cal = _calendar(first_day, months)
    n_chunks = -(-n_customers // CHUNK_CUSTOMERS)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.synth-", dir=out.parent))
    try:
        for name in PART_TABLES:
            (tmp / name).mkdir()
        _write_parquet(products_table(seed), tmp / "products.parquet")
        rows = dict.fromkeys(PART_TABLES, 0)
        if progress is not None:
            progress(0, n_chunks)
        done = 0

        def chunk_done(counts: dict[str, int]) -> None:
            nonlocal done
            for name, count in counts.items():
                rows[name] += count
            done += 1
            if progress is not None:
                progress(done, n_chunks)

        tasks = [
            (str(tmp), specs, seed, i, n_customers, first_day, months) for i in range(n_chunks)
        ]
        _run_chunks(tasks, workers, chunk_done)
        rows["products"] = _build_catalogue(seed).n
        summary = SynthSummary(
            out_dir=out,
            n_customers=n_customers,
            seed=seed,
            start=first_day,
            end=cal.month_date(months),
            months=months,
            n_chunks=n_chunks,
            snapshots=tuple(cal.month_date(int(m)) for m in cal.snapshot_months),
            rows=rows,
        )
        (tmp / "synth.json").write_text(
            json.dumps(summary.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        if out.exists():
            out.rmdir()  # empty (checked above); rename needs the name free
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
