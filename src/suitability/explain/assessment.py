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
from dataclasses import dataclass, field, fields
from datetime import timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from suitability.explain.contributions import LEVEL_SCORE, cut_names, explain_matrix
from suitability.explain.reasons import Reason, by_source, plain_value, reason_codes
from suitability.features.kernel import FeatureInputs
from suitability.features.online import (
    _EPOCH,
    Bundle,
    MatrixPlan,
    _us,
    kernel_features,
    masked_profile,
    masked_profiles,
    online_features,
)
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


def _flat(record: Any) -> dict[str, Any]:
    """A dataclass of plain values as a dict: what `asdict` gives without its deep copies (a
    dozen of these go into every answer)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


@dataclass(frozen=True)
class ModelRef:
    """Which registered model version produced an output (for audit and reports)."""

    name: str
    version: int | None
    alias: str | None
    run_id: str | None

    def to_json(self) -> dict[str, Any]:
        return _flat(self)


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
    return _assess_risk(model, row_values(frame), specs, spec, model.layout.matrix(frame))


def _assess_risk(
    model: OrdinalLGBM,
    records: Sequence[Mapping[str, Any]],
    specs: Specs,
    spec: ModelSpec,
    x: np.ndarray,
) -> list[RiskAssessment]:
    """`assess_risk` given each row's feature values by name and the model's matrix of them
    (built once for the prediction and its explanation)."""
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
    return _assess_churn(model, row_values(frame), specs, spec, model.layout.matrix(frame))


def _assess_churn(
    model: BinaryLGBM,
    records: Sequence[Mapping[str, Any]],
    specs: Specs,
    spec: ModelSpec,
    x: np.ndarray,
) -> list[ChurnAssessment]:
    """`assess_churn` given each row's feature values by name and the model's matrix."""
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
        return _flat(self)


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return (_EPOCH + timedelta(microseconds=us)).isoformat(timespec="seconds")


def sources_used(
    bundle: Bundle, as_of: pd.Timestamp, specs: Specs, window_days: int = 365
) -> list[SourceUse]:
    """What each source contributed as of `as_of` (facts known by then, by the time they
    became known): the latest questionnaire (on a tie in time, the version the features read:
    the latest in the specs' order), events of the last `window_days`, interview tags."""
    limit = int(pd.Timestamp(as_of).as_unit("us").value // 1_000)  # microseconds since 1970
    answers, events, tags = bundle.answers, bundle.events, bundle.tags
    submitted = answers.us("submitted_at").tolist()
    known = {
        (t, v)
        for t, v in zip(submitted, answers.get("questionnaire_version"), strict=True)
        if t <= limit
    }
    order = {v: i for i, v in enumerate(specs.questionnaires)}
    latest = max(known, key=lambda tv: (tv[0], order.get(tv[1], -1))) if known else None
    since = limit - window_days * 86_400_000_000
    in_window = [t for t in events.us("event_time").tolist() if since < t <= limit]
    recorded = tags.us("recorded_at").tolist()
    visible = [i for i, t in enumerate(recorded) if t <= limit]
    interviews = tags.get("interview_time")
    return [
        SourceUse(
            "questionnaire",
            len({t for t, _ in known}),
            _iso(latest[0]) if latest else None,
            latest[1] if latest else "",
        ),
        SourceUse(
            "behaviour", len(in_window), _iso(max(in_window, default=None)), f"{window_days}d"
        ),
        SourceUse(
            "interview",
            len(visible),
            _iso(max((recorded[i] for i in visible), default=None)),
            str(len({_us(interviews[i]) for i in visible if interviews[i] is not None})),
        ),
        SourceUse("profile", 1, _iso(_us(bundle.profile["registered_at"])), ""),
    ]


@lru_cache(maxsize=16)
def _sorted_names(names: tuple[str, ...]) -> list[str]:
    return sorted(set(names))


def feature_hash(values: Mapping[str, Any], names: Sequence[str]) -> str:
    """sha256 of the feature vector the models saw (named, sorted, canonical JSON), so an
    audit can prove which inputs produced an answer without storing them."""
    canonical = {n: plain_value(values.get(n)) for n in _sorted_names(tuple(names))}
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Product:
    product_id: str
    risk_level: str  # R1..R5
    category: str = ""
    term_days: int | None = None

    def to_json(self) -> dict[str, Any]:
        return _flat(self)


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


@dataclass(frozen=True)
class CustomerRow:
    """What an assessment reads of one customer at one time besides the models' matrices: the
    feature values by name, the masked customer and the facts used."""

    as_of: pd.Timestamp
    values: Mapping[str, Any]
    customer: dict[str, str]
    sources: list[SourceUse]


#: From this many bundles on, their features come from the batch kernel (one pass over all of
#: them) rather than the per-request path item by item: the same rows (`tests/test_online.py`),
#: faster from about 32 bundles on (`benchmarks/bench_serve.py`, batch section).
KERNEL_FROM = 40


def customer_rows(
    bundles: Sequence[Bundle], as_ofs: Sequence[Any], specs: Specs
) -> tuple[list[CustomerRow], np.ndarray]:
    """Contract-valid bundles' rows and feature vectors (rows, catalogue features): each
    bundle through the per-request path, or all of them through the batch kernel from
    `KERNEL_FROM` bundles on; personal data masked for all at once."""
    if len(bundles) >= KERNEL_FROM:
        features = kernel_features(bundles, as_ofs, specs)
    else:
        features = [online_features(b, t, specs) for b, t in zip(bundles, as_ofs, strict=True)]
    customers = masked_profiles([b.profile for b in bundles])
    rows = [
        CustomerRow(
            as_of=f.as_of,
            values=f.values,
            customer=customer,
            sources=sources_used(b, f.as_of, specs),
        )
        for f, b, customer in zip(features, bundles, customers, strict=True)
    ]
    return rows, np.stack([f.vector for f in features])


class Matrices:
    """How both models' matrices are read off feature vectors (`features.online.MatrixPlan`),
    one matrix when their layouts agree."""

    def __init__(self, risk: Explainer, churn: Explainer, specs: Specs) -> None:
        self.risk = MatrixPlan(risk.model.layout, specs)
        self.same = churn.model.layout == risk.model.layout
        self.churn = self.risk if self.same else MatrixPlan(churn.model.layout, specs)

    def of(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.risk.matrix(vectors)
        return x, (x if self.same else self.churn.matrix(vectors))


def assess_customer(
    bundle: Bundle,
    as_of: Any,
    risk: Explainer,
    churn: Explainer,
    specs: Specs,
    rules: RuleTable,
    *,
    product: Product | None = None,
    initiated_by: str | None = None,
) -> CustomerCase:
    """Explain both models for one contract-valid bundle as of `as_of` and, given a product,
    decide: the per-request path, as the service answers."""
    rows, vectors = customer_rows([bundle], [as_of], specs)
    x_risk, x_churn = Matrices(risk, churn, specs).of(vectors)
    (case,) = assess_rows(
        rows, x_risk, x_churn, risk, churn, specs, rules, [product], [initiated_by]
    )
    return case


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
    """`assess_customer` for the rows of a batch feature frame (row i: the customer of
    `inputs[i]`, `products[i]`, …), the matrices built from the frame by the models' layouts:
    the batch pipeline's form of the same assessment."""
    if not (len(features) == len(inputs) == len(products) == len(initiated_by)):
        raise ValueError("features, inputs, products and initiators must line up")
    rows = []
    for values, one in zip(row_values(features), inputs, strict=True):
        bundle = Bundle.of_inputs(one)
        as_of = pd.Timestamp(values["as_of"])
        rows.append(
            CustomerRow(
                as_of=as_of,
                values=values,
                customer=masked_profile(bundle.profile),
                sources=sources_used(bundle, as_of, specs),
            )
        )
    x_risk = risk.model.layout.matrix(features)
    same = churn.model.layout == risk.model.layout
    x_churn = x_risk if same else churn.model.layout.matrix(features)
    return assess_rows(rows, x_risk, x_churn, risk, churn, specs, rules, products, initiated_by)


def assess_rows(
    rows: Sequence[CustomerRow],
    x_risk: np.ndarray,
    x_churn: np.ndarray,
    risk: Explainer,
    churn: Explainer,
    specs: Specs,
    rules: RuleTable,
    products: Sequence[Product | None],
    initiated_by: Sequence[str | None],
) -> list[CustomerCase]:
    """Both models predicted and explained over their matrices in one call each, then per row
    the mismatch, the decision for its product and the record of what was used."""
    if not (len(rows) == len(x_risk) == len(x_churn) == len(products) == len(initiated_by)):
        raise ValueError("rows, matrices, products and initiators must line up")
    if not isinstance(risk.model, OrdinalLGBM) or not isinstance(churn.model, BinaryLGBM):
        raise TypeError("risk must be an ordinal model and churn a binary one")
    records = [r.values for r in rows]
    risk_answers = _assess_risk(risk.model, records, specs, risk.spec, x_risk)
    churn_answers = _assess_churn(churn.model, records, specs, churn.spec, x_churn)
    names = [*risk.model.feature_names, *churn.model.feature_names]
    cases = []
    for i, row in enumerate(rows):
        risk_answer, churn_answer = risk_answers[i], churn_answers[i]
        product, initiator = products[i], initiated_by[i]
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
                    row.values,
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
                customer=row.customer,
                as_of=row.as_of.isoformat(timespec="seconds"),
                risk=risk_answer,
                churn=churn_answer,
                mismatch=mismatch,
                sources=row.sources,
                models={"risk-level": risk.ref, "churn": churn.ref},
                rule_version=rules.version,
                feature_hash=feature_hash(row.values, names),
                product=product,
                initiated_by=initiator,
                decision=decision,
            )
        )
    return cases
