"""BentoML entry point: `bentoml serve service:Suitability` from this folder, or
`suitability serve` from anywhere. The service itself lives in `suitability.serving.service`."""

from suitability.serving.service import Suitability

__all__ = ["Suitability"]
