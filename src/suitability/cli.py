"""The `suitability` command line: thin Typer commands over the library functions."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from suitability import __version__

if TYPE_CHECKING:
    from suitability.models.train import TrainingResult
    from suitability.tracking import LoggedRun, Promotion

app = typer.Typer(
    name="suitability",
    help="Know your investor: risk category (C1–C5), churn risk and product suitability, with reasons.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="Raw tables: generate synthetic data, validate a data folder.", no_args_is_help=True
)
features_app = typer.Typer(
    help="Point-in-time features: build feature and training tables, list the catalogue.",
    no_args_is_help=True,
)
models_app = typer.Typer(
    help="The model registry: list versions and aliases, show the promotion history.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")


class ModelName(StrEnum):
    risk_level = "risk-level"
    churn = "churn"


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON object as the last line of output.")
]
JsonTable = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ExperimentOption = Annotated[
    Path | None,
    typer.Option("--experiment", help="Experiment config (YAML) changing the model spec."),
]


console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # error lines stay whole: paths must copy-paste


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Print a user's mistake (bad data, bad spec, bad argument) as a message, not a traceback."""
    from suitability.data.contracts import ContractError
    from suitability.specs import SpecError

    try:
        yield
    except (ContractError, SpecError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except (ValueError, OSError) as exc:  # bad arguments; paths that cannot be read or written
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


@data_app.command("synth")
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


@data_app.command("validate")
def data_validate(
    data: Annotated[
        Path, typer.Option("--data", help="Folder with the raw tables (parquet or CSV).")
    ],
) -> None:
    """Check every raw table against its data contract; lists every problem found."""
    from suitability.data import io
    from suitability.specs import load_specs

    with _user_errors():
        specs = load_specs()
        counts = io.validate_folder(Path(data), specs)
    table = Table("table", "rows", title=escape(f"{data}: all contracts hold"))
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    console.print(table)


# --- features -------------------------------------------------------------------------------------


@features_app.command("build")
def features_build(
    data: Annotated[
        Path, typer.Option("--data", help="Folder with the raw tables (parquet or CSV).")
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
        with _progress() as bar:
            summary = build_features(
                data,
                dates,
                out,
                specs,
                progress=_track(bar, "building features"),
            )
    console.print(
        f"wrote {summary.rows:,} rows × {len(specs.feature_names)} features for {len(dates)} as-of date(s) "
        f"to {summary.out_path} in {time.perf_counter() - began:.1f}s ({summary.events:,} events read)"
    )


@features_app.command("list")
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


@features_app.command("training-table")
def features_training_table(
    model: Annotated[ModelName, typer.Argument(help="Which model's table: risk-level or churn.")],
    data: Annotated[
        Path, typer.Option("--data", help="Folder with the raw tables (parquet or CSV).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Table to write (.parquet or .csv).")],
    experiment: ExperimentOption = None,
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
        with _progress() as bar, tempfile.TemporaryDirectory(prefix="suitability-") as scratch:
            table = build_training_table(
                spec, data, specs, scratch, progress=_track(bar, "building features")
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
    b = result.split.boundaries
    console.print(
        f"split: train {b.get('train_rows', 0):,} / validation {b.get('validation_rows', 0):,} / "
        f"test {b.get('test_rows', 0):,} rows ({b.get('method')}); "
        f"best iterations {result.params['best_iterations']}"
    )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if logged is not None:
        console.print(
            f"logged run {logged.run_id} in experiment {escape(logged.experiment_name)}; "
            f"registered {escape(logged.model_uri)} as @challenger"
        )


@app.command("train")
def train(
    model: Annotated[ModelName, typer.Argument(help="risk-level or churn.")],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Raw tables folder: build features and labels, then train."),
    ] = None,
    features: Annotated[
        Path | None,
        typer.Option(
            "--features",
            help="Prebuilt training table (from `suitability features training-table`).",
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
    experiment: ExperimentOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Train, evaluate against baselines, log to MLflow and register as @challenger."""
    from suitability import tracking
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
        uri = tracking.use_store()
        with _progress() as bar:
            fit = _track(bar, f"training {spec.name}")
            if data is not None:
                if not data.is_dir():
                    raise ValueError(f"--data {data}: no such folder")
                result = sources.train_from_data(
                    spec,
                    data,
                    specs,
                    build_progress=_track(bar, "building features"),
                    fit_progress=fit,
                )
                source = {"mode": "data", "path": str(data.resolve())}
            elif features is not None:
                result = sources.train_from_features(spec, features, specs, fit_progress=fit)
                source = {"mode": "features", "path": str(features.resolve())}
            else:
                assert table is not None and target is not None and id_column is not None
                result = sources.train_from_flat_table(
                    spec,
                    table,
                    target=target,
                    id_column=id_column,
                    time_column=time_column,
                    fit_progress=fit,
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
    console.print(f"tracking store: {escape(uri)}")
    if as_json:
        print(
            json.dumps(
                {
                    **logged.to_json(),
                    "metrics": _finite(result.metrics["test"]),
                    "validation_metrics": _finite(result.metrics["validation"]),
                    "ratios_to_best": _finite(result.ratios or {}),
                }
            )
        )


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if v == v else None) for k, v in values.items()}


@app.command("evaluate")
def evaluate(
    model: Annotated[
        str,
        typer.Argument(
            help="NAME[@alias|@version], e.g. suitability-churn@champion, churn@3 (default alias: champion)."
        ),
    ],
    features: Annotated[
        Path | None,
        typer.Option(
            "--features",
            help="A labelled training table the version did not train on, e.g. newer data "
            "(default: the version's own test split).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Score a registered model version on its logged test split or on a training table."""
    from suitability import tracking
    from suitability.models.sources import read_feature_table

    with _user_errors():
        tracking.use_store()
        frame = read_feature_table(features) if features is not None else None
        report = tracking.evaluate_version(model, frame)
    table = Table(title=escape(f"{report['name']} version {report['version']}"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report["metrics"].items():
        table.add_row(key, f"{int(value):,}" if key == "n" else f"{value:.4f}")
    console.print(table)
    if as_json:
        print(json.dumps({**report, "metrics": _finite(report["metrics"])}, default=str))


@app.command("promote")
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


@models_app.command("list")
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


@models_app.command("history")
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


# --- demo -----------------------------------------------------------------------------------------


@app.command("demo")
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
    console.print(f"done in {time.perf_counter() - began:.0f}s. Next:")
    # Commands stay on one line, whatever the terminal width: they are meant to be pasted.
    for command in (
        f"mlflow ui --backend-store-uri {uri}",
        f"MLFLOW_TRACKING_URI={uri} suitability models list",
        f"MLFLOW_TRACKING_URI={uri} suitability train churn --features {results[-1][2]}",
    ):
        console.print("  " + escape(command), soft_wrap=True, highlight=False)
