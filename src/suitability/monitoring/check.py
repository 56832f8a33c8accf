"""One monitoring check of a registered model, as `suitability monitor` runs it: the model and its
training reference from the MLflow store, its population and matured labels from raw tables as of
a date, drift and realised performance against the thresholds."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from suitability.data import io
from suitability.monitoring.performance import realised_performance
from suitability.monitoring.result import MonitoringResult, monitoring_result
from suitability.monitoring.rows import monitoring_rows
from suitability.monitoring.spec import MonitoringSpec
from suitability.specs import Specs


def check_model(
    ref: str, data: io.DataDir, as_of: pd.Timestamp, spec: MonitoringSpec, specs: Specs
) -> tuple[MonitoringResult, str]:
    """Monitor the registered model `ref` (`NAME[@alias|@version]`, in the current MLflow store)
    on the raw tables in `data` as of `as_of`; returns the result and the model's run id."""
    from suitability import tracking
    from suitability.models.spec import MODEL_NAMES, load_model_spec
    from suitability.models.train import label_codes

    monitored = tracking.load_monitored_model(ref)
    loaded, reference = monitored.loaded, monitored.reference
    if loaded.spec_name not in MODEL_NAMES:
        raise ValueError(
            f"{loaded.ref.name} was trained on a user's table: monitor reads raw tables, "
            "so it checks the risk-level and churn models only"
        )
    model_spec = load_model_spec(loaded.spec_name, specs)
    with tempfile.TemporaryDirectory(prefix="suitability-monitor-") as scratch:
        rows = monitoring_rows(
            model_spec, data, as_of, monitored.trained_until, specs, Path(scratch)
        )
    estimator = loaded.model
    performance = None
    if len(rows.matured):
        performance = realised_performance(
            label_codes(rows.matured[rows.label], reference.classes, rows.label),
            estimator.predict_proba(rows.matured),
            task=reference.task,
            classes=reference.classes,
            logged=monitored.logged,
            spec=spec,
        )
    result = monitoring_result(
        reference,
        rows.current,
        estimator.predict_proba(rows.current),
        spec,
        model=loaded.ref.name,
        version=str(loaded.ref.version),
        as_of=str(as_of.date()) if as_of == as_of.normalize() else as_of.isoformat(),
        performance=performance,
    )
    return result, loaded.ref.run_id or ""
