"""Experiment tracking and the model registry: log a training run to MLflow, register its model,
promote a challenger to champion on the same test data, and read back what is registered.

The only module that imports mlflow. Nothing happens at import: `use_store` points this process
at a store (a local SQLite file by default, `MLFLOW_TRACKING_URI` for a team server).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import json
import logging
import math
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

# MLflow starts its usage-telemetry client when it is imported; the platform's machines send
# nothing out unless an operator opts in (MLFLOW_DISABLE_TELEMETRY=false), so this one
# environment default has to be set before the import rather than in `use_store`.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import cloudpickle
import lightgbm
import mlflow
import mlflow.artifacts
import mlflow.data
import mlflow.pyfunc
import numpy as np
import pandas as pd
import sklearn
import yaml
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.entities import Param, ViewType
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema
from mlflow.types.utils import _infer_schema

from suitability import __version__
from suitability.explain.assessment import Explainer, ModelRef
from suitability.explain.terms import term
from suitability.models import metrics as m
from suitability.models.estimators import BinaryLGBM, OrdinalLGBM, median_level
from suitability.models.flat import FlatPreprocessor, FlatTableError
from suitability.models.portable import (
    PortableModelError,
    load_portable,
    manifest_sha256,
    save_portable,
)
from suitability.models.promotion import GIVEN, reason_code, reason_text, recorded_code
from suitability.models.train import (
    BEST_POSSIBLE,
    TrainingResult,
    evaluate_predictions,
    label_codes,
)
from suitability.monitoring.reference import (
    REFERENCE_ARTIFACT,
    Reference,
    build_reference,
    reference_from_json,
    reference_to_json,
)
from suitability.monitoring.result import MonitoringResult
from suitability.monitoring.spec import load_monitoring_spec
from suitability.settings import masked_reason, masked_url

__all__ = [
    "ARTIFACT_ROOT_ENV",
    "CHALLENGER",
    "CHAMPION",
    "MONITORING_EXPERIMENT",
    "PORTABLE_DIR",
    "PORTABLE_SHA256_TAG",
    "PROMOTIONS_EXPERIMENT",
    "LoggedRun",
    "MonitoredModel",
    "Promotion",
    "SuitabilityModel",
    "alias_history",
    "default_tracking_uri",
    "evaluate_version",
    "list_models",
    "load_monitored_model",
    "load_portable_estimator",
    "load_test_split",
    "log_monitoring",
    "log_training",
    "postgres_store_uri",
    "promote",
    "resolve_model",
    "use_store",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
#: The experiment whose runs record every promotion decision: the listable alias history.
PROMOTIONS_EXPERIMENT = "suitability-promotions"
#: The experiment whose runs record every monitoring check (`suitability monitor`).
MONITORING_EXPERIMENT = "suitability-monitoring"
REGISTERED_PREFIX = "suitability-"
TEST_SPLIT_ARTIFACT = "evaluation/test.parquet"
#: Binary models: the model's, baselines' and best possible probabilities on the test rows.
TEST_PREDICTIONS_ARTIFACT = "evaluation/test_predictions.parquet"
#: Ordinal calibration: its fitted numbers, test metrics before and after.
CALIBRATION_ARTIFACT = "evaluation/calibration.json"
EXPLANATIONS_DIR = "explanations"
#: Run artifacts holding the model in forms that execute no code (`models/portable.py`).
PORTABLE_DIR = "portable"
#: The portable manifest's sha256, on the run and on its model version, checked at load.
PORTABLE_SHA256_TAG = "suitability.portable_sha256"
REPORTS_DIR = "reports"
#: Columns per-slice metrics and fairness gaps are computed over (when the table has them).
SLICE_COLUMNS = ("age_years", "gender", "channel_preference", "segment")
LABELS_ARTIFACT = "evaluation/labels.json"
_MODEL_NAME = "model"
_MAX_PARAM_LENGTH = 6000
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
_STORE: dict[str, str | None] = {"uri": None, "artifacts": None}
#: Where new experiments of a PostgreSQL store keep their artifacts unless `use_store` is told:
#: a path or a URI (s3://…, mlflow-artifacts:/…). The variable `mlflow server
#: --default-artifact-root` reads, so a team's server and its direct clients agree.
ARTIFACT_ROOT_ENV = "MLFLOW_DEFAULT_ARTIFACT_ROOT"
#: The spellings of a PostgreSQL store whose driver is installed (psycopg 3).
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgres+psycopg")
#: Rows a logged dataset's column types are inferred from.
_SCHEMA_ROWS = 1000


# --- the store ------------------------------------------------------------------------------------


def default_tracking_uri(root: Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI` when set, else a SQLite file `experiments/mlflow.db` in the project
    (the file `mlflow ui --backend-store-uri <uri>` opens)."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI", "").strip():
        return uri
    if root is None:
        from suitability.settings import get_settings

        root = get_settings().project_dir
    return f"sqlite:///{(Path(root).absolute() / 'experiments' / 'mlflow.db').as_posix()}"


def use_store(uri: str | None = None, artifacts: Path | str | None = None) -> str:
    """Point this process's MLflow tracking and registry at `uri` (default:
    `default_tracking_uri()`) and quiet MLflow's own output; returns the URI MLflow was given.

    - A SQLite store: new experiments keep their artifacts in `artifacts`, else beside the
      database in `mlartifacts/`.
    - A PostgreSQL store (`postgresql://`, `postgres://`, `postgresql+psycopg://`): the URI is
      handed to MLflow as `postgresql+psycopg://`, because SQLAlchemy reads a bare
      `postgresql://` as psycopg2, which is not installed (psycopg 3 is). The database keeps
      runs and the registry but no files, so new experiments keep their artifacts in
      `artifacts`, else in `$MLFLOW_DEFAULT_ARTIFACT_ROOT` (a path or a URI such as
      `s3://bucket/mlflow`), else in `experiments/mlartifacts` of the project. The location is
      recorded with each experiment when it is created: every machine that trains, serves or
      reports must be able to read it.
    - An MLflow server (`http(s)://`): its own artifact store, unless `artifacts` is given.

    A store that does not answer is a `ValueError` naming it, with any password masked (prefer
    `PGPASSWORD` or `~/.pgpass` to a password in the URI: the returned URI carries it).
    """
    uri = uri or default_tracking_uri()
    scheme = urlparse(uri).scheme
    # Our `--json` output is the last stdout line: no run links on stdout, no progress bars.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    _quiet_logging()
    root: Path | str | None = None
    if scheme == "sqlite":
        database = _sqlite_path(uri)
        if database is not None:
            try:
                database.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ValueError(
                    f"cannot create the MLflow store folder {database.parent}: {error}"
                ) from None
            root = Path(artifacts) if artifacts is not None else database.parent / "mlartifacts"
    elif scheme in ("http", "https"):
        _check_reachable(uri)
        root = Path(artifacts) if artifacts is not None else None
    elif scheme in _POSTGRES_SCHEMES or scheme.startswith(("postgresql+", "postgres+")):
        uri = postgres_store_uri(uri)
        _check_database(uri)
        root = artifacts if artifacts is not None else _postgres_artifact_root()
    elif artifacts is not None:
        root = Path(artifacts)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _STORE["uri"] = uri
    _STORE["artifacts"] = _root_uri(root) if root is not None else None
    return uri


def postgres_store_uri(uri: str) -> str:
    """The SQLAlchemy URI of a PostgreSQL store as MLflow must get it: `postgresql://` and
    `postgres://` become `postgresql+psycopg://` (SQLAlchemy's default driver for them is
    psycopg2, which is not installed); any other driver is a `ValueError`."""
    scheme, separator, rest = uri.partition("://")
    if not separator:
        raise ValueError("a PostgreSQL store URI looks like postgresql://USER@HOST:PORT/DATABASE")
    if scheme.lower() not in _POSTGRES_SCHEMES:
        driver = scheme.partition("+")[2]
        raise ValueError(
            f"the PostgreSQL driver {driver!r} is not installed (psycopg 3 is): set "
            "MLFLOW_TRACKING_URI to postgresql://USER@HOST:PORT/DATABASE"
        )
    return f"postgresql+psycopg://{rest}"


def _postgres_artifact_root() -> Path | str:
    """`$MLFLOW_DEFAULT_ARTIFACT_ROOT` when set, else `experiments/mlartifacts` in the project,
    the folder the local store uses (fine on one machine; a team shares a mount or a bucket)."""
    if configured := os.environ.get(ARTIFACT_ROOT_ENV, "").strip():
        return configured
    from suitability.settings import get_settings

    return get_settings().project_dir / "experiments" / "mlartifacts"


def _root_uri(root: Path | str) -> str:
    """An artifact root as a URI: a URI (`s3://…`, `file:///…`) as given, a path made
    absolute. One-letter schemes are Windows drives, so paths."""
    if isinstance(root, str) and len(urlparse(root).scheme) > 1:
        return root.rstrip("/")
    return Path(root).absolute().as_uri()


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, absolute (None for an in-memory database)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return Path(path).absolute()


def _check_reachable(uri: str) -> None:
    """Fail in seconds, not after minutes of MLflow's retries, when a server does not answer."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10):
            pass
    except urllib.error.HTTPError:
        pass  # it answered (perhaps asking for credentials): reachable
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ValueError(
            f"cannot reach the MLflow tracking server at {masked_url(uri)} ({reason}); start "
            "it, or set MLFLOW_TRACKING_URI to a reachable server (unset it to use the local "
            "store)"
        ) from None


def _check_database(uri: str) -> None:
    """Fail in seconds with the reason (password hidden) when PostgreSQL does not answer,
    rather than after MLflow's minutes of connection retries."""
    import psycopg

    plain = "postgresql://" + uri.split("://", 1)[1]
    try:
        with psycopg.connect(plain, connect_timeout=10):
            pass
    except psycopg.Error as error:
        reason = masked_reason(error, plain)
        raise ValueError(
            f"cannot reach the MLflow store at {masked_url(plain)} ({reason}); start the "
            "server or create the database, or set MLFLOW_TRACKING_URI to a reachable store "
            "(unset it to use the local one)"
        ) from None


class _DropMessages(logging.Filter):
    """Drops library notices that say nothing to our users: records containing `phrase`."""

    def __init__(self, phrase: str) -> None:
        super().__init__()
        self.phrase = phrase

    def filter(self, record: logging.LogRecord) -> bool:
        return self.phrase not in record.getMessage()


#: Logger and the notice dropped from it. MLflow's cloudpickle caution: the model is our own
#: class, loaded by our own code. psycopg's note that it ended a pipeline after an error: the
#: error itself is raised, and on a PostgreSQL store it is MLflow re-inserting a metric it
#: already has (same key, step, time and value) when it logs the model, which MLflow catches.
_DROPPED_NOTICES = (
    ("mlflow.pyfunc", "serialized using CloudPickle"),
    ("psycopg", "error ignored terminating <psycopg.Pipeline"),
)


def _quiet_logging() -> None:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name, phrase in _DROPPED_NOTICES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(phrase))


def _artifact_location(experiment: str) -> str | None:
    """Where a new experiment keeps artifacts: a folder named after it under the root
    `use_store` chose for the current store (beside the database for any SQLite store), else
    the server's default."""
    uri = mlflow.get_tracking_uri()
    root = _STORE["artifacts"] if _STORE["uri"] == uri else None
    if root is None and (database := _sqlite_path(uri)) is not None:
        root = (database.parent / "mlartifacts").as_uri()
    if root is None:
        return None
    return f"{root.rstrip('/')}/{_safe_folder(experiment)}"


def _safe_folder(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "experiment"


@contextmanager
def _store_errors() -> Iterator[None]:
    """A store that cannot be reached is a user's problem to fix, so a `ValueError`."""
    try:
        yield
    except MlflowException as error:
        text = str(error)
        if "API request to" in text or "Max retries exceeded" in text:
            raise ValueError(
                f"cannot reach the MLflow tracking server at "
                f"{masked_url(mlflow.get_tracking_uri())}: {text.splitlines()[0][:300]}"
            ) from None
        raise


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=_artifact_location(name))
    if experiment.lifecycle_stage == "deleted":
        raise ValueError(
            f"the MLflow experiment {name!r} is deleted; restore it "
            f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) "
            "or delete it for good (`mlflow gc`)"
        )
    return experiment.experiment_id


# --- the model as MLflow stores it ---------------------------------------------------------------


class SuitabilityModel(mlflow.pyfunc.PythonModel):
    """A fitted `OrdinalLGBM` or `BinaryLGBM` as an MLflow pyfunc: feature DataFrame in, its
    `predict_frame` out (`p_C1..p_C5, level, expected_level` or `p_<model>`). A model trained
    on a user's table carries its `FlatPreprocessor` and takes that table's raw rows, as any
    reader gives them (`pd.read_csv`, parquet, text)."""

    def __init__(self, model: Any, preprocessor: FlatPreprocessor | None = None) -> None:
        self.model = model
        self.preprocessor = preprocessor

    # The pandas hint tells MLflow not to infer a schema from hints; the logged signature rules.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        preprocessor = getattr(self, "preprocessor", None)  # (versions logged before it)
        if preprocessor is not None:
            model_input = preprocessor.transform(model_input, source="model input")
        return self.model.predict_frame(model_input)


def _raw_signature(result: TrainingResult) -> tuple[ModelSignature, pd.DataFrame]:
    """The input schema of a flat-table model: the user's raw columns, each `Any` (a column a
    reader gives as long today comes as double when a blank appears, or as text; MLflow refuses
    each of those against the other), required when the model uses it; the id, target, time and
    dropped columns are listed as optional, so passing the file as read is accepted. How each
    column was read at training and what it became is in the model's metadata
    (`raw_columns`)."""
    assert result.preprocessor is not None and result.raw_example is not None
    columns = [
        ColSpec(AnyType(), c.name, required=c.use != "ignored") for c in result.preprocessor.columns
    ]
    example = result.raw_example
    features = result.preprocessor.transform(example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        outputs = infer_signature(features, result.model.predict_frame(features)).outputs
    return ModelSignature(inputs=Schema(columns), outputs=outputs), example


def _model_signature(result: TrainingResult) -> tuple[ModelSignature, pd.DataFrame]:
    """The input schema and example for the model's feature columns.

    MLflow's schema enforcement refuses pandas `category` columns against `string` and int64
    against `double`, though both are what the feature builder produces. So each column is
    typed by its training dtype: int64 counts as `long`, floats as `double`, booleans as
    `boolean`, and categorical (or any other) columns as `Any`; the model itself maps categories
    (as categoricals or plain strings) onto its vocabulary.
    """
    layout = result.model.layout
    head = result.rows("test").head(5)
    example = layout.frame(head)
    columns = []
    for name in layout.names:
        dtype = result.table[name].dtype
        if name in layout.categories or not isinstance(dtype, np.dtype):
            columns.append(ColSpec(AnyType(), name))
        elif dtype.kind == "b":
            columns.append(ColSpec(DataType.boolean, name))
            example[name] = head[name].to_numpy(bool)
        elif dtype.kind in "iu":
            columns.append(ColSpec(DataType.long, name))
            example[name] = head[name].to_numpy(np.int64)
        elif dtype.kind == "f":
            columns.append(ColSpec(DataType.double, name))
        else:
            columns.append(ColSpec(AnyType(), name))
    example = example.reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the int-columns hint: typed on purpose
        outputs = infer_signature(example, result.model.predict_frame(example)).outputs
    return ModelSignature(inputs=Schema(columns), outputs=outputs), example


def _pip_requirements() -> list[str]:
    """Pinned to what trained the model; `suitability` itself must be importable where it loads."""
    return [
        f"mlflow=={mlflow.__version__}",
        f"lightgbm=={lightgbm.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
    ]


# --- logging a training run -----------------------------------------------------------------------


@dataclass
class LoggedRun:
    """Where a training run went: its run, experiment and (when registered) model version.
    The tracking URI is for people to read (`train --json` prints it), so its password is
    masked."""

    run_id: str
    experiment_id: str
    experiment_name: str
    model_uri: str
    name: str
    version: int | None
    tracking_uri: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def log_training(
    result: TrainingResult,
    *,
    source: dict[str, str],
    experiment_config: Path | None = None,
    register: bool = True,
) -> LoggedRun:
    """Log a training result as one MLflow run (params, metrics, tags, data lineage, plots, the
    test split for later comparisons, the model) and register the model as the new challenger."""
    spec = result.spec
    client = MlflowClient()
    with _store_errors():
        experiment_id = _experiment_id(client, spec.experiment_name)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"{spec.name}-{result.mode}-{stamp}",
            tags=_run_tags(result),
        ) as run:
            run_id = run.info.run_id
            mlflow.log_params(_run_params(result, source))
            mlflow.log_metrics(_run_metrics(result))
            _log_files(result, experiment_config)
            digests, datasets = _log_datasets(result, source)
            _log_plots(result)
            _log_test_split(result)
            _log_monitoring_reference(result, run_id)
            _log_explanations(result)
            raw = result.preprocessor is not None
            signature, example = (_raw_signature if raw else _model_signature)(result)
            metadata: dict[str, Any] = {"suitability_version": __version__, "task": spec.task}
            if result.preprocessor is not None:
                metadata.update(
                    input="raw rows of the table it was trained on",
                    raw_columns=result.preprocessor.describe(),
                )
            with warnings.catch_warnings():
                # MLflow's own use of APIs pandas deprecates: nothing our users can act on.
                warnings.simplefilter("ignore", DeprecationWarning)
                info = mlflow.pyfunc.log_model(
                    name=_MODEL_NAME,
                    python_model=SuitabilityModel(result.model, result.preprocessor),
                    signature=signature,
                    input_example=example,
                    pip_requirements=_pip_requirements(),
                    metadata=metadata,
                )
            # A flat-table linear model has no portable form (only LightGBM's is defined):
            # serving, which must never unpickle, loads the catalogue models' champions only.
            portable_sha256 = _log_portable(result) if _has_portable_form(result.model) else None
            # The model's own validation and test metrics, linked in MLflow 3 to the logged
            # model and to the dataset each was measured on (its page lists them).
            for split in ("validation", "test"):
                mlflow.log_metrics(
                    _split_metrics(result, split), model_id=info.model_id, dataset=datasets[split]
                )
            if result.runner_up is not None:
                _log_runner_up(result, signature, example, datasets)
        name, version, model_uri = spec.registered_name, None, info.model_uri
        if register:
            version = _register(client, result, info, run_id, portable_sha256)
            card = model_card(result, digests["digest.full"], run_id)
            client.update_model_version(name, str(version), description=card)
            model_uri = f"models:/{name}/{version}"
    return LoggedRun(
        run_id=run_id,
        experiment_id=experiment_id,
        experiment_name=spec.experiment_name,
        model_uri=model_uri,
        name=name,
        version=version,
        tracking_uri=masked_url(mlflow.get_tracking_uri()),
    )


def _has_portable_form(model: Any) -> bool:
    return isinstance(model, OrdinalLGBM | BinaryLGBM)


#: The candidates of flat-table training, compared on validation (`train --table`).
CANDIDATES_ARTIFACT = "evaluation/candidates.json"


def _log_runner_up(
    result: TrainingResult,
    signature: ModelSignature,
    example: pd.DataFrame,
    datasets: Mapping[str, PandasDataset],
) -> None:
    """Flat-table mode: the candidate not chosen, logged beside the model (not registered) with
    its validation and test metrics (`candidate_<kind>_<split>_<metric>`) linked to it, and the
    comparison as an artifact."""
    assert result.runner_up is not None
    other = next(c for c in result.candidates if not c["chosen"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        info = mlflow.pyfunc.log_model(
            name=f"candidate-{other['kind'].replace('_', '-')}",
            python_model=SuitabilityModel(result.runner_up, result.preprocessor),
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
            metadata={"suitability_version": __version__, "task": result.spec.task},
        )
    # Prefixed: the run's own `validation_*` and `test_*` are the registered model's.
    prefix = f"candidate_{other['kind']}"
    for split in ("validation", "test"):
        values = {
            _safe_key(f"{prefix}_{split}_{key}"): float(value)
            for key, value in other[split].items()
            if math.isfinite(float(value))
        }
        mlflow.log_metrics(values, model_id=info.model_id, dataset=datasets[split])
    mlflow.log_dict(
        {
            "compared_on": "validation",
            "primary_metric": result.spec.primary_metric,
            "candidates": [
                {**c, "logged_model_id": None if c["chosen"] else info.model_id}
                for c in _finite_tree(result.candidates)
            ],
        },
        CANDIDATES_ARTIFACT,
    )


def _run_tags(result: TrainingResult) -> dict[str, str]:
    spec = result.spec
    return {
        "suitability.version": __version__,
        "suitability.git_commit": _git_commit(),
        "suitability.model": spec.name,
        "suitability.task": spec.task,
        "suitability.classes": ",".join(result.classes),
        "suitability.label": result.label_column,
        "suitability.primary_metric": spec.primary_metric,
        "suitability.mode": result.mode,
    }


def _git_commit() -> str:
    """The project checkout's commit, `-dirty` when it has uncommitted changes."""
    from suitability.settings import get_settings

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=get_settings().project_dir,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _safe_key(key: str) -> str:
    return _UNSAFE_KEY.sub("_", key)


def _run_params(result: TrainingResult, source: Mapping[str, str]) -> dict[str, str]:
    params = {
        **_flatten(result.params),
        **_flatten(result.split.boundaries, "split."),
        **{f"source.{key}": value for key, value in source.items()},
        "mode": result.mode,
    }
    if result.spec.labels is not None and result.mode != "table":
        params.update(_flatten(result.spec.labels.model_dump(), "labels."))
    return {_safe_key(k): str(v)[:_MAX_PARAM_LENGTH] for k, v in params.items()}


def _split_metrics(result: TrainingResult, split: str) -> dict[str, float]:
    """The model's finite metrics on one split, as `<split>_<metric>`."""
    values = result.metrics.get(split) or {}
    return {
        _safe_key(f"{split}_{key}"): float(value)
        for key, value in values.items()
        if math.isfinite(float(value))
    }


def _run_metrics(result: TrainingResult) -> dict[str, float]:
    """Every other metric of the run (the model's own: `_split_metrics`, logged with the model)."""
    groups: list[tuple[str, Mapping[str, float] | None]] = [
        *((f"baseline_{name}_test_", values) for name, values in result.baselines.items()),
        (f"{BEST_POSSIBLE}_test_", result.best),
        ("ratio_to_best_", result.ratios),
    ]
    if result.calibration is not None:  # the same model before its calibration
        groups.append(("uncalibrated_test_", result.calibration["test_before"]))
    if result.early_stopped_test is not None:  # a finalised model before its refit
        groups.append(("early_stopped_test_", result.early_stopped_test))
    out: dict[str, float] = {}
    for prefix, values in groups:
        for key, value in (values or {}).items():
            number = float(value)
            if math.isfinite(number):  # NaN (e.g. AUC of one class) is noise, not a value
                out[_safe_key(f"{prefix}{key}")] = number
    for key, seconds in result.seconds.items():
        out[_safe_key(f"seconds_{key}")] = float(seconds)
    return out


def _log_files(result: TrainingResult, experiment_config: Path | None) -> None:
    spec_yaml = yaml.safe_dump(
        result.spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True
    )
    mlflow.log_text(spec_yaml, "spec.yaml")
    if experiment_config is not None:
        mlflow.log_artifact(str(experiment_config))
    mlflow.log_dict(_jsonable(result.split.boundaries), "split.json")
    mlflow.log_text(result.feature_info.to_csv(index=False), "features.csv")
    if result.warnings:
        mlflow.log_text("\n".join(result.warnings) + "\n", "warnings.txt")


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(
        json.dumps(values, default=lambda v: v.item() if hasattr(v, "item") else str(v))
    )


def content_digest(frame: pd.DataFrame) -> str:
    """sha256 of a table's column names and values (row order matters, the index does not):
    a fingerprint of exactly what was trained or evaluated on, at hashing speed."""
    return _digest(frame.columns, pd.util.hash_pandas_object(frame, index=False).to_numpy())


def _digest(columns: pd.Index, row_hashes: np.ndarray) -> str:
    digest = hashlib.sha256("\x1f".join(map(str, columns)).encode())
    digest.update(np.ascontiguousarray(row_hashes).tobytes())
    return digest.hexdigest()


class _TableDataset(PandasDataset):
    """A pandas dataset whose schema is inferred from its first rows: MLflow's inference visits
    every value (minutes for a million rows) and the column types come out the same."""

    @cached_property
    def schema(self) -> Schema | None:
        try:
            return _infer_schema(self.df.head(_SCHEMA_ROWS))
        except Exception:  # as MLflow's own: a dataset without a schema is still lineage
            return None


def _log_datasets(
    result: TrainingResult, source: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, PandasDataset]]:
    """The whole table and each split as MLflow datasets (lineage in the UI), with a sha256 of
    every row as params `digest.<split>` (MLflow's own digest reads only the first 10,000)."""
    row_hashes = pd.util.hash_pandas_object(result.table, index=False).to_numpy()
    parts = {"full": ("full", np.arange(len(result.table)))}
    for split, context in (("train", "training"), ("validation", "validation"), ("test", "test")):
        parts[split] = (context, result.split.rows(split))
    digests, datasets = {}, {}
    for split, (context, rows) in parts.items():
        frame = result.table if split == "full" else result.table.iloc[rows]
        digest = _digest(result.table.columns, row_hashes[rows])
        digests[f"digest.{split}"] = digest
        with warnings.catch_warnings():
            # A local path resolves to the same source type twice, and integer columns get a
            # hint about missing values; neither is news to our users.
            warnings.simplefilter("ignore", UserWarning)
            template = mlflow.data.from_pandas(
                frame.head(1),
                source=source.get("path"),
                name=f"{result.spec.name}-{split}",
                digest=digest[:32],
            )
            dataset = _TableDataset(
                frame,
                source=template.source,
                targets=result.label_column,
                name=template.name,
                digest=digest[:32],  # the store keeps at most 36 characters
            )
            _ = dataset.schema
        mlflow.log_input(dataset, context=context)
        datasets[split] = dataset
    mlflow.log_params(digests)
    return digests, datasets


def _log_plots(result: TrainingResult) -> None:
    """The evaluation charts (in English, for the MLflow UI) and the numbers reports draw
    them from in their own language."""
    from suitability.explain import charts

    test = result.split.rows("test")
    y = result.y[test]
    if result.spec.task == "ordinal":
        proba = np.asarray(result.test_predictions["model"], dtype=np.float64)
        matrix = m.confusion(y, median_level(proba), len(result.classes))
        # The numbers behind the picture, for reports and for anyone re-checking them.
        mlflow.log_dict(
            {"labels": list(result.classes), "rows_true_columns_predicted": matrix.tolist()},
            "evaluation/confusion_matrix.json",
        )
        if result.calibration is not None:
            mlflow.log_dict(_finite_tree(result.calibration), CALIBRATION_ARTIFACT)
    else:
        predictions = {
            label: np.asarray(p, dtype=np.float64) for label, p in result.test_predictions.items()
        }
        mlflow.log_dict(
            {
                label: m.calibration_table(y, p).to_dict(orient="list")
                for label, p in predictions.items()
            },
            "evaluation/calibration_curves.json",
        )
        # The model's, the baselines' and the best possible probabilities on the test rows (in
        # the order of evaluation/test.parquet): the curves a report draws.
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "test_predictions.parquet"
            pd.DataFrame(predictions).to_parquet(path, index=False)
            mlflow.log_artifact(str(path), "evaluation")
    figures = charts.evaluation_figures(
        result.spec.task,
        result.spec.name,
        result.classes,
        y,
        result.test_predictions,
        "en",
    )
    with charts.drawing():
        for path_name, figure in figures.items():
            mlflow.log_figure(figure, path_name)


def _log_test_split(result: TrainingResult) -> None:
    """The test rows (id, time, label, features) and how to read them, so `promote` and
    `evaluate` score any later version on exactly the data this one was judged on."""
    columns = [result.id_column]
    if result.time_column:
        columns.append(result.time_column)
    columns += [result.label_column, *result.model.feature_names]
    # Slices the dossier reports on, even those the model may not read (gender).
    columns += [c for c in SLICE_COLUMNS if c in result.table.columns]
    columns = list(dict.fromkeys(columns))
    labels = {
        "task": result.spec.task,
        "classes": list(result.classes),
        "label": result.label_column,
        "id_column": result.id_column,
        "time_column": result.time_column,
        "primary_metric": result.spec.primary_metric,
    }
    if result.preprocessor is not None:  # the raw table's target, for `evaluate --table`
        labels["target"] = result.preprocessor.column("target")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "test.parquet"
        result.rows("test")[columns].reset_index(drop=True).to_parquet(path, index=False)
        mlflow.log_artifact(str(path), "evaluation")
    mlflow.log_dict(labels, LABELS_ARTIFACT)


def _log_monitoring_reference(result: TrainingResult, run_id: str) -> None:
    """The distribution of the model's features and predictions on its test rows (bins and
    counts, never rows): what `suitability monitor` compares later data with."""
    boundaries = result.split.boundaries
    reference = build_reference(
        result.rows("test"),
        result.test_predictions["model"],
        result.model.layout,
        task=result.spec.task,
        classes=result.classes,
        bins=load_monitoring_spec().bins,
        source={
            "run": run_id,
            "split": "test",
            **{k: str(boundaries[k]) for k in ("test_from", "test_to") if k in boundaries},
        },
    )
    mlflow.log_dict(reference_to_json(reference), REFERENCE_ARTIFACT)


def _log_explanations(result: TrainingResult) -> None:
    """Global explanations of the model on its test rows (mean |SHAP| by feature and source,
    beeswarm, dependence and by-source plots) and, on synthetic data, the planted-driver check."""
    from suitability.data.synth import PLANTED_DRIVERS
    from suitability.explain import charts, importance

    specs = _specs_or_none()
    test = result.rows("test")
    if len(test) == 0:
        return
    explanation = importance.global_explanation(result.model, test, specs)
    mlflow.log_dict(explanation.to_json(), f"{EXPLANATIONS_DIR}/global.json")
    drivers = PLANTED_DRIVERS.get(result.spec.name)
    if result.best is not None and drivers and result.mode != "table":
        patterns = {name: driver.patterns for name, driver in drivers.items()}
        check = importance.planted_check(explanation.by_feature, patterns)
        mlflow.log_dict(
            {"top_k": importance.PLANTED_TOP_K, "drivers": check.to_dict(orient="records")},
            f"{EXPLANATIONS_DIR}/planted_check.json",
        )
        mlflow.log_metric("planted_drivers_passed", float(check["passed"].mean()))
    figures = charts.explanation_figures(
        explanation, specs, result.spec.name, result.model.layout.categories, "en"
    )
    with charts.drawing():
        for path, figure in figures.items():
            mlflow.log_figure(figure, f"{EXPLANATIONS_DIR}/{path}")


def _log_portable(result: TrainingResult) -> str:
    """The model in forms that execute no code (`portable/`: LightGBM text and JSON), for
    services that must never unpickle; its manifest's sha256 is tagged on the run and returned
    for registration to record."""
    with tempfile.TemporaryDirectory() as folder:
        save_portable(result.model, folder)
        sha256 = manifest_sha256(folder)
        mlflow.log_artifacts(folder, PORTABLE_DIR)
    mlflow.set_tag(PORTABLE_SHA256_TAG, sha256)
    return sha256


def _specs_or_none() -> Any:
    from suitability.specs import SpecError, load_specs

    try:
        return load_specs()
    except SpecError:
        return None


_TASK_ZH = {"binary": "二分类", "ordinal": "有序分类"}


_KIND_EN = {"lightgbm": "LightGBM", "logistic_regression": "regularised logistic regression"}
_KIND_ZH = {"lightgbm": "LightGBM", "logistic_regression": "正则化逻辑回归"}


def model_card(result: TrainingResult, digest: str, run_id: str) -> str:
    """A registered version's description: what the model is for, what it was trained on (the
    table's digest, rows, split), and its primary metric against its baselines and, on
    synthetic data, the best possible, in Chinese and English (markdown, as MLflow shows it)."""
    spec = result.spec
    metric, value = result.primary
    rows = {s: len(result.split.rows(s)) for s in ("train", "validation", "test")}
    compared = [("model", "模型", value)]
    compared += [
        (term(name, "en"), term(name, "zh"), scores[metric])
        for name, scores in result.baselines.items()
        if metric in scores
    ]
    if result.best is not None and metric in result.best:
        compared.append((term(BEST_POSSIBLE, "en"), term(BEST_POSSIBLE, "zh"), result.best[metric]))
    if result.mode == "table":  # a user's table: the platform model's purpose does not apply
        purpose = {
            "zh": f"在用户提供的表上训练的{_TASK_ZH[spec.task]}模型（目标列 "
            f"{result.label_column}）；不用于在线服务。",
            "en": f"A {spec.task} model trained on a user's table (target {result.label_column}); "
            "not served.",
        }
    elif spec.dossier is not None:
        purpose = {"zh": spec.dossier.purpose.zh, "en": spec.dossier.purpose.en}
    else:
        described = spec.description
        purpose = {"zh": described.zh, "en": described.en} if described else {"zh": "", "en": ""}
    table = "\n".join(f"| {en} | {zh} | {v:.4f} |" for en, zh, v in compared)
    kind = str(result.params.get("model_kind", "lightgbm"))
    fitted = {
        "en": _KIND_EN.get(kind, kind)
        + (", finalised on train + validation" if result.params.get("finalize") else ""),
        "zh": _KIND_ZH.get(kind, kind)
        + ("，以训练集与验证集重新训练" if result.params.get("finalize") else ""),
    }
    if len(result.candidates) > 1:
        fitted["en"] += (
            " (the better of "
            + ", ".join(_KIND_EN.get(c["kind"], c["kind"]) for c in result.candidates)
            + f" on validation {metric})"
        )
        fitted["zh"] += f"（验证集 {metric} 较优者）"
    return (
        f"**{spec.registered_name}** · run `{run_id}` · suitability {__version__}\n\n"
        f"{purpose['en']}\n\n{purpose['zh']}\n\n"
        f"Model 模型: {fitted['en']}; {fitted['zh']}.\n\n"
        f"Data 数据: training table sha256 `{digest[:16]}…` ({len(result.table):,} rows 行; "
        f"train 训练 {rows['train']:,}, validation 验证 {rows['validation']:,}, "
        f"test 测试 {rows['test']:,}); split 划分 {result.split.boundaries.get('method', '')}, "
        f"mode 来源 {result.mode}.\n\n"
        f"| test {metric} | 测试集 {metric} | |\n|---|---|---:|\n{table}\n"
    )


def _register(
    client: MlflowClient,
    result: TrainingResult,
    info: Any,
    run_id: str,
    portable_sha256: str | None,
) -> int:
    """A new version of the spec's registered model, aliased `challenger`, recording the sha256
    its portable form must have when loaded."""
    spec = result.spec
    name = spec.registered_name
    # Both languages, as the registry shows bilingual texts (the model card too): English first.
    description = f"{spec.description.en}\n\n{spec.description.zh}" if spec.description else ""
    if result.mode == "table":
        description = (
            f"{spec.task.capitalize()} models trained with `suitability train {spec.name} "
            "--table` on users' tables: LightGBM or a regularised logistic regression, the "
            "better on validation (each version's description says which). Never served."
        )
    try:
        client.get_registered_model(name)
        client.update_registered_model(name, description=description)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        client.create_registered_model(name, description=description)
    metric, value = result.primary
    # `mlflow.register_model` also links the logged model to its version (the logged model's
    # page then shows it instead of "Not registered"); its own "Created version" line on
    # stderr is left out: the CLI says what was registered.
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(
            info.model_uri,
            name,
            tags={
                "run_id": run_id,
                "primary_metric": metric,
                "primary_value": repr(float(value)),
                "mode": result.mode,
                "suitability.version": __version__,
                "model_kind": str(result.params.get("model_kind", "lightgbm")),
                **({PORTABLE_SHA256_TAG: portable_sha256} if portable_sha256 else {}),
            },
        )
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return int(version.version)


# --- reading back ----------------------------------------------------------------------------------


#: Run params that decide which customers a run trained on and what its labels mean. Two runs
#: that agree on them split customers into the same groups, so the champion never trained on a
#: customer in the challenger's test split. How the table was handed in (`--data` builds the
#: same training table `--features` reads) is not among them.
_SPLIT_PARAMS = (
    "split.method",
    "split.seed",
    "split.validation_customer_share",
    "split.test_customer_share",
    "split.validation",
    "split.test",
    "labels.active_days",
    "labels.horizon_days",
    "labels.invest_event_types",
)


def _check_comparable(
    client: MlflowClient, challenger_run: str, champion_run: str, champion: int
) -> None:
    """Refuse a comparison that could flatter the champion: one whose customer groups or label
    definition differ from the challenger's, so it may have trained on the test customers."""
    ours = client.get_run(challenger_run).data.params
    theirs = client.get_run(champion_run).data.params
    differ = [
        f"{key} {theirs.get(key, '–')} → {ours.get(key, '–')}"
        for key in _SPLIT_PARAMS
        if ours.get(key) != theirs.get(key)
    ]
    if differ:
        raise ValueError(
            f"champion version {champion} was split or labelled differently "
            f"({'; '.join(differ)}), so it may have trained on the challenger's test customers "
            "and the comparison would flatter it. Promote anyway with --force --reason '...'"
        )


def _registered_name(name: str) -> str:
    """`churn` and `risk-level` stand for `suitability-churn` and `suitability-risk-level`."""
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(
            f"{name!r} is not a model name: use letters, digits, '-', '_' or '.', "
            "e.g. suitability-churn or churn"
        )
    return name if name.startswith(REGISTERED_PREFIX) else f"{REGISTERED_PREFIX}{name}"


def _registered_model(client: MlflowClient, name: str) -> Any:
    try:
        return client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
    known = [r.name for r in client.search_registered_models(f"name LIKE '{REGISTERED_PREFIX}%'")]
    listed = ", ".join(sorted(known)) if known else "none yet; train one first"
    raise ValueError(f"no registered model {name!r} (registered: {listed})")


def _aliases(model: Any) -> dict[str, int]:
    return {alias: int(version) for alias, version in (model.aliases or {}).items()}


def _version(client: MlflowClient, name: str, version: int) -> ModelVersion:
    return client.get_model_version(name, str(version))


def load_test_split(run_id: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The test rows a training run logged (`evaluation/test.parquet`) and how to read them
    (`evaluation/labels.json`: task, classes, label, id and time columns, primary metric)."""
    with _store_errors(), tempfile.TemporaryDirectory() as folder:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="evaluation", dst_path=folder
            )
            frame = pd.read_parquet(Path(local) / "test.parquet")
            labels = json.loads((Path(local) / "labels.json").read_text(encoding="utf-8"))
        except (MlflowException, OSError) as error:
            raise ValueError(
                f"run {run_id} has no readable {TEST_SPLIT_ARTIFACT} and {LABELS_ARTIFACT} "
                f"(was it logged by `suitability train`?): {str(error).splitlines()[0][:200]}"
            ) from None
    return frame, labels


def _schema_names(loaded: Any) -> list[str]:
    """The columns a model requires."""
    schema = loaded.metadata.get_input_schema()
    return list(schema.required_input_names()) if schema is not None else []


def _preprocessor(loaded: Any) -> FlatPreprocessor | None:
    """The raw-row preprocessor of a flat-table model (None: the model takes features)."""
    return getattr(loaded.unwrap_python_model(), "preprocessor", None)


def _conform(frame: pd.DataFrame, loaded: Any) -> pd.DataFrame:
    """The model's columns of `frame`, with whole numbers cast where the signature wants the
    other numeric type (a CSV's integer column for a `double` feature, and back), which MLflow's
    enforcement refuses although nothing is lost. A raw-row model takes the columns as read."""
    schema = loaded.metadata.get_input_schema()
    if schema is None:
        return frame
    if _preprocessor(loaded) is not None:
        return frame[[c for c in schema.input_names() if c in frame.columns]]
    out = frame[list(schema.input_names())].copy()
    for spec in schema.inputs:
        column = out[spec.name]
        if spec.type == DataType.double and column.dtype.kind in "iub":
            out[spec.name] = column.astype("float64")
        elif spec.type == DataType.long and column.dtype.kind == "f":
            values = column.to_numpy()
            if np.isfinite(values).all() and (values == np.round(values)).all():
                out[spec.name] = column.astype("int64")
    return out


def _score(
    loaded: Any, frame: pd.DataFrame, labels: Mapping[str, Any], who: str
) -> dict[str, float]:
    """Metrics of a loaded pyfunc on `frame` (which holds the label column)."""
    label, target = labels["label"], labels.get("target")
    preprocessor = _preprocessor(loaded)
    if preprocessor is not None and target in frame.columns:
        label = target  # a raw table: its own target column, spelled as in training
    if label not in frame.columns:
        wanted = f"{label!r}" + (f" (or {target!r})" if target else "")
        raise ValueError(f"the table has no label column {wanted} to evaluate {who} against")
    missing = [c for c in _schema_names(loaded) if c not in frame.columns]
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" … ({len(missing)} in all)" if len(missing) > 10 else ""
        )
        raise ValueError(f"{who} needs feature columns the table lacks: {shown}")
    if preprocessor is not None:
        try:
            y = preprocessor.target_codes(frame[label].rename(label), source="the table")
        except FlatTableError as error:
            raise ValueError(str(error)) from None
    else:
        y = label_codes(frame[label], list(labels["classes"]), label)
    try:
        # Only the model's columns: MLflow warns about every extra one (ids, label).
        predictions = loaded.predict(_conform(frame, loaded))
    except MlflowException as error:
        detail = str(error).rsplit("Error: ", 1)[-1].splitlines()[0][:300]
        raise ValueError(f"{who} cannot score the table: {detail}") from None
    return evaluate_predictions(predictions, y, labels["task"], list(labels["classes"]))


def _load(name: str, version: int) -> Any:
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}")


# --- promotion -------------------------------------------------------------------------------------


@dataclass
class Promotion:
    """One `promote` decision: which versions were compared, on what, and what happened."""

    name: str
    challenger_version: int
    champion_version: int | None  # before the decision
    promoted: bool
    forced: bool
    metric: str
    challenger_value: float | None
    champion_value: float | None
    reason: str  # in English, as the registry and the CLI show it
    # `promotion.ReasonCode` of an automatic reason (reports word it in their language), or
    # `given`: a person's reason, shown as written.
    reason_code: str
    by: str
    at: str  # ISO 8601, UTC

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _better(challenger: float | None, champion: float | None, higher: bool) -> bool:
    """Strictly better; a missing or NaN champion value loses to any real challenger value."""
    if challenger is None or math.isnan(challenger):
        return False
    if champion is None or math.isnan(champion):
        return True
    return challenger > champion if higher else challenger < champion


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _finite_tree(value: Any) -> Any:
    """Nested dicts and lists with NaN as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_tree(v) for v in value]
    if isinstance(value, float | np.floating):
        return _finite(float(value))
    return value


def promote(
    name: str, *, force: bool = False, reason: str | None = None, by: str | None = None
) -> Promotion:
    """Make the `challenger` version the `champion` if it scores strictly better on the
    primary metric on the challenger's own test split (both versions score the same rows), or
    unconditionally with `force` (which needs a `reason`). Every decision, promoted or not, is
    recorded as a run in the `suitability-promotions` experiment; a promotion also tags the
    version. `challenger` stays on the newest trained version (after a promotion, the same as
    `champion`), so `NAME@challenger` always names the latest candidate."""
    reason = (reason or "").strip() or None
    if force and reason is None:
        raise ValueError("a forced promotion needs a reason (--reason '...'), for the audit trail")
    by = by or _current_user()
    name = _registered_name(name)
    client = MlflowClient()
    with _store_errors():
        aliases = _aliases(_registered_model(client, name))
        if CHALLENGER not in aliases:
            raise ValueError(f"{name} has no challenger; train one first")
        challenger = aliases[CHALLENGER]
        champion = aliases.get(CHAMPION)
        if champion == challenger:
            raise ValueError(
                f"{name}: the challenger, version {challenger}, is already the champion; "
                "train a new challenger first"
            )
        run_id = _version(client, name, challenger).run_id
        frame, labels = load_test_split(run_id)
        metric = labels["primary_metric"]
        higher = m.greater_is_better(metric)
        challenger_value = _score(
            _load(name, challenger), frame, labels, f"challenger version {challenger}"
        )[metric]
        champion_value = None
        if champion is not None and not force:
            _check_comparable(client, run_id, _version(client, name, champion).run_id, champion)
        if champion is not None:
            try:
                champion_value = _score(
                    _load(name, champion), frame, labels, f"champion version {champion}"
                )[metric]
            except ValueError as error:
                if not force:
                    raise ValueError(
                        f"{error}; it cannot be compared on the challenger's test split. "
                        "Promote anyway with --force --reason '...'"
                    ) from None
        better = _better(challenger_value, champion_value, higher)
        promoted = better or force
        code: str = GIVEN
        if reason is None:
            automatic = reason_code(champion, champion_value)
            code = automatic
            reason = reason_text(
                automatic,
                "en",
                metric=metric,
                challenger=challenger_value,
                champion=champion_value,
                higher=higher,
            )
        at = datetime.now(UTC).isoformat(timespec="seconds")
        decision = Promotion(
            name=name,
            challenger_version=challenger,
            champion_version=champion,
            promoted=promoted,
            forced=force,
            metric=metric,
            challenger_value=_finite(challenger_value),
            champion_value=_finite(champion_value),
            reason=reason,
            reason_code=code,
            by=by,
            at=at,
        )
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, str(challenger))
            tags = {
                "promoted_at": at,
                "promoted_by": by,
                "promotion_reason": reason,
                "replaced_version": str(champion) if champion is not None else "none",
            }
            for key, value in tags.items():
                client.set_model_version_tag(name, str(challenger), key, value)
            if champion is not None:
                client.set_model_version_tag(name, str(champion), "replaced_by", str(challenger))
        _record(client, decision)
    return decision


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _record(client: MlflowClient, decision: Promotion) -> None:
    """One run per decision in the promotions experiment: the durable alias history."""
    experiment_id = _experiment_id(client, PROMOTIONS_EXPERIMENT)
    outcome = "promoted" if decision.promoted else "kept"
    run = client.create_run(
        experiment_id,
        run_name=f"{decision.name}-v{decision.challenger_version}-{outcome}",
        tags={"suitability.model": decision.name, "suitability.version": __version__},
    )
    params = {
        "model": decision.name,
        "from_version": "none" if decision.champion_version is None else decision.champion_version,
        "to_version": decision.challenger_version,
        "promoted": decision.promoted,
        "forced": decision.forced,
        "metric": decision.metric,
        "challenger_value": "none"
        if decision.challenger_value is None
        else repr(decision.challenger_value),
        "champion_value": "none"
        if decision.champion_value is None
        else repr(decision.champion_value),
        "reason": decision.reason[:_MAX_PARAM_LENGTH],
        "reason_code": decision.reason_code,
        "by": decision.by,
        "at": decision.at,
    }
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    # The compared values as metrics linked to each version's logged model, and both versions
    # named by their model URI and training run: the decision's page leads to both.
    for role, version, value in (
        ("challenger", decision.challenger_version, decision.challenger_value),
        ("champion", decision.champion_version, decision.champion_value),
    ):
        if version is None:
            continue
        registered = client.get_model_version(decision.name, str(version))
        source = str(registered.source or "")
        client.set_tag(run.info.run_id, f"{role}_model_uri", f"models:/{decision.name}/{version}")
        client.set_tag(run.info.run_id, f"{role}_run_id", registered.run_id or "")
        if value is not None:
            model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
            client.log_metric(
                run.info.run_id, f"{role}_{decision.metric}", value, model_id=model_id
            )
    client.set_terminated(run.info.run_id)


def alias_history(name: str) -> list[dict[str, Any]]:
    """Every `promote` decision about a model, newest first (from `suitability-promotions`)."""
    name = _registered_name(name)
    client = MlflowClient()
    with _store_errors():
        experiment = client.get_experiment_by_name(PROMOTIONS_EXPERIMENT)
        if experiment is None:
            _registered_model(client, name)  # unknown model: say so rather than "no history"
            return []
        runs = []
        page_token = None
        while True:
            page = client.search_runs(
                [experiment.experiment_id],
                filter_string=f"params.model = '{name}'",
                run_view_type=ViewType.ACTIVE_ONLY,
                order_by=["attributes.start_time DESC"],
                page_token=page_token,
            )
            runs.extend(page)
            page_token = page.token
            if not page_token:
                break
        if not runs:
            _registered_model(client, name)
    history = [_history_entry(run.data.params) for run in runs]
    return sorted(history, key=lambda entry: entry["at"], reverse=True)


def _history_entry(params: Mapping[str, str]) -> dict[str, Any]:
    def number(key: str) -> float | None:
        text = params.get(key, "none")
        return None if text == "none" else float(text)

    def version(key: str) -> int | None:
        text = params.get(key, "none")
        return None if text == "none" else int(text)

    entry = {
        "at": params.get("at", ""),
        "model": params.get("model", ""),
        "from_version": version("from_version"),
        "to_version": version("to_version"),
        "promoted": params.get("promoted") == "True",
        "forced": params.get("forced") == "True",
        "metric": params.get("metric", ""),
        "challenger_value": number("challenger_value"),
        "champion_value": number("champion_value"),
        "reason": params.get("reason", ""),
        "reason_code": params.get("reason_code", ""),
        "by": params.get("by", ""),
    }
    if not entry["reason_code"]:  # recorded before decisions kept their reason's code
        entry["reason_code"] = _recorded_code(entry)
    return entry


def _recorded_code(entry: Mapping[str, Any]) -> str:
    """The reason code of a decision recorded without one."""
    try:
        higher = m.greater_is_better(entry["metric"])
    except ValueError:
        return GIVEN
    return recorded_code(
        entry["reason"],
        metric=entry["metric"],
        challenger=entry["challenger_value"],
        champion=entry["champion_value"],
        champion_version=entry["from_version"],
        higher=higher,
    )


# --- listing, resolving, evaluating ---------------------------------------------------------------


def _iso(milliseconds: int | None) -> str | None:
    if milliseconds is None:
        return None
    return datetime.fromtimestamp(milliseconds / 1000, UTC).isoformat(timespec="seconds")


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def list_models() -> list[dict[str, Any]]:
    """Every version of every `suitability-*` registered model: name ascending, newest version
    first, with its aliases, run and primary metric."""
    client = MlflowClient()
    rows = []
    with _store_errors():
        models = client.search_registered_models(f"name LIKE '{REGISTERED_PREFIX}%'")
        for model in sorted(models, key=lambda r: r.name):
            by_version: dict[int, list[str]] = {}
            for alias, version in _aliases(model).items():
                by_version.setdefault(version, []).append(alias)
            versions = client.search_model_versions(f"name = '{model.name}'")
            for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
                tags = version.tags or {}
                rows.append(
                    {
                        "name": model.name,
                        "version": int(version.version),
                        "aliases": sorted(by_version.get(int(version.version), [])),
                        "run_id": version.run_id,
                        "created": _iso(version.creation_timestamp),
                        "primary_metric": tags.get("primary_metric"),
                        "primary_value": _number(tags.get("primary_value")),
                        "mode": tags.get("mode"),
                    }
                )
    return rows


def resolve_model(ref: str) -> tuple[str, str]:
    """`NAME` (its champion), `NAME@alias` or `NAME@version` as (registered name, models:/ URI);
    `NAME` may be short (`churn`). Anything that does not exist is a `ValueError` that lists
    what does."""
    name, _, selector = ref.strip().partition("@")
    name = _registered_name(name)
    selector = selector.strip() or CHAMPION
    client = MlflowClient()
    with _store_errors():
        try:
            model = _registered_model(client, name)
        except ValueError as error:
            raise ValueError(
                f"{error}; refer to a model as NAME (its champion), NAME@alias or NAME@version"
            ) from None
        aliases = _aliases(model)
        if selector.isdigit():
            versions = sorted(
                int(v.version) for v in client.search_model_versions(f"name = '{name}'")
            )
            if int(selector) not in versions:
                listed = ", ".join(map(str, versions)) or "none"
                raise ValueError(f"{name} has no version {selector} (versions: {listed})")
            return name, f"models:/{name}/{int(selector)}"
        if selector not in aliases:
            listed = ", ".join(f"{a} → {v}" for a, v in sorted(aliases.items())) or "none"
            hint = " (promote a challenger first)" if selector == CHAMPION else ""
            raise ValueError(f"{name} has no {selector!r} alias{hint}; aliases: {listed}")
        return name, f"models:/{name}@{selector}"


def _version_of(client: MlflowClient, uri: str) -> ModelVersion:
    name, _, rest = uri.removeprefix("models:/").partition("/")
    if "@" in name:
        name, alias = name.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    return client.get_model_version(name, rest)


def evaluate_version(
    ref: str, frame: pd.DataFrame | None = None, *, raw: bool = False
) -> dict[str, Any]:
    """Metrics of a registered version (see `resolve_model`) on `frame`, a table with the
    label column and the model's features, or by default on the version's own logged test
    split. `raw`: `frame` is rows of a user's table as read, for a model trained on such a
    table (`train --table`)."""
    name, uri = resolve_model(ref)
    client = MlflowClient()
    with _store_errors():
        version = _version_of(client, uri)
        test, labels = load_test_split(version.run_id)
        data = "logged test split" if frame is None else "given table"
        table = test if frame is None else frame
        who = f"{name} version {version.version}"
        loaded = mlflow.pyfunc.load_model(uri)
        if raw and _preprocessor(loaded) is None:
            raise ValueError(
                f"{who} was trained on a feature table, not on a user's table (train --table); "
                "evaluate it with --features"
            )
        metrics = _score(loaded, table, labels, who)
    metric = labels["primary_metric"]
    return {
        "name": name,
        "version": int(version.version),
        "uri": uri,
        "run_id": version.run_id,
        "data": data,
        "rows": len(table),
        "primary_metric": metric,
        "primary_value": _finite(metrics.get(metric)),
        "metrics": {key: _finite(float(value)) for key, value in metrics.items()},
    }


# --- models for explanations and reports -----------------------------------------------------------


@dataclass
class LoadedModel:
    """A registered version's fitted estimator, the spec it was trained from and its identity."""

    model: Any  # OrdinalLGBM | BinaryLGBM
    spec_name: str
    ref: ModelRef


def load_estimator(ref: str) -> LoadedModel:
    """The fitted estimator behind `NAME[@alias|@version]` (see `resolve_model`), for SHAP and
    reports, with the model version and run it came from."""
    name, uri = resolve_model(ref)
    client = MlflowClient()
    with _store_errors():
        version = _version_of(client, uri)
        loaded = mlflow.pyfunc.load_model(uri)
        model = loaded.unwrap_python_model()
        run = client.get_run(version.run_id)
    estimator = getattr(model, "model", None)
    if estimator is None or not hasattr(estimator, "layout"):
        raise ValueError(f"{name} version {version.version} is not a suitability model")
    return _loaded_model(estimator, name, uri, version, run)


def load_portable_estimator(ref: str) -> LoadedModel:
    """Like `load_estimator`, but from the version's portable form (LightGBM text and JSON),
    never from a pickle: every file is checked against the sha256 recorded at registration
    before anything is parsed, and a difference is a `PortableModelError`."""
    name, uri = resolve_model(ref)
    client = MlflowClient()
    with _store_errors():
        version = _version_of(client, uri)
        who = f"{name} version {version.version}"
        sha256 = (version.tags or {}).get(PORTABLE_SHA256_TAG)
        kind = (version.tags or {}).get("model_kind", "lightgbm")
        if not sha256 and kind != "lightgbm":
            raise ValueError(
                f"{who} is a {kind.replace('_', ' ')} trained on a user's table: it has no "
                "portable form (LightGBM models have); load it with `load_estimator`"
            )
        if not sha256:
            raise ValueError(
                f"{who} has no {PORTABLE_SHA256_TAG} tag: it was registered before portable "
                "models; retrain it"
            )
        run = client.get_run(version.run_id)
        with tempfile.TemporaryDirectory() as folder:
            try:
                local = mlflow.artifacts.download_artifacts(
                    run_id=version.run_id, artifact_path=PORTABLE_DIR, dst_path=folder
                )
            except (MlflowException, OSError) as error:
                raise ValueError(
                    f"{who}: cannot read its {PORTABLE_DIR}/ artifacts from run "
                    f"{version.run_id}: {str(error).splitlines()[0][:200]}"
                ) from None
            try:
                estimator = load_portable(local, sha256)
            except PortableModelError as error:
                raise PortableModelError(
                    f"{who} (run {version.run_id}, artifacts {PORTABLE_DIR}/) failed its "
                    f"integrity check: {error}"
                ) from None
    return _loaded_model(estimator, name, uri, version, run)


def _loaded_model(
    estimator: Any, name: str, uri: str, version: ModelVersion, run: Any
) -> LoadedModel:
    alias = uri.rsplit("@", 1)[1] if "@" in uri else None
    return LoadedModel(
        model=estimator,
        spec_name=run.data.tags.get("suitability.model", ""),
        ref=ModelRef(name=name, version=int(version.version), alias=alias, run_id=version.run_id),
    )


@dataclass
class DossierData:
    """Everything a model dossier shows, read back from the registry and the version's run."""

    loaded: LoadedModel
    created: str | None
    description: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    split: dict[str, Any]
    labels: dict[str, Any]
    test: pd.DataFrame
    aliases: list[str]
    history: list[dict[str, Any]]
    global_explanation: dict[str, Any] | None
    planted_check: dict[str, Any] | None
    # Binary: the test probabilities of the model, its baselines and the best possible, in the
    # order of `test` (None for a version logged without them: reports then draw the model's).
    test_predictions: pd.DataFrame | None
    artifacts: dict[str, Any]  # other JSON artifacts (confusion matrix, calibration curves)


def _artifact_parquet(run_id: str, path: str, folder: str) -> pd.DataFrame | None:
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=folder
        )
    except (MlflowException, OSError):
        return None
    return pd.read_parquet(local)


def _artifact_json(run_id: str, path: str, folder: str) -> Any | None:
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=folder
        )
    except (MlflowException, OSError):
        return None
    return json.loads(Path(local).read_text(encoding="utf-8"))


def dossier_data(ref: str) -> DossierData:
    """Read what a model dossier needs about `NAME[@alias|@version]`: run params, metrics and
    lineage, the logged test split and predictions, explanations, aliases and promotion history.
    Charts are not read: reports draw them from these numbers, in their own language."""
    loaded = load_estimator(ref)
    name, version, run_id = loaded.ref.name, loaded.ref.version, loaded.ref.run_id
    client = MlflowClient()
    with _store_errors():
        model_version = client.get_model_version(name, str(version))
        registered = client.get_registered_model(name)
        run = client.get_run(run_id)
        test, labels = load_test_split(run_id)
        artifacts: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as folder:
            predictions = _artifact_parquet(run_id, TEST_PREDICTIONS_ARTIFACT, folder)
            for path in (
                "evaluation/confusion_matrix.json",
                "evaluation/calibration_curves.json",
                CALIBRATION_ARTIFACT,
            ):
                value = _artifact_json(run_id, path, folder)
                if value is not None:
                    artifacts[path] = value
            split = _artifact_json(run_id, "split.json", folder) or {}
            global_json = _artifact_json(run_id, f"{EXPLANATIONS_DIR}/global.json", folder)
            planted = _artifact_json(run_id, f"{EXPLANATIONS_DIR}/planted_check.json", folder)
        history = alias_history(name)
    aliases = sorted(a for a, v in _aliases(registered).items() if v == version)
    return DossierData(
        loaded=loaded,
        created=_iso(model_version.creation_timestamp),
        description=registered.description or "",
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
        split=split,
        labels=labels,
        test=test,
        aliases=aliases,
        history=[h for h in history if version in (h["from_version"], h["to_version"])],
        global_explanation=global_json,
        planted_check=planted,
        test_predictions=predictions,
        artifacts=artifacts,
    )


def log_report(run_id: str, path: Path, folder: str = REPORTS_DIR) -> str:
    """Attach a written report to the run of the model it describes; returns its artifact path."""
    with _store_errors():
        MlflowClient().log_artifact(run_id, str(path), folder)
    return f"{folder}/{Path(path).name}"


def load_explainer(ref: str, specs: Any, *, portable: bool = False) -> Explainer:
    """A registered version ready to explain: its estimator, the spec its wording comes from
    (the run's spec name, read from the project's `models/`), and its identity. `portable`
    loads the estimator from its checked portable form (`load_portable_estimator`), as a
    service must, instead of unpickling the MLflow pyfunc."""
    from suitability.models.spec import MODEL_NAMES, load_model_spec

    loaded = load_portable_estimator(ref) if portable else load_estimator(ref)
    if loaded.spec_name not in MODEL_NAMES:
        raise ValueError(
            f"{loaded.ref.name} version {loaded.ref.version} was trained as "
            f"{loaded.spec_name or 'an unknown model'!r}, not one of {', '.join(MODEL_NAMES)}"
        )
    spec = load_model_spec(loaded.spec_name, specs)
    return Explainer(model=loaded.model, spec=spec, ref=loaded.ref)


# --- monitoring -------------------------------------------------------------------------------------


@dataclass
class MonitoredModel:
    """A registered version with what monitoring compares it against: its training reference,
    the test metrics its run logged and the end of its training data."""

    loaded: LoadedModel
    reference: Reference
    logged: dict[str, float]
    trained_until: pd.Timestamp


def load_monitored_model(ref: str) -> MonitoredModel:
    """`NAME[@alias|@version]` (see `resolve_model`) with its run's monitoring reference,
    test metrics and split; a version trained before monitoring existed is refused."""
    loaded = load_estimator(ref)
    run_id = loaded.ref.run_id
    who = f"{loaded.ref.name} version {loaded.ref.version}"
    with _store_errors(), tempfile.TemporaryDirectory() as folder:
        data = _artifact_json(run_id, REFERENCE_ARTIFACT, folder)
        split = _artifact_json(run_id, "split.json", folder) or {}
        metrics = dict(MlflowClient().get_run(run_id).data.metrics)
    if data is None:
        raise ValueError(
            f"{who} has no {REFERENCE_ARTIFACT} in run {run_id}: it was trained before "
            "monitoring; retrain it to record a reference"
        )
    if "last_time" not in split:
        raise ValueError(f"{who}: its run's split.json does not say when its data end")
    return MonitoredModel(
        loaded=loaded,
        reference=reference_from_json(data),
        logged=metrics,
        trained_until=pd.Timestamp(split["last_time"]),
    )


def log_monitoring(result: MonitoringResult, model_run_id: str, report: Path | None = None) -> str:
    """Record one monitoring check as a run of the `suitability-monitoring` experiment (the
    verdict and every column's PSI and status as metrics, the whole result as JSON, the
    report); returns the run id."""
    client = MlflowClient()
    with _store_errors():
        experiment_id = _experiment_id(client, MONITORING_EXPERIMENT)
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"{result.model}-v{result.version}-{result.as_of}",
            tags={
                "suitability.version": __version__,
                "suitability.monitored_model": result.model,
                "suitability.monitored_version": result.version,
                "suitability.monitored_run": model_run_id,
                "suitability.verdict": result.verdict,
            },
        ) as run:
            mlflow.log_params(
                {
                    "as_of": result.as_of,
                    "thresholds_version": result.spec.version,
                    "reference_rows": result.reference.rows,
                }
            )
            mlflow.log_metrics(result.metrics())
            mlflow.log_dict(_finite_tree(result.to_json()), "monitoring/result.json")
            if report is not None:
                mlflow.log_artifact(str(report), REPORTS_DIR)
    return run.info.run_id
