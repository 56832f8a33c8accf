"""From parsed requests to explained answers and their audit records, through the per-request
path (`features.online`: contract checks, masking, features and matrices on the request's typed
values) and the explanation and rule code the CLI and reports use.

Pure apart from the clock: the BentoML service (`serving.service`) parses bodies, checks keys,
appends the audit records and answers; everything it says is computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from suitability.data.contracts import ContractError
from suitability.explain.assessment import (
    CustomerCase,
    CustomerRow,
    Explainer,
    Matrices,
    ModelRef,
    Product,
    _assess_churn,
    _assess_risk,
    assess_rows,
    customer_rows,
    feature_hash,
)
from suitability.features.online import PARTS, Bundle, check_bundle, plan_of
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
    value_problems,
    vocabularies,
)
from suitability.specs import Specs

Endpoint = Literal["risk_level", "churn", "suitability"]


@dataclass(frozen=True)
class Answer:
    """One answered request: the response body and the audit record that must be stored
    before the body is sent."""

    body: dict[str, Any]
    record: AuditRecord


@dataclass(frozen=True)
class Prepared:
    """Requests turned into their rows (features by name, masked customer, facts used) and
    both models' matrices."""

    rows: list[CustomerRow]
    x_risk: np.ndarray
    x_churn: np.ndarray


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
        plan_of(specs)  # the per-request path's lookups, worked out before the first request
        self.matrices = Matrices(risk, churn, specs)

    @property
    def models(self) -> dict[str, ModelRef]:
        return {"risk-level": self.risk.ref, "churn": self.churn.ref}

    def context(self, now: datetime | None = None) -> RequestContext:
        """Validation context for a request arriving now (in the service's time zone)."""
        return RequestContext(self.vocabulary, now or local_now(self.time_zone))

    # --- features ---------------------------------------------------------------------------

    def prepare(
        self, requests: Sequence[CustomerBundle], now: datetime, prefix: str = ""
    ) -> Prepared:
        """Check each bundle (`check_requests`), mask its personal data and build its features
        and both models' matrices as of `as_of` (default: `now`)."""
        bundles = check_requests(requests, self.context(now), self.specs, prefix)
        as_ofs = [r.as_of or now for r in requests]
        rows, vectors = customer_rows(bundles, as_ofs, self.specs)
        x_risk, x_churn = self.matrices.of(vectors)
        return Prepared(rows, x_risk, x_churn)

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
        prepared = self.prepare(requests, local_now(self.time_zone), "requests" if batch else "")
        records = [r.values for r in prepared.rows]
        answers = _assess_risk(
            self.risk.model, records, self.specs, self.risk.spec, prepared.x_risk
        )
        out = []
        for i, (risk, values) in enumerate(zip(answers, records, strict=True)):
            mismatch = assess_mismatch(
                risk.stated_level, risk.predicted_level, risk.probabilities, self.rules
            )
            body = {
                **self._head(request_ids[i], prepared.rows[i]),
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
        prepared = self.prepare(requests, local_now(self.time_zone), "requests" if batch else "")
        records = [r.values for r in prepared.rows]
        answers = _assess_churn(
            self.churn.model, records, self.specs, self.churn.spec, prepared.x_churn
        )
        out = []
        for i, (churn, values) in enumerate(zip(answers, records, strict=True)):
            body = {
                **self._head(request_ids[i], prepared.rows[i]),
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
        prepared = self.prepare(requests, local_now(self.time_zone), "requests" if batch else "")
        cases = assess_rows(
            prepared.rows,
            prepared.x_risk,
            prepared.x_churn,
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

    def _head(self, request_id: str, row: CustomerRow) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "customer": row.customer,
            "as_of": row.as_of.isoformat(timespec="seconds"),
        }

    def _answer(self, endpoint: str, body: dict[str, Any], caller: Caller) -> Answer:
        return Answer(body=body, record=_record(endpoint, body, caller))


def check_requests(
    requests: Sequence[CustomerBundle], context: RequestContext, specs: Specs, prefix: str = ""
) -> list[Bundle]:
    """Each parsed request's typed values as a bundle, checked against the data contracts:
    vocabularies and arrival time first, then the rules across records (`check_bundle`) and
    an as-of time not before registration. Problems of every request are reported together,
    each under its own path (`requests[3].events[0].amount` with a `prefix`); a request that
    breaks a vocabulary or time rule is not checked further, as none is when one does."""
    wheres = [f"{prefix}[{i}]." if prefix else "" for i in range(len(requests))]
    bundles = [Bundle.of_request(r) for r in requests]
    problems = [
        p
        for request, bundle, where in zip(requests, bundles, wheres, strict=True)
        for p in value_problems(request, bundle, context, where)
    ]
    if problems:
        raise InvalidRequest(problems)
    for request, bundle, where in zip(requests, bundles, wheres, strict=True):
        log = check_bundle(bundle, specs)
        if log:
            problems += _contract_problems(log.error(), where)
        elif (request.as_of or context.now) < bundle.profile["registered_at"]:
            rule = "must not be before profile.registered_at"
            problems.append(RequestProblem(field=f"{where}as_of", rule=rule))
    if problems:
        raise InvalidRequest(problems)
    return bundles


def _product(request: SuitabilityRequest) -> Product:
    p = request.product
    return Product(
        product_id=p.product_id,
        risk_level=p.risk_level,
        category=p.category or "",
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
        part = PARTS.get(p.table, p.table)
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
