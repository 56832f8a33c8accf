"""The BentoML service: loads both registered models (by alias, from their checked portable
form), the specs and the rule table once, then answers the matching service. Thin by design:
the guard (`serving.guard`) checks keys, sizes and content types; `serving.engine` computes
every answer with the library's own feature, explanation and rule code; the audit log records
each answer before it is sent.

Configuration comes from the settings (`SUITABILITY_*` environment variables, which
`suitability serve` sets from its flags) and `MLFLOW_TRACKING_URI`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse

from suitability.serving.audit import AuditLog, PostgresAuditLog, masked_url, open_audit
from suitability.serving.engine import Answer, Scorer
from suitability.serving.guard import AUDIT_PREFIX, DEADLINE_KEY, Guard, caller_of
from suitability.serving.keys import WatchedKeys
from suitability.serving.openapi import DocumentedService
from suitability.serving.requests import (
    BatchBundles,
    BatchSuitability,
    CustomerBundle,
    InvalidRequest,
    SuitabilityRequest,
)
from suitability.settings import Settings, get_settings

logger = logging.getLogger("suitability.serving")


class StartupError(ValueError):
    """The service cannot start: a missing model or alias, keys file or audit log."""


def load_scorer(alias: str) -> Scorer:
    """Both models by `alias` from the configured MLflow registry, from their portable form
    (LightGBM text and JSON, sha256-checked; never a pickle), with the specs and rules."""
    from suitability import tracking
    from suitability.models.rules import load_rules
    from suitability.specs import load_specs

    tracking.use_store()
    specs = load_specs()
    try:
        risk = tracking.load_explainer(f"risk-level@{alias}", specs, portable=True)
        churn = tracking.load_explainer(f"churn@{alias}", specs, portable=True)
    except ValueError as error:
        raise StartupError(f"cannot load the models by alias {alias!r}: {error}") from None
    return Scorer(risk, churn, specs, load_rules(), get_settings().time_zone)


def load_keys() -> WatchedKeys:
    """The API keys named by the settings (`--keys` / SUITABILITY_KEYS_FILE), re-read whenever
    the file changes."""
    path = get_settings().keys_file
    if path is None:
        raise StartupError(
            "no API keys file: start with `suitability serve --keys FILE` or set "
            "SUITABILITY_KEYS_FILE (create keys with `suitability keys add`)"
        )
    try:
        return WatchedKeys(path)
    except ValueError as error:
        raise StartupError(str(error)) from None


#: Set by `suitability serve` to its own process id, which `bentoml serve` keeps (exec).
SUPERVISOR_VARIABLE = "SUITABILITY_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


def die_with_supervisor() -> None:
    """Make this worker process receive SIGTERM when the process that started it dies, however
    it dies (SIGKILL included). BentoML starts each worker in a session of its own, so killing
    the supervisor's process group alone would leave workers holding the port and answering
    with keys revoked since. Linux only (prctl); elsewhere, and outside `suitability serve`,
    nothing changes. If the supervisor is already gone, the worker exits at once."""
    supervisor = os.environ.get(SUPERVISOR_VARIABLE)
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != int(supervisor):  # it died before the signal was armed
        logger.error("the supervisor (pid %s) is gone; this worker exits", supervisor)
        os._exit(1)


class ClientMistakes(logging.Filter):
    """BentoML logs every request body its schema refuses at ERROR with a traceback: one
    client's bad requests could fill the disk and drown our own faults. Such a record becomes
    one INFO line naming the route, how many problems, and the first one's field and rule
    (never the value); ERROR stays for our faults."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            first = error.errors(include_url=False, include_context=False, include_input=False)
            where = ".".join(str(part) for part in first[0]["loc"]) if first else "(body)"
            rule = first[0]["msg"] if first else "invalid"
            detail = f"{error.error_count()} schema problem(s), first {where}: {rule}"
        elif isinstance(error, BentoMLException) and int(error.error_code) < 500:
            detail = f"client error {int(error.error_code)}"
        else:
            return True
        record.msg = "%s [%s] refused: %s"
        record.args = (*(record.args or ())[:2], detail)
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info = record.exc_text = None
        return True


logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientMistakes())


def open_audit_log(settings: Settings, *, create: bool = True) -> AuditLog | PostgresAuditLog:
    """The audit log the settings name (PostgreSQL by `audit_url`, else the SQLite file), with
    their retention (checked against the legal minimum)."""
    return open_audit(
        settings.audit_target,
        settings.audit_retention_days,
        create=create,
        minimum_days=settings.audit_min_retention_days,
        override_reason=settings.audit_retention_override,
    )


def _new_id() -> str:
    return uuid.uuid4().hex


class ServiceGuard(Guard):
    """The guard with the configured keys and body limit (read when the server builds its app,
    not at import)."""

    def __init__(self, app: Any) -> None:
        settings = get_settings()
        super().__init__(
            app,
            load_keys(),
            settings.max_body_bytes,
            max_in_flight=settings.max_in_flight,
            timeout_s=settings.request_timeout_s,
            routes=service_routes(),
        )


def service_routes() -> dict[str, frozenset[str]]:
    """The guarded endpoints: each API's route (POST) and the audit records (GET)."""
    routes = {api.route: frozenset({"POST"}) for api in Suitability.apis.values()}
    routes[AUDIT_PREFIX] = frozenset({"GET"})
    return routes


#: How the service runs (also what `benchmarks/floor_service.py` copies). Bound to this machine
#: unless `--host` says otherwise: BentoML's own default is every interface, and the service
#: must not be reachable from the network by accident.
SERVICE_OPTIONS: dict[str, Any] = {
    "workers": get_settings().server_workers,
    # Our own deadline (`request_timeout_s`) decides; BentoML's 504 is only a backstop behind
    # it, so that an answer is never audited after its client was told it timed out.
    "traffic": {"timeout": get_settings().request_timeout_s + 30},
    "http": {"host": "127.0.0.1", "port": 3000},
}


@bentoml.service(name="suitability", service_class=DocumentedService, **SERVICE_OPTIONS)
class Suitability:
    """Risk category, churn risk and product suitability for one customer bundle (or a list),
    each with at most four reasons in zh and en, the model versions and rule version used, a
    hash of the feature vector and a request id under which the answer is audited."""

    def __init__(self) -> None:
        die_with_supervisor()
        settings = get_settings()
        load_keys()  # a bad keys file stops the start-up, not the first request
        self.scorer = load_scorer(settings.model_alias)
        self.audit = open_audit_log(settings)
        purged = self.audit.purge()
        logger.info(
            "loaded %s; audit log %s (%d records past retention purged)",
            ", ".join(f"{r.name} v{r.version}" for r in self.scorer.models.values()),
            masked_url(str(settings.audit_target)),
            purged,
        )

    # --- endpoints ------------------------------------------------------------------------------

    @bentoml.api(route="/risk_level", input_spec=CustomerBundle)
    def risk_level(self, ctx: bentoml.Context, **body: Any) -> dict[str, Any]:
        """Risk category C1–C5 with probabilities, reasons, and the stated-vs-predicted
        mismatch."""
        return self._one(ctx, CustomerBundle, body, self.scorer.risk_level)

    @bentoml.api(route="/churn", input_spec=CustomerBundle)
    def churn(self, ctx: bentoml.Context, **body: Any) -> dict[str, Any]:
        """Probability that the customer stops investing, with reasons."""
        return self._one(ctx, CustomerBundle, body, self.scorer.churn_risk)

    @bentoml.api(route="/suitability", input_spec=SuitabilityRequest)
    def suitability(self, ctx: bentoml.Context, **body: Any) -> dict[str, Any]:
        """Both models and the suitability decision (allow / allow_with_warning / deny /
        reassess) for the product, with the rule version."""
        return self._one(ctx, SuitabilityRequest, body, self.scorer.suitability)

    @bentoml.api(route="/risk_level/batch", input_spec=BatchBundles)
    def risk_level_batch(self, ctx: bentoml.Context, **body: Any) -> dict[str, Any]:
        """`/risk_level` for up to 256 bundles; answers in request order."""
        return self._many(ctx, body, self.scorer.risk_level)

    @bentoml.api(route="/churn/batch", input_spec=BatchBundles)
    def churn_batch(self, ctx: bentoml.Context, **body: Any) -> dict[str, Any]:
        """`/churn` for up to 256 bundles; answers in request order."""
        return self._many(ctx, body, self.scorer.churn_risk)

    @bentoml.api(route="/suitability/batch", input_spec=BatchSuitability)
    def suitability_batch(self, ctx: bentoml.Context, **body: Any) -> dict[str, Any]:
        """`/suitability` for up to 256 customer–product pairs; answers in request order."""
        return self._many(ctx, body, self.scorer.suitability)

    # --- the common path ------------------------------------------------------------------------

    def _answer(
        self,
        ctx: bentoml.Context,
        items: Sequence[BaseModel],
        ids: Sequence[str],
        score: Callable[..., list[Answer]],
        batch: bool,
    ) -> list[Answer] | dict[str, Any]:
        caller = caller_of(ctx.request.scope)
        deadline = ctx.request.scope["state"].get(DEADLINE_KEY)
        if _late(deadline):  # waited too long for a thread: not even started
            return _too_late(ctx)
        try:
            answers = score(items, ids, caller, batch=batch)
        except InvalidRequest as exc:
            # BentoML sets the status from the context for endpoints that take one.
            ctx.response.status_code = exc.status
            return exc.to_json()
        if _late(deadline):  # computed, but too late: neither answered nor audited
            return _too_late(ctx)
        # Durable before the answer leaves: all records of a call, or none (then a 5xx).
        self.audit.append_many([a.record for a in answers])
        return answers

    def _one(
        self,
        ctx: bentoml.Context,
        model: type[BaseModel],
        body: dict[str, Any],
        score: Callable[..., list[Answer]],
    ) -> Any:
        request = model.model_construct(**body)
        out = self._answer(ctx, [request], [_new_id()], score, batch=False)
        return out if isinstance(out, dict) else out[0].body

    def _many(
        self,
        ctx: bentoml.Context,
        body: dict[str, Any],
        score: Callable[..., list[Answer]],
    ) -> Any:
        items = body["requests"]
        batch_id = _new_id()
        ids = [f"{batch_id}-{i}" for i in range(len(items))]
        out = self._answer(ctx, items, ids, score, batch=True)
        if isinstance(out, dict):
            return out
        return {"request_id": batch_id, "results": [a.body for a in out]}

    # --- audit (compliance role) ----------------------------------------------------------------

    async def audit_record(self, request_id: str) -> JSONResponse:
        record = self.audit.get(request_id)
        if record is None:
            return JSONResponse({"error": "no audit record with this request id"}, 404)
        return JSONResponse(record.to_dict())


def _late(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def _too_late(ctx: bentoml.Context) -> dict[str, Any]:
    ctx.response.status_code = 503
    ctx.response.headers["Retry-After"] = "1"
    seconds = get_settings().request_timeout_s
    return {"error": f"not answered within {seconds:g} s; nothing was decided or audited, retry"}


audit_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@audit_app.get(
    "/audit/{request_id}",
    summary="The audit record of one answer (compliance keys only)",
    responses={404: {"description": "No record with this request id"}},
)
async def audit_record(request_id: str) -> JSONResponse:
    service: Suitability = bentoml.get_current_service()
    return await service.audit_record(request_id)


# FastAPI, so BentoML lists the route in its OpenAPI document.
Suitability.mount_asgi_app(audit_app, path="/", name="audit")
Suitability.add_asgi_middleware(ServiceGuard)
