"""Enforce the raw-table contracts declared in `schema`: parse each batch to canonical dtypes,
check it with pandera and vectorised cross-column rules, check whole-table rules, and report
every problem in one readable `ContractError`.

Everything here is pure (no file I/O) and vectorised: a batch of a million rows is checked with
arrow compute, pandas and pandera, never a Python loop per row. `io` reads the files and feeds
batches in; row numbers are carried in as the batch's offset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.compute as pc
from pandera.errors import SchemaErrors

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
        super().__init__(self._render())

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
            ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])
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
        """The error to raise, or None when nothing was found."""
        if not self.total:
            return None
        return error_type(self._kept, total=self.total, counts=self.counts)

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
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    t = array.type
    if pa.types.is_null(t):
        return pa.nulls(len(array), target), []
    kind = column.type
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


def _to_pandas(columns: Mapping[str, pa.Array], row_offset: int, n_rows: int) -> pd.DataFrame:
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

    def __init__(self, frame: pd.DataFrame, arrays: Mapping[str, pa.Array]) -> None:
        self.frame = frame
        self._arrays = dict(arrays)
        self._converted: dict[str, pa.Array] = {}

    def column(self, name: str) -> pa.Array:
        array = self._arrays.get(name)
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
    return pc.binary_join_element_wise(*parts, pa.scalar("\x1f", pa.large_string()))


def _one_of(values: pa.Array, allowed: Iterable[str]) -> pa.Array:
    """Whether each value is in `allowed` (never null: a null value is not)."""
    return pc.is_in(values, value_set=pa.array(list(allowed), type=pa.large_string()))


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
        _one_of(_joined(*parts[:-1]), ("\x1f".join(a) for a in starts))
        if len(parts) > 2
        else _one_of(parts[0], (a[0] for a in starts))
    )
    vocabulary = table.column(rule.column).allowed
    if vocabulary is not None:
        applies = pc.and_(applies, _one_of(parts[-1], vocabulary(specs)))
    applies = pc.and_(applies, pc.is_valid(parts[-1]))
    return pc.and_(applies, pc.invert(_one_of(_joined(*parts), ("\x1f".join(a) for a in allowed))))


def allowed_rule(values: frozenset[str]) -> str:
    """The rule text of a value outside its column's vocabulary (the first few shown)."""
    listed = sorted(values)
    if len(listed) > 8:
        return (
            f"value not allowed (expected one of: {', '.join(listed[:8])}, … {len(listed)} in all)"
        )
    return f"value not allowed (expected one of: {', '.join(listed)})"


def _in_customers(ids: pa.Array) -> Callable[[pd.Series], pd.Series]:
    """A pandera check function: is each customer_id one of `ids` (one arrow hash lookup)."""

    def check(values: pd.Series) -> pd.Series:
        array = pa.array(values, type=pa.large_string(), from_pandas=True)
        found = pc.is_in(array, value_set=ids).to_numpy(zero_copy_only=False)
        return pd.Series(found, index=values.index)

    return check


def max_rule(bound: float) -> str:
    """The rule text of an upper bound (`must be ≤ 10,000,000,000`)."""
    return f"must be ≤ {int(bound):,}" if float(bound).is_integer() else f"must be ≤ {bound:g}"


def _identifiers(values: pd.Series) -> pd.Series:
    """A pandera check function: does each value have identifier syntax (arrow regex)."""
    array = pa.array(values, type=pa.large_string(), from_pandas=True)
    found = pc.match_substring_regex(array, IDENTIFIER).to_numpy(zero_copy_only=False)
    return pd.Series(found, index=values.index)


def _pandera_column(column: Column, specs: Specs, customer_ids: pa.Array | None) -> pandera.Column:
    checks = []
    if column.allowed is not None:
        allowed = column.allowed(specs)
        checks.append(pandera.Check.isin(sorted(allowed), error=allowed_rule(allowed)))
    if column.type == "float":
        checks.append(pandera.Check(lambda s: np.isfinite(s), error="must be a finite number"))
    if column.min is not None:
        checks.append(pandera.Check.ge(column.min, error=f"must be ≥ {column.min:g}"))
    if column.max is not None:
        checks.append(pandera.Check.le(column.max, error=max_rule(column.max)))
    if column.identifier and not (column.name == "customer_id" and customer_ids is not None):
        checks.append(pandera.Check(_identifiers, error=IDENTIFIER_RULE))
    if column.name == "customer_id" and customer_ids is not None:
        checks.append(pandera.Check(_in_customers(customer_ids), error=RULE_REFERENCE))
    return pandera.Column(
        _PANDAS_DTYPES[column.type], checks=checks, nullable=column.nullable, required=True
    )


def _failures_to_findings(cases: pd.DataFrame) -> list[Finding]:
    findings = []
    for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
        index = pd.to_numeric(group["index"], errors="coerce")
        if index.isna().all():
            findings.append(Finding(column, f"wrong type: {check}"))
            continue
        rule = RULE_NOT_NULL if check == "not_nullable" else str(check)
        rows = index.to_numpy(dtype=np.int64) + 1
        # An id refused for its syntax may be personal data (an e-mail): not shown.
        values = None if rule in (RULE_NOT_NULL, IDENTIFIER_RULE) else group["failure_case"]
        findings.append(Finding(column, rule, rows, values))
    return findings


def _rows_of(mask: pa.Array, index: pd.Index) -> np.ndarray:
    """1-based row numbers of the rows where `mask` is true (`index`: the frame's)."""
    return index.to_numpy()[_mask_rows(mask)] + 1


class TableValidator:
    """Checks the batches of one table: per-column rules (types, nulls, allowed values, bounds,
    customer references) with pandera, cross-column rules with vectorised pandas, and
    whole-table rules (uniqueness, complete submissions) once the table is assembled.

    `customer_ids` (unique ids of the customers table) turns on the reference check for tables
    whose rules ask for it; `columns` fixes the output columns for every batch."""

    def __init__(
        self,
        table: TableSchema,
        specs: Specs,
        customer_ids: pa.Array | None = None,
        columns: Sequence[str] | None = None,
    ) -> None:
        self.table = table
        self.specs = specs
        self.columns = list(columns) if columns is not None else None
        self.customer_ids = customer_ids if table.references_customers else None
        self.broken: set[str] = set()
        self._schemas: dict[tuple[str, ...], pandera.DataFrameSchema] = {}
        self._allowed: dict[str, pa.Array] = {}

    def validate_batch(
        self, batch: pa.RecordBatch | pa.Table, row_offset: int = 0, source: str = ""
    ) -> tuple[pd.DataFrame, list[Finding]]:
        """Canonical, PII-masked frame of one batch and everything wrong with it. Personal data
        is masked right after parsing, before any check sees it."""
        arrays, parsing, broken = _canonical_arrays(
            batch, self.table, row_offset, self.columns, source
        )
        self.broken |= broken
        arrays = mask_pii_arrays(arrays, self.table)
        frame = _to_pandas(arrays, row_offset, batch.num_rows)
        checked = self._column_checks(frame, broken, arrays)
        checked += self._row_rules(frame, broken, arrays)
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
        return frame, findings

    def check_whole(self, frame: pd.DataFrame) -> list[Finding]:
        """Rules that need every row at once: unique keys and complete questionnaire
        submissions. `frame` is the concatenation of the validated batches."""
        findings: list[Finding] = []
        key = list(self.table.unique)
        if key and not set(key) & self.broken:
            findings += _duplicates(frame, key)
        complete = self.table.complete_groups
        if complete is not None and not self.broken & {*complete.group, complete.member}:
            findings += _incomplete_submissions(frame, self.table.complete_groups, self.specs)
        return findings

    def _column_checks(
        self,
        frame: pd.DataFrame,
        broken: frozenset[str],
        arrays: Mapping[str, pa.Array] | None = None,
    ) -> list[Finding]:
        names = tuple(c for c in frame.columns if c not in broken)
        # pandera costs milliseconds per call however few the rows (a request's tables are
        # tiny), so a pass of arrow kernels first proves that no check can fail; pandera then
        # runs only when something may be wrong, to say exactly what.
        if self._all_pass(frame, names, arrays or {}):
            return []
        schema = self._schemas.get(names)
        if schema is None:
            schema = pandera.DataFrameSchema(
                {
                    n: _pandera_column(self.table.column(n), self.specs, self.customer_ids)
                    for n in names
                },
                strict=False,
                coerce=False,
            )
            self._schemas[names] = schema
        try:
            schema.validate(frame, lazy=True, inplace=True)
        except SchemaErrors as exc:
            return _failures_to_findings(exc.failure_cases)
        return []

    def _all_pass(
        self, frame: pd.DataFrame, names: Sequence[str], arrays: Mapping[str, pa.Array]
    ) -> bool:
        """True only if the pandera schema of `names` certainly finds nothing: every column
        has its canonical dtype, no value is missing where it must not be, and every present
        value passes the column's checks (pandera's checks skip missing values). False
        whenever in doubt (NaN, a dtype or type other than the canonical one)."""
        dtypes = dict(zip(frame.columns.tolist(), frame.dtypes.tolist(), strict=True))
        for name in names:
            column = self.table.column(name)
            if dtypes[name] != _PANDAS_DTYPES[column.type]:
                return False
            array = arrays.get(name)  # the frame's source, personal data masked
            if array is None:
                array = pa.array(frame[name], from_pandas=True)
            if array.type != _ARROW_TYPES[column.type]:
                return False
            if not column.nullable and array.null_count:
                return False
            present = pc.drop_null(array)
            tests = []
            if column.allowed is not None:
                tests.append(pc.is_in(present, value_set=self._allowed_values(column)))
            if column.type == "float":
                tests.append(pc.is_finite(present))  # NaN included: pandera counts it missing
            if column.min is not None:
                bound = int(column.min) if column.type == "int" else column.min
                if column.type == "int" and bound != column.min:
                    return False
                tests.append(pc.greater_equal(present, bound))
            if column.max is not None:
                tests.append(pc.less_equal(present, column.max))
            if column.identifier and not (
                column.name == "customer_id" and self.customer_ids is not None
            ):  # (a customer id must be a known one, which had this syntax checked)
                # Ids repeat: the syntax is checked once per distinct value.
                tests.append(pc.match_substring_regex(pc.unique(present), IDENTIFIER))
            if column.name == "customer_id" and self.customer_ids is not None:
                tests.append(pc.is_in(present, value_set=self.customer_ids))
            for test in tests:
                if not pc.all(test, min_count=0).as_py():
                    return False
        return True

    def _allowed_values(self, column: Column) -> pa.Array:
        """The allowed values of `column` as an arrow set (built once per validator)."""
        if column.name not in self._allowed:
            assert column.allowed is not None
            self._allowed[column.name] = pa.array(
                sorted(column.allowed(self.specs)), type=_ARROW_TYPES[column.type]
            )
        return self._allowed[column.name]

    def _row_rules(
        self,
        frame: pd.DataFrame,
        broken: frozenset[str],
        arrays: Mapping[str, pa.Array] | None = None,
    ) -> list[Finding]:
        findings = []
        columns = _ArrowColumns(frame, arrays or {})
        for rule in self.table.row_rules:
            if set(rule.needs) & broken or not set(rule.needs) <= set(frame.columns):
                continue
            rows = _rows_of(_violations(rule, columns, self.table, self.specs), frame.index)
            if rows.size:
                values = None
                show = shown_column(rule)
                if show is not None:
                    values = frame[show].iloc[rows[:KEEP_PROBLEMS] - 1 - frame.index[0]]
                label = "got" if show == rule.column else show
                findings.append(Finding(rule.column, rule.rule, rows, values, label))
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


def _surely_unique(frame: pd.DataFrame, key: list[str]) -> bool:
    """True when no complete key repeats (one arrow hash aggregation), so `_duplicates` can
    skip its pandas work; False also when unsure."""
    if len(frame) < 2:
        return True
    table = _arrow_keys(frame, key)
    if table is None:
        return False
    complete = table.drop_null()
    return complete.group_by(key).aggregate([]).num_rows == complete.num_rows


def _duplicates(frame: pd.DataFrame, key: list[str]) -> list[Finding]:
    """Every row whose key repeats an earlier row's, with the row it repeats."""
    if _surely_unique(frame, key):
        return []
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
    frame: pd.DataFrame, rule: CompleteGroups, specs: Specs
) -> list[Finding]:
    """One problem per submission (`rule.group`: customer, version, submitted_at) that lacks a
    `rule.member` (question) its version expects, at the submission's first row, naming the
    missing ones. Rows whose question is not one of their version's are another rule's."""
    submission, member, version = list(rule.group), rule.member, rule.version
    expected = rule.expected(specs)
    if _surely_complete(frame, rule, expected):
        return []
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
    frame: pd.DataFrame, rule: CompleteGroups, expected: Mapping[str, Sequence[str]]
) -> bool:
    """True when every submission answers as many distinct questions of its version as the
    version has (the same rows and counts as `_incomplete_submissions`, in one arrow hash
    aggregation), so the pandas work that names the missing questions can be skipped; False
    also when unsure."""
    submission, member = list(rule.group), rule.member
    table = _arrow_keys(frame, [*submission, member])
    if table is None:
        return False
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
