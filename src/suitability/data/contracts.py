"""Enforce the raw-table contracts declared in `schema`: parse each batch to canonical types,
check every column and row rule in arrow, check whole-table rules (in DuckDB for large
tables), and report every problem in one readable `ContractError`.

Everything here is pure (no file I/O) and vectorised: a batch of a million rows is checked with
arrow compute kernels (multi-threaded inside arrow where it can), never a Python loop per row.
Text columns that arrive dictionary-encoded (parquet's usual storage) stay so, and their checks
run once per distinct value. `io` reads the files and feeds batches in; row numbers are carried
in as the batch's offset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from suitability.data.pii import mask_pii_arrays
from suitability.data.schema import (
    IDENTIFIER,
    IDENTIFIER_RULE,
    RULE_REFERENCE,
    TABLES,
    Column,
    ColumnType,
    CompleteGroups,
    Ordered,
    RequiredWhen,
    RowRule,
    TableSchema,
)
from suitability.specs import Specs

#: Problems kept with full detail in a `ContractError`; beyond this they are only counted.
KEEP_PROBLEMS = 1_000
#: Longest data value echoed in a message; longer ones are cut with "…".
VALUE_WIDTH = 40
#: Longest explanatory detail (e.g. the questions a submission lacks) echoed in a message.
DETAIL_WIDTH = 120

RULE_MISSING_COLUMN = "required column is missing"
RULE_NOT_NULL = "must not be empty"

_STR_DTYPE = pd.StringDtype("pyarrow", na_value=np.nan)
_PANDAS_DTYPES: dict[ColumnType, object] = {
    "string": _STR_DTYPE,
    "timestamp": "datetime64[us]",
    "date": "datetime64[us]",
    "float": "float64",
    "int": "Int64",
}
_ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    "string": pa.large_string(),
    "timestamp": pa.timestamp("us"),
    "date": pa.timestamp("us"),
    "float": pa.float64(),
    "int": pa.int64(),
}
_TIMESTAMP_SHAPE = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?$"
_NUMBER_SHAPE = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
RULE_NOT_TIMESTAMP = (
    "not a valid timestamp (expected ISO 8601 YYYY-MM-DD[ HH:MM[:SS[.ffffff]]], no time zone)"
)
RULE_NOT_DATE = "not a valid date (expected ISO 8601 YYYY-MM-DD)"
RULE_TIME_OF_DAY = "not a date (has a time of day)"
_RULE_NOT_NUMBER = "not a number"
_RULE_NOT_WHOLE = "not a whole number"
_TABLE_ORDER = {name: i for i, name in enumerate(TABLES)}


# --- problems and the error -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule. `row` is the 1-based data row (header not counted) or None when the
    problem concerns a whole table or column; `value` is the offending value as shown (already
    cut to length), or None for personal data and where there is nothing to show."""

    table: str
    column: str | None
    row: int | None
    rule: str
    value: str | None = None

    def __str__(self) -> str:
        where = self.table if self.column is None else f"{self.table}.{self.column}"
        if self.row is not None:
            where += f", row {self.row}"
        text = f"{where}: {self.rule}"
        return f"{text} — {self.value}" if self.value is not None else text


def _rule_order(key: tuple[str, str | None, str]) -> tuple[int, int, str]:
    """(table, column, rule) in declared order: table, then column (whole-table rules last)."""
    table, column, rule = key
    schema = TABLES.get(table)
    names = schema.column_names if schema else []
    position = names.index(column) if column in names else len(names)
    return (_TABLE_ORDER.get(table, len(_TABLE_ORDER)), position, rule)


def _sort_key(problem: Problem) -> tuple[int, int, int, str]:
    table = TABLES.get(problem.table)
    names = table.column_names if table else []
    column = names.index(problem.column) if problem.column in names else len(names)
    row = -1 if problem.row is None else problem.row
    return (_TABLE_ORDER.get(problem.table, len(_TABLE_ORDER)), row, column, problem.rule)


class ContractError(ValueError):
    """Raw data that breaks its contract. `problems` holds the first problems (at most
    `KEEP_PROBLEMS`), sorted by table (in declared order) then row; `total` counts them all;
    `counts` gives the number per (table, column, rule). `str()` is the message a CLI prints:
    the first `max_problems_shown` problems (from settings), the total and a summary by rule."""

    def __init__(
        self,
        problems: Iterable[Problem],
        total: int | None = None,
        counts: Mapping[tuple[str, str | None, str], int] | None = None,
    ) -> None:
        self.problems: list[Problem] = sorted(problems, key=_sort_key)
        self.total: int = len(self.problems) if total is None else total
        self.counts: dict[tuple[str, str | None, str], int] = dict(
            counts or Counter((p.table, p.column, p.rule) for p in self.problems)
        )
        #: The log the problems were collected in, when they came from one (`ProblemLog`).
        self.log: ProblemLog | None = None
        super().__init__(self._render())

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its problems, not its message (errors travel from cluster workers).
        return (type(self), (self.problems, self.total, self.counts))

    def _render(self) -> str:
        from suitability.settings import get_settings

        shown = self.problems[: get_settings().max_problems_shown]
        noun = "problem" if self.total == 1 else "problems"
        tables = sorted({p.table for p in self.problems}, key=lambda t: _TABLE_ORDER.get(t, 99))
        head = f"data contract violated: {self.total:,} {noun} in {', '.join(tables)}"
        if any(p.row is not None for p in shown):
            head += " (rows are 1-based data rows, the CSV header not counted)"
        lines = [head, *(f"  {p}" for p in shown)]
        more = self.total - len(shown)
        if more > 0:
            lines.append(
                f"  … and {more:,} more {'problem' if more == 1 else 'problems'}; by rule:"
            )
            # Most frequent first; ties in the declared order of tables and columns, so the
            # summary does not depend on how the rows were batched or partitioned.
            ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], *_rule_order(kv[0])))
            for (table, column, rule), n in ranked[:10]:
                where = table if column is None else f"{table}.{column}"
                lines.append(f"    {n:>9,} × {where}: {rule}")
            if len(ranked) > 10:
                lines.append(f"    … {len(ranked) - 10} more rules")
        return "\n".join(lines)


class MissingTableError(ContractError):
    """A table that is not in the data folder (or is there twice, as parquet and CSV)."""


class ExtraColumnsWarning(UserWarning):
    """A raw table has columns the contract does not declare; they are ignored."""


class Finding(NamedTuple):
    """What one check found: every failing row of one (column, rule). `rows` are 1-based and
    ascending (None: the whole column or table). `values` line up with `rows` (they may stop
    early: only the first rows can ever be shown) and are shown as `<label> '<value>'`, or as
    ready-made text when `label` is None."""

    column: str | None
    rule: str
    rows: np.ndarray | None = None
    values: pd.Series | None = None
    label: str | None = "got"


class ProblemLog:
    """Collects findings across batches and tables with bounded memory: every problem is
    counted, but only the first `keep` in (table, row) order are turned into `Problem`s."""

    def __init__(self, keep: int = KEEP_PROBLEMS) -> None:
        self.keep = keep
        self.total = 0
        self.counts: Counter[tuple[str, str | None, str]] = Counter()
        self._kept: list[Problem] = []
        self._seen_whole: set[tuple[str, str | None, str]] = set()

    def __bool__(self) -> bool:
        return self.total > 0

    def add(self, table: str, finding: Finding) -> None:
        key = (table, finding.column, finding.rule)
        if finding.rows is None:
            if key in self._seen_whole:  # the same column problem, seen again in a later batch
                return
            self._seen_whole.add(key)
            self._count(key, 1)
            self._merge([Problem(table, finding.column, None, finding.rule)])
            return
        rows = np.asarray(finding.rows, dtype=np.int64)
        if rows.size == 0:
            return
        self._count(key, int(rows.size))
        order = np.argsort(rows, kind="stable")
        limit = self._row_limit(table)
        if limit is not None:
            order = order[: int(np.searchsorted(rows[order], limit, side="right"))]
        order = order[: self.keep]
        if order.size == 0:
            return
        shown: list[str | None] = [None] * order.size
        if finding.values is not None and not _is_pii(table, finding.column):
            available = order < len(finding.values)
            raw = finding.values.iloc[order[available]].tolist()
            for j, value in zip(np.flatnonzero(available), raw, strict=True):
                shown[j] = _show(value, finding.label)
        problems = [
            Problem(table, finding.column, int(rows[i]), finding.rule, shown[j])
            for j, i in enumerate(order)
        ]
        self._merge(problems)

    def extend(self, table: str, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.add(table, finding)

    def error(self, error_type: type[ContractError] = ContractError) -> ContractError | None:
        """The error to raise, or None when nothing was found. The error carries this log
        (`error.log`), so problems found in several places can be merged into one report."""
        if not self.total:
            return None
        error = error_type(self._kept, total=self.total, counts=self.counts)
        error.log = self
        return error

    @property
    def kept(self) -> list[Problem]:
        """The problems kept with their detail (the first `keep`, in report order)."""
        return list(self._kept)

    @property
    def whole_keys(self) -> frozenset[tuple[str, str | None, str]]:
        """The (table, column, rule) of problems that concern a whole table or column."""
        return frozenset(self._seen_whole)

    def absorb(
        self,
        problems: Iterable[Problem],
        counts: Mapping[tuple[str, str | None, str], int],
        whole: Iterable[tuple[str, str | None, str]] = (),
    ) -> None:
        """Add problems already counted elsewhere (`counts` per rule, `whole` the keys of
        table- or column-wide ones), e.g. from another partition's log."""
        for key, n in counts.items():
            self._count(key, n)
        self._seen_whole.update(whole)
        self._merge(list(problems))

    def raise_if_any(self) -> None:
        error = self.error()
        if error is not None:
            raise error

    def _count(self, key: tuple[str, str | None, str], n: int) -> None:
        self.total += n
        self.counts[key] += n

    def _row_limit(self, table: str) -> int | None:
        """Rows of `table` beyond this cannot enter the kept list any more (None: all can)."""
        if len(self._kept) < self.keep:
            return None
        last = self._kept[-1]
        order, last_order = _TABLE_ORDER.get(table, 99), _TABLE_ORDER.get(last.table, 99)
        if order < last_order:
            return None
        if order > last_order:
            return -1
        return -1 if last.row is None else last.row

    def _merge(self, problems: list[Problem]) -> None:
        self._kept.extend(problems)
        self._kept.sort(key=_sort_key)
        del self._kept[self.keep :]


def _is_pii(table: str, column: str | None) -> bool:
    schema = TABLES.get(table)
    if schema is None or column is None or column not in schema.column_names:
        return False
    return schema.column(column).pii


def _show(value: object, label: str | None) -> str | None:
    """A value as a message shows it: cut to length, quoted after its label."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value)
    width = DETAIL_WIDTH if label is None else VALUE_WIDTH
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text if label is None else f"{label} {text!r}"


# --- parsing to canonical dtypes ----------------------------------------------------------------


class _ColumnTypeError(Exception):
    """A column whose stored type cannot hold the declared type at all."""


def _mask_rows(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))


def _blank_to_null(strings: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(strings)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed)


def _parse_strings(strings: pa.Array, target: pa.DataType, shape: str) -> tuple[pa.Array, pa.Array]:
    """Parse text into `target`; returns the parsed values (null where unparseable) and a mask
    of the values that were present but could not be parsed."""
    strings = _blank_to_null(strings)
    try:
        parsed = pc.cast(strings, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Slow path, only for batches with a bad value: keep what has the right shape, then
        # let pandas find calendar-impossible values (arrow's cast fails the whole array).
        kept = pc.if_else(
            pc.match_substring_regex(strings, shape), strings, pa.scalar(None, strings.type)
        )
        try:
            parsed = pc.cast(kept, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            series = kept.to_pandas()
            if pa.types.is_timestamp(target):
                fixed = pd.to_datetime(series, format="ISO8601", errors="coerce")
                parsed = pa.array(fixed.astype("datetime64[us]"), type=target, from_pandas=True)
            else:
                fixed = pd.to_numeric(series, errors="coerce")
                parsed = pa.array(fixed.astype("float64"), type=target, from_pandas=True)
    return parsed, pc.and_(pc.is_valid(strings), pc.is_null(parsed))


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _convert(array: pa.Array, column: Column) -> tuple[pa.Array, list[tuple[pa.Array, str]]]:
    """One stored column -> its canonical arrow type, plus (mask, rule) for values that fail.
    Raises `_ColumnTypeError` when the stored type cannot hold the declared one."""
    target = _ARROW_TYPES[column.type]
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = column.type
    if (
        kind == "string"
        and pa.types.is_dictionary(array.type)
        and _is_text(array.type.value_type)
        and not column.pii
    ):
        # Kept encoded: the checks then run once per distinct value (see `_failing_rows`).
        return _text_dictionary(array), []
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    t = array.type
    if pa.types.is_null(t):
        return pa.nulls(len(array), target), []
    if kind == "string":
        if not _is_text(t):
            raise _ColumnTypeError(f"expected text, found {t}")
        return pc.cast(array, target), []
    if kind in ("timestamp", "date"):
        rule = RULE_NOT_TIMESTAMP if kind == "timestamp" else RULE_NOT_DATE
        failures: list[tuple[pa.Array, str]] = []
        if _is_text(t):
            values, bad = _parse_strings(array, target, _TIMESTAMP_SHAPE)
            failures.append((bad, rule))
        elif pa.types.is_timestamp(t):
            if t.tz is not None:
                raise _ColumnTypeError(f"expected naive local times, found {t}")
            try:  # ns -> us drops sub-microsecond digits; other units must fit
                values = pc.cast(array, target, safe=t.unit != "ns")
            except pa.ArrowInvalid:
                raise _ColumnTypeError(f"{t} values out of range") from None
        elif pa.types.is_date(t):
            values = pc.cast(array, target)
        else:
            raise _ColumnTypeError(f"expected a {kind}, found {t}")
        if kind == "date":
            failures.append(
                (pc.not_equal(pc.floor_temporal(values, unit="day"), values), RULE_TIME_OF_DAY)
            )
        return values, failures
    # numbers
    failures = []
    if _is_text(t):
        numbers, bad = _parse_strings(array, pa.float64(), _NUMBER_SHAPE)
        failures.append((bad, _RULE_NOT_NUMBER))
    elif pa.types.is_integer(t):
        if kind == "int":
            try:
                return pc.cast(array, target), []
            except pa.ArrowInvalid:
                raise _ColumnTypeError(f"{t} values out of range") from None
        numbers = pc.cast(array, pa.float64())
    elif pa.types.is_floating(t) or pa.types.is_decimal(t):
        numbers = pc.cast(array, pa.float64(), safe=False)
    else:
        raise _ColumnTypeError(f"expected a number, found {t}")
    if kind == "float":
        return numbers, failures
    whole = pc.and_(pc.equal(pc.floor(numbers), numbers), pc.less(pc.abs(numbers), float(2**63)))
    not_whole = pc.invert(whole)
    kept = pc.if_else(whole, numbers, pa.scalar(None, pa.float64()))
    failures.append((not_whole, _RULE_NOT_WHOLE))
    return pc.cast(kept, target, safe=False), failures


def _text_dictionary(array: pa.DictionaryArray) -> pa.DictionaryArray:
    """A dictionary-encoded text column with large_string values and int32 indices."""
    values = array.dictionary
    if values.type != pa.large_string():
        values = pc.cast(values, pa.large_string())
    indices = array.indices
    if indices.type != pa.int32():
        indices = pc.cast(indices, pa.int32())
    if values is array.dictionary and indices is array.indices:
        return array
    # The indices were valid for the same dictionary; checking them again costs a full scan.
    return pa.DictionaryArray.from_arrays(indices, values, safe=False)


def decoded(array: pa.Array) -> pa.Array:
    """A canonical column with any dictionary encoding undone."""
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


def _nan_to_null(array: pa.Array) -> pa.Array:
    """Floats with NaN as null, as pandas counts NaN missing (a parquet file may store NaN)."""
    nan = pc.is_nan(array)
    if not pc.any(nan, min_count=0).as_py():
        return array
    return pc.if_else(nan, pa.scalar(None, array.type), array)


def _to_pandas(columns: Mapping[str, pa.Array], row_offset: int, n_rows: int) -> pd.DataFrame:
    columns = {name: decoded(array) for name, array in columns.items()}
    frame = _from_canonical_arrays(columns, row_offset, n_rows)
    if frame is not None:
        return frame
    table = pa.table(dict(columns)) if columns else pa.table({})
    frame = table.to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype(), pa.large_string(): _STR_DTYPE}.get,
        ignore_metadata=True,
    )
    frame.index = pd.RangeIndex(row_offset, row_offset + n_rows)
    return frame


def canonical_frame(columns: Mapping[str, pa.Array], row_offset: int, n_rows: int) -> pd.DataFrame:
    """Canonical columns (`TableValidator.validate_arrays`) as a pandas frame whose index is
    the rows' 0-based positions in the whole table."""
    return _to_pandas(columns, row_offset, n_rows)


def _from_canonical_arrays(
    columns: Mapping[str, pa.Array], row_offset: int, n_rows: int
) -> pd.DataFrame | None:
    """`_to_pandas` column by column through the dtypes' own arrow conversions, for columns of
    the canonical arrow types only (else None): the same frame for a third of the cost of
    `Table.to_pandas`, which a request pays for each of its four tables."""
    if not columns:
        return None
    data: dict[str, Any] = {}
    for name, array in columns.items():
        t = array.type
        if t == pa.large_string():
            data[name] = _STR_DTYPE.__from_arrow__(array)
        elif t == pa.int64():
            data[name] = pd.Int64Dtype().__from_arrow__(array)
        elif t == pa.float64() or t == pa.timestamp("us"):
            # Nulls become NaN / NaT, as in `to_pandas`; a copy, so the frame owns its data.
            data[name] = np.array(array.to_numpy(zero_copy_only=False), copy=True)
        else:
            return None
    return pd.DataFrame(data, index=pd.RangeIndex(row_offset, row_offset + n_rows), copy=False)


def empty_frame(table: TableSchema, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A zero-row frame with the canonical dtypes of `table` (declared columns by default)."""
    names = list(columns) if columns is not None else table.column_names
    return _to_pandas(
        {n: pa.array([], type=_ARROW_TYPES[table.column(n).type]) for n in names}, 0, 0
    )


class Canonical(NamedTuple):
    """A batch in canonical dtypes, what went wrong parsing it, and the columns that are
    missing or unusable (their checks are skipped; the column is all-null). `arrays` holds the
    same columns as arrow arrays (the frame's source), for checks cheaper in arrow."""

    frame: pd.DataFrame
    findings: list[Finding]
    broken: frozenset[str]
    arrays: Mapping[str, pa.Array] = {}


def to_canonical(
    batch: pa.RecordBatch | pa.Table,
    table: TableSchema,
    row_offset: int = 0,
    columns: Sequence[str] | None = None,
    source: str = "",
) -> Canonical:
    """Convert a stored batch to canonical dtypes (text -> `str`, times -> datetime64[us],
    floats -> float64, ints -> Int64), in declared order, keeping only `columns` (default:
    required ones plus optional ones present). Text is parsed per the declared type; values
    that do not parse become null and are reported with their row numbers. The frame's index is
    the 0-based position in the whole table (row number - 1)."""
    arrays, findings, broken = _canonical_arrays(batch, table, row_offset, columns, source)
    return Canonical(_to_pandas(arrays, row_offset, batch.num_rows), findings, broken, arrays)


def _canonical_arrays(
    batch: pa.RecordBatch | pa.Table,
    table: TableSchema,
    row_offset: int,
    columns: Sequence[str] | None,
    source: str,
) -> tuple[dict[str, pa.Array], list[Finding], frozenset[str]]:
    """`to_canonical` before the frame is built: the arrays, the findings, the broken
    columns."""
    names = set(batch.schema.names)
    if columns is None:
        columns = [c.name for c in table.columns if not c.optional or c.name in names]
    n = batch.num_rows
    arrays: dict[str, pa.Array] = {}
    findings: list[Finding] = []
    broken: set[str] = set()
    for name in columns:
        column = table.column(name)
        target = _ARROW_TYPES[column.type]
        if name not in names:
            arrays[name] = pa.nulls(n, target)
            broken.add(name)
            continue
        stored = batch.column(name)
        try:
            arrays[name], failures = _convert(stored, column)
            if column.type == "float":
                arrays[name] = _nan_to_null(arrays[name])
        except _ColumnTypeError as exc:
            arrays[name] = pa.nulls(n, target)
            broken.add(name)
            where = f" (in {source})" if source else ""
            findings.append(Finding(name, f"wrong type: {exc}{where}"))
            continue
        for mask, rule in failures:
            rows = _mask_rows(mask)
            if rows.size:
                shown = pc.cast(pc.take(stored, pa.array(rows)), pa.large_string(), safe=False)
                findings.append(
                    Finding(name, rule, rows + row_offset + 1, pd.Series(shown.to_pandas()))
                )
    return arrays, findings, frozenset(broken)


# --- checks -----------------------------------------------------------------------------------


# The row rules run in arrow: a few kernels per rule, each costing microseconds where a pandas
# operation costs a tenth of a millisecond (the per-request path validates tiny tables), and as
# fast on a million rows. Missing values (NaN, NaT, NA) are arrow nulls: a comparison with one
# is null, which `_mask_rows` reads as "not violated", as pandas reads its False.


def _column(frame: pd.DataFrame | _ArrowColumns, name: str) -> pa.Array:
    """A frame column in arrow, missing values as nulls and text as large_string."""
    if isinstance(frame, _ArrowColumns):
        return frame.column(name)
    array = pa.array(frame[name], from_pandas=True)
    return pc.cast(array, pa.large_string()) if _is_text(array.type) else array


class _ArrowColumns:
    """A frame's columns as `_column` gives them, taken from the arrow arrays the frame was
    built from where they are at hand (no conversion back from pandas), converted once
    otherwise. What the row rules read."""

    def __init__(self, frame: pd.DataFrame | None, arrays: Mapping[str, pa.Array]) -> None:
        """`frame` None: `arrays` are canonical columns (`validate_arrays`), floats already with
        NaN as null, text possibly dictionary-encoded; they are used as they are."""
        self.frame = frame
        self._arrays = dict(arrays)
        self._converted: dict[str, pa.Array] = {}

    def column(self, name: str) -> pa.Array:
        array = self._arrays.get(name)
        if self.frame is None:
            assert array is not None, name
            return array
        # Floats are read from the frame: pandas counts NaN as missing, an arrow array
        # parsed from a file may hold NaN as a value.
        if array is None or pa.types.is_floating(array.type):
            if name not in self._converted:
                self._converted[name] = _column(self.frame, name)
            return self._converted[name]
        if _is_text(array.type) and not pa.types.is_large_string(array.type):
            array = pc.cast(array, pa.large_string())
        return array


def _pairs(frame: pd.DataFrame, *columns: str) -> pd.Series:
    key = frame[columns[0]]
    for c in columns[1:]:
        key = key + "\x1f" + frame[c]
    return key


def _joined(*parts: pa.Array) -> pa.Array:
    """`_pairs` in arrow: the values joined by \x1f, null where any part is null."""
    parts = tuple(decoded(p) for p in parts)
    return pc.binary_join_element_wise(*parts, pa.scalar("\x1f", pa.large_string()))


def _one_of(values: pa.Array, allowed: Iterable[str]) -> pa.Array:
    """Whether each value is in `allowed` (never null: a null value is not)."""
    value_set = pa.array(list(allowed), type=pa.large_string())
    if pa.types.is_dictionary(values.type):
        found = pc.is_in(values.dictionary, value_set=value_set)
        return pc.fill_null(pc.take(found, values.indices), False)
    return pc.is_in(values, value_set=value_set)


def shown_column(rule: RowRule) -> str | None:
    """The column whose value a problem with `rule` shows (None: nothing to show)."""
    return rule.show if isinstance(rule, RequiredWhen) else rule.column


def _violations(rule: RowRule, frame: _ArrowColumns, table: TableSchema, specs: Specs) -> pa.Array:
    """A declared row rule (`schema`) over a batch, in arrow: a boolean mask of the rows that
    break it (null counts as not broken)."""
    if isinstance(rule, Ordered):
        earlier, later = _column(frame, rule.earlier), _column(frame, rule.later)
        present = pc.and_(pc.is_valid(earlier), pc.is_valid(later))
        wrong = pc.greater_equal if rule.strict else pc.greater
        return pc.and_(present, wrong(earlier, later))
    if isinstance(rule, RequiredWhen):
        applies = _one_of(_column(frame, rule.when), rule.values(specs))
        return pc.and_(applies, pc.is_null(_column(frame, rule.column)))
    allowed = rule.allowed(specs)
    parts = [_column(frame, c) for c in rule.columns]
    # Where a leading part is not an allowed start, or the last part is outside its own
    # vocabulary, another rule names the problem.
    starts = {a[:-1] for a in allowed}
    applies = (
        _tuple_in(parts[:-1], starts)
        if len(parts) > 2
        else _one_of(parts[0], (a[0] for a in starts))
    )
    vocabulary = table.column(rule.column).allowed
    if vocabulary is not None:
        applies = pc.and_(applies, _one_of(parts[-1], vocabulary(specs)))
    applies = pc.and_(applies, pc.is_valid(parts[-1]))
    return pc.and_(applies, pc.invert(_tuple_in(parts, allowed)))


def _unique_dictionary(array: pa.Array) -> pa.DictionaryArray:
    """The column dictionary-encoded with each value once in its dictionary."""
    if pa.types.is_dictionary(array.type):
        values = array.dictionary
        if pc.count_distinct(values, mode="all").as_py() == len(values):
            return array
        array = array.dictionary_decode()
    return pc.dictionary_encode(array)


def _tuple_in(parts: Sequence[pa.Array], allowed: Iterable[tuple[str, ...]]) -> pa.Array:
    """Whether each row's values of `parts` together are one of the `allowed` tuples (false
    where any part is missing): `_one_of(_joined(*parts), …)` without building a string per
    row. Each part is dictionary-encoded (as stored, or here), each row becomes one integer
    made of its parts' dictionary positions, and the allowed tuples are encoded the same way."""
    encoded = [_unique_dictionary(p) for p in parts]
    sizes = [len(p.dictionary) + 1 for p in encoded]
    if float(np.prod([float(n) for n in sizes])) >= 2.0**62:  # too many combinations to pack
        joined = _joined(*parts)
        return _one_of(joined, ("\x1f".join(a) for a in allowed))
    n = len(parts[0])
    code = np.zeros(n, dtype=np.int64)
    valid = np.ones(n, dtype=bool)
    lookups = []
    for p, size in zip(encoded, sizes, strict=True):
        indices = p.indices
        valid &= np.asarray(pc.is_valid(indices))
        code = code * size + pc.fill_null(indices, 0).to_numpy().astype(np.int64)
        lookups.append({v: i for i, v in enumerate(p.dictionary.to_pylist())})
    wanted = []
    for values in allowed:
        positions = [lookup.get(v) for lookup, v in zip(lookups, values, strict=True)]
        if all(i is not None for i in positions):
            c = 0
            for i, size in zip(positions, sizes, strict=True):
                c = c * size + i
            wanted.append(c)
    found = np.isin(code, np.array(wanted, dtype=np.int64)) & valid
    return pa.array(found)


def allowed_rule(values: frozenset[str]) -> str:
    """The rule text of a value outside its column's vocabulary (the first few shown)."""
    listed = sorted(values)
    if len(listed) > 8:
        return (
            f"value not allowed (expected one of: {', '.join(listed[:8])}, … {len(listed)} in all)"
        )
    return f"value not allowed (expected one of: {', '.join(listed)})"


def max_rule(bound: float) -> str:
    """The rule text of an upper bound (`must be ≤ 10,000,000,000`)."""
    return f"must be ≤ {int(bound):,}" if float(bound).is_integer() else f"must be ≤ {bound:g}"


#: A column check: (rule text, function of the values giving true where a value fails it —
#: null where it is missing, which never fails —, whether a problem shows the value).
_Check = tuple[str, Callable[[pa.Array], pa.Array], bool]

_NO_ROWS = np.zeros(0, dtype=np.int64)


def _failing_rows(array: pa.Array, fails: Callable[[pa.Array], pa.Array]) -> np.ndarray:
    """0-based positions of the rows whose value fails a check. A dictionary-encoded column is
    checked once per distinct value; rows are looked up only when some value fails."""
    if pa.types.is_dictionary(array.type):
        bad = pc.fill_null(fails(array.dictionary), False)
        if not pc.any(bad, min_count=0).as_py():
            return _NO_ROWS
        return _mask_rows(pc.take(bad, array.indices))
    bad = fails(array)
    if not pc.any(bad, min_count=0).as_py():
        return _NO_ROWS
    return _mask_rows(bad)


def _values_at(array: pa.Array, positions: np.ndarray) -> pd.Series:
    """The values at some 0-based positions, as a message shows them."""
    taken = decoded(pc.take(array, pa.array(positions, type=pa.int64())))
    return pd.Series(taken.to_pandas(), dtype=object)


class IdSet:
    """A fixed set of ids (the customers table's) that many batches are looked up in. Arrow's
    `is_in` hashes its value set on every call — 0.1 s for a million ids, per batch —, so a
    batch with far fewer distinct values than the set (a dictionary-encoded column: its
    dictionary) is looked up in a pandas index instead, hashed once."""

    def __init__(self, ids: pa.Array) -> None:
        self.array = ids
        self._index: pd.Index | None = None
        # The last lookup, by the memory it read: validation and then the feature code look
        # up the same batch's dictionary one after the other.
        self._last: tuple[tuple[object, ...], pa.Array, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.array)

    def positions(self, values: pa.Array) -> np.ndarray:
        """Position of each value in the set (-1: null or not in it), as int64."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        where = (
            values.type,
            values.offset,
            len(values),
            *(b and b.address for b in values.buffers()),
        )
        if self._last is not None and self._last[0] == where:
            return self._last[2]
        if len(values) * 4 >= len(self.array):
            found = pc.index_in(values, value_set=self.array)
            positions = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            if self._index is None:
                self._index = pd.Index(self.array.to_numpy(zero_copy_only=False), dtype=object)
            text = decoded(values).to_numpy(zero_copy_only=False)
            positions = self._index.get_indexer(text).astype(np.int64, copy=False)
        self._last = (where, values, positions)  # (values kept alive: the memory stays theirs)
        return positions

    def contains(self, values: pa.Array) -> pa.Array:
        """Whether each value is in the set (false for null)."""
        return pa.array(self.positions(values) >= 0)


def _not_known(ids: IdSet) -> Callable[[pa.Array], pa.Array]:
    def fails(values: pa.Array) -> pa.Array:
        return pc.and_(pc.is_valid(values), pc.invert(ids.contains(values)))

    return fails


def _not_in(value_set: pa.Array) -> Callable[[pa.Array], pa.Array]:
    def fails(values: pa.Array) -> pa.Array:
        found = pc.is_in(values, value_set=value_set)
        return pc.and_(pc.is_valid(values), pc.invert(found))

    return fails


class TableValidator:
    """Checks the batches of one table: per-column rules (types, nulls, allowed values, bounds,
    identifier syntax, customer references) and cross-column rules in arrow, and whole-table
    rules (uniqueness, complete submissions) once the table is assembled.

    `customer_ids` (unique ids of the customers table) turns on the reference check for tables
    whose rules ask for it; `columns` fixes the output columns for every batch."""

    def __init__(
        self,
        table: TableSchema,
        specs: Specs,
        customer_ids: pa.Array | IdSet | None = None,
        columns: Sequence[str] | None = None,
    ) -> None:
        self.table = table
        self.specs = specs
        self.columns = list(columns) if columns is not None else None
        if customer_ids is not None and not isinstance(customer_ids, IdSet):
            customer_ids = IdSet(customer_ids)
        self.customer_ids = customer_ids if table.references_customers else None
        self.broken: set[str] = set()
        self._checks: dict[str, list[_Check]] = {}

    def validate_arrays(
        self, batch: pa.RecordBatch | pa.Table, row_offset: int = 0, source: str = ""
    ) -> tuple[dict[str, pa.Array], list[Finding]]:
        """Canonical, PII-masked columns of one batch and everything wrong with it. Personal
        data is masked right after parsing, before any check sees it. Text columns stored
        dictionary-encoded come back so (`decoded` undoes it); floats hold NaN as null."""
        arrays, parsing, broken = _canonical_arrays(
            batch, self.table, row_offset, self.columns, source
        )
        self.broken |= broken
        arrays = mask_pii_arrays(arrays, self.table)
        checked = self._column_checks(arrays, broken, row_offset)
        checked += self._row_rules(arrays, broken, row_offset)
        # A value that did not parse is null now; don't report it again as missing.
        unparsed: dict[str | None, list[np.ndarray]] = {}
        for f in parsing:
            if f.rows is not None:
                unparsed.setdefault(f.column, []).append(f.rows)
        findings = list(parsing)
        for f in checked:
            if f.rows is not None and f.column in unparsed:
                f = _without_rows(f, np.concatenate(unparsed[f.column]))
            if f.rows is None or f.rows.size:
                findings.append(f)
        return arrays, findings

    def validate_batch(
        self, batch: pa.RecordBatch | pa.Table, row_offset: int = 0, source: str = ""
    ) -> tuple[pd.DataFrame, list[Finding]]:
        """`validate_arrays` as a canonical pandas frame (index: 0-based table positions)."""
        arrays, findings = self.validate_arrays(batch, row_offset, source)
        return _to_pandas(arrays, row_offset, batch.num_rows), findings

    def check_whole(
        self,
        frame: pd.DataFrame | Callable[[], pd.DataFrame],
        keys: Mapping[str, Sequence[pa.Array]] | pa.Table | None = None,
    ) -> list[Finding]:
        """Rules that need every row at once: unique keys and complete questionnaire
        submissions. `frame` is the concatenation of the validated batches (or makes it: it
        is then asked for only when a pre-check cannot rule a problem out); `keys` may hold the
        same batches' canonical arrays of the columns these rules read (`whole_columns`), which
        the pre-checks then use as they are (dictionary codes, no text hashing)."""
        table = keys if isinstance(keys, pa.Table) else _key_table(keys) if keys else None
        if callable(frame):
            make, built = frame, []

            def frame() -> pd.DataFrame:  # built once, and only if a pre-check needs it
                if not built:
                    built.append(make())
                return built[0]

            if table is None:
                frame = frame()
        findings: list[Finding] = []
        key = list(self.table.unique)
        if key and not set(key) & self.broken:
            findings += _duplicates(frame, key, table)
        complete = self.table.complete_groups
        if complete is not None and not self.broken & {*complete.group, complete.member}:
            findings += _incomplete_submissions(frame, complete, self.specs, table)
        return findings

    @property
    def whole_columns(self) -> list[str]:
        """The columns the whole-table rules read."""
        names = list(self.table.unique)
        complete = self.table.complete_groups
        if complete is not None:
            names += [*complete.group, complete.member]
        return list(dict.fromkeys(names))

    def _column_checks(
        self, arrays: Mapping[str, pa.Array], broken: frozenset[str], row_offset: int
    ) -> list[Finding]:
        findings = []
        for name, array in arrays.items():
            if name in broken:
                continue
            column = self.table.column(name)
            if not column.nullable and array.null_count:
                rows = _mask_rows(pc.is_null(array))
                findings.append(Finding(name, RULE_NOT_NULL, rows + row_offset + 1))
            for rule, fails, show in self._column_rules(column):
                rows = _failing_rows(array, fails)
                if rows.size:
                    values = _values_at(array, rows[:KEEP_PROBLEMS]) if show else None
                    findings.append(Finding(name, rule, rows + row_offset + 1, values))
        return findings

    def _column_rules(self, column: Column) -> list[_Check]:
        """The value checks of one column (built once per validator). Missing values are the
        not-null rule's business; no other check fails them."""
        if column.name in self._checks:
            return self._checks[column.name]
        checks: list[_Check] = []
        if column.allowed is not None:
            allowed = column.allowed(self.specs)
            value_set = pa.array(sorted(allowed), type=_ARROW_TYPES[column.type])
            checks.append((allowed_rule(allowed), _not_in(value_set), True))
        if column.type == "float":
            checks.append(("must be a finite number", lambda v: pc.invert(pc.is_finite(v)), True))
        if column.min is not None:
            low = column.min
            checks.append((f"must be ≥ {low:g}", lambda v: pc.less(v, low), True))
        if column.max is not None:
            high = column.max
            checks.append((max_rule(high), lambda v: pc.greater(v, high), True))
        reference = column.name == "customer_id" and self.customer_ids is not None
        if column.identifier and not reference:
            # (a customer id must be a known one, which had this syntax checked)
            # An id refused for its syntax may be personal data (an e-mail): not shown.
            syntax = lambda v: pc.invert(pc.match_substring_regex(v, IDENTIFIER))  # noqa: E731
            checks.append((IDENTIFIER_RULE, syntax, False))
        if reference:
            assert self.customer_ids is not None
            checks.append((RULE_REFERENCE, _not_known(self.customer_ids), True))
        self._checks[column.name] = checks
        return checks

    def _row_rules(
        self, arrays: Mapping[str, pa.Array], broken: frozenset[str], row_offset: int
    ) -> list[Finding]:
        findings = []
        columns = _ArrowColumns(None, arrays)
        for rule in self.table.row_rules:
            if set(rule.needs) & broken or not set(rule.needs) <= set(arrays):
                continue
            positions = _mask_rows(_violations(rule, columns, self.table, self.specs))
            if positions.size:
                values = None
                show = shown_column(rule)
                if show is not None:
                    values = _values_at(arrays[show], positions[:KEEP_PROBLEMS])
                label = "got" if show == rule.column else show
                findings.append(
                    Finding(rule.column, rule.rule, positions + row_offset + 1, values, label)
                )
        return findings


def _without_rows(finding: Finding, rows: np.ndarray) -> Finding:
    """`finding` less the given rows (its values stay aligned)."""
    keep = ~np.isin(finding.rows, rows)
    values = finding.values
    if values is not None:
        values = values.iloc[np.flatnonzero(keep[: len(values)])]
    return finding._replace(rows=finding.rows[keep], values=values)


def _arrow_keys(frame: pd.DataFrame, columns: Sequence[str]) -> pa.Table | None:
    """`columns` of `frame` as an arrow table, for quick whole-table pre-checks; None unless
    every column is text, a timestamp or an integer (where arrow's and pandas' notions of
    "missing" and "equal" agree exactly; floats differ on NaN and -0.0)."""
    arrays = {c: _column(frame, c) for c in columns}
    for array in arrays.values():
        t = array.type
        if not (_is_text(t) or pa.types.is_timestamp(t) or pa.types.is_integer(t)):
            return None
    return pa.table(arrays)


#: Whole-table pre-checks of at least this many rows run in DuckDB (multi-threaded hash
#: aggregation, several times faster than arrow's on millions of rows); smaller tables, such as
#: a request's, stay in arrow (opening a DuckDB connection costs tens of milliseconds).
_DUCKDB_FROM_ROWS = 100_000


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _duckdb_count(sql: str, **tables: pa.Table) -> int:
    """The single count a query over the given arrow tables returns (read in place)."""
    with duckdb.connect() as con:
        for name, table in tables.items():
            con.register(name, table)
        return int(con.execute(sql).fetchall()[0][0])


def _codes_in_order(table: pa.Table, columns: Sequence[str]) -> list[np.ndarray]:
    """Integer codes of complete (null-free) key columns, most significant first: customer id,
    then times, then the rest (the order data is kept in). Text gets codes in order of first
    appearance, which for text sorted within its groups follows that order."""
    ranked = sorted(
        columns,
        key=lambda c: (c != "customer_id", not pa.types.is_timestamp(table.schema.field(c).type)),
    )
    codes = []
    for name in ranked:
        array = table[name].combine_chunks()
        if pa.types.is_timestamp(array.type):
            codes.append(array.to_numpy(zero_copy_only=False).view(np.int64))
        elif pa.types.is_integer(array.type):
            codes.append(array.to_numpy(zero_copy_only=False))
        else:  # the dictionary positions, as stored (no copy)
            codes.append(_unique_dictionary(array).indices.to_numpy(zero_copy_only=False))
    return codes


def _same_as_previous(table: pa.Table, columns: Sequence[str]) -> np.ndarray | None:
    """For null-free rows sorted by `columns` (in `_codes_in_order`'s order), whether each row
    after the first has the same key as the one before; None when the rows are not sorted so
    (then equal keys need not be neighbours). One pass of numpy comparisons, no hashing."""
    if table.num_rows < 2:
        return np.zeros(0, dtype=bool)
    ordered = np.ones(table.num_rows - 1, dtype=bool)
    ahead = np.zeros(table.num_rows - 1, dtype=bool)  # already greater on a leading column
    for code in _codes_in_order(table, columns):
        previous, current = code[:-1], code[1:]
        ordered &= ahead | (previous <= current)
        ahead |= previous < current
    return None if not ordered.all() else ~ahead


def _answered_in_order(
    table: pa.Table, rule: CompleteGroups, expected: Mapping[str, Sequence[str]]
) -> bool | None:
    """`_surely_complete` for rows sorted by submission, each question once: count each
    submission's expected answers in one pass. None when the rows are not so."""
    submission, member = list(rule.group), rule.member
    pairs = [(v, m) for v, members in expected.items() for m in members]
    parts = [table[rule.version].combine_chunks(), table[member].combine_chunks()]
    rows = table.filter(_tuple_in(parts, pairs)).drop_null()
    same = _same_as_previous(rows, [*submission, member])
    if same is None or same.any():
        return None  # out of order, or a question repeated (counted distinct elsewhere)
    in_group = _same_as_previous(rows, submission)
    if in_group is None:
        return None
    starts = np.flatnonzero(np.concatenate([[True], ~in_group])) if rows.num_rows else _NO_ROWS
    answered = np.diff(np.append(starts, rows.num_rows))
    versions = list(expected)
    sizes = np.array([len(m) for m in expected.values()], dtype=np.int64)
    version = rows[rule.version].combine_chunks()
    if len(starts):
        version = pc.take(version, pa.array(starts))
    version = decoded(version)
    position = pc.index_in(version, value_set=pa.array(versions, type=version.type))
    needed = sizes[pc.fill_null(position, 0).to_numpy()]
    return bool(np.all(answered >= needed))


def _key_table(keys: Mapping[str, Sequence[pa.Array]]) -> pa.Table | None:
    """The batches' key columns as one arrow table (text dictionaries unified across batches,
    so one code means one value), or None when there are no batches."""
    if not all(keys.values()):
        return None
    return pa.table({name: unified(pa.chunked_array(parts)) for name, parts in keys.items()})


def unified(column: pa.ChunkedArray) -> pa.Array:
    """Batches of one canonical column as one array; dictionary-encoded text gets one
    dictionary for all batches."""
    if pa.types.is_dictionary(column.type):
        column = column.unify_dictionaries()
    return column.combine_chunks()


def _frame_of(frame: pd.DataFrame | Callable[[], pd.DataFrame]) -> pd.DataFrame:
    return frame() if callable(frame) else frame


def _plain(table: pa.Table) -> pa.Table:
    """A key table with its text decoded (for the engines that group by text)."""
    return pa.table({n: decoded(table[n].combine_chunks()) for n in table.column_names})


def _surely_unique(
    frame: pd.DataFrame | Callable[[], pd.DataFrame], key: list[str], keys: pa.Table | None = None
) -> bool:
    """True when no complete key repeats, so `_duplicates` can skip its pandas work; False
    also when unsure. Rows in key order (the usual case) are checked by comparing neighbours,
    others by a hash aggregation (DuckDB for large tables, arrow for small ones)."""
    if (keys.num_rows if keys is not None else len(_frame_of(frame))) < 2:
        return True
    table = keys.select(key) if keys is not None else _arrow_keys(_frame_of(frame), key)
    if table is None:
        return False
    same = _same_as_previous(table.drop_null(), key)
    if same is not None:  # rows in key order: a repeat is next to what it repeats
        return not same.any()
    table = _plain(table)
    if table.num_rows >= _DUCKDB_FROM_ROWS:
        columns = ", ".join(_quoted(c) for c in key)
        complete = " AND ".join(f"{_quoted(c)} IS NOT NULL" for c in key)
        sql = f"""SELECT count(*) FROM (
            SELECT 1 FROM keys WHERE {complete} GROUP BY {columns} HAVING count(*) > 1)"""
        return _duckdb_count(sql, keys=table) == 0
    complete = table.drop_null()
    return complete.group_by(key).aggregate([]).num_rows == complete.num_rows


def _duplicates(
    frame: pd.DataFrame | Callable[[], pd.DataFrame], key: list[str], keys: pa.Table | None = None
) -> list[Finding]:
    """Every row whose key repeats an earlier row's, with the row it repeats."""
    if _surely_unique(frame, key, keys):
        return []
    frame = _frame_of(frame)
    complete = frame[key].notna().all(axis=1)
    keyed = frame.loc[complete, key]
    repeated = keyed.duplicated(keep="first")
    if not repeated.any():
        return []
    first = keyed.index.to_series().groupby([keyed[c] for c in key], sort=False).transform("min")
    dup_index = repeated[repeated].index
    shown = dup_index[:KEEP_PROBLEMS]  # only the first can ever be shown
    first_rows = [int(r) + 1 for r in first.loc[shown]]
    if len(key) == 1:
        rule = f"{key[0]} must be unique"
        ids = keyed.loc[shown, key[0]].astype(str).tolist()
        details = [f"{v!r} first at row {r}" for v, r in zip(ids, first_rows, strict=True)]
    else:
        rule = "one row per " + ", ".join(key)
        details = [f"same as row {r}" for r in first_rows]
    rows = dup_index.to_numpy() + 1
    return [Finding(key[-1], rule, rows, pd.Series(details, dtype=object), label=None)]


def _incomplete_submissions(
    frame: pd.DataFrame | Callable[[], pd.DataFrame],
    rule: CompleteGroups,
    specs: Specs,
    keys: pa.Table | None = None,
) -> list[Finding]:
    """One problem per submission (`rule.group`: customer, version, submitted_at) that lacks a
    `rule.member` (question) its version expects, at the submission's first row, naming the
    missing ones. Rows whose question is not one of their version's are another rule's."""
    submission, member, version = list(rule.group), rule.member, rule.version
    expected = rule.expected(specs)
    if _surely_complete(frame, rule, expected, keys):
        return []
    frame = _frame_of(frame)
    valid = frame[submission].notna().all(axis=1) & _pairs(frame, version, member).isin(
        _expected_pairs(expected)
    ).fillna(False)
    rows = frame.loc[valid, [*submission, member]]
    if rows.empty:
        return []
    keys = [rows[c] for c in submission]
    summary = pd.DataFrame(
        {
            "answered": rows[member].groupby(keys, sort=False).nunique(),
            "first": rows.index.to_series().groupby(keys, sort=False).min(),
        }
    ).reset_index()
    summary["expected"] = summary[version].map({v: len(m) for v, m in expected.items()})
    incomplete = summary[summary["answered"] < summary["expected"]].sort_values("first")
    if incomplete.empty:
        return []
    # Name the missing questions for the submissions that can be shown (bounded work).
    shown = incomplete.head(KEEP_PROBLEMS)
    answered = rows.merge(shown[submission], on=submission)
    have = answered.groupby(submission, sort=False)[member].agg(frozenset)
    details = []
    at = submission.index(version)
    for sub in shown[submission].itertuples(index=False, name=None):
        missing = [q for q in expected[sub[at]] if q not in have[sub]]
        details.append("missing: " + ", ".join(missing))
    rows_ = incomplete["first"].to_numpy() + 1
    values = pd.Series(details, dtype=object)
    return [Finding(member, rule.rule, rows_, values, label=None)]


def _expected_pairs(expected: Mapping[str, Sequence[str]]) -> list[str]:
    return [f"{v}\x1f{m}" for v, members in expected.items() for m in members]


def _surely_complete(
    frame: pd.DataFrame | Callable[[], pd.DataFrame],
    rule: CompleteGroups,
    expected: Mapping[str, Sequence[str]],
    keys: pa.Table | None = None,
) -> bool:
    """True when every submission answers as many distinct questions of its version as the
    version has (the same rows and counts as `_incomplete_submissions`, in one arrow hash
    aggregation), so the pandas work that names the missing questions can be skipped; False
    also when unsure."""
    submission, member = list(rule.group), rule.member
    columns = [*submission, member]
    table = keys.select(columns) if keys is not None else _arrow_keys(_frame_of(frame), columns)
    if table is None:
        return False
    answered = _answered_in_order(table, rule, expected)
    if answered is not None:
        return answered
    table = _plain(table)
    if table.num_rows >= _DUCKDB_FROM_ROWS:
        group = ", ".join(_quoted(c) for c in submission)
        present = " AND ".join(f"t.{_quoted(c)} IS NOT NULL" for c in submission)
        pairs = pa.table(
            {
                "v": pa.array([v for v, ms in expected.items() for _ in ms], pa.large_string()),
                "m": pa.array([m for ms in expected.values() for m in ms], pa.large_string()),
            }
        )
        sizes = pa.table(
            {
                "v": pa.array(list(expected), pa.large_string()),
                "n": pa.array([len(m) for m in expected.values()], pa.int64()),
            }
        )
        v, m = _quoted(rule.version), _quoted(member)
        sql = f"""SELECT count(*) FROM (
                SELECT {", ".join(f"t.{_quoted(c)}" for c in submission)},
                       count(DISTINCT t.{m}) AS answered
                FROM keys t JOIN pairs p ON t.{v} = p.v AND t.{m} = p.m
                WHERE {present} GROUP BY {group}
            ) s JOIN sizes z ON s.{v} = z.v WHERE s.answered < z.n"""
        return _duckdb_count(sql, keys=table, pairs=pairs, sizes=sizes) == 0
    valid = _one_of(_joined(table[rule.version], table[member]), _expected_pairs(expected))
    for column in submission:
        valid = pc.and_(valid, pc.is_valid(table[column]))
    answered = (
        table.filter(pc.fill_null(valid, False))
        .group_by(submission)
        .aggregate([(member, "count_distinct")])
    )
    versions = list(expected)
    counts = pa.array([len(m) for m in expected.values()], pa.int64())
    version = pc.index_in(
        answered[rule.version], value_set=pa.array(versions, type=answered[rule.version].type)
    )
    short = pc.less(answered[f"{member}_count_distinct"], pc.take(counts, version))
    return not pc.any(short, min_count=0).as_py()
