"""The monitoring thresholds (`models/monitoring.yaml`) as validated data.

How finely the training reference is binned, when a shift in a feature or in the predictions is
a warning or an alert, which test backs it, and how much worse realised performance may get
than the test metrics logged at training before it alerts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from suitability.models.spec import PRIMARY_METRICS
from suitability.specs import SpecError, Specs, load_spec_file

MONITORING_FILE = "monitoring.yaml"
Probability = Annotated[float, Field(gt=0, lt=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Thresholds(_Spec):
    """A value at or beyond `warn` warns, at or beyond `alert` alerts."""

    warn: float = Field(gt=0)
    alert: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.warn > self.alert:
            raise ValueError(f"warn ({self.warn}) must not be above alert ({self.alert})")
        return self


class FeatureDriftSpec(_Spec):
    """Drift of the model's input features against the training reference.

    `psi` decides; the test (`numeric_test` for numbers, `categorical_test` for categories)
    must also be significant at `significance`, so that the noise of a small sample cannot
    alert. `report_only` features are measured and shown but never alert (a feature that moves
    with the calendar, such as tenure, would otherwise alert every run).
    """

    psi: Thresholds = Thresholds(warn=0.1, alert=0.25)
    numeric_test: Literal["ks", "chi2"] = "ks"
    categorical_test: Literal["chi2"] = "chi2"
    significance: Probability = 0.01
    report_only: list[str] = Field(default_factory=list)


class PredictionDriftSpec(_Spec):
    """Drift of the model's predictions (probability, or level and expected level)."""

    psi: Thresholds = Thresholds(warn=0.1, alert=0.2)
    significance: Probability = 0.01


class PerformanceSpec(_Spec):
    """Realised performance once labels have matured, against the run's `test_<metric>`.

    Thresholds are the worsening, in the metric's own units, at which a metric warns or
    alerts (a drop for ROC AUC or QWK, a rise for log loss). A worsening alerts only when the
    `confidence` interval of the realised value also lies entirely on the worse side of the
    logged one, so a few hundred labels cannot alert by chance (ROC AUC, QWK, log loss, Brier
    score and accuracy have an interval; other metrics are judged on their value alone).
    """

    min_labels: int = Field(default=300, gt=0)
    confidence: Probability = 0.95
    binary: dict[str, Thresholds] = Field(default_factory=dict)
    ordinal: dict[str, Thresholds] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_metrics(self) -> PerformanceSpec:
        for task in ("binary", "ordinal"):
            unknown = sorted(set(getattr(self, task)) - PRIMARY_METRICS[task])
            if unknown:
                raise ValueError(
                    f"{task}: {unknown} are not {task} metrics "
                    f"({', '.join(sorted(PRIMARY_METRICS[task]))})"
                )
        return self


class MonitoringSpec(_Spec):
    """Everything `models/monitoring.yaml` declares."""

    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    bins: int = Field(default=10, ge=2, le=100)
    epsilon: float = Field(default=1e-4, gt=0, lt=0.01)
    min_rows: int = Field(default=500, gt=0)
    features: FeatureDriftSpec = Field(default_factory=FeatureDriftSpec)
    predictions: PredictionDriftSpec = Field(default_factory=PredictionDriftSpec)
    performance: PerformanceSpec = Field(default_factory=PerformanceSpec)

    def check_features(self, specs: Specs, path: Path | str) -> None:
        """Every `report_only` feature must be in the feature catalogue."""
        known = set(specs.feature_names)
        problems = [
            ("features.report_only", f"{name!r} is not in the feature catalogue")
            for name in self.features.report_only
            if name not in known
        ]
        if problems:
            raise SpecError(path, problems)


def monitoring_spec_path(models_dir: Path | str | None = None) -> Path:
    from suitability.settings import get_settings

    root = Path(models_dir) if models_dir is not None else get_settings().models_path
    return root / MONITORING_FILE


def load_monitoring_spec(
    path: Path | str | None = None, *, specs: Specs | None = None
) -> MonitoringSpec:
    """The monitoring thresholds (default: `<models>/monitoring.yaml`), failing with the file,
    key and reason; with `specs`, its feature names are checked against the catalogue."""
    path = Path(path) if path is not None else monitoring_spec_path()
    spec = load_spec_file(MonitoringSpec, path)
    if specs is not None:
        spec.check_features(specs, path)
    return spec
