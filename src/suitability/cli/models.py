"""Models: train, evaluate and promote; the registry's versions and history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from suitability.settings import masked_url

if TYPE_CHECKING:
    from suitability.models.train import TrainingResult
    from suitability.tracking import LoggedRun, Promotion

from suitability.cli.common import (
    ClusterOption,
    Command,
    ExperimentOption,
    JsonFlag,
    JsonTable,
    ModelName,
    app,
    console,
    err_console,
    models_app,
    on_cluster,
    progress_bar,
    track,
    user_errors,
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


def print_result(result: TrainingResult, logged: LoggedRun | None) -> None:
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


@app.command("train", cls=Command)
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

    with user_errors():
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
        with on_cluster(cluster) as client, progress_bar() as bar:
            fit = track(bar, f"training {spec.name}")
            if data is not None:
                result = sources.train_from_data(
                    spec,
                    data,
                    specs,
                    build_progress=track(bar, "building features"),
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
    print_result(result, logged)
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


@app.command("evaluate", cls=Command)
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

    with user_errors():
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


@app.command("promote", cls=Command)
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

    with user_errors():
        if force and not (reason or "").strip():
            raise ValueError("--force needs --reason TEXT (who forced it and why is recorded)")
        tracking.use_store()
        outcome = tracking.promote(model, force=force, reason=reason, by=by)
    print_promotion(outcome)
    if as_json:
        print(json.dumps(outcome.to_json(), default=str))


def print_promotion(outcome: Promotion) -> None:
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


@models_app.command("list", cls=Command)
def models_list(
    as_json: JsonTable = False,
) -> None:
    """Every registered suitability model version with its aliases and primary metric."""
    from suitability import tracking

    with user_errors():
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


@models_app.command("history", cls=Command)
def models_history(
    model: Annotated[str, typer.Argument(help="risk-level, churn or a registered model name.")],
    as_json: JsonTable = False,
) -> None:
    """Every promotion decision for a model, newest first: who, when, why, with the metrics."""
    from suitability import tracking

    with user_errors():
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
