"""The latency floor of `/suitability` over HTTP, for `bench_serve.py`: a BentoML service set up
as `serving/service.py` is (as many workers, the same guard checking the bearer key, body size and
content type, the same strict request model parsing the body) whose `/suitability` computes
nothing and returns a real answer recorded beforehand (the JSON file named by
`BENCH_FLOOR_ANSWER`). Whatever `/suitability` does on top of this costs time this service
does not spend.

    SUITABILITY_KEYS_FILE=keys.json BENCH_FLOOR_ANSWER=answer.json \
        bentoml serve floor_service:Floor --working-dir benchmarks --port 3001
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import bentoml

from suitability.serving.requests import SuitabilityRequest
from suitability.serving.service import SERVICE_OPTIONS, ServiceGuard


@bentoml.service(name="suitability-floor", **SERVICE_OPTIONS)
class Floor:
    """`/suitability` with everything between the parsed request and the answer left out."""

    def __init__(self) -> None:
        self.answer = json.loads(Path(os.environ["BENCH_FLOOR_ANSWER"]).read_text("utf-8"))

    @bentoml.api(route="/suitability", input_spec=SuitabilityRequest)
    def suitability(self, ctx: bentoml.Context, **body: Any) -> dict[str, Any]:
        """The recorded answer, whatever the (valid) request."""
        SuitabilityRequest.model_construct(**body)  # as the real endpoint does
        return self.answer


Floor.add_asgi_middleware(ServiceGuard)
