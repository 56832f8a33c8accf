"""Model specs (`models/*.yaml`) and experiment configs (`experiments/*.yaml`) as validated data.

A spec says what a model learns (target, features, constraints), how (LightGBM parameters, early
stopping, calibration), how its data is split and under which name it is registered. An
experiment config changes a few of those for one run without editing the spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from suitability.specs import C_LEVELS, Label, NonEmpty, Source, SpecError, Specs, load_spec_file

ModelName = Literal["risk-level", "churn"]
MODEL_NAMES: tuple[str, ...] = ("risk-level", "churn")
Share = Annotated[float, Field(gt=0, lt=1)]
ParamValue = int | float | str | bool
#: Metrics a spec may name as primary (the one `promote` compares).
PRIMARY_METRICS = {
    "ordinal": frozenset({"qwk", "accuracy", "macro_f1", "within_one_accuracy", "log_loss", "ece"}),
    "binary": frozenset({"roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "ece"}),
}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FeatureSelection(_Spec):
    """Catalogue features by source, plus or minus named ones."""

    sources: list[Source] = Field(
        default_factory=lambda: ["questionnaire", "behaviour", "interview", "profile"]
    )
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class SplitSpec(_Spec):
    """Out of time and grouped by customer.

    Observation times after the `later_share` quantile form the evaluation period. Customers are
    drawn at random into a validation group and a test group (the rest train): training rows are
    training customers' rows at least `embargo_days` before that period (so no label window
    reaches into it); validation and test rows are their group's rows inside it. No customer is
    in two splits, and nothing a model trains on happens after anything it is evaluated on.
    """

    later_share: Share = 0.35
    validation_customers: Share = 0.2
    test_customers: Share = 0.2
    embargo_days: int = Field(default=0, ge=0)
    seed: int = 7

    @model_validator(mode="after")
    def _room_for_training(self) -> SplitSpec:
        if self.validation_customers + self.test_customers >= 0.9:
            raise ValueError(
                "validation_customers + test_customers must leave at least 10 % of customers to train on"
            )
        return self


class FlatSplitSpec(_Spec):
    """How a user-brought flat table is split: by `--time` column when given (oldest rows
    train, newest test), else stratified at random; ids seen in an earlier split are then
    dropped from the later ones."""

    validation: Share = 0.15
    test: Share = 0.15
    seed: int = 7


class ChurnLabelSpec(_Spec):
    """Who is active at t and what counts as churn after t."""

    active_days: int = Field(default=180, gt=0)
    horizon_days: int = Field(default=90, gt=0)
    invest_event_types: list[str] = Field(default_factory=lambda: ["invest"], min_length=1)


class RetentionSpec(_Spec):
    """What the retention worklist weighs a churn probability by: the amount at stake, a
    feature of the catalogue in CNY (expected loss = p_churn × its value, negatives as 0)."""

    amount_at_stake: Annotated[str, Field(min_length=1)] = "net_holdings"


class ReasonWording(_Spec):
    """How a reason sentence ends, by the direction the feature pushed the prediction."""

    up: Label = Label(zh="推高预测值", en="pushing the prediction up")
    down: Label = Label(zh="拉低预测值", en="pushing the prediction down")


class StatedWording(_Spec):
    """How a reason for a stated-vs-predicted mismatch ends: the feature shows more (`above`)
    or less (`below`) risk appetite than the questionnaire states."""

    above: Label
    below: Label


class DossierText(_Spec):
    """What the model dossier says a model is for and where it must not be relied on."""

    purpose: Label
    intended_use: Label
    limitations: list[Label] = Field(default_factory=list)


class ModelSpec(_Spec):
    name: ModelName
    registered_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    task: Literal["ordinal", "binary"]
    label: str
    classes: list[str] | None = None
    # What the model is and how it is trained, in Chinese and English: the dossier prints it in
    # its language, the registry shows both.
    description: Label | None = None
    features: FeatureSelection = Field(default_factory=FeatureSelection)
    monotone: dict[str, Literal[-1, 1]] = Field(default_factory=dict)
    params: dict[str, ParamValue] = Field(default_factory=dict)
    max_rounds: int = Field(default=5000, gt=0)
    early_stopping_rounds: int = Field(default=100, gt=0)
    # On the validation split. Binary: sigmoid (Platt) or isotonic. Ordinal: cumulative_logit,
    # a monotone ordinal model on the cut scores that keeps every predicted level.
    calibration: Literal["none", "sigmoid", "isotonic", "cumulative_logit"] = "none"
    # After early stopping has chosen the rounds (and the calibrator is fitted on validation),
    # train the boosters again on training + validation rows with those rounds.
    finalize: bool = False
    # Flat-table mode (`train --table`): the models fitted and compared on validation; the
    # better one is registered, the other logged beside it.
    flat_candidates: Annotated[
        list[Literal["lightgbm", "logistic_regression"]], Field(min_length=1, max_length=2)
    ] = Field(default_factory=lambda: ["lightgbm", "logistic_regression"])
    split: SplitSpec = Field(default_factory=SplitSpec)
    flat_split: FlatSplitSpec = Field(default_factory=FlatSplitSpec)
    labels: ChurnLabelSpec | None = None
    retention: RetentionSpec | None = None
    primary_metric: str
    experiment: str | None = None
    reasons: ReasonWording = Field(default_factory=ReasonWording)
    stated_reasons: StatedWording | None = None
    dossier: DossierText | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.task == "ordinal" and (not self.classes or len(self.classes) < 2):
            raise ValueError("an ordinal model needs `classes`, in order, at least two")
        if self.name == "churn" and self.labels is None:
            raise ValueError("the churn model needs `labels` (active_days, horizon_days, ...)")
        if self.retention is not None and self.task != "binary":
            raise ValueError("`retention` belongs to the churn model (a binary model)")
        if self.labels is not None and self.split.embargo_days < self.labels.horizon_days:
            raise ValueError(
                f"split.embargo_days ({self.split.embargo_days}) must be at least "
                f"labels.horizon_days ({self.labels.horizon_days}): otherwise training labels "
                "look into the evaluation period"
            )
        if self.name == "risk-level" and self.classes and list(self.classes) != list(C_LEVELS):
            raise ValueError(f"risk-level classes must be {list(C_LEVELS)}")
        allowed = {
            "ordinal": ("none", "cumulative_logit"),
            "binary": ("none", "sigmoid", "isotonic"),
        }
        if self.calibration not in allowed[self.task]:
            raise ValueError(
                f"calibration {self.calibration!r} does not apply to {self.task} models; use "
                f"{' or '.join(allowed[self.task])}"
            )
        if len(set(self.flat_candidates)) != len(self.flat_candidates):
            raise ValueError(f"flat_candidates lists a model twice: {self.flat_candidates}")
        known = PRIMARY_METRICS[self.task]
        if self.primary_metric not in known:
            raise ValueError(
                f"primary_metric {self.primary_metric!r} is not a {self.task} metric ({', '.join(sorted(known))})"
            )
        forbidden = {
            # set by the trainer (LightGBM also accepts these aliases, so they are refused too)
            "objective",
            "objective_type",
            "app",
            "application",
            "loss",
            "num_class",
            "num_classes",
            "monotone_constraints",
            "monotone_constraint",
            "mc",
            "monotone_constraints_method",
            "num_iterations",
            "num_iteration",
            "n_iter",
            "num_tree",
            "num_trees",
            "num_round",
            "num_rounds",
            "nrounds",
            "num_boost_round",
            "n_estimators",
            "max_iter",
            "early_stopping_round",
            "early_stopping_rounds",
            "early_stopping",
            "n_iter_no_change",
            "metric",
            "metrics",
            "metric_types",
        }
        if clash := forbidden.intersection(self.params):
            raise ValueError(
                f"params: {sorted(clash)} are set by the trainer (use `monotone`, `max_rounds`)"
            )
        return self

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment runs go to."""
        return self.experiment or f"suitability-{self.name}"

    def feature_names(self, specs: Specs) -> list[str]:
        """The catalogue features this model uses, in catalogue order."""
        chosen = {f.name for f in specs.features if f.source in self.features.sources}
        chosen |= set(self.features.include)
        chosen -= set(self.features.exclude)
        return [n for n in specs.feature_names if n in chosen]

    def check_features(self, specs: Specs, path: Path | str) -> None:
        """Every feature the spec names must be in the catalogue; monotone ones must be used."""
        known = set(specs.feature_names)
        problems = [
            (f"features.{key}", f"{name!r} is not in the feature catalogue")
            for key in ("include", "exclude")
            for name in getattr(self.features, key)
            if name not in known
        ]
        used = set(self.feature_names(specs))
        problems += [
            ("monotone", f"{name!r} is not one of this model's features")
            for name in self.monotone
            if name not in used
        ]
        if not used:
            problems.append(("features", "selects no features"))
        if self.retention is not None:
            amount = specs.features_by_name.get(self.retention.amount_at_stake)
            if amount is None or amount.unit != "amount":
                problems.append(
                    (
                        "retention.amount_at_stake",
                        f"{self.retention.amount_at_stake!r} is not an amount (CNY) feature of "
                        "the catalogue",
                    )
                )
        if problems:
            raise SpecError(path, problems)


class ExperimentConfig(_Spec):
    """One experiment: which model, which MLflow experiment, and what to change in its spec."""

    model: ModelName
    experiment: str | None = None
    # Replaces the spec's description: {zh, en}, or one text a quick experiment shows in both.
    description: Label | NonEmpty | None = None
    params: dict[str, ParamValue] = Field(default_factory=dict)
    features: FeatureSelection | None = None
    monotone: dict[str, Literal[-1, 1]] | None = None
    max_rounds: int | None = Field(default=None, gt=0)
    early_stopping_rounds: int | None = Field(default=None, gt=0)
    calibration: Literal["none", "sigmoid", "isotonic", "cumulative_logit"] | None = None
    finalize: bool | None = None
    flat_candidates: (
        Annotated[
            list[Literal["lightgbm", "logistic_regression"]], Field(min_length=1, max_length=2)
        ]
        | None
    ) = None
    split: SplitSpec | None = None
    flat_split: FlatSplitSpec | None = None
    labels: ChurnLabelSpec | None = None

    def apply(self, spec: ModelSpec) -> ModelSpec:
        """The spec with this experiment's changes (params are merged key by key)."""
        data = spec.model_dump()
        data["params"] = {**spec.params, **self.params}
        for key in (
            "experiment",
            "features",
            "monotone",
            "max_rounds",
            "early_stopping_rounds",
            "calibration",
            "finalize",
            "flat_candidates",
        ):
            value = getattr(self, key)
            if value is not None:
                data[key] = value.model_dump() if isinstance(value, BaseModel) else value
        # Nested settings merge key by key: `split: {seed: 3}` changes the seed and keeps the
        # spec's embargo, rather than resetting everything else to defaults.
        for key in ("split", "flat_split", "labels"):
            value = getattr(self, key)
            if value is not None:
                data[key] = {**(data.get(key) or {}), **value.model_dump(exclude_unset=True)}
        if isinstance(self.description, Label):
            data["description"] = self.description.model_dump()
        elif self.description is not None:
            data["description"] = {"zh": self.description, "en": self.description}
        return ModelSpec.model_validate(data, strict=False)


def model_spec_path(name: str, models_dir: Path | str | None = None) -> Path:
    from suitability.settings import get_settings

    root = Path(models_dir) if models_dir is not None else get_settings().models_path
    return root / f"{name.replace('-', '_')}.yaml"


def load_model_spec(
    name: str,
    specs: Specs,
    *,
    experiment: Path | str | None = None,
    models_dir: Path | str | None = None,
) -> ModelSpec:
    """The spec of model `name` from `models/`, with an experiment config applied, checked
    against the feature catalogue."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}: use one of {', '.join(MODEL_NAMES)}")
    path = model_spec_path(name, models_dir)
    spec = load_spec_file(ModelSpec, path)
    if spec.name != name:
        raise SpecError(path, [("name", f"is {spec.name!r} but the file is for {name!r}")])
    if experiment is not None:
        config = load_spec_file(ExperimentConfig, experiment)
        if config.model != name:
            raise SpecError(
                experiment, [("model", f"is {config.model!r}; this command trains {name!r}")]
            )
        try:
            spec = config.apply(spec)
        except ValidationError as exc:
            problems = [
                (".".join(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, "))
                for e in exc.errors()
            ]
            raise SpecError(experiment, problems) from None
        path = experiment
    spec.check_features(specs, path)
    return spec
