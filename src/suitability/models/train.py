"""Train a model from a spec and evaluate it beside its baselines and, on synthetic data, the
best possible predictions (the generator's true probabilities). Pure: no files, no tracking."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from suitability.models import metrics as m
from suitability.models.estimators import (
    BinaryLGBM,
    FeatureLayout,
    LogisticBaseline,
    OrdinalLGBM,
    Progress,
    QuestionnaireBandBaseline,
    RecencyBaseline,
    layout_for,
    median_level,
)
from suitability.models.flat import FlatPreprocessor, FlatTable, assign_ids_to_splits
from suitability.models.linear import LinearModel
from suitability.models.spec import ModelSpec
from suitability.models.split import Split, split_flat, split_out_of_time
from suitability.models.training_table import ID_COLUMN, TIME_COLUMN, TRUTH_PREFIX
from suitability.specs import Specs

Mode = Literal["data", "features", "table"]
FittedModel = OrdinalLGBM | BinaryLGBM | LinearModel
#: What `model_kind` records: the LightGBM models, or flat-table mode's linear candidate.
LIGHTGBM = "lightgbm"
BEST_POSSIBLE = "best_possible"
#: Training rows the baselines see when the model trains on a cluster (a seeded sample).
BASELINE_ROWS = 500_000


@dataclass
class TrainingResult:
    """Everything a run produced, for tracking to log and the CLI to print."""

    spec: ModelSpec
    mode: Mode
    model: FittedModel
    table: pd.DataFrame  # the whole training table (ids, time, features, label, truth_*)
    id_column: str
    time_column: str | None
    label_column: str
    classes: list[str]
    y: np.ndarray  # label codes for every row of `table`
    split: Split
    feature_info: pd.DataFrame  # name, source, unit, zh, en, categorical, monotone
    metrics: dict[str, dict[str, float]]  # "validation" and "test" metrics of the model
    baselines: dict[str, dict[str, float]]  # baseline name -> test metrics
    best: dict[str, float] | None  # test metrics of the true probabilities (synthetic data)
    ratios: dict[str, float] | None  # model / best, per test metric
    test_predictions: dict[str, np.ndarray]  # model, baselines, best: probabilities on test
    params: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    # Ordinal calibration: its fitted numbers and the test metrics before and after.
    calibration: dict[str, Any] | None = None
    # Finalised models: the test metrics of the early-stopped model before its refit.
    early_stopped_test: dict[str, float] | None = None
    # Flat-table mode: every candidate (kind, chosen, validation and test metrics, detail), the
    # chosen one first; and the candidate not chosen, logged beside the model.
    candidates: list[dict[str, Any]] = field(default_factory=list)
    runner_up: FittedModel | None = None
    # Flat-table mode: how raw rows of the user's table become `model`'s features.
    preprocessor: FlatPreprocessor | None = None
    raw_example: pd.DataFrame | None = None

    @property
    def primary(self) -> tuple[str, float]:
        name = self.spec.primary_metric
        return name, self.metrics["test"][name]

    def rows(self, split: str) -> pd.DataFrame:
        return self.table.iloc[self.split.rows(split)]


def evaluate_predictions(
    predictions: pd.DataFrame | np.ndarray, y: np.ndarray, task: str, classes: list[str]
) -> dict[str, float]:
    """Metrics of predicted probabilities (a model's `predict_frame` output or an array) against
    label codes; ordinal predictions are scored at their median level."""
    if task == "ordinal":
        if isinstance(predictions, pd.DataFrame):
            proba = predictions[[f"p_{c}" for c in classes]].to_numpy(np.float64)
        else:
            proba = np.asarray(predictions, dtype=np.float64)
        return m.ordinal_metrics(y, proba, median_level(proba), classes)
    p = (
        predictions.iloc[:, 0].to_numpy(np.float64)
        if isinstance(predictions, pd.DataFrame)
        else np.asarray(predictions, dtype=np.float64)
    )
    return m.binary_metrics(y, p)


def label_codes(values: pd.Series, classes: list[str], column: str) -> np.ndarray:
    """Label codes into `classes`; a 0/1 (or boolean) column when the classes are `0`, `1`."""
    if values.isna().any():
        raise ValueError(f"label column {column!r} is missing in {int(values.isna().sum())} rows")
    if classes == ["0", "1"] and (
        pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values)
    ):
        numbers = values.astype("float64")
        if not numbers.isin([0.0, 1.0]).all():
            bad = sorted(set(numbers[~numbers.isin([0.0, 1.0])]))[:10]
            raise ValueError(f"label column {column!r} has values other than 0 and 1: {bad}")
        return numbers.to_numpy().astype(np.int64)
    codes = pd.Categorical(values.astype(str), categories=classes).codes.astype(np.int64)
    if (codes < 0).any():
        bad = sorted(set(values[codes < 0].astype(str)))[:10]
        raise ValueError(f"label column {column!r} has values outside {classes}: {bad}")
    return codes


def feature_info(spec: ModelSpec, specs: Specs) -> pd.DataFrame:
    """The model's features with their catalogue descriptions (logged beside each run)."""
    rows = []
    by_name = specs.features_by_name
    for name in spec.feature_names(specs):
        f = by_name[name]
        rows.append(
            {
                "name": name,
                "source": f.source,
                "unit": f.unit,
                "zh": f.zh,
                "en": f.en,
                "categorical": f.is_categorical,
                "monotone": spec.monotone.get(name, 0),
            }
        )
    return pd.DataFrame(rows)


def train_on_features(
    table: pd.DataFrame,
    spec: ModelSpec,
    specs: Specs,
    *,
    mode: Mode = "features",
    progress: Progress | None = None,
    cluster: object | None = None,
) -> TrainingResult:
    """Train on a built-in training table (`customer_id`, `as_of`, catalogue features, the
    spec's label, optional `truth_*`), split out of time and by customer. `cluster`: a
    `distributed.Client` whose workers train the boosters (`lightgbm.dask`)."""
    info = feature_info(spec, specs)
    names = list(info["name"])
    needed = [ID_COLUMN, TIME_COLUMN, spec.label, *names]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        raise ValueError(
            f"the feature table lacks {len(missing)} column(s) {spec.name} needs: {shown} "
            f"(build it with `suitability features training-table {spec.name}`)"
        )
    table = table.reset_index(drop=True)
    if table[spec.label].isna().any():
        raise ValueError(
            f"label column {spec.label!r} is missing in {int(table[spec.label].isna().sum())} rows"
        )
    classes = list(spec.classes) if spec.task == "ordinal" else ["0", "1"]
    y = label_codes(table[spec.label], classes, spec.label)
    split = split_out_of_time(table[ID_COLUMN], table[TIME_COLUMN], spec.split)
    layout = FeatureLayout(
        tuple(names),
        {
            n: tuple(str(c) for c in specs.categories_of(n))
            for n in names
            if specs.features_by_name[n].is_categorical
        },
    )
    truth = _truth(table, spec, classes)
    return _fit_and_evaluate(
        table,
        y,
        classes,
        split,
        layout,
        info,
        spec,
        truth,
        mode,
        ID_COLUMN,
        TIME_COLUMN,
        progress,
        cluster,
    )


def train_on_flat_table(
    flat: FlatTable,
    spec: ModelSpec,
    *,
    id_column: str,
    progress: Progress | None = None,
    cluster: object | None = None,
) -> TrainingResult:
    """Train on a user's prepared flat table: split by time or stratified at random, ids seen
    in an earlier split dropped (with a warning) from later ones, no monotone constraints (the
    directions of unknown columns are not certain)."""
    warnings = list(flat.warnings)
    assignment, info = split_flat(flat.target, flat.ids, flat.times, spec.flat_split)
    # A safeguard: the split keeps each id in one split already, so this drops nothing unless
    # that ever breaks.
    assignment, crossed, dropped = assign_ids_to_splits(flat.ids, assignment)
    if crossed:
        warnings.append(
            f"{crossed:,} id(s) appear in more than one split; dropped their {dropped:,} row(s) "
            "from the later split(s), so no customer seen in training is scored in evaluation"
        )
    info.update(duplicate_ids_across_splits=crossed, dropped_rows=dropped)
    split = Split(assignment, info)
    for name in ("train", "validation", "test"):
        rows = split.rows(name)
        info[f"{name}_rows"] = len(rows)
        if len(rows) == 0 or len(np.unique(flat.target[rows])) < 2:
            raise ValueError(
                f"the {name} split has {len(rows)} rows and too few classes to "
                f"{'train' if name == 'train' else 'evaluate'}; the table needs more rows of each class"
            )
    names = list(flat.features.columns)
    table = flat.features.copy()
    time_column = None
    table.insert(0, id_column, flat.ids.to_numpy())
    if flat.times is not None:
        time_column = str(flat.times.name or "time")
        table.insert(1, time_column, flat.times.to_numpy())
    label = spec.label
    table[label] = np.asarray(flat.classes, dtype=object)[flat.target]
    layout = layout_for(flat.features, names)
    info_frame = pd.DataFrame(
        {
            "name": names,
            "source": "table",
            "unit": ["category" if n in layout.categories else "number" for n in names],
            "zh": names,
            "en": names,
            "categorical": [n in layout.categories for n in names],
            "monotone": 0,
        }
    )
    # A user's table is not what serving scores: its models register under their own name, so
    # they can never become the champion the matching service loads.
    flat_spec = spec.model_copy(
        update={"monotone": {}, "registered_name": f"{spec.registered_name}-table"}
    )
    result = _fit_and_evaluate(
        table,
        flat.target,
        list(flat.classes),
        split,
        layout,
        info_frame,
        flat_spec,
        None,
        "table",
        id_column,
        time_column,
        progress,
        cluster,
        compare=True,
    )
    result.warnings = warnings + result.warnings
    result.params["flat.dropped_columns"] = len(flat.dropped)
    result.preprocessor, result.raw_example = flat.preprocessor, flat.raw_example
    return result


def _truth(table: pd.DataFrame, spec: ModelSpec, classes: list[str]) -> np.ndarray | None:
    """The generator's true probabilities, when the table carries them for every row."""
    if spec.task == "ordinal":
        columns = [f"{TRUTH_PREFIX}p_{c}" for c in classes]
    else:
        columns = [f"{TRUTH_PREFIX}p_{spec.name}"]
    if not all(c in table.columns for c in columns) or table[columns].isna().any().any():
        return None
    values = table[columns].to_numpy(np.float64)
    return values if spec.task == "ordinal" else values[:, 0]


def _fit_and_evaluate(
    table: pd.DataFrame,
    y: np.ndarray,
    classes: list[str],
    split: Split,
    layout: FeatureLayout,
    info: pd.DataFrame,
    spec: ModelSpec,
    truth: np.ndarray | None,
    mode: Mode,
    id_column: str,
    time_column: str | None,
    progress: Progress | None,
    cluster: object | None = None,
    *,
    compare: bool = False,
) -> TrainingResult:
    """Fit the spec's LightGBM model (and, with `compare`, the spec's `flat_candidates`, keeping
    the best on validation), finalise it when the spec says so, and evaluate it and the
    baselines."""
    seconds: dict[str, float] = {}
    train, valid, test = (split.rows(s) for s in ("train", "validation", "test"))
    # Only the columns the model and the baselines read are copied into the splits (one copy
    # of those rows and columns, not of the whole table).
    read = [*layout.names, *(c for c in ("q_level", "days_since_invest") if c in table.columns)]
    columns = [table.columns.get_loc(c) for c in dict.fromkeys(read)]
    x_train, x_valid, x_test = (table.iloc[rows, columns] for rows in (train, valid, test))
    kinds = list(spec.flat_candidates) if compare else [LIGHTGBM]
    fitted: list[tuple[FittedModel, dict[str, Any]]] = []
    began = time.perf_counter()
    workers = 0
    if cluster is not None and LIGHTGBM in kinds:
        from suitability.cluster import check_workers

        workers = check_workers(cluster)
    for kind in kinds:
        model = _candidate(kind, layout, classes, spec)
        model.fit(x_train, y[train], x_valid, y[valid], progress=progress, cluster=cluster)
        # Validation metrics are the early-stopped model's: the rows it was stopped on (or
        # its regularisation chosen on) but not trained on; a finalised model has seen them.
        validation = evaluate_predictions(
            model.predict_proba(x_valid), y[valid], spec.task, classes
        )
        detail = (
            f"C={model.C:g}"
            if isinstance(model, LinearModel)
            else ",".join(str(i) for i in model.best_iterations) + " rounds"
        )
        fitted.append((model, {"kind": kind, "validation": validation, "detail": detail}))
    seconds["fit"] = time.perf_counter() - began
    # The better on validation by the spec's primary metric, then log loss; ties keep the
    # order of `flat_candidates` (the sort is stable, reversed or not).
    fitted.sort(key=lambda pair: _rank(pair[1]["validation"], spec.primary_metric), reverse=True)
    model, chosen = fitted[0]
    runner_up = fitted[1][0] if len(fitted) > 1 else None
    compared = [{**entry, "chosen": i == 0} for i, (_, entry) in enumerate(fitted)]
    if not compare:
        compared = []
    scores = {"validation": chosen["validation"]}
    early_stopped: dict[str, float] | None = None
    if spec.finalize:
        early_stopped = evaluate_predictions(
            model.predict_proba(x_test), y[test], spec.task, classes
        )
        began = time.perf_counter()
        model.refit([x_train, x_valid], [y[train], y[valid]], cluster=cluster)
        seconds["finalize"] = time.perf_counter() - began

    began = time.perf_counter()
    predictions = {"model": model.predict_proba(x_test)}
    scores["test"] = evaluate_predictions(predictions["model"], y[test], spec.task, classes)
    for entry, candidate in zip(compared, (model, runner_up), strict=False):
        entry["test"] = (
            scores["test"]
            if candidate is model
            else evaluate_predictions(candidate.predict_proba(x_test), y[test], spec.task, classes)
        )
    calibration: dict[str, Any] | None = None
    if isinstance(model, OrdinalLGBM) and model.calibrator is not None:
        # The same model before its calibration, for the record and the dossier.
        before = model.predict_proba(x_test, calibrated=False)
        calibration = {
            "method": model.calibration,
            **{
                name: [float(v) for v in values]
                for name, values in zip(
                    ("slopes", "weights", "thresholds"), model.calibrator, strict=True
                )
            },
            "test_before": evaluate_predictions(before, y[test], spec.task, classes),
            "test_after": scores["test"],
        }
    seconds["evaluate"] = time.perf_counter() - began

    began = time.perf_counter()
    baselines: dict[str, dict[str, float]] = {}
    k = len(classes)
    candidates: dict[str, Any] = {
        "logistic_regression": LogisticBaseline(layout, k, spec.split.seed)
    }
    if spec.task == "ordinal" and "q_level" in table.columns and mode != "table":
        candidates["questionnaire_band"] = QuestionnaireBandBaseline(k)
    if spec.task == "binary" and "days_since_invest" in table.columns and mode != "table":
        candidates["recency"] = RecencyBaseline()
    # The baselines learn from the rows the model finally learnt from (training, and
    # validation when finalised). On a cluster they are fitted here, on at most BASELINE_ROWS
    # of those rows (a seeded sample): they need the rows in one process.
    x_fit, y_fit = x_train, y[train]  # (no copy unless sampled or finalised)
    if spec.finalize:
        x_fit, y_fit = pd.concat([x_train, x_valid]), np.concatenate([y[train], y[valid]])
    if cluster is not None and len(y_fit) > BASELINE_ROWS:
        rng = np.random.default_rng(spec.split.seed)
        fit_rows = np.sort(rng.choice(len(y_fit), BASELINE_ROWS, replace=False))
        x_fit, y_fit = x_fit.iloc[fit_rows], y_fit[fit_rows]
    for name, baseline in candidates.items():
        baseline.fit(x_fit, y_fit)
        p = baseline.predict_proba(x_test)
        predictions[name] = p
        if isinstance(baseline, QuestionnaireBandBaseline):
            # The status quo commits to the band itself, not to its reviewers' median.
            baselines[name] = m.ordinal_metrics(y[test], p, baseline.predict_level(x_test), classes)
        else:
            baselines[name] = evaluate_predictions(p, y[test], spec.task, classes)
    seconds["baselines"] = time.perf_counter() - began

    best = ratios = None
    if truth is not None:
        predictions[BEST_POSSIBLE] = truth[test]
        best = evaluate_predictions(truth[test], y[test], spec.task, classes)
        ratios = m.ratios(scores["test"], best)

    params: dict[str, Any] = {
        "task": spec.task,
        "registered_name": spec.registered_name,
        "primary_metric": spec.primary_metric,
        "max_rounds": spec.max_rounds,
        "early_stopping_rounds": spec.early_stopping_rounds,
        "calibration": model.calibration,  # (a linear model: none)
        # Finalised: the boosters were trained again on training + validation rows with the
        # rounds early stopping chose (`best_iterations`).
        "finalize": spec.finalize,
        "model_kind": getattr(model, "kind", LIGHTGBM),
        "n_features": len(layout.names),
        "best_iterations": ",".join(str(i) for i in model.best_iterations),
        # Where the boosters were trained: this process, or a Dask cluster's workers.
        "trainer": "lightgbm.dask" if cluster is not None else "lightgbm",
        "cluster_workers": workers,
        "baseline_rows": len(y_fit),
        **{f"lgb.{key}": value for key, value in spec.params.items()},
    }
    for candidate in (model, runner_up):
        if isinstance(candidate, LinearModel):
            params["linear.C"] = candidate.C
    return TrainingResult(
        spec=spec,
        mode=mode,
        model=model,
        table=table,
        id_column=id_column,
        time_column=time_column,
        label_column=spec.label,
        classes=classes,
        y=y,
        split=split,
        feature_info=info,
        metrics=scores,
        baselines=baselines,
        best=best,
        ratios=ratios,
        test_predictions=predictions,
        params=params,
        seconds=seconds,
        calibration=calibration,
        early_stopped_test=early_stopped,
        candidates=compared,
        runner_up=runner_up,
    )


def _candidate(
    kind: str, layout: FeatureLayout, classes: list[str], spec: ModelSpec
) -> FittedModel:
    """An unfitted model of `kind` (`lightgbm`: the spec's LightGBM; `logistic_regression`)."""
    if kind == LinearModel.kind:
        return LinearModel(
            layout, spec.task, classes=classes, output=f"p_{spec.name}", seed=spec.split.seed
        )
    if spec.task == "ordinal":
        return OrdinalLGBM(
            layout,
            classes,
            spec.params,
            spec.monotone,
            spec.max_rounds,
            spec.early_stopping_rounds,
            spec.split.seed,
            calibration=spec.calibration,  # type: ignore[arg-type]
        )
    return BinaryLGBM(
        layout,
        spec.params,
        spec.monotone,
        spec.max_rounds,
        spec.early_stopping_rounds,
        spec.calibration,  # type: ignore[arg-type]
        output=f"p_{spec.name}",
        seed=spec.split.seed,
    )


def _rank(values: dict[str, float], metric: str) -> tuple[float, float]:
    """Sort key of a candidate's validation metrics: larger is better."""
    value = values[metric] if m.greater_is_better(metric) else -values[metric]
    return (value if value == value else -np.inf, -values["log_loss"])
