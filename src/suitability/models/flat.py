"""Turn a prepared table a user brings (CSV or parquet: one row per example, a target, an id) into
a clean model matrix for LightGBM, with errors that name the column, rows and fix for every
user mistake.

Reading (`read_flat_table`) is the only I/O; `prepare_flat_table` is pure and vectorised: text is
factorised once per column, so cleaning, number parsing and missing-value tokens run once per
distinct value, never once per row.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from suitability.models.split import DROPPED, SPLITS

__all__ = [
    "MISSING_TOKENS",
    "NEGATIVE_LABELS",
    "NUMERIC_SHARE",
    "POSITIVE_LABELS",
    "FlatPreprocessor",
    "FlatTable",
    "FlatTableError",
    "RawColumn",
    "assign_ids_to_splits",
    "prepare_flat_table",
    "read_flat_table",
]

#: Text that means "no value" (compared after strip and lower-casing; "" covers blanks).
MISSING_TOKENS: frozenset[str] = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})
#: Binary-target spellings of the positive class (compared after strip and lower-casing).
POSITIVE_LABELS: frozenset[str] = frozenset({"1", "1.0", "true", "yes", "y", "churn", "churned"})
#: Binary-target spellings of the negative class (compared after strip and lower-casing).
NEGATIVE_LABELS: frozenset[str] = frozenset(
    {"0", "0.0", "false", "no", "n", "retained", "stayed", "active"}
)
#: A text column is numeric when at least this share of its non-missing values parse as numbers;
#: the rest are typos such as "abc" and become missing (with a warning), not categories.
NUMERIC_SHARE = 0.95
#: A text column is a date column (and dropped) when at least this share of values look like dates.
DATE_SHARE = 0.95

_SPLIT_ORDER: dict[str, int] = {name: i for i, name in enumerate(SPLITS)}
#: Below this many values, a text column with a different value in every row is as likely to be
#: chance as an id, so it is kept (as a category).
_MIN_ROWS_UNIQUE_RULE = 20
_SHOW_ROWS = 10
_SHOW_VALUES = 10
_SHOW_COLUMNS = 20
_VALUE_WIDTH = 40
_ROW_NOTE = "row 1 is the first data row after the header"
_THOUSANDS = r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?"
_DATE_SHAPE = (
    r"\d{4}-\d{1,2}-\d{1,2}(?:[T ].*)?"  # ISO 8601, with or without a time
    r"|\d{4}/\d{1,2}/\d{1,2}(?: .*)?"  # 2024/01/31
    r"|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}(?: .*)?"  # 31/01/2024, 01-31-24, 31.01.2024
)
_UNNAMED = re.compile(r"Unnamed: \d+(?:_level_\d+)?")
_CSV_SUFFIXES = frozenset({".csv"})
_PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


class FlatTableError(ValueError):
    """A mistake in a user's table or arguments; the message says where and how to fix it, so
    the CLI prints it as is, without a traceback."""


@dataclass(frozen=True)
class FlatTable:
    """A table ready for a gradient-boosted model, plus what was done to get there.

    `features` has index 0..n-1 in the table's row order: numeric columns are float64 (NaN for
    missing), categorical columns are `category` with sorted string categories (NaN for missing).
    `target` holds int64 codes into `classes` (binary: `[negative, positive]`; ordinal: the
    classes in order). `dropped` maps each unused column to the reason, and `warnings` lists
    values that were changed (e.g. typos in a number column treated as missing), both for the
    training report.
    """

    features: pd.DataFrame
    target: np.ndarray
    classes: list[str]
    ids: pd.Series
    times: pd.Series | None
    numeric: list[str]
    categorical: list[str]
    text_numbers: list[str]
    dropped: dict[str, str]
    warnings: list[str]
    preprocessor: FlatPreprocessor
    raw_example: pd.DataFrame  # a few rows of the used columns as read (the model's input example)


@dataclass(frozen=True)
class RawColumn:
    """One column of a user's table as the model reads it: how a reader gave it at training
    (`long`, `double`, `boolean`, `string`, `datetime`), its role, and what it becomes (a number,
    a category of `categories`, or ignored, with the reason)."""

    name: str
    read_as: str
    role: Literal["feature", "target", "id", "time"]
    use: Literal["number", "category", "ignored"]
    categories: tuple[str, ...] = ()
    booleans: bool = False  # text "true"/"false" read as 1/0
    reason: str = ""


@dataclass(frozen=True)
class FlatPreprocessor:
    """What `prepare_flat_table` decided about each column of a user's table, applied again to
    raw rows: the same text-to-number parsing, blanks and missing-value tokens, thousands
    separators and category vocabularies (a value unseen in training is missing), whatever types
    the reader gives this time (a CSV column with a blank comes as float, as text from
    `read_flat_table`). `transform` of the training table is the training feature matrix (a
    property test checks it). Ids, target, time and dropped columns may be present and are
    ignored."""

    columns: tuple[RawColumn, ...]
    task: Literal["binary", "ordinal"]
    classes: tuple[str, ...]

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns if c.use != "ignored"]

    def column(self, role: str) -> str | None:
        return next((c.name for c in self.columns if c.role == role), None)

    def transform(self, frame: pd.DataFrame, source: str = "table") -> pd.DataFrame:
        """The model's feature matrix of raw rows (index 0..n-1, in their order)."""
        frame = frame.set_axis([str(name) for name in frame.columns], axis=1)
        missing = [name for name in self.feature_names if name not in frame.columns]
        if missing:
            raise FlatTableError(
                f"{source}: lacks the column(s) the model was trained on: {_quoted(missing)}"
            )
        values: dict[str, pd.Series] = {}
        for column in self.columns:
            if column.use == "ignored":
                continue
            series = frame[column.name].reset_index(drop=True)
            if column.use == "number":
                numbers = _numbers(series, column.booleans)
                values[column.name] = pd.Series(numbers, name=column.name, dtype=np.float64)
            elif column.use == "category":
                values[column.name] = _category(series, column.name, column.categories)
        return pd.DataFrame(values, index=pd.RangeIndex(len(frame)))

    def target_codes(self, series: pd.Series, source: str = "table") -> np.ndarray:
        """Label codes of raw target values, spelled as in training (any case; 1/0, yes/no …
        for a binary target)."""
        name = str(series.name)
        codes, uniques = _factorize_text(series.reset_index(drop=True))
        _refuse_missing(codes, f"target column {name!r}", source)
        folded = uniques.str.lower()
        if self.task == "binary":
            positions = np.where(
                folded.isin(POSITIVE_LABELS), 1, np.where(folded.isin(NEGATIVE_LABELS), 0, -1)
            )
        else:
            positions = pd.Index([c.lower() for c in self.classes]).get_indexer(folded)
            numbers = _parse_numbers(uniques)
            whole = np.isfinite(numbers) & (numbers == np.round(numbers))
            as_int = pd.Index(np.where(whole, numbers, 0).astype(np.int64).astype(str))
            by_number = pd.Index(list(self.classes)).get_indexer(as_int)
            positions = np.where((positions < 0) & whole, by_number, positions)
        unknown = uniques[positions < 0]
        if len(unknown):
            raise FlatTableError(
                f"{source}: target {name!r} has values the model does not know "
                f"(classes: {', '.join(self.classes)}): "
                f"{_quoted([_short(v) for v in unknown[:_SHOW_VALUES]])}"
            )
        return np.asarray(positions, dtype=np.int64)[codes]

    def describe(self) -> list[dict[str, object]]:
        """The columns as plain data (logged with the model)."""
        return [
            {
                "name": c.name,
                "read_as": c.read_as,
                "role": c.role,
                "use": c.use,
                **({"categories": list(c.categories)} if c.use == "category" else {}),
                **({"reason": c.reason} if c.reason else {}),
            }
            for c in self.columns
        ]


def _read_as(dtype: object) -> str:
    """How a reader gave a column, in MLflow's type words."""
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


def _numbers(series: pd.Series, booleans: bool) -> np.ndarray:
    """A column as float64 the way training read it: numbers as they are (infinite: missing),
    text parsed ("1,234.5", blanks and missing tokens, typos missing)."""
    if _holds_numbers(series.dtype):
        return _plain_numbers(series)
    codes, uniques = _factorize_text(series)
    return np.append(_text_numbers(uniques, booleans), np.nan)[codes]


def _holds_numbers(dtype: object) -> bool:
    """A numeric or boolean column (not complex): read as numbers, not text."""
    return pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    )


def _plain_numbers(series: pd.Series) -> np.ndarray:
    """A numeric column as float64, missing and infinite values as NaN."""
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isinf(values), np.nan, values)


def _text_numbers(uniques: pd.Index, booleans: bool) -> np.ndarray:
    """Each distinct text as a number (NaN when it is none); with `booleans`, "true"/"false"
    (any case) as 1/0."""
    numbers = _parse_numbers(uniques)
    if booleans:
        folded = uniques.str.lower()
        numbers = np.where(folded == "true", 1.0, np.where(folded == "false", 0.0, numbers))
    return numbers


def _category(series: pd.Series, name: str, categories: Sequence[str]) -> pd.Series:
    """A column as a categorical of the training vocabulary (unseen values: missing)."""
    codes, uniques = _factorize_text(series)
    vocabulary = pd.Index(list(categories), dtype="str")
    positions = vocabulary.get_indexer(uniques) if len(uniques) else np.zeros(0, np.int64)
    values = pd.Categorical.from_codes(np.append(positions, -1)[codes], categories=vocabulary)
    return pd.Series(values, name=name)


# --- reading ------------------------------------------------------------------------------------


def read_flat_table(path: Path | str) -> pd.DataFrame:
    """Read a `.csv` or `.parquet` table, chosen by suffix.

    CSV is read entirely as text (UTF-8, a byte-order mark allowed, blanks kept as "") so that
    `prepare_flat_table` decides what is a number or a missing value with one set of rules,
    instead of pandas guessing per file. Any problem reading it is a `FlatTableError` naming the
    path.
    """
    path = Path(path)
    if path.is_dir():
        raise FlatTableError(f"{path}: is a folder; give the path of one .csv or .parquet file")
    if not path.is_file():
        raise FlatTableError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in _CSV_SUFFIXES:
        frame = _read_csv(path)
    elif suffix in _PARQUET_SUFFIXES:
        frame = _read_parquet(path)
    else:
        raise FlatTableError(
            f"{path}: unsupported file type {suffix or '(no suffix)'!r}; "
            "save the table as .csv (UTF-8) or .parquet"
        )
    duplicated = _duplicated_names(frame.columns)
    if duplicated:
        raise FlatTableError(
            f"{path}: column names must be unique; repeated: {_quoted(duplicated)}"
        )
    if frame.shape[1] == 0 or len(frame) == 0:
        raise FlatTableError(f"{path}: the table has no data rows")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    """All-text CSV read; checks the raw header for repeated names, which pandas would rename."""
    options = {"dtype": str, "keep_default_na": False, "encoding": "utf-8-sig"}
    try:
        header = pd.read_csv(path, header=None, nrows=1, **options)
        frame = pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise FlatTableError(f"{path}: the file is empty") from None
    except UnicodeDecodeError:
        raise FlatTableError(
            f"{path}: is not UTF-8 text; save it as UTF-8 (in Excel: 'CSV UTF-8')"
        ) from None
    except (pd.errors.ParserError, ValueError, OSError) as error:
        raise FlatTableError(f"{path}: cannot be read as CSV: {_first_line(error)}") from None
    names = [str(name) for name in header.iloc[0].tolist()] if len(header) else []
    # Blank header cells are allowed: pandas names them "Unnamed: N" and prepare drops them.
    duplicated = [name for name in _duplicated_names(pd.Index(names)) if name.strip()]
    if duplicated:
        raise FlatTableError(
            f"{path}: column names must be unique; repeated: {_quoted(duplicated)}"
        )
    if frame.shape[1] == 1:
        only = str(frame.columns[0])
        for separator, name in ((";", "semicolons"), ("\t", "tabs")):
            if separator in only:
                raise FlatTableError(
                    f"{path}: the header is one column {_short(only)!r}; the file looks "
                    f"separated by {name}, not commas. Save it as comma-separated CSV"
                )
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, engine="pyarrow")
    except (pa.ArrowException, ValueError, OSError) as error:
        raise FlatTableError(f"{path}: cannot be read as parquet: {_first_line(error)}") from None


# --- preparing ----------------------------------------------------------------------------------


def prepare_flat_table(
    frame: pd.DataFrame,
    *,
    target: str,
    id_column: str,
    task: Literal["binary", "ordinal"],
    time_column: str | None = None,
    ordinal_order: Sequence[str] | None = None,
    max_categories: int = 100,
    source: str = "table",
) -> FlatTable:
    """Split a raw table into features, target, ids and (optionally) times, cleaning each column.

    Every column other than target, id and time is a candidate feature: numbers (including
    numbers stored as text, as in CSV) become float64, low-cardinality text becomes a category,
    and columns a model cannot use (dates, free text or ids, constant or empty columns) are
    dropped with the reason recorded. Rows are never dropped: a missing target, id or time is an
    error, because silently training on fewer rows hides a broken export.
    """
    if task not in ("binary", "ordinal"):
        raise ValueError(f"task must be 'binary' or 'ordinal', not {task!r}")
    if max_categories < 1:
        raise ValueError(f"max_categories must be at least 1, not {max_categories}")
    frame = frame.set_axis([str(name) for name in frame.columns], axis=1).reset_index(drop=True)
    duplicated = _duplicated_names(frame.columns)
    if duplicated:
        raise FlatTableError(
            f"{source}: column names must be unique; repeated: {_quoted(duplicated)}"
        )
    if len(frame) == 0:
        raise FlatTableError(f"{source}: the table has no data rows")
    columns = list(frame.columns)
    _require_column(target, "target", columns, source)
    _require_column(id_column, "id", columns, source)
    if time_column is not None:
        _require_column(time_column, "time", columns, source)
    roles = [("target", target), ("id", id_column), ("time", time_column)]
    for index, (role, name) in enumerate(roles):
        for other_role, other in roles[index + 1 :]:
            if name is not None and name == other:
                raise FlatTableError(
                    f"{source}: the {role} and {other_role} columns must differ; both are {name!r}"
                )

    if task == "binary":
        target_codes, classes = _binary_target(frame[target], target, source)
    else:
        target_codes, classes = _ordinal_target(frame[target], target, ordinal_order, source)
    warnings: list[str] = []
    ids = _id_values(frame[id_column], id_column, source, warnings)
    times = None if time_column is None else _time_values(frame[time_column], time_column, source)

    features: dict[str, pd.Series] = {}
    numeric: list[str] = []
    categorical: list[str] = []
    text_numbers: list[str] = []
    dropped: dict[str, str] = {}
    raw: list[RawColumn] = []
    roles = {target: "target", id_column: "id", time_column: "time"}
    for name in columns:
        read_as = _read_as(frame[name].dtype)
        if name in roles:
            raw.append(RawColumn(name, read_as, roles[name], "ignored"))  # type: ignore[arg-type]
            continue
        column = _feature_column(frame[name], name, max_categories)
        warnings.extend(column.warnings)
        if column.values is None:
            dropped[name] = column.reason
            raw.append(RawColumn(name, read_as, "feature", "ignored", reason=column.reason))
            continue
        features[name] = column.values
        (numeric if column.kind == "numeric" else categorical).append(name)
        if column.from_text:
            text_numbers.append(name)
        if column.kind == "numeric":
            raw.append(RawColumn(name, read_as, "feature", "number", booleans=column.booleans))
        else:
            categories = tuple(str(c) for c in column.values.cat.categories)
            raw.append(RawColumn(name, read_as, "feature", "category", categories))
    if not features:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in dropped.items())
        raise FlatTableError(
            f"{source}: no usable feature columns besides target {target!r} and id "
            f"{id_column!r}" + (f" (dropped: {reasons})" if reasons else "")
        )
    return FlatTable(
        features=pd.DataFrame(features, index=pd.RangeIndex(len(frame))),
        target=target_codes,
        classes=classes,
        ids=ids,
        times=times,
        numeric=numeric,
        categorical=categorical,
        text_numbers=text_numbers,
        dropped=dropped,
        warnings=warnings,
        preprocessor=FlatPreprocessor(tuple(raw), task, tuple(classes)),
        raw_example=frame[list(features)].head(5).reset_index(drop=True),
    )


def _require_column(name: str, role: str, columns: list[str], source: str) -> None:
    """Raise a `FlatTableError` naming the close matches when `name` is not a column."""
    if name in columns:
        return
    folded = [column for column in columns if column.strip().lower() == name.strip().lower()]
    close = difflib.get_close_matches(name, columns, n=3, cutoff=0.6)
    close_folded = difflib.get_close_matches(
        name.lower(), [column.lower() for column in columns], n=3, cutoff=0.6
    )
    close += [column for column in columns if column.lower() in close_folded]
    suggestions = list(dict.fromkeys(folded + close))
    hint = f" Did you mean {_quoted(suggestions, ' or ')}?" if suggestions else ""
    shown = ", ".join(columns[:_SHOW_COLUMNS])
    more = f" … and {len(columns) - _SHOW_COLUMNS} more" if len(columns) > _SHOW_COLUMNS else ""
    raise FlatTableError(f"{source}: no {role} column {name!r}.{hint} Columns: {shown}{more}")


def _binary_target(series: pd.Series, name: str, source: str) -> tuple[np.ndarray, list[str]]:
    """Codes 0 (negative) / 1 (positive) and the two labels as spelled in the data."""
    codes, uniques = _factorize_text(series)
    _refuse_missing(codes, f"target column {name!r}", source)
    folded = uniques.str.lower()
    distinct = list(dict.fromkeys(folded))
    accepted = (
        f"positive: {', '.join(sorted(POSITIVE_LABELS))}; "
        f"negative: {', '.join(sorted(NEGATIVE_LABELS))} (any case)"
    )
    seen = _quoted([_short(value) for value in uniques[:_SHOW_VALUES]])
    if len(distinct) != 2:
        raise FlatTableError(
            f"{source}: a binary target needs exactly two distinct values, but {name!r} has "
            f"{len(distinct)}: {seen}{' …' if len(uniques) > _SHOW_VALUES else ''}. "
            f"Accepted pairs: {accepted}"
        )
    is_positive = folded.isin(POSITIVE_LABELS)
    is_negative = folded.isin(NEGATIVE_LABELS)
    if not (is_positive | is_negative).all() or is_positive.all() or is_negative.all():
        raise FlatTableError(
            f"{source}: cannot tell the positive class of target {name!r} from its values "
            f"{seen}. Use one positive and one negative value; accepted: {accepted}"
        )
    unique_classes = np.asarray(is_positive, dtype=np.int64)
    counts = np.bincount(codes, minlength=len(uniques))
    classes = [_most_common(uniques, counts, unique_classes == label) for label in (0, 1)]
    return unique_classes[codes], classes


def _most_common(uniques: pd.Index, counts: np.ndarray, among: np.ndarray) -> str:
    """The most frequent spelling among some distinct values ("Yes" over "yes"), for reports."""
    candidates = np.flatnonzero(among)
    return str(uniques[candidates[np.argmax(counts[candidates])]])


def _ordinal_target(
    series: pd.Series, name: str, ordinal_order: Sequence[str] | None, source: str
) -> tuple[np.ndarray, list[str]]:
    """Codes into the class order: the one given, else the integers in the data sorted."""
    codes, uniques = _factorize_text(series)
    _refuse_missing(codes, f"target column {name!r}", source)
    if ordinal_order is not None:
        classes = [str(label).strip() for label in ordinal_order]
        folded_order = pd.Index([label.lower() for label in classes])
        if folded_order.has_duplicates:
            repeated = _duplicated_names(pd.Index(classes).str.lower())
            raise FlatTableError(
                f"the class order {', '.join(classes)} repeats {_quoted(repeated)} (ignoring case)"
            )
        positions = folded_order.get_indexer(uniques.str.lower())
        unknown = uniques[positions < 0]
        if len(unknown):
            raise FlatTableError(
                f"{source}: target {name!r} has values outside the class order "
                f"{', '.join(classes)}: {_quoted([_short(v) for v in unknown[:_SHOW_VALUES]])}"
                f"{' …' if len(unknown) > _SHOW_VALUES else ''}"
            )
    else:
        numbers = pd.to_numeric(uniques, errors="coerce").to_numpy(dtype=float)
        whole = np.isfinite(numbers) & (numbers == np.round(numbers))
        if not whole.all():
            odd = _quoted([_short(value) for value in uniques[~whole][:_SHOW_VALUES]])
            raise FlatTableError(
                f"{source}: target {name!r} has values that are not whole numbers ({odd}), so "
                "their order is unknown; give the classes in order, lowest first "
                "(e.g. C1,C2,C3,C4,C5)"
            )
        levels = np.unique(numbers.astype(np.int64))
        classes = [str(level) for level in levels]
        positions = np.searchsorted(levels, numbers.astype(np.int64))
    target_codes = np.asarray(positions, dtype=np.int64)[codes]
    if np.unique(target_codes).size < 2:
        raise FlatTableError(
            f"{source}: target {name!r} has only one class ({uniques[0]!r}); "
            "a model needs at least two"
        )
    return target_codes, classes


def _id_values(series: pd.Series, name: str, source: str, warnings: list[str]) -> pd.Series:
    """Ids as stripped text; repeated ids are allowed (several rows per customer) but noted."""
    codes, uniques = _factorize_text(series)
    _refuse_missing(codes, f"id column {name!r}", source)
    counts = np.bincount(codes, minlength=len(uniques))
    repeated = counts > 1
    if repeated.any():
        warnings.append(
            f"{name}: {int(repeated.sum())} ids appear on more than one row "
            f"({int(counts[repeated].sum())} rows in all); each id's rows are kept in one split"
        )
    return pd.Series(uniques.take(codes), name=name, dtype="str")


def _time_values(series: pd.Series, name: str, source: str) -> pd.Series:
    """Times as naive datetime64 (time zones converted to UTC); empty or unparseable is an error.

    ISO 8601 is parsed first (fast and unambiguous); only the distinct values it rejects are
    retried with pandas' per-value format inference.
    """
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        times = series.reset_index(drop=True)
        if isinstance(times.dtype, pd.DatetimeTZDtype):
            times = times.dt.tz_convert("UTC").dt.tz_localize(None)
        _refuse_missing(np.where(times.isna(), -1, 0), f"time column {name!r}", source)
        return times.rename(name)
    codes, uniques = _factorize_text(series)
    _refuse_missing(codes, f"time column {name!r}", source)
    parsed = pd.Series(pd.to_datetime(uniques, format="ISO8601", errors="coerce", utc=True))
    failed = parsed.isna().to_numpy()
    if failed.any():
        parsed[failed] = pd.to_datetime(uniques[failed], format="mixed", errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        rows = bad[codes]
        examples = _quoted([_short(value) for value in uniques[bad][:3]])
        raise FlatTableError(
            f"{source}: time column {name!r} has {int(rows.sum())} values that are not dates "
            f"or times ({examples}) in {_rows_text(rows)}; use ISO 8601 such as 2024-01-31 or "
            f"2024-01-31 14:05:00 ({_ROW_NOTE})"
        )
    values = pd.DatetimeIndex(parsed).tz_convert("UTC").tz_localize(None)
    return pd.Series(values.take(codes), name=name)


@dataclass(frozen=True)
class _FeatureColumn:
    """One prepared feature column, or `values=None` and the reason it is not used."""

    values: pd.Series | None
    kind: Literal["numeric", "categorical", "dropped"]
    reason: str = ""
    from_text: bool = False
    warnings: tuple[str, ...] = ()
    booleans: bool = False


def _feature_column(series: pd.Series, name: str, max_categories: int) -> _FeatureColumn:
    """Decide how a model sees one column: number, category, or dropped with a reason."""
    dtype = series.dtype
    if _UNNAMED.fullmatch(name):
        return _dropped("no header name (often a saved row index)")
    if pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        return _dropped("dates are not used as features; pass --time for a time split")
    if pd.api.types.is_timedelta64_dtype(dtype):
        return _dropped("durations are not used as features; convert to a number first")
    if _holds_numbers(dtype):
        values = _plain_numbers(series)
        infinite = int((np.isnan(values) & series.notna().to_numpy()).sum())
        warnings: tuple[str, ...] = ()
        if infinite:
            warnings = (f"{name}: {infinite} infinite values are treated as missing",)
        return _numeric(values, name, from_text=False, warnings=warnings)
    return _text_feature(series, name, max_categories)


def _text_feature(series: pd.Series, name: str, max_categories: int) -> _FeatureColumn:
    """Numbers stored as text become float64; dates, ids and free text are dropped; the rest
    become a category."""
    codes, uniques = _factorize_text(series)
    if len(uniques) == 0:
        return _dropped("entirely missing")
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    present = int(counts.sum())
    # A bool column written to CSV comes back as "True"/"False"; read it as the bool it was.
    folded = uniques.str.lower()
    booleans = bool(folded.isin(["true", "false"]).all())
    unique_numbers = _text_numbers(uniques, booleans)
    is_number = ~np.isnan(unique_numbers)
    if counts[is_number].sum() >= NUMERIC_SHARE * present:
        warnings: tuple[str, ...] = ()
        if not is_number.all():
            examples = ", ".join(repr(_short(v)) for v in uniques[~is_number][:3])
            more = ", …" if (~is_number).sum() > 3 else ""
            warnings = (
                f"{name}: {int(counts[~is_number].sum())} values are not numbers "
                f"({examples}{more}) and are treated as missing",
            )
        values = np.append(unique_numbers, np.nan)[codes]
        return _numeric(values, name, from_text=True, warnings=warnings, booleans=booleans)
    looks_like_date = np.asarray(uniques.str.fullmatch(_DATE_SHAPE), dtype=bool)
    if counts[looks_like_date].sum() >= DATE_SHARE * present:
        return _dropped("dates are not used as features; pass --time for a time split")
    if len(uniques) > max_categories:
        return _dropped(
            f"high-cardinality text ({len(uniques)} distinct values), looks like free text or an id"
        )
    if len(uniques) == present and present >= _MIN_ROWS_UNIQUE_RULE:
        return _dropped(
            f"a different value in every row ({present} distinct values), looks like free text "
            "or an id"
        )
    if len(uniques) == 1 and present == len(codes):
        return _dropped(f"constant (every row is {_short(uniques[0])!r})")
    order = np.argsort(np.asarray(uniques, dtype=object))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    categorical = pd.Categorical.from_codes(
        np.append(rank, -1)[codes], categories=pd.Index(uniques[order], dtype="str")
    )
    return _FeatureColumn(values=pd.Series(categorical, name=name), kind="categorical")


def _numeric(
    values: np.ndarray,
    name: str,
    *,
    from_text: bool,
    warnings: tuple[str, ...],
    booleans: bool = False,
) -> _FeatureColumn:
    """A float64 feature, or dropped when it carries no information."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return _FeatureColumn(None, "dropped", "entirely missing", warnings=warnings)
    # One value plus missing values is kept: missingness itself can be informative.
    if present.size == values.size and np.all(present == present[0]):
        return _FeatureColumn(
            None, "dropped", f"constant (every row is {present[0]:g})", warnings=warnings
        )
    return _FeatureColumn(
        values=pd.Series(values, name=name, dtype=np.float64),
        kind="numeric",
        from_text=from_text,
        warnings=warnings,
        booleans=booleans,
    )


def _dropped(reason: str) -> _FeatureColumn:
    return _FeatureColumn(values=None, kind="dropped", reason=reason)


def _parse_numbers(uniques: pd.Index) -> np.ndarray:
    """Each text as a float (NaN when it is not a finite number); "1,234.5" counts as 1234.5."""
    thousands = np.asarray(uniques.str.fullmatch(_THOUSANDS), dtype=bool)
    text = uniques.where(~thousands, uniques.str.replace(",", "", regex=False))
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(numbers), numbers, np.nan)


def _factorize_text(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Codes per row (-1 for missing) into the distinct stripped values, in first-seen order.

    Whole numbers stored as floats (ids or labels read from a column with gaps) are written
    without ".0". Cleaning happens on the distinct values only, which keeps it fast on
    millions of rows.
    """
    if (
        pd.api.types.is_float_dtype(series.dtype)
        and not pd.api.types.is_complex_dtype(series.dtype)
        and _all_whole(series)
    ):
        series = series.astype("Int64")
    text = series if isinstance(series.dtype, pd.StringDtype) else series.astype("str")
    raw_codes, raw_uniques = pd.factorize(text)
    stripped = pd.Series(raw_uniques, dtype="str").str.strip()
    cleaned = stripped.mask(stripped.str.lower().isin(MISSING_TOKENS))
    clean_codes, uniques = pd.factorize(cleaned)
    # Index -1 (missing in the raw text) picks the appended -1.
    codes = np.append(clean_codes, -1)[raw_codes].astype(np.int64)
    return codes, pd.Index(uniques, dtype="str")


def _all_whole(series: pd.Series) -> bool:
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = values[~np.isnan(values)]
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _refuse_missing(codes: np.ndarray, what: str, source: str) -> None:
    """Raise when any row has no value (code -1), naming how many and the first rows."""
    missing = codes < 0
    if missing.any():
        raise FlatTableError(
            f"{source}: {what} is empty in {int(missing.sum())} of {missing.size} rows "
            f"({_rows_text(missing)}; {_ROW_NOTE}); fill or remove those rows"
        )


# --- splits -------------------------------------------------------------------------------------


def assign_ids_to_splits(ids: pd.Series, split: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Keep each id in the earliest split it appears in ("train", then "validation", then
    "test"), marking its rows in later splits as "dropped".

    A customer seen in training must not be scored in evaluation: the model has already learned
    that customer's other rows, so their score would flatter it. Returns the new split labels,
    the number of ids that crossed splits and the number of rows dropped. Labels other than the
    three splits (e.g. an earlier "dropped") are left as they are.
    """
    labels = np.asarray(split)
    if labels.shape != (len(ids),):
        raise ValueError(f"split has shape {labels.shape}, expected ({len(ids)},) like ids")
    rank = pd.Series(labels, dtype=object).map(_SPLIT_ORDER).to_numpy(dtype=float, na_value=np.nan)
    codes, _ = pd.factorize(pd.Series(ids).reset_index(drop=True))
    if codes.size == 0:
        return labels.astype(str), 0, 0
    usable = (codes >= 0) & ~np.isnan(rank)
    earliest = (
        pd.Series(rank[usable]).groupby(codes[usable]).min().reindex(range(codes.max() + 1))
    ).to_numpy()
    later = np.zeros(len(labels), dtype=bool)
    later[usable] = rank[usable] > earliest[codes[usable]]
    crossed = np.unique(codes[later]).size
    return np.where(later, DROPPED, labels.astype(str)), crossed, int(later.sum())


# --- message helpers ----------------------------------------------------------------------------


def _rows_text(mask: np.ndarray) -> str:
    """'row 3' or 'rows 3, 7, 12, … (first 10 of 25)', counting data rows from 1."""
    rows = np.flatnonzero(mask) + 1
    shown = ", ".join(str(row) for row in rows[:_SHOW_ROWS])
    if rows.size == 1:
        return f"row {shown}"
    if rows.size > _SHOW_ROWS:
        return f"rows {shown}, … (first {_SHOW_ROWS} of {rows.size})"
    return f"rows {shown}"


def _duplicated_names(names: pd.Index) -> list[str]:
    return [str(name) for name in dict.fromkeys(names[names.duplicated()])]


def _quoted(values: Sequence[object], joiner: str = ", ") -> str:
    return joiner.join(repr(str(value)) for value in values)


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
