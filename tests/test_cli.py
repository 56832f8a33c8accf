"""The CLI: user mistakes give a message and a non-zero exit, never a traceback."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from suitability.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "data"
    result = runner.invoke(
        app, ["data", "synth", "--customers", "120", "--seed", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def _fails(args: list[str], code: int, *needles: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


def test_help_names_every_command():
    out = runner.invoke(app, ["--help"]).output
    for command in ("demo", "data", "features", "train", "evaluate", "promote", "models"):
        assert command in out
    assert "synth" in runner.invoke(app, ["data", "--help"]).output
    assert "--monthly" in runner.invoke(app, ["features", "build", "--help"]).output


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--as-of", "2025-02-30"], "not a real calendar date"),
        (["--as-of", "01/02/2025"], "not a date in the form YYYY-MM-DD"),
        ([], "give exactly one of --as-of DATES or --monthly START:END"),
        (["--monthly", "2025-01-01"], "expected START:END"),
    ],
)
def test_bad_as_of_is_a_clear_error(data, tmp_path, extra, needle):
    _fails(
        ["features", "build", "--data", str(data), "--out", str(tmp_path / "f.parquet"), *extra],
        2,
        needle,
    )
    assert not (tmp_path / "f.parquet").exists()


def test_missing_inputs_are_named(tmp_path):
    _fails(
        [
            "features",
            "build",
            "--data",
            str(tmp_path / "nowhere"),
            "--as-of",
            "2025-01-01",
            "--out",
            str(tmp_path / "f.parquet"),
        ],
        2,
        "no such folder",
    )
    (tmp_path / "empty").mkdir()
    _fails(
        [
            "features",
            "build",
            "--data",
            str(tmp_path / "empty"),
            "--as-of",
            "2025-01-01",
            "--out",
            str(tmp_path / "f.parquet"),
        ],
        2,
        "holds none of the raw tables",
    )


def test_contract_violations_listed_with_table_column_row(data, tmp_path):
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(data, broken)
    part = sorted((broken / "risk_reviews").glob("*.parquet"))[0]
    table = pq.read_table(part)
    frame = table.to_pandas()
    frame.loc[[0, 2], "confirmed_level"] = "C9"
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), part)
    _fails(
        ["data", "validate", "--data", str(broken)],
        1,
        "risk_reviews.confirmed_level, row 1",
        "row 3",
        "value not allowed",
    )


def test_validate_and_list(data):
    result = runner.invoke(app, ["data", "validate", "--data", str(data)])
    assert result.exit_code == 0 and "customers" in result.output
    _fails(["features", "list", "--lang", "fr"], 2, "use zh or en")
    _fails(["features", "list", "--source", "astrology"], 2, "no such source")
    assert (
        "近30天投资次数"
        in runner.invoke(
            app,
            ["features", "list", "--lang", "zh", "--source", "behaviour"],
            env={"COLUMNS": "200"},
        ).output
    )


def test_synth_refuses_a_folder_with_data(data):
    _fails(["data", "synth", "--customers", "10", "--out", str(data)], 2, str(data))


def test_output_paths_that_cannot_work_are_refused_up_front(data, tmp_path):
    (tmp_path / "f.parquet").mkdir()
    _fails(
        [
            "features",
            "build",
            "--data",
            str(data),
            "--as-of",
            "2025-01-01",
            "--out",
            str(tmp_path / "f.parquet"),
        ],
        2,
        "is a folder",
    )
    _fails(
        [
            "features",
            "build",
            "--data",
            str(data),
            "--as-of",
            "2025-01-01",
            "--out",
            str(data / "customers.parquet"),
        ],
        2,
        "inside the data folder",
    )
    assert not (data / "customers.parquet").exists()


def test_error_text_is_printed_literally(data, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    part = sorted((broken / "risk_reviews").glob("*.parquet"))[0]
    table = pq.read_table(part)
    frame = table.to_pandas()
    frame.loc[0, "confirmed_level"] = "[/x][red]C9"
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), part)
    _fails(["data", "validate", "--data", str(broken)], 1, "[/x][red]C9")


def _commands(group=None, prefix=()):
    """Every command path of the CLI, e.g. ("data", "synth")."""
    from typer.main import get_command

    group = group or get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_help_reads_like_a_well_kept_cli():
    """No value type beside flags (they take none), and each command's description rewrapped
    to the terminal, not broken where its source lines end."""
    import re

    from typer.main import get_command

    root = get_command(app)
    paths = list(_commands())
    assert ("train",) in paths and ("data", "synth") in paths and ("report", "model") in paths
    for path in [(), *paths]:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}, terminal_width=400)
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, path
        command = root
        for name in path:
            command = command.commands[name]
        first = (command.help or "").split("\n\n")[0]
        words = " ".join(first.split())
        text = re.sub(r"[│╭╮╰╯─]", " ", result.output)
        lines = [" ".join(line.split()) for line in text.splitlines()]
        assert any(words in line for line in lines), (path, words)
    flags = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "120"}).output
    assert re.search(r"--json\s+Print one JSON object", flags)


def test_a_folder_without_raw_tables_is_one_message(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _fails(["data", "validate", "--data", str(empty)], 2, "holds none of the raw tables")
    assert "table not found" not in out
    _fails(["data", "validate", "--data", str(tmp_path / "missing")], 2, "no such folder")
    # a folder with some tables still names each missing one
    (empty / "customers.csv").write_text("customer_id\n", encoding="utf-8")
    _fails(["data", "validate", "--data", str(empty)], 1, "events: table not found")
