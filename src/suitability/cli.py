"""The `suitability` command line: thin Typer commands over the library functions."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from suitability import __version__

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
    help="Point-in-time features: build tables, list the catalogue.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")

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


# --- demo -----------------------------------------------------------------------------------------


@app.command("demo")
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for everything the demo writes.")
    ] = Path("demo-out"),
    customers: Annotated[
        int, typer.Option("--customers", min=100, help="Number of synthetic customers.")
    ] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 7,
) -> None:
    """Run the main job on the embedded default: synthesise data, then build monthly features."""
    from suitability.data.synth import generate
    from suitability.features.builder import build_features, monthly_snapshots
    from suitability.specs import load_specs

    data_dir, features_path = out / "data", out / "features.parquet"
    with _user_errors():
        if data_dir.exists() and any(data_dir.iterdir()):
            raise FileExistsError(
                f"{data_dir} already holds data; choose another --out or remove it"
            )
        out.mkdir(parents=True, exist_ok=True)
        specs = load_specs()
        with _progress() as bar:
            summary = generate(
                data_dir, customers, seed, progress=_track(bar, "1/2 synthesising data")
            )
            dates = monthly_snapshots(str(summary.snapshots[0]), str(summary.snapshots[-1]))
            built = build_features(
                data_dir, dates, features_path, specs, progress=_track(bar, "2/2 building features")
            )
    console.print(
        f"[bold]data[/]     {escape(str(data_dir))}  ({summary.rows.get('events', 0):,} events)"
    )
    console.print(
        f"[bold]features[/] {escape(str(features_path))}  ({built.rows:,} rows, {len(dates)} monthly snapshots)"
    )
    console.print("next: `suitability features list --lang zh` describes every feature.")
