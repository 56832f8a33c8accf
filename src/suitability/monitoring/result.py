"""One monitoring run's outcome: feature drift, prediction drift and realised performance of one
model version at one as-of time, with an overall verdict, a flat dict of metrics for MLflow and
a JSON form for the record."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from suitability.monitoring.drift import ColumnDrift, feature_drift, prediction_drift
from suitability.monitoring.performance import PerformanceCheck
from suitability.monitoring.reference import Reference
from suitability.monitoring.spec import MonitoringSpec
from suitability.monitoring.status import SEVERITY, Status, worst

#: The exit code of `suitability monitor` when any check alerts (for cron and CI).
ALERT_EXIT_CODE = 3
#: Characters MLflow refuses in a metric name.
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


@dataclass(frozen=True)
class MonitoringResult:
    """Everything one monitoring run found, and about what."""

    model: str
    version: str
    as_of: str
    rows: int
    spec: MonitoringSpec
    reference: Reference
    features: tuple[ColumnDrift, ...]
    predictions: tuple[ColumnDrift, ...]
    performance: PerformanceCheck | None = None

    @property
    def verdict(self) -> Status:
        """The most severe status of any check: `alert` when anything alerts."""
        statuses = [c.status for c in (*self.features, *self.predictions)]
        if self.performance is not None:
            statuses += [c.status for c in self.performance.checks]
        return worst(statuses)

    @property
    def alerting(self) -> bool:
        return self.verdict == "alert"

    def drifted_features(self) -> list[ColumnDrift]:
        """Features that warn or alert, the largest PSI first."""
        drifted = [c for c in self.features if c.status in ("warn", "alert")]
        return sorted(drifted, key=lambda c: c.psi, reverse=True)

    def counts(self) -> dict[str, int]:
        """How many features reached each status."""
        return {s: sum(c.status == s for c in self.features) for s in SEVERITY}

    def metrics(self) -> dict[str, float]:
        """A flat dict for `mlflow.log_metrics`: the verdict (statuses as 0 no verdict, 1 ok,
        2 warn, 3 alert), counts, and each column's PSI and status, each metric's realised
        value, worsening and status."""
        out: dict[str, float] = {
            "alert": float(self.alerting),
            "verdict": float(SEVERITY[self.verdict]),
            "rows": float(self.rows),
            # Every count, zeros too, so a chart over runs has no gaps.
            **{
                f"features_{s}": float(n)
                for s, n in self.counts().items()
                if s in ("ok", "warn", "alert", "insufficient")
            },
            "features_psi_max": max((c.psi for c in self.features), default=0.0),
        }
        for prefix, columns in (("feature", self.features), ("prediction", self.predictions)):
            for column in columns:
                out[f"{prefix}_psi.{column.name}"] = column.psi
                out[f"{prefix}_status.{column.name}"] = float(SEVERITY[column.status])
        if self.performance is not None:
            out["performance_rows"] = float(self.performance.rows)
            for check in self.performance.checks:
                out[f"performance.{check.metric}"] = check.realised
                out[f"performance_status.{check.metric}"] = float(SEVERITY[check.status])
                if check.worsening is not None:
                    out[f"performance_worsening.{check.metric}"] = check.worsening
        return {_UNSAFE.sub("_", k): float(v) for k, v in out.items() if np.isfinite(v)}

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "as_of": self.as_of,
            "rows": self.rows,
            "verdict": self.verdict,
            "spec_version": self.spec.version,
            "reference": {"rows": self.reference.rows, "source": dict(self.reference.source)},
            "features": [c.to_json() for c in self.features],
            "predictions": [c.to_json() for c in self.predictions],
            "performance": None if self.performance is None else self.performance.to_json(),
        }


def monitoring_result(
    reference: Reference,
    frame: pd.DataFrame,
    proba: np.ndarray,
    spec: MonitoringSpec,
    *,
    model: str,
    version: str,
    as_of: str,
    performance: PerformanceCheck | None = None,
) -> MonitoringResult:
    """Check a model's current features (`frame`) and its predictions on them (`proba`, from
    `predict_proba`) against its training reference; `performance`, from
    `realised_performance`, when labels have matured."""
    if len(proba) != len(frame):
        raise ValueError(
            f"{len(proba)} predictions for {len(frame)} current rows; give one per row"
        )
    return MonitoringResult(
        model=model,
        version=version,
        as_of=as_of,
        rows=len(frame),
        spec=spec,
        reference=reference,
        features=tuple(feature_drift(reference, frame, spec)),
        predictions=tuple(prediction_drift(reference, proba, spec)),
        performance=performance,
    )
