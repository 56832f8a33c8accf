"""What the service answers, as pydantic models: the OpenAPI document's response schemas
(`serving.openapi`) and what the tests check every live answer against. The engine builds plain
dicts (a model per answer would cost more than the rest of a request's bookkeeping); that the
two agree is proven by tests, not by construction. Every model forbids unknown keys, so a field
the engine starts sending fails the tests until it is documented here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from suitability.models.rules import CLevel, Decision, Initiator, Mismatch, RLevel
from suitability.serving.requests import MAX_BATCH

_CLOSED = ConfigDict(extra="forbid", frozen=True)

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
#: A time as the data keeps it: platform-local, no UTC offset, to the second.
LocalTime = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$",
        description="Platform-local time without a UTC offset (YYYY-MM-DDTHH:MM:SS).",
    ),
]


class Text(BaseModel):
    """One text in both report languages."""

    model_config = _CLOSED

    zh: str
    en: str


class Reason(BaseModel):
    """One principal reason: a feature the model used, which way it pushed and its value."""

    model_config = _CLOSED

    feature: str = Field(description="The feature's code in the feature catalogue.")
    source: Literal["questionnaire", "behaviour", "interview", "profile", "other"]
    direction: Literal["up", "down"]
    contribution: float = Field(
        description="SHAP contribution (log-odds for churn; level score for the risk category)."
    )
    value: float | str | None = Field(description="The feature's value; null when missing.")
    value_text: Text
    description: Text
    text: Text


Reasons = Annotated[list[Reason], Field(max_length=4)]
BySource = Annotated[
    dict[str, float],
    Field(description="Sum of the contributions per source (questionnaire, behaviour, …)."),
]


class RiskLevel(BaseModel):
    """The risk-level model's answer, explained."""

    model_config = _CLOSED

    stated_level: CLevel | None = Field(
        description="The questionnaire's category; null before any questionnaire."
    )
    predicted_level: CLevel
    probabilities: dict[CLevel, Probability]
    expected_level: float = Field(ge=1.0, le=5.0)
    score: float
    base: float
    reasons: Reasons = Field(description="What moved the predicted category, largest first.")
    by_source: BySource
    stated_reasons: Reasons = Field(
        description="Why the prediction is above or below the stated level (empty if equal)."
    )


class Churn(BaseModel):
    """The churn model's answer, explained (contributions before calibration, in log-odds)."""

    model_config = _CLOSED

    p_churn: Probability
    raw: float
    base: float
    reasons: Reasons
    by_source: BySource


class Customer(BaseModel):
    """The customer as answers show them: the id and each personal field sent, masked."""

    model_config = _CLOSED

    customer_id: str
    name: str | None = Field(None, description="Masked: the family name only (林*).")
    phone: str | None = Field(None, description="Masked: first three and last four digits.")
    id_number: str | None = Field(None, description="A keyed hash, never the number.")


class ModelUsed(BaseModel):
    """Which registered model version answered."""

    model_config = _CLOSED

    model: Literal["risk-level", "churn"]
    name: str
    version: int | None
    alias: str | None
    run_id: str | None


class SourceUse(BaseModel):
    """One source of facts behind a decision: how many facts and the latest one's time."""

    model_config = _CLOSED

    source: Literal["questionnaire", "behaviour", "interview", "profile"]
    facts: int = Field(ge=0)
    latest: LocalTime | None
    detail: str


class Product(BaseModel):
    """The product the decision is about, as sent."""

    model_config = _CLOSED

    product_id: str
    risk_level: RLevel
    category: str
    term_days: int | None


class _Answer(BaseModel):
    model_config = _CLOSED

    request_id: str = Field(
        pattern=r"^[0-9a-f]{32}(-\d+)?$",
        description="The id the answer is audited under (`GET /audit/{request_id}`).",
    )
    customer: Customer
    as_of: LocalTime
    rule_version: str
    feature_hash: Hex64 = Field(description="sha256 of the feature vector the models saw.")


class RiskLevelAnswer(_Answer):
    """`/risk_level`: the category with its reasons and the stated-vs-predicted mismatch."""

    risk_level: RiskLevel
    mismatch: Mismatch
    models: Annotated[list[ModelUsed], Field(min_length=1, max_length=1)]


class ChurnAnswer(_Answer):
    """`/churn`: the probability that the customer stops investing, with its reasons."""

    churn: Churn
    models: Annotated[list[ModelUsed], Field(min_length=1, max_length=1)]


class SuitabilityAnswer(_Answer):
    """`/suitability`: both models explained and the decision for the product."""

    risk_level: RiskLevel
    churn: Churn
    mismatch: Mismatch
    sources: list[SourceUse]
    models: Annotated[list[ModelUsed], Field(min_length=2, max_length=2)]
    product: Product
    initiated_by: Initiator
    decision: Decision


def _batch(model: type[BaseModel], name: str) -> type[BaseModel]:
    return create_model(
        name,
        __config__=_CLOSED,
        __doc__="The answers in request order; `results[i]` is audited as `{request_id}-{i}`.",
        request_id=(Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")], ...),
        results=(Annotated[list[model], Field(min_length=1, max_length=MAX_BATCH)], ...),  # type: ignore[valid-type]
    )


RiskLevelBatchAnswer = _batch(RiskLevelAnswer, "RiskLevelBatchAnswer")
ChurnBatchAnswer = _batch(ChurnAnswer, "ChurnBatchAnswer")
SuitabilityBatchAnswer = _batch(SuitabilityAnswer, "SuitabilityBatchAnswer")


class RequestProblem(BaseModel):
    """One problem our checks found: where (a JSON path such as `events[3].amount`) and the
    rule it breaks. The value is never repeated."""

    model_config = _CLOSED

    field: str
    rule: str


class SchemaProblem(BaseModel):
    """One problem the request schema found (pydantic's error, as BentoML passes it on)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    loc: list[str | int]
    msg: str


class ErrorBody(BaseModel):
    """Every refusal: what is wrong, and for a refused body, each problem."""

    model_config = _CLOSED

    error: str
    detail: list[RequestProblem | SchemaProblem] | None = None


class AuditRecord(BaseModel):
    """One served answer as the audit log keeps it (the masked customer id only)."""

    model_config = _CLOSED

    request_id: str
    time: str = Field(description="When it was answered, UTC (ISO 8601 with offset).")
    endpoint: str
    caller_role: str
    key_id: str
    customer_id: str
    models: list[ModelUsed | dict[str, str | int | None]]
    rule_version: str | None
    feature_hash: str | None
    outputs: dict[str, object]
    reasons: dict[str, object] | list[object]
    decision: str | None
