"""Raw tables and features: generate, validate, build feature and training tables."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    pass

from suitability.cli.common import (
    ClusterOption,
    Command,
    ExperimentOption,
    ModelName,
    console,
    data_app,
    features_app,
    on_cluster,
    progress_bar,
    track,
    user_errors,
)

# --- data -----------------------------------------------------------------------------------------


@data_app.command("synth", cls=Command)
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

    with user_errors(), progress_bar() as bar:
        summary = generate(
            out, customers, seed, start=start, months=months, progress=track(bar, "synthesising")
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


@data_app.command("validate", cls=Command)
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

    with user_errors():
        if not locate(data).is_dir():
            raise ValueError(f"--data {data}: no such folder")
        specs = load_specs()
        with on_cluster(cluster) as client:
            if client is None:
                counts = io.validate_folder(data, specs)
            else:
                from suitability.features.distributed import validate_on_cluster

                with progress_bar() as bar:
                    counts = validate_on_cluster(
                        client, Path(data), specs, track(bar, "checking partitions")
                    )
    table = Table("table", "rows", title=escape(f"{data}: all contracts hold"))
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    console.print(table)


# --- features -------------------------------------------------------------------------------------


@features_app.command("build", cls=Command)
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

    with user_errors():
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
        with on_cluster(cluster) as client, progress_bar() as bar:
            summary = build_features(
                data,
                dates,
                out,
                specs,
                progress=track(bar, "building features" if client is None else "partitions"),
                cluster=client,
            )
    console.print(
        f"wrote {summary.rows:,} rows × {len(specs.feature_names)} features for {len(dates)} as-of date(s) "
        f"to {summary.out_path} in {time.perf_counter() - began:.1f}s ({summary.events:,} events read)"
    )


@features_app.command("list", cls=Command)
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

    with user_errors():
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


@features_app.command("training-table", cls=Command)
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

    with user_errors():
        check_paths(data, out)  # before hours of work, not after
        specs = load_specs()
        spec = load_model_spec(model.value, specs, experiment=experiment)
        began = time.perf_counter()
        with (
            on_cluster(cluster) as client,
            progress_bar() as bar,
            tempfile.TemporaryDirectory(prefix="suitability-") as scratch,
        ):
            table = build_training_table(
                spec,
                data,
                specs,
                scratch,
                progress=track(bar, "building features" if client is None else "partitions"),
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
