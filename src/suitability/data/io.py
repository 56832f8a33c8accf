"""Find, read and validate the raw tables of a data folder (parquet, CSV or a folder of parquet
parts), in bounded-memory record batches, returning canonical, PII-masked pandas frames.

Loaders write nothing; any contract violation raises one `ContractError` listing every problem.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pyarrow.fs import FileType

from suitability.data.contracts import (
    RULE_MISSING_COLUMN,
    ContractError,
    ExtraColumnsWarning,
    Finding,
    IdSet,
    MissingTableError,
    Problem,
    ProblemLog,
    TableValidator,
    canonical_frame,
    decoded,
    empty_frame,
    unified,
)
from suitability.data.contracts import to_canonical as _to_canonical
from suitability.data.partitions import CustomerRange
from suitability.data.schema import TABLES, TableSchema
from suitability.data.storage import Location, locate, short_error
from suitability.specs import Specs

__all__ = [
    "BATCH_ROWS",
    "TABLE_NAMES",
    "CustomerIds",
    "TableSource",
    "canonical_or_raise",
    "empty_frame",
    "iter_events",
    "load_table",
    "load_tables",
    "locate_table",
    "locate_tables",
    "read_customer_ids",
    "read_customer_records",
    "stage_events",
    "validate_folder",
]

#: Rows validated at a time: bounds memory whatever the table size.
BATCH_ROWS = 1_000_000
#: The six raw tables, in the order they are validated and reported.
TABLE_NAMES: tuple[str, ...] = tuple(TABLES)
#: Customer ids for the reference check: any collection of strings, a pandas Series or an arrow
#: array.
CustomerIds = pa.Array | pa.ChunkedArray | pd.Series | pd.Index | np.ndarray | Collection[str]

#: A data folder: a local path or an fsspec URL (`suitability.data.storage`).
DataDir = Path | str | Location

_CSV_BLOCK_BYTES = 16 << 20
_PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


@dataclass(frozen=True)
class TableSource:
    """Where one table lives: a parquet file, a CSV file, or a folder of parquet parts (read in
    sorted file-name order, which is also how rows are numbered)."""

    table: str
    format: Literal["parquet", "csv"]
    files: tuple[Location, ...]
    path: Location
    folder: bool = False

    def label(self, file: Location) -> str:
        """How a file is named in messages: the part name when the table is a folder."""
        return file.name if len(self.files) > 1 or self.folder else ""


class DataFolderError(ValueError):
    """A data folder that does not exist, or holds none of the raw tables."""


def _table_name(entry: str) -> str:
    """The table a folder entry would hold (`events.parquet`, `events.csv`, `events/`)."""
    for suffix in (".parquet", ".csv"):
        if entry.endswith(suffix):
            return entry[: -len(suffix)]
    return entry


def locate_table(data_dir: DataDir, name: str) -> TableSource:
    """Find table `name` in `data_dir` (a local folder or an fsspec URL): exactly one of
    `<name>.parquet`, `<name>.csv` or a folder `<name>/` of `*.parquet` parts. Raises
    `MissingTableError` naming the paths looked for when there is none, or more than one."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; the tables are {', '.join(TABLE_NAMES)}")
    root = locate(data_dir)
    single, text, folder = root / f"{name}.parquet", root / f"{name}.csv", root / name
    held = root.children()  # one listing, not three look-ups (each a request on a store)
    if not any(_table_name(n) in TABLES for n in held):
        # A wrong or missing folder is one problem, not one "table not found" per table.
        if not held and not root.is_dir():
            raise DataFolderError(f"data folder {root}: no such folder")
        raise DataFolderError(
            f"data folder {root} holds none of the raw tables ({', '.join(TABLE_NAMES)}), "
            "each as NAME.parquet, NAME.csv or a folder NAME/ of parquet parts: is it the "
            "data folder?"
        )
    found = [p for p in (single, text) if held.get(p.name) == FileType.File]
    found += [folder] if held.get(folder.name) == FileType.Directory else []
    if not found:
        rule = f"table not found: looked for {single}, {text} and {folder}/*.parquet"
        raise MissingTableError([Problem(name, None, None, rule)])
    if len(found) > 1:
        rule = f"table found twice ({' and '.join(map(str, found))}); keep exactly one"
        raise MissingTableError([Problem(name, None, None, rule)])
    path = found[0]
    if path == text:
        return TableSource(name, "csv", (path,), path)
    if path == single:
        return TableSource(name, "parquet", (path,), path)
    parts = tuple(folder.files(".parquet"))
    if not parts:
        raise MissingTableError(
            [Problem(name, None, None, f"folder {folder} has no *.parquet parts")]
        )
    return TableSource(name, "parquet", parts, path, folder=True)


def read_customer_ids(data_dir: DataDir, part: CustomerRange | None = None) -> pa.Array:
    """The distinct, non-null customer ids of the customers table (only that column is read),
    for the reference checks of the other tables; `part`: those of one partition."""
    source = locate_table(data_dir, "customers")
    chunks = []
    for file in source.files:
        if "customer_id" not in _file_columns(source, file):
            rule = f"{RULE_MISSING_COLUMN} (in {file.name})"
            raise ContractError([Problem("customers", "customer_id", None, rule)])
        for batch in _read_batches(source, file, ["customer_id"], BATCH_ROWS):
            ids = batch.column(0)
            if part is not None:
                rows = part.rows_of(ids)
                ids = ids if rows is None else ids.take(pa.array(rows))
            chunks.append(pc.cast(ids, pa.large_string()))
    if not chunks:
        return pa.array([], type=pa.large_string())
    return _id_array(pa.chunked_array(chunks, type=pa.large_string()))


#: The tables that make up one customer's bundle.
BUNDLE_TABLES = ("customers", "questionnaire_responses", "events", "interview_tags")


def read_customer_records(data_dir: DataDir, customer_id: str) -> dict[str, list[dict]]:
    """One customer's raw rows of each bundle table (customers, questionnaire responses, events,
    interview tags) as plain records, unvalidated: the caller validates them as a bundle, the
    way the service does. Each table is scanned once, a batch at a time. Raises `ValueError`
    when the customers table has no such customer."""
    wanted = pa.scalar(str(customer_id), pa.large_string())
    out: dict[str, list[dict]] = {}
    for name in BUNDLE_TABLES:
        source = locate_table(data_dir, name)
        rows: list[dict] = []
        for file in source.files:
            columns = [c for c in _file_columns(source, file) if not _PANDAS_INDEX.match(c)]
            if "customer_id" not in columns:
                rule = f"{RULE_MISSING_COLUMN} (in {file.name})"
                raise ContractError([Problem(name, "customer_id", None, rule)])
            for batch in _read_batches(source, file, columns, BATCH_ROWS):
                ids = pc.cast(batch.column(columns.index("customer_id")), pa.large_string())
                hits = batch.filter(pc.equal(ids, wanted))
                if hits.num_rows:
                    rows.extend(hits.to_pylist())
        out[name] = rows
    if not out["customers"]:
        raise ValueError(f"customer {customer_id!r} is not in {locate(data_dir) / 'customers'}")
    if len(out["customers"]) > 1:
        raise ValueError(f"customer {customer_id!r} appears {len(out['customers'])} times")
    return out


def iter_events(
    data_dir: DataDir,
    specs: Specs,
    customer_ids: CustomerIds | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
    part: CustomerRange | None = None,
) -> Iterator[pd.DataFrame]:
    """Validated, canonical events in batches of at most `batch_rows` rows, in file order; each
    batch's index is the 0-based row position in the whole table (row number - 1).

    `customer_ids` are the ids an event's customer_id must be one of (default: read from the
    customers table of `data_dir`). Batches are yielded while no problem has been found; after
    the first bad batch the rest is still checked (nothing more is yielded) and one
    `ContractError` lists every problem of the table. Memory stays bounded by `batch_rows`."""
    offset = 0
    for arrays in iter_event_arrays(
        data_dir, specs, customer_ids, batch_rows=batch_rows, part=part
    ):
        n = len(arrays["customer_id"])
        yield canonical_frame(arrays, offset, n)
        offset += n


def iter_event_arrays(
    data_dir: DataDir,
    specs: Specs,
    customer_ids: CustomerIds | IdSet | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
    part: CustomerRange | None = None,
) -> Iterator[dict[str, pa.Array]]:
    """`iter_events` without pandas: each batch as canonical arrow columns (text stored
    dictionary-encoded stays so, floats hold NaN as null), for callers that compute on
    arrays. The same rows, the same checks, the same single `ContractError` at the end.
    `part`: only the events of one customer partition (row numbers stay the table's)."""
    source = locate_table(data_dir, "events")
    ids = _reference_ids(data_dir, customer_ids, part)
    log = ProblemLog()
    for arrays in _Scan(source, specs, ids, log, batch_rows, part=part).arrays():
        if not log:
            yield arrays
    log.raise_if_any()


def event_time_range(data_dir: DataDir) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last event time in the events table. Only that column is read and nothing is
    validated (the caller's builder validates every row); unparseable CSV times are skipped."""
    source = locate_table(data_dir, "events")
    lo = hi = None
    for file in source.files:
        for batch in _read_batches(source, file, ["event_time"], BATCH_ROWS):
            column = batch.column(0)
            if source.format == "csv":
                values = pd.to_datetime(
                    pd.Series(column.to_pylist(), dtype="str"), errors="coerce", format="mixed"
                )
                b_lo, b_hi = values.min(), values.max()
            else:
                stats = pc.min_max(column).as_py()
                b_lo, b_hi = pd.Timestamp(stats["min"]), pd.Timestamp(stats["max"])
            if pd.notna(b_lo):
                lo = b_lo if lo is None else min(lo, b_lo)
                hi = b_hi if hi is None else max(hi, b_hi)
    if lo is None or hi is None:
        raise ValueError(f"{source.path}: no events with a time")
    return pd.Timestamp(lo).tz_localize(None), pd.Timestamp(hi).tz_localize(None)


def load_table(
    data_dir: DataDir,
    name: str,
    specs: Specs,
    customer_ids: CustomerIds | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
    part: CustomerRange | None = None,
) -> pd.DataFrame:
    """One table, validated, canonical and PII-masked, with a 0-based RangeIndex (row number -
    1). `customer_ids` as in `iter_events` (only used by tables that refer to customers).
    `part`: one customer partition's rows (index: their positions in the table). Raises
    `MissingTableError` or `ContractError`."""
    log = ProblemLog()
    source = locate_table(data_dir, name)
    ids = None
    if TABLES[name].references_customers:
        ids = _reference_ids(data_dir, customer_ids, part)
    frame = _load(source, specs, ids, log, batch_rows, part=part)
    log.raise_if_any()
    return frame


def load_tables(
    data_dir: DataDir,
    specs: Specs,
    tables: Iterable[str] = TABLE_NAMES,
    *,
    batch_rows: int = BATCH_ROWS,
    arrow: Collection[str] = (),
    unread_personal: bool = False,
    customer_ids: CustomerIds | IdSet | None = None,
    part: CustomerRange | None = None,
) -> dict[str, pd.DataFrame | pa.Table]:
    """Several tables, validated together: one `ContractError` lists the problems of all of
    them. Customer references are checked against the customers table (loaded when asked for,
    otherwise only its ids are read). Events are held in memory here; use `iter_events` for a
    large events table. Tables named in `arrow` (not customers) come back as arrow tables of
    canonical columns (`canonical_frame` of a slice gives that slice's frame), never held as
    a whole pandas frame. `unread_personal`: personal-data columns are only type-checked from
    the parquet schema, not read, and left out (for callers that do not use them). Raises
    `MissingTableError` naming every table that is missing. `customer_ids`: the ids the
    reference checks use when the customers table is not loaded here (default: read).
    `part`: only one customer partition's rows (frames indexed by their table positions)."""
    names = _table_names(tables)
    sources = locate_tables(data_dir, names)
    log = ProblemLog()
    out: dict[str, pd.DataFrame | pa.Table] = {}
    ids = None
    if "customers" in names:
        out["customers"] = _load(
            sources["customers"], specs, None, log, batch_rows, unread_personal, part
        )
        ids = _id_array(out["customers"]["customer_id"])
    elif any(TABLES[n].references_customers for n in names):
        ids = _reference_ids(data_dir, customer_ids, part)
    for name in names:
        if name != "customers":
            load = _load_arrow if name in arrow else _load
            out[name] = load(sources[name], specs, ids, log, batch_rows, unread_personal, part)
    log.raise_if_any()
    return {name: out[name] for name in names}


def validate_folder(
    data_dir: DataDir,
    specs: Specs,
    *,
    batch_rows: int = BATCH_ROWS,
    part: CustomerRange | None = None,
) -> dict[str, int]:
    """Check every table of a data folder against its contract and return the row count of
    each; events are streamed, so any size fits in memory. Raises one `ContractError` (or
    `MissingTableError`) listing every problem of every table. `part`: only the rows of one
    customer partition, personal data checked from the parquet schema and not read (its only
    rule is its type), counts of that partition's rows."""
    sources = locate_tables(data_dir, list(TABLE_NAMES))
    log = ProblemLog()
    counts: dict[str, int] = {}
    unread = part is not None
    # Kept in arrow: nothing here needs a pandas frame.
    customers = _load_arrow(sources["customers"], specs, None, log, batch_rows, unread, part)
    counts["customers"] = len(customers)
    ids = _id_array(decoded(customers["customer_id"].combine_chunks()))
    del customers
    for name in TABLE_NAMES[1:]:
        if name == "events":
            scan = _Scan(sources[name], specs, ids, log, batch_rows, unread, part)
            n = 0
            for arrays in scan.arrays():  # streamed: checked, never held
                n += len(next(iter(arrays.values()))) if arrays else 0
            counts[name] = n
        else:
            table = _load_arrow(sources[name], specs, ids, log, batch_rows, unread, part)
            counts[name] = len(table)
    log.raise_if_any()
    return counts


def stage_events(
    data_dir: DataDir,
    specs: Specs,
    customer_ids: CustomerIds | None,
    out_dir: Path | str,
    *,
    batch_rows: int = BATCH_ROWS,
    part: CustomerRange | None = None,
) -> tuple[str, int]:
    """Validate the events of `data_dir` and write them, canonical, as parquet parts under
    `out_dir/events/` (a scratch folder the caller owns and removes). Returns a DuckDB table
    expression reading them and the number of events. Raises `ContractError` before the caller
    can use a partial copy. `part`: the events of one customer partition (the expression may
    read others: select by customer). Files behind a URL are always copied: DuckDB reads
    local files only."""
    source = locate_table(data_dir, "events")
    if source.path.local and _natively_typed(source):
        # Stored types already match the contract, so DuckDB's casts are exact: validate by
        # streaming and let the caller read the files themselves, without writing a copy.
        rows = sum(
            len(f)
            for f in iter_events(data_dir, specs, customer_ids, batch_rows=batch_rows, part=part)
        )
        files = ", ".join("'" + f.path.replace("'", "''") + "'" for f in source.files)
        return f"read_parquet([{files}])", rows
    folder = Path(out_dir) / "events"
    folder.mkdir(parents=True, exist_ok=False)
    schema = _arrow_schema(TABLES["events"])
    rows = 0
    frames = iter_events(data_dir, specs, customer_ids, batch_rows=batch_rows, part=part)
    for i, frame in enumerate(frames):
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        pq.write_table(table, folder / f"part-{i:05d}.parquet")
        rows += len(frame)
    if rows == 0:  # an empty table still needs a file DuckDB can read the schema from
        pq.write_table(schema.empty_table(), folder / "part-00000.parquet")
    pattern = str(folder / "*.parquet").replace("'", "''")
    return f"read_parquet('{pattern}')", rows


def _natively_typed(source: TableSource) -> bool:
    """Whether every file of a parquet table stores each declared column with a type of its
    kind (text as string, times as naive timestamps, numbers as numbers)."""
    if source.format != "parquet":
        return False
    kinds = {
        "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        "timestamp": lambda t: pa.types.is_timestamp(t) and t.tz is None,
        "date": pa.types.is_date,
        "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
        "int": pa.types.is_integer,
    }
    table = TABLES[source.table]
    for file in source.files:
        stored = file.parquet().schema_arrow
        for column in table.columns:
            if column.name not in stored.names:
                if column.optional:
                    continue
                return False
            if not kinds[column.type](stored.field(column.name).type):
                return False
    return True


def canonical_or_raise(table: pa.Table | pa.RecordBatch, schema: TableSchema) -> pd.DataFrame:
    """An arrow table of already-validated data (e.g. a DuckDB query result) in canonical
    dtypes, declared column order. Raises `ContractError` if a value cannot be converted."""
    canonical = _to_canonical(table, schema)
    log = ProblemLog()
    log.extend(schema.name, canonical.findings)
    missing = [c for c in canonical.broken if c not in table.schema.names]
    for name in missing:
        log.add(schema.name, Finding(name, RULE_MISSING_COLUMN))
    log.raise_if_any()
    frame = canonical.frame
    frame.index = pd.RangeIndex(len(frame))
    return frame


# --- internals --------------------------------------------------------------------------------


def _table_names(tables: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(tables))
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise ValueError(f"unknown tables {unknown}; the tables are {', '.join(TABLE_NAMES)}")
    return sorted(names, key=TABLE_NAMES.index)


def locate_tables(data_dir: DataDir, names: Sequence[str]) -> dict[str, TableSource]:
    """Sources of `names` (and of customers when another table refers to it), raising one
    `MissingTableError` that names every missing table."""
    needed = list(names)
    if "customers" not in needed and any(TABLES[n].references_customers for n in needed):
        needed.insert(0, "customers")
    sources: dict[str, TableSource] = {}
    problems: list[Problem] = []
    for name in needed:
        try:
            sources[name] = locate_table(data_dir, name)
        except MissingTableError as exc:
            problems += exc.problems
    if problems:
        raise MissingTableError(problems)
    return sources


def _reference_ids(
    data_dir: DataDir, ids: CustomerIds | IdSet | None, part: CustomerRange | None = None
) -> pa.Array | IdSet:
    """The ids the reference checks use: those given (an `IdSet` as it is), else the customers
    table's (of one partition: its rows can only name those)."""
    if isinstance(ids, IdSet):
        return ids
    return read_customer_ids(data_dir, part) if ids is None else _id_array(ids)


def _id_array(ids: CustomerIds) -> pa.Array:
    """Distinct non-null ids as one large_string arrow array (the hash set of the check)."""
    if isinstance(ids, pa.ChunkedArray | pa.Array):
        array = ids
    elif isinstance(ids, pd.Series | pd.Index | np.ndarray):
        array = pa.array(pd.Series(ids, copy=False), type=pa.large_string(), from_pandas=True)
    else:
        array = pa.array(list(ids), type=pa.large_string())
    array = pc.unique(pc.cast(array, pa.large_string()))
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return pc.drop_null(array)


def _arrow_schema(table: TableSchema) -> pa.Schema:
    frame = empty_frame(table)
    return pa.Schema.from_pandas(frame, preserve_index=False)


def _file_columns(source: TableSource, file: Location) -> list[str]:
    """Column names stored in one file (its header, for CSV)."""
    try:
        if source.format == "parquet":
            return list(file.parquet().schema_arrow.names)
        with file.text_reader("utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except (OSError, pa.ArrowException, UnicodeDecodeError, csv.Error) as exc:
        rule = f"cannot read {file.name}: {short_error(exc)}"
        raise ContractError([Problem(source.table, None, None, rule)]) from None


def _read_batches(
    source: TableSource,
    file: Location,
    columns: Sequence[str],
    batch_rows: int,
    *,
    encoded: bool = False,
    row_groups: Sequence[int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of at most `batch_rows` rows holding `columns` of one file. CSV columns
    are read as text (typed later, per the contract), empty fields as null. `encoded`: parquet
    text columns of the contract (personal data aside) come dictionary-encoded, as parquet
    stores them, so their checks and encodings run once per distinct value."""
    try:
        if source.format == "parquet":
            schema = TABLES[source.table]
            text = [
                c.name
                for c in schema.columns
                if encoded and c.type == "string" and not c.pii and c.name in columns
            ]
            yield from file.parquet(read_dictionary=text).iter_batches(
                batch_size=batch_rows,
                row_groups=row_groups,
                columns=list(columns),
                use_threads=True,
            )
            return
        reader = _open_csv(file, columns, use_threads=True)
        for batch in reader:
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows)
    except pa.ArrowInvalid as exc:
        if source.format == "csv" and "CSV parse error" in str(exc):
            raise ContractError([_malformed_csv_row(source.table, file, columns)]) from None
        rule = f"cannot read {file.name}: {short_error(exc)}"
        raise ContractError([Problem(source.table, None, None, rule)]) from None


def _open_csv(
    file: Location, columns: Sequence[str], use_threads: bool, handler: object = None
) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(
        file.input_stream(),
        read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES, use_threads=use_threads),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=handler),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.large_string() for c in columns},
            include_columns=list(columns),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
        ),
    )


def _malformed_csv_row(table: str, file: Location, columns: Sequence[str]) -> Problem:
    """The first row with the wrong number of fields, found by a single-threaded re-read
    (which numbers rows); its text is never echoed, as it may hold personal data."""
    found: list[tuple[int | None, int, int]] = []

    def handler(row: pacsv.InvalidRow) -> str:
        found.append((row.number, row.expected_columns, row.actual_columns))
        return "error"

    try:
        for _ in _open_csv(file, columns, use_threads=False, handler=handler):
            pass
    except pa.ArrowInvalid:
        pass
    if not found:
        return Problem(table, None, None, f"{file.name} is not valid CSV")
    number, expected, actual = found[0]
    rule = f"malformed CSV row: {actual} fields where the header has {expected}; reading stopped"
    # pyarrow numbers rows counting the header as row 1.
    return Problem(table, None, None if number is None else number - 1, rule)


class _Scan:
    """Reads one table file by file, batch by batch, and validates each batch: problems go to
    `log`, canonical columns are yielded (also after a problem: callers decide)."""

    def __init__(
        self,
        source: TableSource,
        specs: Specs,
        customer_ids: pa.Array | IdSet | None,
        log: ProblemLog,
        batch_rows: int,
        unread_personal: bool = False,
        part: CustomerRange | None = None,
    ) -> None:
        """`unread_personal`: personal-data columns are not read (their only rule, being
        text, is checked from the parquet schema) and are left out of the output. `part`:
        only the rows of that customer partition are read and validated, their row numbers
        those of the whole table (`positions` holds their 0-based positions)."""
        self.source = source
        self.part = part
        self.positions: list[np.ndarray] = []
        self.schema = TABLES[source.table]
        self.log = log
        self.batch_rows = batch_rows
        self.file_columns = {f: _file_columns(source, f) for f in source.files}
        stored = set().union(*self.file_columns.values())
        self.columns = [c.name for c in self.schema.columns if not c.optional or c.name in stored]
        self.unread = [c for c in self.columns if unread_personal and self.schema.column(c).pii]
        self.columns = [c for c in self.columns if c not in self.unread]
        self.validator = TableValidator(self.schema, specs, customer_ids, self.columns)
        self.rows = 0

    def _check_unread(self, file: Location, label: str) -> None:
        """The type rule of the columns not read, from the file's own schema."""
        if self.source.format != "parquet" or not self.unread:
            return
        stored = file.parquet().schema_arrow
        for name in self.unread:
            if name not in stored.names:
                continue
            t = stored.field(name).type
            if pa.types.is_dictionary(t):
                t = t.value_type
            if not (pa.types.is_null(t) or pa.types.is_string(t) or pa.types.is_large_string(t)):
                where = f" (in {label})" if label else ""
                rule = f"wrong type: expected text, found {stored.field(name).type}{where}"
                self.log.add(self.source.table, Finding(name, rule))

    def arrays(self) -> Iterator[dict[str, pa.Array]]:
        """Each batch as canonical arrow columns (`TableValidator.validate_arrays`)."""
        declared = set(self.schema.column_names)
        extra: dict[str, None] = {}
        for file, names in self.file_columns.items():
            label = self.source.label(file)
            for column in self.schema.columns:
                if not column.optional and column.name not in names:
                    where = f" (in {label})" if label else ""
                    self.log.add(
                        self.source.table, Finding(column.name, RULE_MISSING_COLUMN + where)
                    )
            extra.update(
                (n, None) for n in names if n not in declared and not _PANDAS_INDEX.match(n)
            )
        if extra and self.part is None:  # (on a cluster, the client warns once)
            _warn_extra(self.source.table, extra)
        for file, names in self.file_columns.items():
            wanted = [c for c in self.columns if c in names]
            label = self.source.label(file)
            self._check_unread(file, label)
            try:
                for batch, start in self._batches(file, wanted):
                    if self.part is None:
                        arrays, findings = self.validator.validate_arrays(batch, start, label)
                    else:
                        arrays, findings = self._validate_part(batch, start, label)
                    self.log.extend(self.source.table, findings)
                    yield arrays
            except ContractError as exc:  # an unreadable file: report it with the rest, stop
                if self.part is None or self.part.first:  # (once, not once per partition)
                    for p in exc.problems:
                        rows = None if p.row is None else np.array([p.row])
                        self.log.add(p.table, Finding(p.column, p.rule, rows))
                return

    def _batches(self, file: Location, wanted: list[str]) -> Iterator[tuple[pa.RecordBatch, int]]:
        """The file's batches with the table position of their first row; in a partition,
        parquet row groups whose customer-id statistics lie outside it are skipped unread."""
        skip: set[int] = set()
        if self.part is not None and self.source.format == "parquet":
            skip = _row_groups_outside(file, self.part)
        if not skip:
            for batch in _read_batches(self.source, file, wanted, self.batch_rows, encoded=True):
                self.rows += batch.num_rows
                yield batch, self.rows - batch.num_rows
            return
        meta = file.parquet().metadata
        for group in range(meta.num_row_groups):
            if group in skip:
                self.rows += meta.row_group(group).num_rows
                continue
            for batch in _read_batches(
                self.source, file, wanted, self.batch_rows, encoded=True, row_groups=[group]
            ):
                self.rows += batch.num_rows
                yield batch, self.rows - batch.num_rows

    def _validate_part(
        self, batch: pa.RecordBatch, start: int, label: str
    ) -> tuple[dict[str, pa.Array], list[Finding]]:
        """`validate_arrays` of this partition's rows of `batch`, row numbers of the table."""
        assert self.part is not None
        ids = batch.column("customer_id") if "customer_id" in batch.schema.names else None
        rows = self.part.rows_of(ids)
        if rows is None:
            self.positions.append(np.arange(start, start + batch.num_rows, dtype=np.int64))
            return self.validator.validate_arrays(batch, start, label)
        self.positions.append(rows + start)
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows):  # one run (sorted tables): a view
            mine = batch.slice(int(rows[0]), len(rows))
        else:
            mine = batch.take(pa.array(rows))
        arrays, findings = self.validator.validate_arrays(mine, 0, label)
        numbers = rows + (start + 1)  # 1-based row numbers of the table, by position in part
        return arrays, [
            f if f.rows is None else f._replace(rows=numbers[f.rows - 1]) for f in findings
        ]

    def row_positions(self) -> np.ndarray | None:
        """0-based table positions of the rows yielded (None: all rows, in order)."""
        if self.part is None:
            return None
        if not self.positions:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(self.positions)


def _row_groups_outside(file: Location, part: CustomerRange) -> set[int]:
    """Row groups of a parquet file that cannot hold rows of `part` (by their statistics)."""
    meta = file.parquet().metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if "customer_id" not in names:
        return set() if part.first else set(range(meta.num_row_groups))
    column = names.index("customer_id")
    outside = set()
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            continue
        if not part.may_hold(stats.min, stats.max, bool(stats.null_count)):
            outside.add(group)
    return outside


def _warn_extra(table: str, extra: Iterable[str]) -> None:
    # A file without a header row would list its first data row here, personal data
    # included: name only how many columns are ignored, and only the declared-looking
    # ones (identifier-shaped names) by name.
    extra = list(extra)
    shown = [n for n in extra if _IDENTIFIER.match(n)][:10]
    hidden = len(extra) - len(shown)
    listed = ", ".join(shown) + (f" and {hidden} more" if hidden else "")
    warnings.warn(
        f"{table}: ignoring columns not in the contract: {listed}",
        ExtraColumnsWarning,
        stacklevel=4,
    )


def warn_extra_columns(data_dir: DataDir, names: Iterable[str]) -> None:
    """The extra-columns warning of each table in `names` (for a client whose workers read)."""
    for name in names:
        source = locate_table(data_dir, name)
        declared = set(TABLES[name].column_names)
        extra: dict[str, None] = {}
        for file in source.files:
            extra.update(
                (n, None)
                for n in _file_columns(source, file)
                if n not in declared and not _PANDAS_INDEX.match(n)
            )
        if extra:
            _warn_extra(name, extra)


def _load(
    source: TableSource,
    specs: Specs,
    customer_ids: pa.Array | IdSet | None,
    log: ProblemLog,
    batch_rows: int,
    unread_personal: bool = False,
    part: CustomerRange | None = None,
) -> pd.DataFrame:
    """A whole table as a canonical frame (0-based RangeIndex; of a partition: its rows'
    positions in the table), the whole-table rules checked."""
    table, positions = _load_arrow_at(
        source, specs, customer_ids, log, batch_rows, unread_personal, part
    )
    if len(table) == 0:
        return empty_frame(TABLES[source.table], table.column_names)
    frame = canonical_frame(
        {c: table[c].combine_chunks() for c in table.column_names}, 0, len(table)
    )
    if positions is not None:
        frame.index = pd.Index(positions)
    return frame


def _one_column(parts: list[pa.Array]) -> pa.Array:
    """One column's batches as one array. Batches may differ in encoding (a part without the
    column gives nulls, a CSV plain text); then the text is decoded throughout."""
    if len({p.type for p in parts}) > 1:
        parts = [decoded(p) for p in parts]
    return unified(pa.chunked_array(parts))


def _load_arrow(
    source: TableSource,
    specs: Specs,
    customer_ids: pa.Array | IdSet | None,
    log: ProblemLog,
    batch_rows: int,
    unread_personal: bool = False,
    part: CustomerRange | None = None,
) -> pa.Table:
    """`_load` kept in arrow: the canonical columns of every batch as one table (dictionary
    text with one dictionary per column), with no pandas frame unless a whole-table rule may
    be broken and must say where."""
    return _load_arrow_at(source, specs, customer_ids, log, batch_rows, unread_personal, part)[0]


def _load_arrow_at(
    source: TableSource,
    specs: Specs,
    customer_ids: pa.Array | IdSet | None,
    log: ProblemLog,
    batch_rows: int,
    unread_personal: bool = False,
    part: CustomerRange | None = None,
) -> tuple[pa.Table, np.ndarray | None]:
    """`_load_arrow` and the 0-based table positions of its rows (None: all, in order)."""
    scan = _Scan(source, specs, customer_ids, log, batch_rows, unread_personal, part)
    parts: dict[str, list[pa.Array]] = {c: [] for c in scan.columns}
    for arrays in scan.arrays():
        for c in scan.columns:
            parts[c].append(arrays[c])
    positions = scan.row_positions()
    if not parts or not next(iter(parts.values())):
        empty = empty_frame(scan.schema, scan.columns)
        return pa.Table.from_pandas(empty, preserve_index=False), positions
    table = pa.table({c: _one_column(parts.pop(c)) for c in scan.columns})
    wanted = [c for c in scan.validator.whole_columns if c in scan.columns]
    keys = table.select(wanted)

    def frame() -> pd.DataFrame:
        whole = canonical_frame({c: table[c].combine_chunks() for c in scan.columns}, 0, len(table))
        if positions is not None:  # the whole-table rules name rows by the frame's index
            whole.index = pd.Index(positions)
        return whole

    log.extend(source.table, scan.validator.check_whole(frame, keys))
    return table, positions
