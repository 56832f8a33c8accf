"""The `suitability` command line: thin Typer commands over the library functions, one module
per group of commands (`data`, `models`, `explain`, `demo`, `daily`, `serving`); `common` holds what
they share. Importing this package registers every command on `app`; the import order below is
the order `suitability --help` lists them in."""

# isort: off
from suitability.cli import data, models, explain, demo, daily, serving  # noqa: F401

# isort: on
from suitability.cli.common import app

__all__ = ["app"]
