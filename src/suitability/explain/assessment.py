"""One customer's (or a batch's) explained predictions: the category with its reasons, why it
differs from the questionnaire's, the churn risk with its reasons, and which facts were used.

Pure: models, specs and feature rows in, plain dataclasses out. The CLI, the reports and the
service all call these functions, so a reason reads the same wherever it is shown.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from suitability.explain.contributions import LEVEL_SCORE, cut_names, explain_matrix
from suitability.explain.reasons import Reason, by_source, plain_value, reason_codes
from suitability.features.kernel import FeatureInputs
from suitability.models.estimators import BinaryLGBM, OrdinalLGBM
from suitability.models.rules import (
    Decision,
    Mismatch,
    RuleTable,
    assess_mismatch,
    decide,
    rule_input_from_features,
)
from suitability.models.spec import ModelSpec
from suitability.specs import C_LEVELS, Specs


@dataclass(frozen=True)
class ModelRef:
    """Which registered model version produced an output (for audit and reports)."""

    name: str
    version: int | None
    alias: str | None
    run_id: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RiskAssessment:
    """The risk-level model's answer for one row, explained."""

    stated_level: str | None  # the questionnaire's band (None: no questionnaire yet)
    predicted_level: str
    probabilities: dict[str, float]
    expected_level: float
    score: float  # level_score: base + sum of contributions
    base: float
    reasons: list[Reason]  # what moved the predicted category (largest first)
    by_source: dict[str, float]
    # Why the prediction is above/below the stated level (empty when they agree).
    stated_reasons: list[Reason] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "stated_level": self.stated_level,
            "predicted_level": self.predicted_level,
            "probabilities": dict(self.probabilities),
            "expected_level": self.expected_level,
            "score": self.score,
            "base": self.base,
            "reasons": [r.to_json() for r in self.reasons],
            "by_source": dict(self.by_source),
            "stated_reasons": [r.to_json() for r in self.stated_reasons],
        }


@dataclass(frozen=True)
class ChurnAssessment:
    """The churn model's answer for one row, explained (contributions in log-odds before
    calibration; calibration is monotone, so directions hold for the probability)."""

    p_churn: float
    raw: float
    base: float
    reasons: list[Reason]
    by_source: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "p_churn": self.p_churn,
            "raw": self.raw,
            "base": self.base,
            "reasons": [r.to_json() for r in self.reasons],
            "by_source": dict(self.by_source),
        }


def stated_level(value: Any) -> str | None:
    """The `q_level` feature (1..5, missing without a questionnaire) as C1..C5."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number):
        return None
    return C_LEVELS[int(min(max(round(number), 1), len(C_LEVELS))) - 1]


def row_values(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row as {column: value}: one conversion for the whole frame (`to_dict("records")`
    costs ~30 ms for a single row of two hundred mixed-dtype columns)."""
    columns = list(frame.columns)
    return [dict(zip(columns, row, strict=True)) for row in frame.to_numpy(dtype=object)]


def assess_risk(
    model: OrdinalLGBM, frame: pd.DataFrame, specs: Specs, spec: ModelSpec
) -> list[RiskAssessment]:
    """Explain the predicted category of every row of `frame`; when it differs from the
    questionnaire's, also explain the cut between them (why above, or why not as high)."""
    return _assess_risk(model, frame, row_values(frame), specs, spec)


def _assess_risk(
    model: OrdinalLGBM,
    frame: pd.DataFrame,
    records: list[dict[str, Any]],
    specs: Specs,
    spec: ModelSpec,
    x: np.ndarray | None = None,
) -> list[RiskAssessment]:
    """`assess_risk` given the rows as `row_values` (converted once per request) and, when at
    hand, the model's matrix of `frame`."""
    if x is None:
        x = model.layout.matrix(frame)  # once for the prediction and its explanation
    contributions = explain_matrix(model, x)
    proba = model.proba_of_matrix(x)
    levels, expected = model.levels(proba)
    classes = list(model.classes)
    cuts = cut_names(classes)
    score_values, score_base = contributions.of(LEVEL_SCORE)
    wording = {"up": spec.reasons.up, "down": spec.reasons.down}
    stated_wording = (
        {"up": spec.stated_reasons.above, "down": spec.stated_reasons.below}
        if spec.stated_reasons is not None
        else wording
    )
    out = []
    for i, values in enumerate(records):
        predicted = str(levels[i])
        stated = stated_level(values.get("q_level"))
        stated_reasons: list[Reason] = []
        if stated is not None and stated in classes and stated != predicted:
            s, p = classes.index(stated), classes.index(predicted)
            # Above: what lifts P(level ≥ stated+1). Below: what holds down P(level ≥ stated).
            cut, sign = (cuts[s], 1) if p > s else (cuts[s - 1], -1)
            cut_values, _ = contributions.of(cut)
            stated_reasons = reason_codes(
                cut_values[i], contributions.feature_names, values, specs, stated_wording, sign=sign
            )
        out.append(
            RiskAssessment(
                stated_level=stated,
                predicted_level=predicted,
                probabilities={c: float(proba[i, k]) for k, c in enumerate(classes)},
                expected_level=float(expected[i]),
                score=float(score_base[i] + score_values[i].sum()),
                base=float(score_base[i]),
                reasons=reason_codes(
                    score_values[i], contributions.feature_names, values, specs, wording
                ),
                by_source=by_source(score_values[i], contributions.feature_names, specs),
                stated_reasons=stated_reasons,
            )
        )
    return out


def assess_churn(
    model: BinaryLGBM, frame: pd.DataFrame, specs: Specs, spec: ModelSpec
) -> list[ChurnAssessment]:
    """Explain the churn probability of every row of `frame`."""
    return _assess_churn(model, frame, row_values(frame), specs, spec)


def _assess_churn(
    model: BinaryLGBM,
    frame: pd.DataFrame,
    records: list[dict[str, Any]],
    specs: Specs,
    spec: ModelSpec,
    x: np.ndarray | None = None,
) -> list[ChurnAssessment]:
    """`assess_churn` given the rows as `row_values` and, when at hand, the matrix."""
    if x is None:
        x = model.layout.matrix(frame)
    contributions = explain_matrix(model, x)
    p = model.proba_of_matrix(x)
    values, base = contributions.of(model.output)
    wording = {"up": spec.reasons.up, "down": spec.reasons.down}
    return [
        ChurnAssessment(
            p_churn=float(p[i]),
            raw=float(base[i] + values[i].sum()),
            base=float(base[i]),
            reasons=reason_codes(values[i], contributions.feature_names, row, specs, wording),
            by_source=by_source(values[i], contributions.feature_names, specs),
        )
        for i, row in enumerate(records)
    ]


@dataclass(frozen=True)
class SourceUse:
    """One source of facts behind a decision: how many facts and the latest one's time."""

    source: str
    facts: int
    latest: str | None  # ISO time of the latest fact known at the as-of time
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _iso(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return None
    return pd.Timestamp(value).isoformat(timespec="seconds")


def sources_used(
    inputs: FeatureInputs, as_of: pd.Timestamp, window_days: int = 365
) -> list[SourceUse]:
    """What each source contributed as of `as_of` (facts known by then, by the time they
    became known): the latest questionnaire, events of the last `window_days`, interview tags."""
    as_of = pd.Timestamp(as_of)
    q, events, tags = inputs.questionnaire, inputs.events, inputs.tags
    times = (q["submitted_at"], events["event_time"], tags["recorded_at"], tags["interview_time"])
    plain = all(isinstance(t.dtype, np.dtype) and t.dtype.kind == "M" for t in times)
    if not plain or as_of.tz is not None:
        return _sources_used_pandas(inputs, as_of, window_days)
    # Numpy on the time columns: this runs for every request, where each pandas filter costs
    # a tenth of a millisecond. As-of is floored to the columns' microseconds, which keeps
    # every comparison with a whole-microsecond time as it was; NaT compares false as in pandas.
    limit = as_of.as_unit("us").asm8
    submitted = q["submitted_at"].to_numpy()
    known_q = submitted <= limit
    event_time = events["event_time"].to_numpy()
    window = event_time[
        (event_time <= limit) & (event_time > limit - np.timedelta64(window_days, "D"))
    ]
    recorded = tags["recorded_at"].to_numpy()
    known_tags = recorded <= limit
    latest_q, version = None, ""
    if known_q.any():
        latest_q = submitted[known_q].max()
        # The latest submission's version; with several at that very time, which one the
        # pandas sort puts last is its business: ask it.
        at_latest = q["questionnaire_version"].to_numpy(dtype=object)[known_q][
            submitted[known_q] == latest_q
        ]
        shown = {str(v) for v in at_latest}
        if len(shown) != 1:
            return _sources_used_pandas(inputs, as_of, window_days)
        version = shown.pop()
    interviews = tags["interview_time"].to_numpy()[known_tags]
    return [
        SourceUse("questionnaire", len(np.unique(submitted[known_q])), _iso(latest_q), version),
        SourceUse(
            "behaviour",
            len(window),
            _iso(window.max()) if len(window) else None,
            f"{window_days}d",
        ),
        SourceUse(
            "interview",
            int(known_tags.sum()),
            _iso(recorded[known_tags].max()) if known_tags.any() else None,
            f"{len(np.unique(interviews[~np.isnat(interviews)]))}" if known_tags.any() else "0",
        ),
        SourceUse("profile", 1, _iso(inputs.customers["registered_at"].iloc[0]), ""),
    ]


def _sources_used_pandas(
    inputs: FeatureInputs, as_of: pd.Timestamp, window_days: int
) -> list[SourceUse]:
    """`sources_used` in pandas, for time columns that are not plain datetime64 and for ties
    on the latest submission time."""
    as_of = pd.Timestamp(as_of)
    q = inputs.questionnaire
    q = q[q["submitted_at"] <= as_of]
    events = inputs.events
    events = events[
        (events["event_time"] <= as_of)
        & (events["event_time"] > as_of - pd.Timedelta(days=window_days))
    ]
    tags = inputs.tags
    tags = tags[tags["recorded_at"] <= as_of]
    profile = inputs.customers.iloc[0]
    latest_q = q.sort_values("submitted_at").iloc[-1] if len(q) else None
    return [
        SourceUse(
            "questionnaire",
            int(q["submitted_at"].nunique()),
            _iso(latest_q["submitted_at"]) if latest_q is not None else None,
            str(latest_q["questionnaire_version"]) if latest_q is not None else "",
        ),
        SourceUse(
            "behaviour",
            len(events),
            _iso(events["event_time"].max()) if len(events) else None,
            f"{window_days}d",
        ),
        SourceUse(
            "interview",
            len(tags),
            _iso(tags["recorded_at"].max()) if len(tags) else None,
            f"{tags['interview_time'].nunique()}" if len(tags) else "0",
        ),
        SourceUse("profile", 1, _iso(profile["registered_at"]), ""),
    ]


def masked_profile(inputs: FeatureInputs) -> dict[str, str]:
    """The customer as reports may show them: id plus the masked personal fields present."""
    row = inputs.customers.iloc[0]
    out = {"customer_id": str(row["customer_id"])}
    for column in ("name", "phone", "id_number"):
        if column in inputs.customers.columns and not pd.isna(row[column]):
            out[column] = str(row[column])
    return out


def feature_hash(values: Mapping[str, Any], names: Sequence[str]) -> str:
    """sha256 of the feature vector the models saw (named, sorted, canonical JSON), so an
    audit can prove which inputs produced an answer without storing them."""
    canonical = {n: plain_value(values.get(n)) for n in sorted(set(names))}
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Product:
    product_id: str
    risk_level: str  # R1..R5
    category: str = ""
    term_days: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CustomerCase:
    """Everything said about one customer at one time: both models' explained answers, the
    stated-vs-predicted mismatch, the facts used and, for a product, the suitability decision."""

    customer: dict[str, str]
    as_of: str
    risk: RiskAssessment
    churn: ChurnAssessment
    mismatch: Mismatch
    sources: list[SourceUse]
    models: dict[str, ModelRef]
    rule_version: str
    feature_hash: str
    product: Product | None = None
    initiated_by: str | None = None
    decision: Decision | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "as_of": self.as_of,
            "risk_level": self.risk.to_json(),
            "churn": self.churn.to_json(),
            "mismatch": self.mismatch.model_dump(mode="json"),
            "sources": [s.to_json() for s in self.sources],
            "models": {k: v.to_json() for k, v in self.models.items()},
            "rule_version": self.rule_version,
            "feature_hash": self.feature_hash,
            "product": self.product.to_json() if self.product else None,
            "initiated_by": self.initiated_by,
            "decision": self.decision.to_json() if self.decision else None,
        }


@dataclass(frozen=True)
class Explainer:
    """A fitted model, the spec its wording comes from, and which registered version it is."""

    model: OrdinalLGBM | BinaryLGBM
    spec: ModelSpec
    ref: ModelRef


def assess_customer(
    features: pd.DataFrame,
    inputs: FeatureInputs,
    risk: Explainer,
    churn: Explainer,
    specs: Specs,
    rules: RuleTable,
    *,
    product: Product | None = None,
    initiated_by: str | None = None,
) -> CustomerCase:
    """Explain both models for one customer's feature row and, given a product, decide."""
    if len(features) != 1:
        raise ValueError(f"expected one feature row, got {len(features)}")
    return assess_customers(
        features, [inputs], risk, churn, specs, rules, [product], [initiated_by]
    )[0]


def assess_customers(
    features: pd.DataFrame,
    inputs: Sequence[FeatureInputs],
    risk: Explainer,
    churn: Explainer,
    specs: Specs,
    rules: RuleTable,
    products: Sequence[Product | None],
    initiated_by: Sequence[str | None],
) -> list[CustomerCase]:
    """`assess_customer` for several rows at once (row i: `inputs[i]`, `products[i]`, …): the
    models predict and explain the whole frame in one call each."""
    if not (len(features) == len(inputs) == len(products) == len(initiated_by)):
        raise ValueError("features, inputs, products and initiators must line up")
    if not isinstance(risk.model, OrdinalLGBM) or not isinstance(churn.model, BinaryLGBM):
        raise TypeError("risk must be an ordinal model and churn a binary one")
    records = row_values(features)
    x_risk = risk.model.layout.matrix(features)
    # Both models usually read the same features the same way: one matrix serves both.
    same = churn.model.layout == risk.model.layout
    x_churn = x_risk if same else churn.model.layout.matrix(features)
    risk_answers = _assess_risk(risk.model, features, records, specs, risk.spec, x_risk)
    churn_answers = _assess_churn(churn.model, features, records, specs, churn.spec, x_churn)
    names = [*risk.model.feature_names, *churn.model.feature_names]
    cases = []
    for i, values in enumerate(records):
        risk_answer, churn_answer = risk_answers[i], churn_answers[i]
        product, initiator = products[i], initiated_by[i]
        as_of = pd.Timestamp(values["as_of"])
        mismatch = assess_mismatch(
            risk_answer.stated_level,
            risk_answer.predicted_level,
            risk_answer.probabilities,
            rules,
        )
        decision = None
        if product is not None:
            if initiator is None:
                raise ValueError("a decision needs who initiated it: investor or platform")
            decision = decide(
                rule_input_from_features(
                    values,
                    predicted_level=risk_answer.predicted_level,
                    level_probabilities=risk_answer.probabilities,
                    p_churn=churn_answer.p_churn,
                    product_id=product.product_id,
                    product_risk=product.risk_level,
                    initiated_by=initiator,  # type: ignore[arg-type]
                ),
                rules,
            )
        cases.append(
            CustomerCase(
                customer=masked_profile(inputs[i]),
                as_of=as_of.isoformat(timespec="seconds"),
                risk=risk_answer,
                churn=churn_answer,
                mismatch=mismatch,
                sources=sources_used(inputs[i], as_of),
                models={"risk-level": risk.ref, "churn": churn.ref},
                rule_version=rules.version,
                feature_hash=feature_hash(values, names),
                product=product,
                initiated_by=initiator,
                decision=decision,
            )
        )
    return cases
