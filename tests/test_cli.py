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
        1,
        "events: table not found",
        "customers: table not found",
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
