"""The `suitability` command line: thin Typer commands over the library functions."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from suitability import __version__
from suitability.settings import masked_url

if TYPE_CHECKING:
    from suitability.models.train import TrainingResult
    from suitability.tracking import LoggedRun, Promotion


class _Command(TyperCommand):
    """Typer's command, its flags listed without a value type (Typer prints `<bool>` beside
    `--json`, which takes no value)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class _Group(TyperGroup):
    """Typer's command group, its flags listed without a value type (as `_Command`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


def _flags_without_type(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # what the help shows in the type column: nothing
    return params


def _typer(**options: Any) -> typer.Typer:
    """A command group of this CLI: help as Markdown (paragraphs rewrapped to the terminal,
    not broken where the source lines end), flags without a value type."""
    return typer.Typer(cls=_Group, rich_markup_mode="markdown", no_args_is_help=True, **options)


app = _typer(
    name="suitability",
    help="Know your investor: risk category (C1–C5), churn risk and product suitability, with reasons.",
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = _typer(help="Raw tables: generate synthetic data, validate a data folder.")
features_app = _typer(
    help="Point-in-time features: build feature and training tables, list the catalogue."
)
models_app = _typer(
    help="The model registry: list versions and aliases, show the promotion history."
)
report_app = _typer(
    help="Compliance reports (zh/en, HTML or PDF): one decision, or a model version's dossier."
)
keys_app = _typer(help="API keys of the prediction service: add (printed once), list, remove.")
audit_app = _typer(help="The service's audit log: show one answered request, export a time range.")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.add_typer(report_app, name="report")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")


class ModelName(StrEnum):
    risk_level = "risk-level"
    churn = "churn"


class Lang(StrEnum):
    zh = "zh"
    en = "en"


class Initiator(StrEnum):
    investor = "investor"
    platform = "platform"


class Role(StrEnum):
    matching = "matching"
    compliance = "compliance"


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


class ReportFormat(StrEnum):
    html = "html"
    pdf = "pdf"


LangOption = Annotated[Lang, typer.Option("--lang", help="Language of reasons and reports.")]
RiskModelOption = Annotated[
    str,
    typer.Option("--risk-model", help="Risk-level model: NAME[@alias|@version]."),
]
ChurnModelOption = Annotated[
    str, typer.Option("--churn-model", help="Churn model: NAME[@alias|@version].")
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Assess as of this date or time (default: the data's last event)."
    ),
]


KeysFileOption = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        help="API keys file (hashes and roles). Default: $SUITABILITY_KEYS_FILE.",
        show_default=False,
    ),
]
AuditDbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="PATH|URL",
        help="Audit log: an SQLite file or a postgresql:// URL. Default: $SUITABILITY_AUDIT_URL, "
        "else $SUITABILITY_AUDIT_DB, else ./serving-audit.sqlite.",
        show_default=False,
    ),
]


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON object as the last line of output.")
]
JsonTable = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ExperimentOption = Annotated[
    Path | None,
    typer.Option("--experiment", help="Experiment config (YAML) changing the model spec."),
]
ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        metavar="ADDRESS|local[:N]",
        help="Run on a Dask cluster: a scheduler address (tcp://host:8786), or local:N to "
        "start N worker processes here. Default: $SUITABILITY_DASK_SCHEDULER, else this "
        "process alone.",
        show_default=False,
    ),
]


console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # error lines stay whole: paths must copy-paste


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Print a user's mistake (bad data, bad spec, bad argument) as a message, not a traceback."""
    from suitability.cluster import ClusterError
    from suitability.data.contracts import ContractError
    from suitability.specs import SpecError

    try:
        yield
    except (ContractError, SpecError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except (ValueError, OSError, ClusterError) as exc:  # bad arguments, paths, cluster
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:
        # The tracking store's own errors (an unsupported MLFLOW_TRACKING_URI, a server that
        # refuses a request) are about the user's setup; anything else is a bug and propagates.
        if not type(exc).__module__.startswith("mlflow"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err_console.print(f"[bold red]error:[/] tracking store: {escape(first)}", highlight=False)
        raise typer.Exit(2) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


def _track(bar: Progress, label: str) -> Callable[[int, int], None]:
    """A new task on `bar` and the `progress(done, total)` callback that advances it."""
    task = bar.add_task(label, total=None)
    return lambda done, total: bar.update(task, completed=done, total=total)


@contextlib.contextmanager
def _on_cluster(text: str | None) -> Iterator[object | None]:
    """A checked Dask client for `--cluster` (None: run in this process), described on stderr."""
    from suitability.cluster import connect, dashboard_link, parse_cluster

    spec = parse_cluster(text)
    if spec is None:
        yield None
        return
    with connect(spec) as client:
        workers = len(client.scheduler_info()["workers"])  # type: ignore[attr-defined]
        link = dashboard_link(client) if spec.address else None  # (a local one: the bar)
        err_console.print(
            f"on the Dask cluster {escape(str(spec))}: {workers} worker(s)"
            + (f", dashboard {escape(link)}" if link else ""),
            highlight=False,
        )
        yield client


def _version(value: bool) -> None:
    if value:
        console.print(f"suitability {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Know your investor: risk category (C1–C5), churn risk and product suitability."""


# --- data -----------------------------------------------------------------------------------------


@data_app.command("synth", cls=_Command)
def data_synth(
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder to create for the tables (must not exist or be empty)."),
    ],
    customers: Annotated[
        int, typer.Option("--customers", min=1, help="Number of customers.")
    ] = 20_000,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed; the same seed gives the same bytes.")
    ] = 7,
    start: Annotated[
        str, typer.Option("--start", help="First day of the event history (YYYY-MM-DD).")
    ] = "2024-07-01",
    months: Annotated[
        int, typer.Option("--months", min=24, help="Months of history (at least 24).")
    ] = 27,
) -> None:
    """Generate the six raw tables plus a ground-truth table, with planted contradictions."""
    from suitability.data.synth import generate

    with _user_errors(), _progress() as bar:
        summary = generate(
            out, customers, seed, start=start, months=months, progress=_track(bar, "synthesising")
        )
    table = Table(
        "table", "rows", title=escape(f"synthetic data for {customers:,} customers in {out}")
    )
    for name, n in summary.rows.items():
        table.add_row(name, f"{n:,}")
    console.print(table)
    console.print(
        f"snapshots with ground truth: {summary.snapshots[0]} … {summary.snapshots[-1]} (monthly)"
    )


@data_app.command("validate", cls=_Command)
def data_validate(
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Folder with the raw tables (parquet or CSV): a path, or an fsspec URL the "
            "workers can read too (s3://bucket/world).",
        ),
    ],
    cluster: ClusterOption = None,
) -> None:
    """Check every raw table against its data contract; lists every problem found."""
    from suitability.data import io
    from suitability.data.storage import locate
    from suitability.specs import load_specs

    with _user_errors():
        if not locate(data).is_dir():
            raise ValueError(f"--data {data}: no such folder")
        specs = load_specs()
        with _on_cluster(cluster) as client:
            if client is None:
                counts = io.validate_folder(data, specs)
            else:
                from suitability.features.distributed import validate_on_cluster

                with _progress() as bar:
                    counts = validate_on_cluster(
                        client, Path(data), specs, _track(bar, "checking partitions")
                    )
    table = Table("table", "rows", title=escape(f"{data}: all contracts hold"))
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    console.print(table)


# --- features -------------------------------------------------------------------------------------


@features_app.command("build", cls=_Command)
def features_build(
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Folder with the raw tables (parquet or CSV): a path, or an fsspec URL the "
            "workers can read too (s3://bucket/world).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Feature table to write (.parquet or .csv).")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Snapshot dates YYYY-MM-DD[,YYYY-MM-DD…]; each means the start of that day.",
        ),
    ] = None,
    monthly: Annotated[
        str | None,
        typer.Option(
            "--monthly",
            help="Monthly snapshots START:END (YYYY-MM-DD:YYYY-MM-DD), first of each month.",
        ),
    ] = None,
    cluster: ClusterOption = None,
) -> None:
    """Write one row of point-in-time features per (customer_id, as_of)."""
    from suitability.features.builder import (
        AsOfError,
        build_features,
        check_paths,
        monthly_snapshots,
        parse_as_of,
    )
    from suitability.specs import load_specs

    with _user_errors():
        if (as_of is None) == (monthly is None):
            raise AsOfError("give exactly one of --as-of DATES or --monthly START:END")
        if monthly is not None:
            start, sep, end = monthly.partition(":")
            if not sep:
                raise AsOfError(
                    f"--monthly {monthly!r}: expected START:END, e.g. 2025-01-01:2025-12-01"
                )
            dates = monthly_snapshots(start, end)
        else:
            dates = parse_as_of(as_of or "")
        check_paths(data, out)
        specs = load_specs()
        began = time.perf_counter()
        with _on_cluster(cluster) as client, _progress() as bar:
            summary = build_features(
                data,
                dates,
                out,
                specs,
                progress=_track(bar, "building features" if client is None else "partitions"),
                cluster=client,
            )
    console.print(
        f"wrote {summary.rows:,} rows × {len(specs.feature_names)} features for {len(dates)} as-of date(s) "
        f"to {summary.out_path} in {time.perf_counter() - began:.1f}s ({summary.events:,} events read)"
    )


@features_app.command("list", cls=_Command)
def features_list(
    lang: Annotated[str, typer.Option("--lang", help="Description language: zh or en.")] = "en",
    source: Annotated[
        str | None,
        typer.Option(
            "--source", help="Only one source: questionnaire, behaviour, interview, profile."
        ),
    ] = None,
) -> None:
    """List every feature with its source, unit and description."""
    from suitability.specs import load_specs

    with _user_errors():
        if lang not in ("zh", "en"):
            raise ValueError(f"--lang {lang!r}: use zh or en")
        specs = load_specs()
        features = [f for f in specs.features if source is None or f.source == source]
        if not features:
            raise ValueError(
                f"--source {source!r}: no such source (questionnaire, behaviour, interview, profile)"
            )
    table = Table(show_lines=False)
    table.add_column("feature", no_wrap=True)
    table.add_column("source")
    table.add_column("unit")
    table.add_column("description", overflow="fold")
    for f in features:
        table.add_row(f.name, f.source, f.unit, getattr(f, lang))
    console.print(table)


@features_app.command("training-table", cls=_Command)
def features_training_table(
    model: Annotated[ModelName, typer.Argument(help="Which model's table: risk-level or churn.")],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Folder with the raw tables (parquet or CSV): a path, or an fsspec URL the "
            "workers can read too (s3://bucket/world).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Table to write (.parquet or .csv).")],
    experiment: ExperimentOption = None,
    cluster: ClusterOption = None,
) -> None:
    """Write a model's training table: point-in-time features plus labels.

    Risk level: one row per risk review; churn: active investors at monthly snapshots. Train
    on it with `suitability train MODEL --features FILE`."""
    from suitability.features.builder import check_paths
    from suitability.models.sources import write_table
    from suitability.models.spec import load_model_spec
    from suitability.models.training_table import build_training_table
    from suitability.specs import load_specs

    with _user_errors():
        check_paths(data, out)  # before hours of work, not after
        specs = load_specs()
        spec = load_model_spec(model.value, specs, experiment=experiment)
        began = time.perf_counter()
        with (
            _on_cluster(cluster) as client,
            _progress() as bar,
            tempfile.TemporaryDirectory(prefix="suitability-") as scratch,
        ):
            table = build_training_table(
                spec,
                data,
                specs,
                scratch,
                progress=_track(bar, "building features" if client is None else "partitions"),
                cluster=client,
            )
        write_table(table.frame, out)
    labels = table.frame[spec.label]
    summary = (
        f"churn rate {labels.mean():.1%}"
        if spec.task == "binary"
        else "levels "
        + " / ".join(
            f"{k} {v:.1%}" for k, v in labels.value_counts(normalize=True).sort_index().items()
        )
    )
    console.print(
        f"wrote {len(table.frame):,} rows to {escape(str(out))} in "
        f"{time.perf_counter() - began:.1f}s ({summary})"
    )


# --- models ---------------------------------------------------------------------------------------


def _print_candidates(result: TrainingResult) -> None:
    """Flat-table mode: the candidates compared on validation, the chosen one marked."""
    spec = result.spec
    keys = [spec.primary_metric, "log_loss"]
    table = Table(title="candidates, compared on the validation split")
    table.add_column("candidate", no_wrap=True)
    for key in keys:
        table.add_column(key + (" *" if key == spec.primary_metric else ""), justify="right")
    table.add_column("test " + spec.primary_metric, justify="right")
    table.add_column("fitted", no_wrap=True)
    for c in result.candidates:
        name = c["kind"].replace("_", " ") + (" (chosen)" if c["chosen"] else "")
        table.add_row(
            name,
            *(f"{c['validation'].get(k, float('nan')):.4f}" for k in keys),
            f"{c['test'].get(spec.primary_metric, float('nan')):.4f}",
            escape(c["detail"]),
        )
    console.print(table)


def _print_result(result: TrainingResult, logged: LoggedRun | None) -> None:
    """The test metrics of the model beside its baselines and the best possible."""
    spec = result.spec
    keys = (
        ["qwk", "accuracy", "macro_f1", "within_one_accuracy", "log_loss", "ece"]
        if spec.task == "ordinal"
        else ["roc_auc", "pr_auc", "brier", "top_decile_lift", "log_loss", "ece"]
    )
    table = Table(title=escape(f"{spec.name}: test split ({result.metrics['test']['n']:,} rows)"))
    table.add_column("metric", no_wrap=True)
    columns = {"model": result.metrics["test"], **result.baselines}
    if result.best is not None:
        columns["best possible"] = result.best
    for name in columns:
        table.add_column(name.replace("_", " "), justify="right")
    if result.ratios is not None:
        table.add_column("model / best", justify="right")
    for key in keys:
        row = [key + (" *" if key == spec.primary_metric else "")]
        row += [f"{columns[c].get(key, float('nan')):.4f}" for c in columns]
        if result.ratios is not None:
            row.append(f"{result.ratios.get(key, float('nan')):.3f}")
        table.add_row(*row)
    console.print(table)
    if result.candidates:
        _print_candidates(result)
    b = result.split.boundaries
    fitted = (
        f"best iterations {result.params['best_iterations']}"
        if result.params["best_iterations"]
        else f"C={result.params.get('linear.C', float('nan')):g}"
    )
    finalized = "; finalised on train + validation" if result.params.get("finalize") else ""
    console.print(
        f"split: train {b.get('train_rows', 0):,} / validation {b.get('validation_rows', 0):,} / "
        f"test {b.get('test_rows', 0):,} rows ({b.get('method')}); {fitted}{finalized}"
    )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if logged is not None:
        console.print(
            f"logged run {logged.run_id} in experiment {escape(logged.experiment_name)}; "
            f"registered {escape(logged.model_uri)} as @challenger"
        )


@app.command("train", cls=_Command)
def train(
    model: Annotated[ModelName, typer.Argument(help="risk-level or churn.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Raw tables folder (a path or an fsspec URL): build features and labels, "
            "then train.",
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help="Prebuilt training table (from `suitability features training-table`); a "
            "path or an fsspec URL.",
        ),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option("--table", help="Flat-table mode: any prepared CSV/parquet table."),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Flat-table mode: the label column.")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id", help="Flat-table mode: the customer id column.")
    ] = None,
    time_column: Annotated[
        str | None,
        typer.Option(
            "--time",
            help="Flat-table mode: split by this time column instead of at random (ids that "
            "repeat are kept in one split).",
        ),
    ] = None,
    finalize: Annotated[
        bool | None,
        typer.Option(
            "--finalize/--no-finalize",
            help="After early stopping has chosen the rounds, train again on training + "
            "validation rows with them (default: the model spec's `finalize`).",
            show_default=False,
        ),
    ] = None,
    experiment: ExperimentOption = None,
    as_json: JsonFlag = False,
    cluster: ClusterOption = None,
) -> None:
    """Train, evaluate against baselines, log to MLflow and register as @challenger. With
    --table, LightGBM and a regularised logistic regression are both fitted and the better one
    on validation is registered."""
    from suitability import tracking
    from suitability.data.storage import locate
    from suitability.models import sources
    from suitability.models.spec import load_model_spec
    from suitability.specs import load_specs

    with _user_errors():
        given = [
            name
            for name, v in (("--data", data), ("--features", features), ("--table", table))
            if v
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one data source: --data DIR, --features FILE or --table FILE"
            )
        if table is not None and (target is None or id_column is None):
            raise ValueError("--table needs --target COLUMN and --id COLUMN")
        if table is None and (target or id_column or time_column):
            raise ValueError("--target, --id and --time belong to --table (flat-table mode)")
        specs = load_specs()
        spec = load_model_spec(model.value, specs, experiment=experiment)
        if finalize is not None:
            spec = spec.model_copy(update={"finalize": finalize})
        uri = tracking.use_store()
        if data is not None and not locate(data).is_dir():
            raise ValueError(f"--data {data}: no such folder")
        with _on_cluster(cluster) as client, _progress() as bar:
            fit = _track(bar, f"training {spec.name}")
            if data is not None:
                result = sources.train_from_data(
                    spec,
                    data,
                    specs,
                    build_progress=_track(bar, "building features"),
                    fit_progress=fit,
                    cluster=client,
                )
                source = {"mode": "data", "path": locate(data).absolute()}
            elif features is not None:
                result = sources.train_from_features(
                    spec, features, specs, fit_progress=fit, cluster=client
                )
                source = {"mode": "features", "path": locate(features).absolute()}
            else:
                assert table is not None and target is not None and id_column is not None
                result = sources.train_from_flat_table(
                    spec,
                    table,
                    target=target,
                    id_column=id_column,
                    time_column=time_column,
                    fit_progress=fit,
                    cluster=client,
                )
                source = {
                    "mode": "table",
                    "path": str(table.resolve()),
                    "target": target,
                    "id": id_column,
                }
            logging = bar.add_task("logging to MLflow", total=None)
            logged = tracking.log_training(result, source=source, experiment_config=experiment)
            bar.update(logging, completed=1, total=1)
    _print_result(result, logged)
    console.print(f"tracking store: {escape(masked_url(uri))}")
    if as_json:
        print(
            json.dumps(
                {
                    **logged.to_json(),
                    "metrics": _finite(result.metrics["test"]),
                    "validation_metrics": _finite(result.metrics["validation"]),
                    "ratios_to_best": _finite(result.ratios or {}),
                    "model_kind": result.params["model_kind"],
                    "finalize": bool(result.params["finalize"]),
                    "candidates": [
                        {
                            "kind": c["kind"],
                            "chosen": c["chosen"],
                            "validation_metrics": _finite(c["validation"]),
                            "test_metrics": _finite(c["test"]),
                        }
                        for c in result.candidates
                    ],
                }
            )
        )


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if v == v else None) for k, v in values.items()}


@app.command("evaluate", cls=_Command)
def evaluate(
    model: Annotated[
        str,
        typer.Argument(
            help="NAME[@alias|@version], e.g. suitability-churn@champion, churn@3 (default alias: champion)."
        ),
    ],
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help="A labelled training table the version did not train on, e.g. newer data "
            "(default: the version's own test split); a path or an fsspec URL.",
        ),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option(
            "--table",
            help="For a model trained with `train --table`: rows of such a table as they are "
            "(CSV or parquet, with its target column).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Score a registered model version on its logged test split, a training table, or (a
    model trained on a user's table) raw rows of that kind of table."""
    from suitability import tracking
    from suitability.models.flat import read_flat_table
    from suitability.models.sources import read_feature_table

    with _user_errors():
        if features is not None and table is not None:
            raise ValueError("give at most one of --features FILE and --table FILE")
        tracking.use_store()
        frame = read_feature_table(features) if features is not None else None
        if table is not None:
            frame = read_flat_table(table)
        report = tracking.evaluate_version(model, frame, raw=table is not None)
    table = Table(title=escape(f"{report['name']} version {report['version']}"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report["metrics"].items():
        table.add_row(key, f"{int(value):,}" if key == "n" else f"{value:.4f}")
    console.print(table)
    if as_json:
        print(json.dumps({**report, "metrics": _finite(report["metrics"])}, default=str))


@app.command("promote", cls=_Command)
def promote(
    model: Annotated[str, typer.Argument(help="risk-level, churn or a registered model name.")],
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if the challenger is not better.")
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (required with --force); recorded.")
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who promotes (default: the OS user); recorded.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Move @champion to @challenger if it is better on the primary metric.

    Both are scored on the challenger's logged test split; --force --reason overrides, and
    every decision is recorded (see `suitability models history`)."""
    from suitability import tracking

    with _user_errors():
        if force and not (reason or "").strip():
            raise ValueError("--force needs --reason TEXT (who forced it and why is recorded)")
        tracking.use_store()
        outcome = tracking.promote(model, force=force, reason=reason, by=by)
    _print_promotion(outcome)
    if as_json:
        print(json.dumps(outcome.to_json(), default=str))


def _print_promotion(outcome: Promotion) -> None:
    champion = (
        f"{outcome.champion_value:.4f} (version {outcome.champion_version})"
        if outcome.champion_value is not None
        else "none yet"
    )
    console.print(
        f"{escape(outcome.name)}: challenger version {outcome.challenger_version} "
        f"{outcome.metric} {outcome.challenger_value:.4f} vs champion {champion}"
    )
    if outcome.promoted:
        how = " (forced)" if outcome.forced else ""
        console.print(
            f"[bold green]promoted{how}:[/] version {outcome.challenger_version} is now @champion"
        )
    else:
        console.print("[bold yellow]not promoted:[/] the challenger is not better; @champion stays")


@models_app.command("list", cls=_Command)
def models_list(
    as_json: JsonTable = False,
) -> None:
    """Every registered suitability model version with its aliases and primary metric."""
    from suitability import tracking

    with _user_errors():
        tracking.use_store()
        rows = tracking.list_models()
    if as_json:
        print(json.dumps(rows, default=str))
        return
    table = Table(title="registered models")
    table.add_column("name", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("aliases", overflow="fold")
    table.add_column("primary metric", no_wrap=True)
    table.add_column("created (UTC)", overflow="fold")
    for row in rows:
        value = row.get("primary_value")
        table.add_row(
            row["name"],
            str(row["version"]),
            ", ".join(row.get("aliases") or []),
            f"{row.get('primary_metric')} {float(value):.4f}" if value not in (None, "") else "",
            _when(row.get("created")),
        )
    console.print(table if rows else "no registered models yet: run `suitability train`")


@models_app.command("history", cls=_Command)
def models_history(
    model: Annotated[str, typer.Argument(help="risk-level, churn or a registered model name.")],
    as_json: JsonTable = False,
) -> None:
    """Every promotion decision for a model, newest first: who, when, why, with the metrics."""
    from suitability import tracking

    with _user_errors():
        tracking.use_store()
        rows = tracking.alias_history(model)
    if as_json:
        print(json.dumps(rows, default=str))
        return
    # One block per decision rather than a table: the reason is free text of any length, and
    # who and why must stay readable in any terminal.
    if not rows:
        console.print(f"no promotions recorded for {escape(model)}")
    for row in rows:
        before, after = row.get("from_version") or "–", row.get("to_version")
        if row.get("promoted"):
            how = "forced" if row.get("forced") else "promoted"
            outcome = f"@champion {before} → {after} ({how})"
        else:
            outcome = f"version {after} not promoted; @champion stays {before}"
        metric = row.get("metric", "")
        console.print(
            f"[bold]{escape(_when(row.get('at')))} UTC[/]  {outcome}  "
            f"{escape(str(metric))} {_fmt(row.get('challenger_value'))} vs "
            f"{_fmt(row.get('champion_value'))}  by {escape(str(row.get('by', '')))}",
            highlight=False,
        )
        console.print(f"  reason: {escape(str(row.get('reason') or ''))}", highlight=False)


def _when(value: object) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM`, short enough for one table cell."""
    return str(value or "")[:16].replace("T", " ")


def _fmt(value: object) -> str:
    try:
        return f"{float(value):.4f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "–"


# --- explanations and reports -------------------------------------------------------------------


def _print_reasons(title: str, reasons: list, lang: str) -> None:
    table = Table(title=escape(title), title_justify="left")
    for column in ("#", "source", "factor", "value", "direction", "SHAP"):
        table.add_column(column, justify="right" if column in {"#", "SHAP"} else "left")
    for i, r in enumerate(reasons, 1):
        arrow = "↑" if r.direction == "up" else "↓"
        table.add_row(
            str(i),
            r.source,
            escape(r.description[lang]),
            escape(r.value_text[lang]),
            arrow,
            f"{r.contribution:+.3f}",
        )
    console.print(table)
    for r in reasons:
        console.print("  • " + escape(r.text[lang]), highlight=False)


def _print_case(case, lang: str) -> None:  # CustomerCase
    risk, churn, m = case.risk, case.churn, case.mismatch
    console.print(
        f"[bold]{escape(case.customer.get('customer_id', ''))}[/] as of {case.as_of}   "
        + "  ".join(escape(v) for k, v in case.customer.items() if k != "customer_id")
    )
    probabilities = "  ".join(f"{c} {p:.0%}" for c, p in risk.probabilities.items())
    console.print(
        f"[bold]risk level[/] {risk.predicted_level} (stated {risk.stated_level or 'none'}; "
        f"{probabilities})   mismatch: {m.direction}"
        + (
            f" ({m.confidence:.0%}{', flagged' if m.flagged else ''})"
            if m.direction != "none"
            else ""
        )
    )
    _print_reasons("why this category", risk.reasons, lang)
    if risk.stated_reasons:
        _print_reasons(
            f"why not {risk.stated_level}, the questionnaire's", risk.stated_reasons, lang
        )
    console.print(f"[bold]churn[/] p = {churn.p_churn:.1%} within the horizon")
    _print_reasons("why this churn risk", churn.reasons, lang)
    if case.decision is not None and case.product is not None:
        d = case.decision
        console.print(
            f"[bold]decision[/] {d.decision} for {escape(case.product.product_id)} "
            f"({case.product.risk_level}, initiated by {case.initiated_by})"
        )
        for note in [*d.reasons, *d.warnings, *d.notes]:
            console.print("  • " + escape(getattr(note, lang)), highlight=False)
    models = ", ".join(f"{r.name} v{r.version}" for r in case.models.values())
    console.print(f"models: {escape(models)}; rules {escape(case.rule_version)}", highlight=False)


def _explainers(risk_model: str, churn_model: str, specs):
    from suitability import tracking

    tracking.use_store()
    return tracking.load_explainer(risk_model, specs), tracking.load_explainer(churn_model, specs)


@app.command("explain", cls=_Command)
def explain(
    data: Annotated[
        Path | None, typer.Option("--data", help="Data folder holding the customer's facts.")
    ] = None,
    customer: Annotated[
        str | None, typer.Option("--customer", help="Customer id (with --data).")
    ] = None,
    as_of: AsOfOption = None,
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help="Batch mode: a parquet feature table to explain row by row (with --out); a "
            "path or an fsspec URL.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Batch mode: parquet file for the explanations.")
    ] = None,
    model: Annotated[
        str,
        typer.Option("--model", help="Batch mode: which model to explain, NAME[@alias|@version]."),
    ] = "risk-level",
    lang: LangOption = Lang.zh,
    risk_model: RiskModelOption = "risk-level@champion",
    churn_model: ChurnModelOption = "churn@champion",
    as_json: JsonFlag = False,
    cluster: ClusterOption = None,
) -> None:
    """Explain both models' answers for one customer (--data, --customer), or stream SHAP
    contributions for a whole feature table (--features, --out; --cluster to spread it over a
    Dask cluster's workers)."""
    from suitability.specs import load_specs

    with _user_errors():
        if (features is None) == (data is None):
            raise ValueError("give either --data with --customer, or --features with --out")
        specs = load_specs()
        if features is not None:
            from suitability import tracking
            from suitability.explain.batch import explain_table

            if out is None:
                raise ValueError("--features needs --out (a parquet file)")
            tracking.use_store()
            explainer = tracking.load_explainer(model, specs)
            with _on_cluster(cluster) as client, _progress() as bar:
                rows = explain_table(
                    explainer.model,
                    features,
                    out,
                    progress=_track(bar, "explaining"),
                    cluster=client,
                )
            console.print(
                f"explained {rows:,} rows with {escape(explainer.ref.name)} "
                f"v{explainer.ref.version} → {escape(str(out))}"
            )
            if as_json:
                print(json.dumps({"rows": rows, "out": str(out), "model": explainer.ref.to_json()}))
            return
        if customer is None:
            raise ValueError("--data needs --customer")
        from suitability.explain.cases import assess_case, read_case
        from suitability.models.rules import load_rules

        # The arguments and the customer's facts are checked before the models load.
        inputs = read_case(data, customer, specs, as_of=as_of)
        rules = load_rules()
        risk, churn = _explainers(risk_model, churn_model, specs)
        case = assess_case(inputs, risk, churn, specs, rules)
    _print_case(case, lang.value)
    if as_json:
        print(json.dumps(case.to_json(), ensure_ascii=False, default=str))


def _check_writable(out: Path, option: str) -> None:
    """`out` can be written (its folder created if need be), checked before any slow work."""
    import os

    if out.is_dir():
        raise ValueError(f"{option} {out} is a folder; give a file name")
    folder = out.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {out}: cannot write in {folder}")


def _report_path(out: Path, fmt: ReportFormat | None) -> str:
    from suitability.explain.render import report_format

    return report_format(out, fmt.value if fmt else None)


@report_app.command("decision", cls=_Command)
def report_decision(
    data: Annotated[Path, typer.Option("--data", help="Data folder holding the customer's facts.")],
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    product: Annotated[
        str, typer.Option("--product", help="Product id (from the products table).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Report file (.html or .pdf).")],
    initiated_by: Annotated[
        Initiator, typer.Option("--initiated-by", help="Who proposed the product.")
    ] = Initiator.investor,
    as_of: AsOfOption = None,
    lang: LangOption = Lang.zh,
    fmt: Annotated[
        ReportFormat | None,
        typer.Option("--format", help="html or pdf (default: from the --out extension)."),
    ] = None,
    risk_model: RiskModelOption = "risk-level@champion",
    churn_model: ChurnModelOption = "churn@champion",
    log: Annotated[
        bool,
        typer.Option("--log/--no-log", help="Also attach the report to the risk model's run."),
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Write the decision report for one customer and one product: the decision, the stated
    and predicted category, churn risk, the reasons, the facts used, models and rule version."""
    from suitability import tracking
    from suitability.explain.cases import assess_case, read_case
    from suitability.explain.render import write_report
    from suitability.explain.reports import decision_report
    from suitability.models.rules import load_rules
    from suitability.specs import load_specs

    with _user_errors():
        chosen = _report_path(out, fmt)
        _check_writable(out, "--out")
        specs = load_specs()
        # The arguments, the customer's facts and the product are checked before the models load.
        inputs = read_case(
            data,
            customer,
            specs,
            as_of=as_of,
            product_id=product,
            initiated_by=initiated_by.value,
        )
        rules = load_rules()
        risk, churn = _explainers(risk_model, churn_model, specs)
        case = assess_case(inputs, risk, churn, specs, rules)
        path = write_report(decision_report(case, specs, lang.value), out, chosen)
        artifact = tracking.log_report(risk.ref.run_id, path) if log and risk.ref.run_id else None
    assert case.decision is not None
    console.print(
        f"{case.decision.decision}: {escape(customer)} × {escape(product)} → {escape(str(path))}"
        + (f" (logged to run {risk.ref.run_id} as {artifact})" if artifact else "")
    )
    if as_json:
        print(
            json.dumps(
                {"path": str(path), "artifact": artifact, **case.to_json()},
                ensure_ascii=False,
                default=str,
            )
        )


@report_app.command("model", cls=_Command)
def report_model(
    model: Annotated[
        str,
        typer.Argument(help="NAME[@alias|@version], e.g. risk-level, churn@2 (default: champion)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Report file (.html or .pdf).")],
    lang: LangOption = Lang.zh,
    fmt: Annotated[
        ReportFormat | None,
        typer.Option("--format", help="html or pdf (default: from the --out extension)."),
    ] = None,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Also attach the dossier to the model's run.")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Write a model version's dossier: purpose, data and cutoffs, metrics overall, per class and
    per slice, fairness gaps, calibration, global explanations, alias history, limitations."""
    from suitability import tracking
    from suitability.explain.render import write_report
    from suitability.explain.reports import model_dossier
    from suitability.models.rules import load_rules
    from suitability.models.spec import MODEL_NAMES, load_model_spec
    from suitability.specs import load_specs

    with _user_errors():
        chosen = _report_path(out, fmt)
        _check_writable(out, "--out")
        specs = load_specs()
        tracking.use_store()
        data = tracking.dossier_data(model)
        if data.loaded.spec_name not in MODEL_NAMES:
            raise ValueError(f"{data.loaded.ref.name} is not a risk-level or churn model")
        spec = load_model_spec(data.loaded.spec_name, specs)
        path = write_report(model_dossier(data, spec, specs, load_rules(), lang.value), out, chosen)
        ref = data.loaded.ref
        artifact = tracking.log_report(ref.run_id, path) if log and ref.run_id else None
    console.print(
        f"{escape(ref.name)} v{ref.version} dossier → {escape(str(path))}"
        + (f" (logged to run {ref.run_id} as {artifact})" if artifact else "")
    )
    if as_json:
        print(json.dumps({"path": str(path), "artifact": artifact, "model": ref.to_json()}))


# --- demo -----------------------------------------------------------------------------------------


@app.command("demo", cls=_Command)
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for everything the demo writes.")
    ] = Path("demo-out"),
    customers: Annotated[
        int, typer.Option("--customers", min=1000, help="Number of synthetic customers.")
    ] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 7,
) -> None:
    """Run the main job: synthesise, build features, train, register and promote both models.

    Everything (data, training tables, the MLflow store) stays under --out."""
    from suitability import tracking
    from suitability.data.synth import generate
    from suitability.models.sources import write_table
    from suitability.models.spec import MODEL_NAMES, load_model_spec
    from suitability.models.train import train_on_features
    from suitability.models.training_table import build_training_table
    from suitability.specs import load_specs

    data_dir = out / "data"
    began = time.perf_counter()
    with _user_errors():
        if data_dir.exists() and any(data_dir.iterdir()):
            raise FileExistsError(
                f"{data_dir} already holds data; choose another --out or remove it"
            )
        out.mkdir(parents=True, exist_ok=True)
        specs = load_specs()
        uri = tracking.use_store(
            f"sqlite:///{(out / 'mlflow.db').resolve()}", artifacts=(out / "mlartifacts").resolve()
        )
        results, promotions = [], []
        with _progress() as bar:
            summary = generate(data_dir, customers, seed, progress=_track(bar, "synthesising data"))
            for name in MODEL_NAMES:
                spec = load_model_spec(name, specs)
                with tempfile.TemporaryDirectory(prefix="suitability-") as scratch:
                    table = build_training_table(
                        spec, data_dir, specs, scratch, progress=_track(bar, f"{name}: features")
                    )
                path = out / f"{name.replace('-', '_')}_training.parquet"
                write_table(table.frame, path)
                result = train_on_features(
                    table.frame, spec, specs, mode="data", progress=_track(bar, f"{name}: training")
                )
                source = {
                    "mode": "data",
                    "path": str(data_dir.resolve()),
                    "table": str(path.resolve()),
                }
                logged = tracking.log_training(result, source=source)
                promotions.append(tracking.promote(spec.registered_name, by="demo"))
                results.append((result, logged, path))
    console.print(
        f"[bold]data[/]      {escape(str(data_dir))}  ({summary.rows.get('events', 0):,} events, "
        f"{customers:,} customers)"
    )
    for (result, logged, path), promotion in zip(results, promotions, strict=True):
        console.print(f"[bold]training table[/] {escape(str(path))}  ({len(result.table):,} rows)")
        _print_result(result, logged)
        _print_promotion(promotion)
    with _user_errors():
        written = _demo_reports(out, data_dir, specs)
    console.print("[bold]reports[/]")
    for path in written:
        console.print("  " + escape(str(path)), soft_wrap=True, highlight=False)
    console.print(f"done in {time.perf_counter() - began:.0f}s. Next:")
    # Commands stay on one line, whatever the terminal width: they are meant to be pasted.
    for command in (
        f"mlflow ui --backend-store-uri {uri}",
        f"MLFLOW_TRACKING_URI={uri} suitability models list",
        f"MLFLOW_TRACKING_URI={uri} suitability train churn --features {results[-1][2]}",
        f"MLFLOW_TRACKING_URI={uri} suitability evaluate suitability-churn@challenger",
        f"MLFLOW_TRACKING_URI={uri} suitability promote churn",
        f"MLFLOW_TRACKING_URI={uri} suitability explain --data {data_dir} --customer "
        f"{written_customer(written)} --lang en",
    ):
        console.print("  " + escape(command), soft_wrap=True, highlight=False)
    keys = out / "keys.json"
    console.print("Serve both champions over HTTP (127.0.0.1:3000):")
    for command in (
        f"KEY=$(suitability keys add --role matching --keys {keys})",
        f"MLFLOW_TRACKING_URI={uri} suitability serve --keys {keys} "
        f"--audit-db {out / 'serving-audit.sqlite'}",
        'curl -s -X POST localhost:3000/suitability -H "Authorization: Bearer $KEY" '
        "-H 'Content-Type: application/json' --data-binary @serving/examples/suitability.json",
    ):
        console.print("  " + escape(command), soft_wrap=True, highlight=False)


def written_customer(paths: list[Path]) -> str:
    """The customer id a demo decision report is named after (decision-<id>-<product>.<lang>)."""
    for path in paths:
        if path.name.startswith("decision-"):
            return path.name.split("-")[1]
    return "C0000001"


def _demo_reports(out: Path, data_dir: Path, specs) -> list[Path]:
    """One decision report and both model dossiers, in zh and en, as HTML and PDF. The decision
    is about a customer whose questionnaire the model disagrees with, for a product one level
    above their stated category that they asked for themselves: the richest case to read."""
    import pandas as pd

    from suitability import tracking
    from suitability.explain.cases import customer_case, default_as_of
    from suitability.explain.render import write_report
    from suitability.explain.reports import decision_report, model_dossier
    from suitability.models.rules import load_rules
    from suitability.models.spec import load_model_spec

    rules = load_rules()
    risk, churn = _explainers("risk-level@champion", "churn@champion", specs)
    as_of = default_as_of(data_dir)
    reviews = pd.read_parquet(
        out / "risk_level_training.parquet", columns=["customer_id", "q_level"]
    )
    candidates = reviews.dropna(subset=["q_level"])["customer_id"].drop_duplicates().head(40)
    case = None
    for customer in candidates:
        case = customer_case(data_dir, customer, risk, churn, specs, rules, as_of=as_of)
        if case.mismatch.flagged and case.risk.stated_level not in (None, "C5"):
            break
    assert case is not None, "the demo data has reviewed customers with a questionnaire"
    stated = case.risk.stated_level or "C1"
    allowed = rules.matrix[stated]
    products = pd.read_parquet(data_dir / "products.parquet")
    above = products[~products["risk_level"].isin(allowed)]
    product = str((above if len(above) else products)["product_id"].iloc[0])
    customer = case.customer["customer_id"]
    case = customer_case(
        data_dir,
        customer,
        risk,
        churn,
        specs,
        rules,
        as_of=as_of,
        product_id=product,
        initiated_by="investor",
    )
    folder = out / "reports"
    written = []
    for lang in ("zh", "en"):
        document = decision_report(case, specs, lang)
        for fmt in ("html", "pdf"):
            written.append(
                write_report(document, folder / f"decision-{customer}-{product}.{lang}.{fmt}", fmt)
            )
    for short in ("risk-level", "churn"):
        data = tracking.dossier_data(f"{short}@champion")
        spec = load_model_spec(short, specs)
        for lang in ("zh", "en"):
            document = model_dossier(data, spec, specs, rules, lang)
            for fmt in ("html", "pdf"):
                path = write_report(document, folder / f"dossier-{short}.{lang}.{fmt}", fmt)
                tracking.log_report(data.loaded.ref.run_id, path)
                written.append(path)
    for path in written[:4]:
        tracking.log_report(risk.ref.run_id, path)
    return written


# --- serving: keys and audit ----------------------------------------------------------------------


def _keys_file(keys: Path | None) -> Path:
    from suitability.settings import get_settings

    path = keys or get_settings().keys_file
    if path is None:
        raise ValueError("no keys file: pass --keys FILE or set SUITABILITY_KEYS_FILE")
    return path


@keys_app.command("add", cls=_Command)
def keys_add(
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            help="matching: prediction endpoints; compliance: also reads audit records.",
        ),
    ],
    keys: KeysFileOption = None,
    label: Annotated[
        str | None, typer.Option("--label", help="Who or what the key is for (stored).")
    ] = None,
) -> None:
    """Create an API key and print it once; the file keeps only its sha256 and role."""
    from suitability.serving.keys import add_key

    with _user_errors():
        path = _keys_file(keys)
        new = add_key(path, role.value, label)
    err_console.print(
        f"added {new.key_id} ({new.role}) to {escape(str(path))}. "
        "The key is printed once, below; store it now.",
        highlight=False,
    )
    # The bare key on stdout, so `KEY=$(suitability keys add …)` works.
    print(new.token)


@keys_app.command("list", cls=_Command)
def keys_list(keys: KeysFileOption = None, as_json: JsonTable = False) -> None:
    """The keys of a keys file: id, role, label, created (never the key or its hash)."""
    from suitability.serving.keys import list_keys

    with _user_errors():
        entries = list_keys(_keys_file(keys))
    rows = [
        {"key_id": e.key_id, "role": e.role, "label": e.label, "created": e.created}
        for e in entries
    ]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("key id", "role", "label", "created")
    for r in rows:
        table.add_row(r["key_id"], r["role"], escape(r["label"] or ""), r["created"])
    console.print(table)


@keys_app.command("remove", cls=_Command)
def keys_remove(
    key_id: Annotated[str, typer.Argument(help="The key id `keys list` shows.")],
    keys: KeysFileOption = None,
) -> None:
    """Revoke a key (a running service re-reads the file at its next request: no restart)."""
    from suitability.serving.keys import remove_key

    with _user_errors():
        remove_key(_keys_file(keys), key_id)
    console.print(f"removed {escape(key_id)}")


def _audit_log(db: str | None):  # AuditLog | PostgresAuditLog
    from suitability.serving.audit import open_audit
    from suitability.settings import get_settings

    settings = get_settings()
    # Reading only: the retention setting matters to the service, which purges.
    return open_audit(db or settings.audit_target, create=False)


def _time_option(value: str | None, name: str):  # datetime | None
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 date or time, e.g. 2026-11-01") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@audit_app.command("show", cls=_Command)
def audit_show(
    request_id: Annotated[str, typer.Argument(help="The request id a response carried.")],
    db: AuditDbOption = None,
) -> None:
    """Print one audit record as JSON: who asked, when, models, rules, feature hash, outputs
    and reasons."""
    with _user_errors():
        with _audit_log(db) as log:
            record = log.get(request_id)
        if record is None:
            raise ValueError(f"no audit record with request id {request_id!r}")
    print(json.dumps(record.to_dict(), ensure_ascii=False, indent=2))


@audit_app.command("export", cls=_Command)
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="File to write (.jsonl or .csv).")],
    db: AuditDbOption = None,
    fmt: Annotated[
        ExportFormat | None,
        typer.Option("--format", help="jsonl or csv (default: from the file extension)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this time (UTC unless an offset is given).")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Before this time (UTC unless an offset is given)."),
    ] = None,
) -> None:
    """Write the audit records of a time range (all by default) to a file, atomically."""
    with _user_errors():
        kind = fmt.value if fmt is not None else out.suffix.lstrip(".").lower()
        if kind not in ("jsonl", "csv"):
            raise ValueError(f"cannot tell the format of {out}: use .jsonl or .csv, or --format")
        start, end = _time_option(since, "--since"), _time_option(until, "--until")
        with _audit_log(db) as log:
            count = log.export(out, kind, since=start, until=end)  # type: ignore[arg-type]
    console.print(f"wrote {count:,} records to {escape(str(out))}", highlight=False)


@app.command("serve", cls=_Command)
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Interface to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default 3000).", show_default=False)
    ] = None,
    keys: KeysFileOption = None,
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias",
            help="Registry alias to load both models by (default champion).",
            show_default=False,
        ),
    ] = None,
    audit_db: Annotated[
        Path | None,
        typer.Option(
            "--audit-db",
            help="Audit log file (default ./serving-audit.sqlite).",
            show_default=False,
        ),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-body-bytes",
            min=1,
            help="Larger bodies get 413 (default 1 MiB).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Server processes, each with both models loaded (default: one per CPU). "
            "More serve more concurrent calls; a single call gets no faster.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start the prediction service (BentoML) against the configured MLflow store
    (MLFLOW_TRACKING_URI, default experiments/mlflow.db)."""
    import os
    import sys

    from suitability import tracking
    from suitability.serving.audit import check_retention
    from suitability.serving.keys import KeyStore
    from suitability.settings import get_settings, masked_url

    with _user_errors():
        settings = get_settings()
        from suitability.serving.service import load_scorer  # reads the settings at import

        keys_file = _keys_file(keys)
        KeyStore.load(keys_file)  # a bad file fails here, with its reason
        check_retention(
            settings.audit_retention_days,
            settings.audit_min_retention_days,
            settings.audit_retention_override,
        )
        chosen = alias or settings.model_alias
        uri = tracking.use_store()
        # Load both models once here (checksums included): a missing alias or a tampered
        # artifact is one line now, not a server restarting its worker forever.
        load_scorer(chosen)
    env = {
        "MLFLOW_TRACKING_URI": uri,
        "SUITABILITY_PROJECT_DIR": str(settings.project_dir.resolve()),
        "SUITABILITY_KEYS_FILE": str(keys_file.resolve()),
        "SUITABILITY_MODEL_ALIAS": chosen,
        "SUITABILITY_AUDIT_DB": str((audit_db or settings.audit_db).resolve()),
        # A team's PostgreSQL audit log, when set, is the one written (see `audit_target`).
        **({"SUITABILITY_AUDIT_URL": settings.audit_url} if settings.audit_url else {}),
        "SUITABILITY_MAX_BODY_BYTES": str(max_body_bytes or settings.max_body_bytes),
        "SUITABILITY_HOST": host or settings.host,
        "SUITABILITY_PORT": str(port or settings.port),
        "SUITABILITY_WORKERS": str(workers or settings.server_workers),
        # No usage analytics: the service makes no outbound calls.
        "BENTOML_DO_NOT_TRACK": "true",
        # `bentoml serve` keeps this process id (exec): its workers die with it.
        "SUITABILITY_SUPERVISOR_PID": str(os.getpid()),
    }
    os.environ.update(env)
    bind = f"{env['SUITABILITY_HOST']}:{env['SUITABILITY_PORT']}"
    audit_shown = (
        masked_url(settings.audit_url) if settings.audit_url else env["SUITABILITY_AUDIT_DB"]
    )
    err_console.print(
        f"serving {chosen} models from {escape(masked_url(uri))} on http://{bind} with "
        f"{env['SUITABILITY_WORKERS']} worker(s) (audit log {escape(audit_shown)})",
        highlight=False,
    )
    command = [
        sys.executable, "-m", "bentoml", "serve", "serving.service:Suitability",
        "--working-dir", env["SUITABILITY_PROJECT_DIR"],
        "--host", env["SUITABILITY_HOST"], "--port", env["SUITABILITY_PORT"],
    ]  # fmt: skip
    os.execv(sys.executable, command)
