"""From validated requests to explained answers and their audit records, with the feature code,
models, explanations and rules the CLI and reports use (no feature logic of its own).

Pure apart from the clock: the BentoML service (`serving.service`) parses bodies, checks keys,
appends the audit records and answers; everything it says is computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd

from suitability.data.contracts import ContractError
from suitability.explain.assessment import (
    CustomerCase,
    Explainer,
    ModelRef,
    Product,
    assess_churn,
    assess_customers,
    assess_risk,
    feature_hash,
    masked_profile,
    row_values,
)
from suitability.features.bundle import CustomerBundle as Bundle
from suitability.features.bundle import bundle_inputs, features_of
from suitability.features.kernel import FeatureInputs
from suitability.models.rules import RuleTable, assess_mismatch
from suitability.serving.audit import AuditRecord
from suitability.serving.keys import Caller
from suitability.serving.requests import (
    CustomerBundle,
    InvalidRequest,
    RequestContext,
    RequestProblem,
    SuitabilityRequest,
    local_now,
    vocabularies,
)
from suitability.specs import Specs

Endpoint = Literal["risk_level", "churn", "suitability"]

#: Where each raw table sits in a request body.
_PARTS = {
    "customers": "profile",
    "questionnaire_responses": "answers",
    "events": "events",
    "interview_tags": "tags",
}


@dataclass(frozen=True)
class Answer:
    """One answered request: the response body and the audit record that must be stored
    before the body is sent."""

    body: dict[str, Any]
    record: AuditRecord


@dataclass(frozen=True)
class Prepared:
    """A request turned into its canonical inputs and its feature row."""

    inputs: FeatureInputs
    features: pd.DataFrame


class Scorer:
    """Both registered models, the specs and the rule table, loaded once; answers requests."""

    def __init__(
        self,
        risk: Explainer,
        churn: Explainer,
        specs: Specs,
        rules: RuleTable,
        time_zone: str = "Asia/Shanghai",
    ) -> None:
        self.risk = risk
        self.churn = churn
        self.specs = specs
        self.rules = rules
        self.time_zone = time_zone
        self.vocabulary = vocabularies(specs)

    @property
    def models(self) -> dict[str, ModelRef]:
        return {"risk-level": self.risk.ref, "churn": self.churn.ref}

    def context(self, now: datetime | None = None) -> RequestContext:
        """Validation context for a request arriving now (in the service's time zone)."""
        return RequestContext(self.vocabulary, now or local_now(self.time_zone))

    # --- features ---------------------------------------------------------------------------

    def prepare(
        self, requests: Sequence[CustomerBundle], now: datetime, prefix: str = ""
    ) -> list[Prepared]:
        """Validate each bundle against the data contracts (masking personal data) and build
        its feature row as of `as_of` (default: `now`). Problems of every request are
        reported together, each under its own path."""
        prepared: list[Prepared] = []
        problems: list[RequestProblem] = []
        for i, request in enumerate(requests):
            where = f"{prefix}[{i}]." if prefix else ""
            try:
                prepared.append(self._prepare_one(request, now, where))
            except InvalidRequest as exc:
                problems.extend(exc.problems)
        if problems:
            raise InvalidRequest(problems)
        return prepared

    def _prepare_one(self, request: CustomerBundle, now: datetime, where: str) -> Prepared:
        bundle = Bundle(
            profile=request.profile.model_dump(),
            answers=[a.model_dump() for a in request.answers],
            events=[e.model_dump() for e in request.events],
            tags=[t.model_dump() for t in request.tags],
        )
        try:
            inputs = bundle_inputs(bundle, self.specs)
        except ContractError as exc:
            raise InvalidRequest(_contract_problems(exc, where)) from None
        as_of = pd.Timestamp(request.as_of or now)
        if as_of < inputs.customers["registered_at"].iloc[0]:
            raise InvalidRequest(
                [
                    RequestProblem(
                        field=f"{where}as_of",
                        rule="must not be before profile.registered_at",
                    )
                ]
            )
        return Prepared(inputs=inputs, features=features_of(inputs, as_of, self.specs))

    # --- answers ----------------------------------------------------------------------------

    def risk_level(
        self,
        requests: Sequence[CustomerBundle],
        request_ids: Sequence[str],
        caller: Caller,
        batch: bool = False,
    ) -> list[Answer]:
        """The category with its reasons and, when it differs from the questionnaire's, the
        mismatch with why."""
        now = local_now(self.time_zone)
        prepared = self.prepare(requests, now, "requests" if batch else "")
        frame = _frame(prepared)
        answers = assess_risk(self.risk.model, frame, self.specs, self.risk.spec)
        out = []
        for i, (risk, values) in enumerate(zip(answers, row_values(frame), strict=True)):
            mismatch = assess_mismatch(
                risk.stated_level, risk.predicted_level, risk.probabilities, self.rules
            )
            body = {
                **self._head(request_ids[i], prepared[i], values),
                "risk_level": risk.to_json(),
                "mismatch": mismatch.model_dump(mode="json"),
                "models": [self._model("risk-level")],
                "rule_version": self.rules.version,
                "feature_hash": feature_hash(values, self.risk.model.feature_names),
            }
            out.append(self._answer("/risk_level", body, caller))
        return out

    def churn_risk(
        self,
        requests: Sequence[CustomerBundle],
        request_ids: Sequence[str],
        caller: Caller,
        batch: bool = False,
    ) -> list[Answer]:
        """The churn probability with its reasons."""
        now = local_now(self.time_zone)
        prepared = self.prepare(requests, now, "requests" if batch else "")
        frame = _frame(prepared)
        answers = assess_churn(self.churn.model, frame, self.specs, self.churn.spec)
        out = []
        for i, (churn, values) in enumerate(zip(answers, row_values(frame), strict=True)):
            body = {
                **self._head(request_ids[i], prepared[i], values),
                "churn": churn.to_json(),
                "models": [self._model("churn")],
                "rule_version": self.rules.version,
                "feature_hash": feature_hash(values, self.churn.model.feature_names),
            }
            out.append(self._answer("/churn", body, caller))
        return out

    def suitability(
        self,
        requests: Sequence[SuitabilityRequest],
        request_ids: Sequence[str],
        caller: Caller,
        batch: bool = False,
    ) -> list[Answer]:
        """Both models explained and the suitability decision for the product."""
        now = local_now(self.time_zone)
        prepared = self.prepare(requests, now, "requests" if batch else "")
        frame = _frame(prepared)
        cases = assess_customers(
            frame,
            [p.inputs for p in prepared],
            self.risk,
            self.churn,
            self.specs,
            self.rules,
            [_product(r) for r in requests],
            [r.initiated_by for r in requests],
        )
        return [
            self._answer("/suitability", _case_body(request_ids[i], case, self), caller)
            for i, case in enumerate(cases)
        ]

    # --- helpers ----------------------------------------------------------------------------

    def _model(self, role: str) -> dict[str, Any]:
        return {"model": role, **self.models[role].to_json()}

    def _head(self, request_id: str, prepared: Prepared, values: dict[str, Any]) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "customer": masked_profile(prepared.inputs),
            "as_of": pd.Timestamp(values["as_of"]).isoformat(timespec="seconds"),
        }

    def _answer(self, endpoint: str, body: dict[str, Any], caller: Caller) -> Answer:
        return Answer(body=body, record=_record(endpoint, body, caller))


def _frame(prepared: Sequence[Prepared]) -> pd.DataFrame:
    if len(prepared) == 1:
        return prepared[0].features
    return pd.concat([p.features for p in prepared], ignore_index=True)


def _product(request: SuitabilityRequest) -> Product:
    p = request.product
    return Product(
        product_id=p.product_id,
        risk_level=p.risk_level,
        category=p.category,
        term_days=p.term_days,
    )


def _case_body(request_id: str, case: CustomerCase, scorer: Scorer) -> dict[str, Any]:
    body = case.to_json()
    body["models"] = [scorer._model(role) for role in ("risk-level", "churn")]
    return {"request_id": request_id, **body}


def _contract_problems(error: ContractError, where: str) -> list[RequestProblem]:
    """The data contracts' findings as request paths (`events[3].amount`), without values."""
    problems = []
    for p in error.problems:
        part = _PARTS.get(p.table, p.table)
        path = f"{where}{part}"
        if p.row is not None and part != "profile":
            path += f"[{p.row - 1}]"
        if p.column is not None:
            path += f".{p.column}"
        problems.append(RequestProblem(field=path, rule=p.rule))
    if error.total > len(error.problems):
        problems.append(
            RequestProblem(
                field=f"{where}(bundle)",
                rule=f"… and {error.total - len(error.problems)} more problems",
            )
        )
    return problems


def _record(endpoint: str, body: dict[str, Any], caller: Caller) -> AuditRecord:
    """What the audit log keeps of an answer: who, when, which models and rules, the feature
    hash, the outputs and their reasons; the masked customer id only."""
    outputs: dict[str, Any] = {}
    reasons: dict[str, Any] = {}
    if "risk_level" in body:
        risk = body["risk_level"]
        outputs["risk_level"] = {
            k: risk[k]
            for k in ("stated_level", "predicted_level", "probabilities", "expected_level")
        }
        outputs["mismatch"] = body.get("mismatch")
        reasons["risk_level"] = [r["text"] for r in risk["reasons"]]
        reasons["stated_level"] = [r["text"] for r in risk["stated_reasons"]]
    if "churn" in body:
        outputs["churn"] = {"p_churn": body["churn"]["p_churn"]}
        reasons["churn"] = [r["text"] for r in body["churn"]["reasons"]]
    decision = body.get("decision")
    if decision is not None:
        outputs["decision"] = decision
        outputs["product"] = body.get("product")
        outputs["initiated_by"] = body.get("initiated_by")
    return AuditRecord(
        request_id=body["request_id"],
        time=datetime.now(UTC).isoformat(timespec="microseconds"),
        endpoint=endpoint,
        caller_role=caller.role,
        key_id=caller.key_id,
        customer_id=body["customer"]["customer_id"],
        models=body["models"],
        rule_version=body["rule_version"],
        feature_hash=body["feature_hash"],
        outputs=outputs,
        reasons=reasons,
        decision=decision["decision"] if decision else None,
    )
