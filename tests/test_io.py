"""Finding and reading tables: parquet, CSV or a folder of parquet parts; batches with row
numbers carried across parts; streaming events; one error for all tables; loaders write
nothing."""

from __future__ import annotations

import warnings
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from suitability.data import io
from suitability.data.contracts import ContractError, ExtraColumnsWarning, MissingTableError
from suitability.data.schema import EVENTS, TABLES
from suitability.specs import Specs
from test_contracts import assert_problem, tiny_tables, write_tables


@pytest.fixture
def tiny(specs: Specs) -> dict[str, pd.DataFrame]:
    return tiny_tables(specs)


def _write_parts(folder: Path, frame: pd.DataFrame, sizes: list[int]) -> None:
    """Write `frame` as parquet parts of the given sizes, named so that sorted order is
    the row order."""
    folder.mkdir(parents=True)
    start = 0
    for i, size in enumerate(sizes):
        frame.iloc[start : start + size].to_parquet(folder / f"part-{i:03d}.parquet", index=False)
        start += size


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


# --- where tables live --------------------------------------------------------------------------


def test_locate_table_finds_parquet_csv_and_part_folders(tmp_path, tiny):
    write_tables(tmp_path, {"customers": tiny["customers"]})
    write_tables(tmp_path, {"products": tiny["products"]}, "csv")
    _write_parts(tmp_path / "events", tiny["events"], [2, 4])
    (tmp_path / "events" / "_SUCCESS").write_text("")  # markers are not parts
    assert io.locate_table(tmp_path, "customers").format == "parquet"
    assert io.locate_table(tmp_path, "products").format == "csv"
    events = io.locate_table(tmp_path, "events")
    assert [p.name for p in events.files] == ["part-000.parquet", "part-001.parquet"]


def test_a_table_found_twice_is_an_error(tmp_path, tiny):
    write_tables(tmp_path, {"products": tiny["products"]})
    write_tables(tmp_path, {"products": tiny["products"]}, "csv")
    with pytest.raises(MissingTableError, match="products: table found twice"):
        io.locate_table(tmp_path, "products")


def test_an_empty_part_folder_is_an_error(tmp_path):
    (tmp_path / "events").mkdir()
    with pytest.raises(MissingTableError, match=r"events: folder .* has no \*\.parquet parts"):
        io.locate_table(tmp_path, "events")


def test_missing_tables_are_all_named_in_one_error(tmp_path, specs, tiny):
    write_tables(tmp_path, {"products": tiny["products"]})
    with pytest.raises(MissingTableError) as info:
        io.load_tables(tmp_path, specs, tables=["events", "products"])
    tables = {p.table for p in info.value.problems}
    assert tables == {"customers", "events"}  # events refer to customers, so both are needed
    assert "events.parquet" in str(info.value) and "events.csv" in str(info.value)


def test_unknown_table_name_is_a_programming_error(tmp_path, specs):
    with pytest.raises(ValueError, match="unknown table"):
        io.load_table(tmp_path, "accounts", specs)


# --- parts, batches and row numbers -------------------------------------------------------------


def test_parquet_parts_load_with_rows_counted_across_parts(tmp_path, specs, tiny):
    write_tables(tmp_path, {k: v for k, v in tiny.items() if k != "events"})
    events = tiny["events"]
    events.loc[4, "channel"] = "fax"  # data row 5: the 2nd row of the 2nd part
    _write_parts(tmp_path / "events", events, [3, 2, 1])
    with pytest.raises(ContractError) as info:
        io.load_table(tmp_path, "events", specs)
    assert_problem(info.value, "events", "channel", 5, "value not allowed")

    events.loc[4, "channel"] = "app"
    parts = tmp_path / "fixed"
    _write_parts(parts / "events", events, [3, 2, 1])
    loaded = io.load_table(parts, "events", specs, customer_ids=["C001", "C002", "C003"])
    single = write_tables(tmp_path / "single", tiny)
    pd.testing.assert_frame_equal(loaded, io.load_table(single, "events", specs))


def test_a_column_missing_from_one_part_names_the_part(tmp_path, specs, tiny):
    write_tables(tmp_path, {"customers": tiny["customers"]})
    events = tiny["events"]
    folder = tmp_path / "events"
    folder.mkdir()
    events.iloc[:3].to_parquet(folder / "part-0.parquet", index=False)
    events.iloc[3:].drop(columns=["channel"]).to_parquet(folder / "part-1.parquet", index=False)
    with pytest.raises(ContractError) as info:
        io.load_table(tmp_path, "events", specs)
    assert_problem(info.value, "events", "channel", None, "required column is missing (in part-1")


def test_iter_events_yields_bounded_batches_with_global_row_index(tmp_path, specs, tiny):
    folder = write_tables(tmp_path, {"customers": tiny["customers"]})
    _write_parts(folder / "events", tiny["events"], [4, 2])
    batches = list(io.iter_events(folder, specs, batch_rows=3))
    assert [len(b) for b in batches] == [3, 1, 2]
    assert [b.index[0] for b in batches] == [0, 3, 4]  # 0-based position in the whole table
    whole = pd.concat(batches, ignore_index=True)
    pd.testing.assert_frame_equal(whole, io.load_table(folder, "events", specs))


def test_iter_events_stops_yielding_at_the_first_bad_batch_and_reports_all(tmp_path, specs, tiny):
    folder = write_tables(tmp_path, {"customers": tiny["customers"]})
    events = tiny["events"]
    events.loc[2, "amount"] = -1.0  # batch 2 (rows 3-4)
    events.loc[5, "channel"] = "fax"  # batch 3 (rows 5-6)
    write_tables(folder, {"events": events})
    seen = []
    with pytest.raises(ContractError) as info:
        for batch in io.iter_events(folder, specs, {"C001", "C002", "C003"}, batch_rows=2):
            seen.append(len(batch))
    assert seen == [2]
    assert info.value.total == 2
    assert_problem(info.value, "events", "amount", 3, "must be ≥ 0")
    assert_problem(info.value, "events", "channel", 6, "value not allowed")


def test_customer_ids_may_be_given_in_many_forms(tmp_path, specs, tiny):
    folder = write_tables(tmp_path, {"events": tiny["events"]})  # no customers table needed
    for ids in (
        ["C001", "C002", "C003"],
        pd.Series(["C003", "C002", "C001", None], dtype="str"),
        pa.array(["C001", "C002", "C003", "C001"]),
        np.array(["C001", "C002", "C003"], dtype=object),
    ):
        assert sum(len(b) for b in io.iter_events(folder, specs, ids)) == 6
    with pytest.raises(ContractError, match="customer_id exists in customers"):
        list(io.iter_events(folder, specs, ["C001"]))


def test_read_customer_ids_reads_the_distinct_ids(tmp_path, tiny):
    folder = write_tables(tmp_path, {"customers": tiny["customers"]}, "csv")
    assert sorted(io.read_customer_ids(folder).to_pylist()) == ["C001", "C002", "C003"]


# --- CSV specifics ------------------------------------------------------------------------------


def test_malformed_csv_row_is_reported_with_its_row_and_without_its_text(tmp_path, specs, tiny):
    folder = write_tables(tmp_path, tiny, "csv")
    lines = (folder / "customers.csv").read_text().splitlines()
    lines[2] += ",13999999999"  # data row 2 gets an extra field holding personal data
    (folder / "customers.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ContractError) as info:
        io.load_table(folder, "customers", specs)
    assert_problem(info.value, "customers", None, 2, "malformed CSV row: 11 fields")
    assert "13999999999" not in str(info.value)


def test_csv_with_a_byte_order_mark_and_quoted_newlines_loads(tmp_path, specs, tiny):
    tiny["interview_tags"].loc[1, "note"] = "line one\nline two, with a comma"
    folder = write_tables(tmp_path, tiny, "csv")
    path = folder / "interview_tags.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    tags = io.load_table(folder, "interview_tags", specs)
    assert tags["note"].iloc[1] == "line one\nline two, with a comma"


# --- warnings, errors across tables, writes -------------------------------------------------------


def test_extra_columns_are_ignored_with_a_warning(tmp_path, specs, tiny):
    tiny["products"]["launch_note"] = ["x", "y"]
    folder = write_tables(tmp_path, tiny)
    with pytest.warns(ExtraColumnsWarning, match=r"products: ignoring columns .*launch_note"):
        tables = io.load_tables(folder, specs)
    assert "launch_note" not in tables["products"]


def test_no_warning_for_a_valid_dataset(tmp_path, specs, tiny):
    folder = write_tables(tmp_path, tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.load_tables(folder, specs)


def test_load_tables_lists_problems_of_all_tables_in_one_error(tmp_path, specs, tiny):
    tiny["customers"].loc[0, "gender"] = "X"
    tiny["products"].loc[1, "risk_level"] = "R6"
    tiny["risk_reviews"].loc[1, "confirmed_level"] = "C0"
    with pytest.raises(ContractError) as info:
        io.load_tables(write_tables(tmp_path, tiny), specs)
    assert [(p.table, p.row) for p in info.value.problems] == [
        ("customers", 1),
        ("risk_reviews", 2),
        ("products", 2),
    ]


def test_validate_folder_counts_rows_of_every_table(tmp_path, specs, tiny):
    folder = write_tables(tmp_path, tiny)
    assert io.validate_folder(folder, specs) == {name: len(tiny[name]) for name in TABLES}


def test_loaders_write_nothing(tmp_path, specs, tiny):
    tiny["products"].loc[0, "risk_level"] = "R0"
    folder = write_tables(tmp_path / "data", tiny, "csv")
    before = _listing(tmp_path)
    with pytest.raises(ContractError):
        io.load_tables(folder, specs)
    with pytest.raises(ContractError):
        io.validate_folder(folder, specs)
    list(io.iter_events(folder, specs))
    assert _listing(tmp_path) == before


# --- helpers for other stages ---------------------------------------------------------------------


def test_stage_events_writes_validated_parts_duckdb_can_read(tmp_path, specs, tiny):
    folder = write_tables(tmp_path / "data", tiny)
    source, n = io.stage_events(folder, specs, None, tmp_path / "scratch", batch_rows=4)
    assert n == 6
    with duckdb.connect() as con:
        got = con.execute(f"SELECT count(*), sum(amount) FROM {source}").fetchone()
    assert got == (6, 9000.5)


def test_stage_events_copies_nothing_when_events_are_bad(tmp_path, specs, tiny):
    tiny["events"].loc[0, "channel"] = "fax"
    folder = write_tables(tmp_path / "data", tiny)
    with pytest.raises(ContractError):
        io.stage_events(folder, specs, None, tmp_path / "scratch")
    assert not list((tmp_path / "scratch" / "events").glob("*.parquet"))


def test_canonical_or_raise_and_empty_frame(tiny):
    arrow = pa.Table.from_pandas(tiny["events"], preserve_index=False)
    frame = io.canonical_or_raise(arrow, EVENTS)
    pd.testing.assert_frame_equal(
        frame, tiny["events"].astype({"customer_id": "str"}), check_dtype=False
    )
    assert (
        str(frame["term_days"].dtype) == "Int64"
        and str(frame["event_time"].dtype) == "datetime64[us]"
    )
    empty = io.empty_frame(EVENTS)
    assert list(empty.columns) == EVENTS.column_names and len(empty) == 0
    assert empty.dtypes.equals(frame.dtypes)
