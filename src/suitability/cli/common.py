"""What every command shares: the Typer app and its groups, option types, consoles, and how
user mistakes, progress and a Dask cluster are handled."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperCommand, TyperGroup

from suitability import __version__

if TYPE_CHECKING:
    pass


class Command(TyperCommand):
    """Typer's command, its flags listed without a value type (Typer prints `<bool>` beside
    `--json`, which takes no value)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class Group(TyperGroup):
    """Typer's command group, its flags listed without a value type (as `Command`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


def _flags_without_type(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # what the help shows in the type column: nothing
    return params


def command_group(**options: Any) -> typer.Typer:
    """A command group of this CLI: help as Markdown (paragraphs rewrapped to the terminal,
    not broken where the source lines end), flags without a value type."""
    return typer.Typer(cls=Group, rich_markup_mode="markdown", no_args_is_help=True, **options)


app = command_group(
    name="suitability",
    help="Know your investor: risk category (C1–C5), churn risk and product suitability, with reasons.",
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = command_group(help="Raw tables: generate synthetic data, validate a data folder.")
features_app = command_group(
    help="Point-in-time features: build feature and training tables, list the catalogue."
)
models_app = command_group(
    help="The model registry: list versions and aliases, show the promotion history."
)
report_app = command_group(
    help="Compliance reports (zh/en, HTML or PDF): one decision, or a model version's dossier."
)
keys_app = command_group(
    help="API keys of the prediction service: add (printed once), list, remove."
)
audit_app = command_group(
    help="The service's audit log: show one answered request, export a time range."
)
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
def user_errors() -> Iterator[None]:
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


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


def track(bar: Progress, label: str) -> Callable[[int, int], None]:
    """A new task on `bar` and the `progress(done, total)` callback that advances it."""
    task = bar.add_task(label, total=None)
    return lambda done, total: bar.update(task, completed=done, total=total)


@contextlib.contextmanager
def on_cluster(text: str | None) -> Iterator[object | None]:
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


def check_writable(out: Path, option: str) -> None:
    """`out` can be written (its folder created if need be), checked before any slow work."""
    import os

    if out.is_dir():
        raise ValueError(f"{option} {out} is a folder; give a file name")
    folder = out.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {out}: cannot write in {folder}")


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
