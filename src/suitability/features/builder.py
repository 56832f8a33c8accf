"""Batch feature builder: one row per (customer_id, as_of) for every customer of a data folder.

Customers are processed in chunks so memory stays bounded for any number of them; each chunk's
facts go through the same kernel that serving uses for one customer. Events are read once, as
arrow batches (text dictionary-encoded, as parquet stores it), validated in arrow, turned into
the kernel's integer arrays without a pandas frame, cut into customer chunks as they stream by,
and each chunk is computed on a thread of its own while the next events are read (numpy and
arrow release the GIL), so every core works. Events not sorted by customer are first staged
by DuckDB and read back chunk by chunk.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from suitability.data import io
from suitability.data.contracts import ContractError, IdSet, canonical_frame
from suitability.data.partitions import CustomerRange
from suitability.data.schema import EVENTS
from suitability.data.storage import Location, locate
from suitability.features.encoding import encode_arrow
from suitability.features.kernel import (
    EventArrays,
    FeatureInputs,
    cents_of,
    compute_features,
    event_arrays,
    terms_of,
)
from suitability.settings import get_settings
from suitability.specs import R_LEVELS, Specs

#: Feature rows per kernel call; bounds the memory of the feature matrix (~170 float columns).
_QUERY_BUDGET = 250_000
_TABLES_USED = ("customers", "questionnaire_responses", "events", "interview_tags")
#: The tables read whole (events stream by).
_SIDE_TABLES = ("customers", "questionnaire_responses", "interview_tags")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Progress = Callable[[int, int], None]


class AsOfError(ValueError):
    """An as-of specification that cannot be used."""


@dataclass(frozen=True)
class BuildSummary:
    out_path: Path
    rows: int
    customers: int
    as_of: list[pd.Timestamp]
    events: int
    #: Wall seconds per stage: load_and_validate (customers, questionnaires, tags), events
    #: (read and validate, while earlier chunks compute on other threads), compute (waiting
    #: for chunk results: what did not overlap), write. On a cluster: the partitions' seconds
    #: summed over the workers, and `partitions` and `write` of the client's wall time.
    seconds: dict[str, float]
    #: On a cluster: the number of partitions and each worker's peak resident memory (MiB).
    partitions: int = 1
    worker_peak_mib: dict[str, float] = field(default_factory=dict)


def parse_as_of(text: str) -> list[pd.Timestamp]:
    """`YYYY-MM-DD[,YYYY-MM-DD…]` -> sorted distinct timestamps at midnight (start of that day:
    facts timestamped on the day itself come after it)."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise AsOfError(f"--as-of {text!r}: expected YYYY-MM-DD[,YYYY-MM-DD…] with no empty items")
    out = []
    for p in parts:
        if not _DATE.match(p):
            raise AsOfError(f"--as-of item {p!r} is not a date in the form YYYY-MM-DD")
        try:
            out.append(pd.Timestamp(p))
        except ValueError:
            raise AsOfError(f"--as-of item {p!r} is not a real calendar date") from None
    return sorted(set(out))


def monthly_snapshots(start: str, end: str) -> list[pd.Timestamp]:
    """First day of every month from `start` to `end` (both YYYY-MM-DD, inclusive)."""
    first, last = parse_as_of(start)[0], parse_as_of(end)[0]
    if last < first:
        raise AsOfError(f"monthly snapshots: end {end} is before start {start}")
    return list(pd.date_range(first + pd.offsets.MonthBegin(0), last, freq="MS"))


def _events_between(con: duckdb.DuckDBPyConnection, source: str, lo: str, hi: str) -> pd.DataFrame:
    sql = f"""
        SELECT
            CAST(customer_id AS VARCHAR) AS customer_id,
            CAST(event_time AS TIMESTAMP) AS event_time,
            CAST(event_type AS VARCHAR) AS event_type,
            CAST(amount AS DOUBLE) AS amount,
            CAST(product_id AS VARCHAR) AS product_id,
            CAST(product_risk AS VARCHAR) AS product_risk,
            CAST(term_days AS BIGINT) AS term_days,
            CAST(channel AS VARCHAR) AS channel,
            CAST(duration_s AS DOUBLE) AS duration_s
        FROM {source}
        WHERE customer_id BETWEEN ? AND ?
    """
    table = con.sql(sql, params=[lo, hi]).to_arrow_table()
    return io.canonical_or_raise(table, EVENTS)


def check_paths(data_dir: io.DataDir, out_path: Path | str) -> tuple[Location, Path]:
    """Fail fast, before any work, on an output that cannot be written or a data folder (local
    or an fsspec URL) that lacks a table the features need."""
    data_dir, out_path = locate(data_dir), Path(out_path)
    if out_path.suffix not in {".parquet", ".csv"}:
        raise ValueError(f"--out {out_path}: use a .parquet or .csv file name")
    if out_path.is_dir():
        raise ValueError(f"--out {out_path}: is a folder; name a file")
    if not out_path.parent.is_dir():
        raise ValueError(f"--out {out_path}: folder {out_path.parent} does not exist")
    if not data_dir.is_dir():
        raise ValueError(f"--data {data_dir}: no such folder")
    if data_dir.local and out_path.resolve().is_relative_to(data_dir.local_path().resolve()):
        raise ValueError(
            f"--out {out_path}: is inside the data folder {data_dir}; write it elsewhere"
        )
    io.locate_tables(data_dir, _TABLES_USED)
    return data_dir, out_path


def build_features(
    data_dir: io.DataDir,
    as_of: Sequence[pd.Timestamp],
    out_path: Path | str,
    specs: Specs,
    *,
    queries: pd.DataFrame | None = None,
    label_queries: LabelQueries | None = None,
    chunk_customers: int | None = None,
    progress: Progress | None = None,
    cluster: object | None = None,
) -> BuildSummary:
    """Validate the raw tables of `data_dir` and write features for every customer registered at
    each as-of time to `out_path` (parquet or csv by extension), atomically.

    Training tables ask for more: `queries` (customer_id, as_of and any label columns, which are
    passed through) replaces the as-of grid, and `label_queries(queries, events)` may drop and
    label each chunk's queries from that chunk's validated events (all of them, past and
    future), in the same single pass over the events. `cluster`: a `distributed.Client`; the
    customers are then cut into partitions computed on its workers (the same rows, the same
    problems reported)."""
    data_dir, out_path = check_paths(data_dir, out_path)
    if queries is None and not as_of:
        raise AsOfError("no as-of dates given")
    if queries is not None:
        missing = {"customer_id", "as_of"} - set(queries.columns)
        if missing:
            raise ValueError(f"queries lack columns {sorted(missing)}")
        queries = queries.sort_values(["customer_id", "as_of"], kind="stable", ignore_index=True)
    if cluster is not None:
        from suitability.features.distributed import build_on_cluster

        return build_on_cluster(
            cluster,
            data_dir,
            as_of,
            out_path,
            specs,
            queries=queries,
            label_queries=label_queries,
            chunk_customers=chunk_customers,
            progress=progress,
        )
    # Scratch space beside the output, so the final rename stays on one file system.
    with tempfile.TemporaryDirectory(prefix=".features-", dir=out_path.parent) as tmp:
        sink = FileSink(Path(tmp) / ("features" + out_path.suffix))
        try:
            computed = compute_features_of(
                data_dir,
                as_of,
                specs,
                sink,
                scratch=Path(tmp),
                csv=out_path.suffix == ".csv",
                queries=queries,
                label_queries=label_queries,
                chunk_customers=chunk_customers,
                progress=progress,
            )
        finally:
            sink.close()
        if computed.rows == 0:
            sink.write_empty(computed.empty, specs)
        os.replace(sink.path, out_path)
    return BuildSummary(
        out_path=out_path,
        rows=computed.rows,
        customers=computed.customers,
        as_of=list(as_of),
        events=computed.events,
        seconds=computed.seconds,
    )


@dataclass
class Computed:
    """What `compute_features_of` did: rows passed to the sink, customers, events read, wall
    seconds per stage (see `BuildSummary`), and an empty feature frame of the output's columns
    when no row was produced (to write the schema)."""

    rows: int
    customers: int
    events: int
    seconds: dict[str, float]
    empty: pd.DataFrame | None = None


class Sink(ABC):
    """Where `compute_features_of` sends each chunk's rows, in customer order."""

    rows = 0

    @abstractmethod
    def write(self, result: pd.DataFrame | pa.Table) -> None:
        """Take one chunk's rows (a frame for CSV output, an arrow table otherwise)."""

    @abstractmethod
    def reset(self) -> None:
        """Forget everything written (the events turned out unsorted: computed again)."""


class FileSink(Sink):
    """Rows appended to one parquet or CSV file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._parts = 0
        self._writer: pq.ParquetWriter | None = None

    def write(self, result: pd.DataFrame | pa.Table) -> None:
        if isinstance(result, pd.DataFrame):
            result.to_csv(self.path, mode="a", header=(self._parts == 0), index=False)
        else:
            self._writer = self._writer or _parquet_writer(self.path, result.schema)
            self._writer.write_table(result)
        self.rows += len(result)
        self._parts += 1

    def reset(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        self.rows = self._parts = 0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_empty(self, empty: pd.DataFrame | None, specs: Specs) -> None:
        """The file of no rows: the schema alone (parquet) or the header (CSV)."""
        self.close()
        if self.path.suffix == ".parquet":
            assert empty is not None
            pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), self.path)
        else:
            header = ",".join(["customer_id", "as_of", *specs.feature_names])
            self.path.write_text(header + "\n", encoding="utf-8")


class ListSink(Sink):
    """Rows kept in memory, in order (a partition computed on a cluster worker)."""

    def __init__(self) -> None:
        self.results: list[pd.DataFrame | pa.Table] = []
        self.rows = 0

    def write(self, result: pd.DataFrame | pa.Table) -> None:
        self.results.append(result)
        self.rows += len(result)

    def reset(self) -> None:
        self.results, self.rows = [], 0


def compute_features_of(
    data_dir: io.DataDir,
    as_of: Sequence[pd.Timestamp],
    specs: Specs,
    sink: Sink,
    *,
    scratch: Path,
    csv: bool,
    queries: pd.DataFrame | None = None,
    label_queries: LabelQueries | None = None,
    chunk_customers: int | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    part: CustomerRange | None = None,
) -> Computed:
    """Validate the tables and send every chunk's feature rows to `sink`, in customer order
    (pandas frames when `csv`, arrow tables otherwise). `queries` must be sorted by customer
    and time. `scratch`: a folder of the caller's for staging unsorted events. `threads`:
    threads computing chunks while this one reads (default: the setting); 0 does everything on
    this thread, as a cluster worker's task should (its worker runs other tasks). `part`: only the
    customers of that partition (and their facts); problems still name rows of whole tables."""
    seconds = dict.fromkeys(("load_and_validate", "events", "compute", "write"), 0.0)
    began = time.perf_counter()
    try:
        # Personal data is not read: no feature uses it (its type is still checked).
        loaded = io.load_tables(
            data_dir, specs, tables=("customers",), unread_personal=True, part=part
        )
    except ContractError:
        loaded = None
    if loaded is None:
        # One error for the problems of every table read whole, as always.
        io.load_tables(data_dir, specs, tables=_SIDE_TABLES, unread_personal=True, part=part)
        raise AssertionError("customers failed their contract, then passed it")
    customers = loaded["customers"].sort_values("customer_id", kind="stable", ignore_index=True)
    ids = customers["customer_id"]
    coder = _EventCoder(ids, specs)
    by_query = None if queries is None else _ByCustomer(queries, coder.customers)
    seconds["load_and_validate"] = time.perf_counter() - began

    def load_side_tables() -> tuple[_ByCustomer, _ByCustomer]:
        """Questionnaires and interview tags, validated (runs beside the events stream)."""
        began = time.perf_counter()
        tables = io.load_tables(
            data_dir,
            specs,
            tables=_SIDE_TABLES[1:],
            arrow=_SIDE_TABLES[1:],
            unread_personal=True,
            customer_ids=coder.customers,
            part=part,
        )
        side = (
            _ByCustomer(tables["questionnaire_responses"], coder.customers),
            _ByCustomer(tables["interview_tags"], coder.customers),
        )
        seconds["load_and_validate"] += time.perf_counter() - began
        return side

    settings = get_settings()
    chunk_customers = chunk_customers or settings.feature_chunk_customers
    per_customer = len(as_of) if queries is None else max(1, len(queries) // max(1, len(ids)))
    per_chunk = max(1, min(chunk_customers, _QUERY_BUDGET // per_customer))
    chunks = [customers.iloc[i : i + per_chunk] for i in range(0, len(customers), per_chunk)]
    if threads is None:
        threads = settings.feature_threads
    threads = 0 if threads == 0 else max(1, min(threads, len(chunks)))

    def compute(chunk: pd.DataFrame, events: EventArrays) -> pd.DataFrame | pa.Table:
        """One chunk's feature rows (runs on a worker thread)."""
        first, stop = int(chunk.index[0]), int(chunk.index[-1]) + 1  # customer positions
        chunk_ids = pd.Index(chunk["customer_id"])
        questionnaire, tags = side.result()
        inputs = FeatureInputs(
            customers=chunk,
            questionnaire=questionnaire.rows(first, stop),
            events=events,
            tags=tags.rows(first, stop),
        )
        chunk_queries = _queries(chunk, as_of) if by_query is None else by_query.rows(first, stop)
        if label_queries is not None:
            chunk_queries = label_queries(chunk_queries, events, chunk_ids)
        frame = compute_features(inputs, chunk_queries[["customer_id", "as_of"]], specs)
        extra = chunk_queries.columns.difference(["customer_id", "as_of"], sort=False)
        if len(extra):
            frame = pd.concat([frame, chunk_queries[list(extra)].reset_index(drop=True)], axis=1)
        # Converted here, on the worker thread; a CSV is written from the frame.
        return frame if csv else pa.Table.from_pandas(frame, preserve_index=False)

    def write_all(events: Iterator[EventArrays]) -> None:
        """Compute every chunk (`threads` at a time, in order) and write it."""
        written = 0
        pending: deque[Future[pd.DataFrame | pa.Table]] = deque()

        def write_next() -> None:
            nonlocal written
            began = time.perf_counter()
            result = pending.popleft().result()
            seconds["compute"] += time.perf_counter() - began  # waited for, not overlapped
            began = time.perf_counter()
            sink.write(result)
            written += 1
            seconds["write"] += time.perf_counter() - began
            if progress:
                progress(written, len(chunks))

        with _executor(threads, "features") as pool:
            try:
                for chunk in chunks:
                    began = time.perf_counter()
                    chunk_events = next(events)
                    seconds["events"] += time.perf_counter() - began
                    began = time.perf_counter()
                    pending.append(pool.submit(compute, chunk, chunk_events))
                    seconds["compute"] += time.perf_counter() - began  # (inline: all of it)
                    while len(pending) > max(threads, 1):
                        write_next()
                began = time.perf_counter()
                for _ in events:  # the rest of the stream: validation must see every row
                    pass
                seconds["events"] += time.perf_counter() - began
                while pending:
                    write_next()
            finally:
                for future in pending:
                    future.cancel()

    with _executor(min(threads, 1), "load") as loader:
        side = loader.submit(load_side_tables)
        try:
            try:
                # One pass when the events arrive sorted by customer (as generated or
                # exported per customer): validate, cut into chunks and compute as the
                # batches stream by.
                counted = _Counted(
                    coder(a)
                    for a in io.iter_event_arrays(data_dir, specs, coder.customers, part=part)
                )
                write_all(_event_chunks(counted, per_chunk, len(chunks)))
                n_events = counted.rows
            except _Unsorted:
                sink.reset()
                seconds.update(events=0.0, compute=0.0, write=0.0)
                began = time.perf_counter()
                source, n_events = io.stage_events(data_dir, specs, ids, scratch, part=part)
                seconds["events"] += time.perf_counter() - began
                with duckdb.connect() as con:
                    write_all(
                        event_arrays(
                            _events_between(
                                con, source, c["customer_id"].iloc[0], c["customer_id"].iloc[-1]
                            ),
                            pd.Index(c["customer_id"]),
                            specs,
                        )
                        for c in chunks
                    )
        except Exception:
            # A problem in the questionnaires or tags comes first, as when they were
            # checked before the events.
            error = side.exception()
            if error is not None:
                raise error from None
            raise
        questionnaire, tags = side.result()
    empty = None
    if sink.rows == 0:
        empty = compute_features(
            FeatureInputs(
                customers.iloc[:0],
                questionnaire.frame.iloc[:0],
                io.empty_frame(EVENTS),
                tags.frame.iloc[:0],
            ),
            _queries(customers.iloc[:0], as_of),
            specs,
        )
    return Computed(sink.rows, len(customers), n_events, seconds, empty)


class _Inline(Executor):
    """Runs each submitted call at once, on the caller's thread."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def _executor(threads: int, name: str) -> Executor:
    return _Inline() if threads == 0 else ThreadPoolExecutor(threads, thread_name_prefix=name)


def _parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """The output's writer: zstd, dictionary pages only for the text and categorical columns
    (floats do not repeat; trying costs a third of the writing time)."""
    encoded = [
        f.name
        for f in schema
        if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type) or f.name == "as_of"
    ]
    return pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=encoded)


#: (queries of one chunk, the events of that chunk's customers — all of them, past and future —,
#: the chunk's customer ids, which the events' codes index) -> the queries to keep, labelled.
LabelQueries = Callable[[pd.DataFrame, EventArrays, pd.Index], pd.DataFrame]


class _Unsorted(Exception):
    """The event stream is not sorted by customer_id; the builder falls back to DuckDB."""


class _EventCoder:
    """Validated event columns (arrow) -> `EventArrays` whose codes are positions among all the
    customers (sorted by id): the same arrays `kernel.event_arrays` makes from a frame."""

    def __init__(self, customer_ids: pd.Series, specs: Specs) -> None:
        self.customer_ids = pa.array(customer_ids, type=pa.large_string(), from_pandas=True)
        self.customers = IdSet(self.customer_ids)
        b = specs.behaviour
        text = pa.large_string()
        self.event_types = pa.array(list(b.event_types), type=text)
        self.channels = pa.array(list(b.channels), type=text)
        self.risks = pa.array(list(R_LEVELS), type=text)

    def __call__(self, arrays: dict[str, pa.Array]) -> EventArrays:
        term, has_term = terms_of(_floats(arrays["term_days"]))
        return EventArrays(
            codes=encode_arrow(arrays["customer_id"], self.customers),
            times_us=_microseconds(arrays["event_time"]),
            etype=encode_arrow(arrays["event_type"], self.event_types, np.int8),
            channel=encode_arrow(arrays["channel"], self.channels, np.int8),
            cents=cents_of(_floats(arrays["amount"])),
            risk=encode_arrow(arrays["product_risk"], self.risks, np.int8) + np.int8(1),
            term=term,
            has_term=has_term,
        )


def _floats(array: pa.Array) -> np.ndarray:
    """A numeric column as float64 with NaN for null (as pandas' `to_numpy` gives it)."""
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)


def _microseconds(array: pa.Array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False)).view(np.int64)


class _Counted:
    """An iterator of event arrays that counts the rows it has passed on."""

    def __init__(self, batches: Iterable[EventArrays]) -> None:
        self.batches = batches
        self.rows = 0

    def __iter__(self) -> Iterator[EventArrays]:
        for batch in self.batches:
            self.rows += len(batch)
            yield batch


def _event_chunks(
    batches: Iterable[EventArrays], per_chunk: int, n_chunks: int
) -> Iterator[EventArrays]:
    """Cut a stream of event batches sorted by customer code into one batch per customer chunk
    (chunk i holds codes i*per_chunk … (i+1)*per_chunk - 1, renumbered from 0), then pass on
    whatever follows the last chunk. Raises `_Unsorted` at the first code that goes
    backwards."""
    buffer: list[EventArrays] = []
    i, previous = 0, -1
    for batch in batches:
        codes = batch.codes
        if len(codes) == 0:
            continue
        if codes[0] < previous or bool(np.any(codes[1:] < codes[:-1])):
            raise _Unsorted
        previous = int(codes[-1])
        while len(batch) and i < n_chunks:
            cut = int(np.searchsorted(batch.codes, (i + 1) * per_chunk, side="left"))
            buffer.append(_rows(batch, 0, cut))
            batch = _rows(batch, cut, len(batch))
            if len(batch) == 0:
                break  # chunk i may continue in the next batch
            yield _joined(buffer, i * per_chunk)
            buffer, i = [], i + 1
        if len(batch):
            yield batch  # beyond every chunk: unknown customers, which validation reports
    while i < n_chunks:
        yield _joined(buffer, i * per_chunk)
        buffer, i = [], i + 1


def _rows(events: EventArrays, start: int, stop: int) -> EventArrays:
    """Rows start..stop-1 (views, no copy)."""
    return EventArrays(**{f.name: getattr(events, f.name)[start:stop] for f in _FIELDS})


def _joined(parts: list[EventArrays], first_code: int) -> EventArrays:
    """The parts end to end, customer codes renumbered from `first_code`."""
    parts = [p for p in parts if len(p)]
    if not parts:
        empty = {f.name: np.zeros(0, dtype=np.int64) for f in _FIELDS}
        empty["has_term"] = np.zeros(0, dtype=bool)
        return EventArrays(**empty)
    joined = {
        f.name: np.concatenate([getattr(p, f.name) for p in parts])
        if len(parts) > 1
        else getattr(parts[0], f.name)
        for f in _FIELDS
    }
    joined["codes"] = joined["codes"] - first_code
    return EventArrays(**joined)


_FIELDS = fields(EventArrays)


class _ByCustomer:
    """A table's rows in customer order (the sorted customers'; stable within a customer),
    sliced per chunk by integer customer positions, not by comparing text. An arrow table of
    canonical columns becomes a pandas frame one chunk at a time (on the worker threads)."""

    def __init__(self, table: pd.DataFrame | pa.Table, customers: IdSet) -> None:
        if isinstance(table, pd.DataFrame):
            ids = pa.array(table["customer_id"], type=pa.large_string(), from_pandas=True)
        else:
            ids = table["customer_id"].combine_chunks()
        codes = encode_arrow(ids, customers)
        if len(codes) and bool(np.any(codes[1:] < codes[:-1])):
            order = np.argsort(codes, kind="stable")
            codes = codes[order]
            if isinstance(table, pd.DataFrame):
                table = table.iloc[order]
            else:
                table = table.take(pa.array(order))
        if isinstance(table, pd.DataFrame):
            table = table.reset_index(drop=True)
        self.table = table
        self.codes = codes

    @property
    def frame(self) -> pd.DataFrame:
        """All rows as a frame."""
        return self.rows(0, len(self.codes) and int(self.codes[-1]) + 1)

    def rows(self, first: int, stop: int) -> pd.DataFrame:
        """Rows of the customers at positions first … stop - 1."""
        lo, hi = (int(i) for i in np.searchsorted(self.codes, [first, stop], side="left"))
        if isinstance(self.table, pd.DataFrame):
            return self.table.iloc[lo:hi]
        part = self.table.slice(lo, hi - lo)
        columns = {c: part[c].combine_chunks() for c in part.column_names}
        return canonical_frame(columns, lo, hi - lo)


def _queries(customers: pd.DataFrame, as_of: Sequence[pd.Timestamp]) -> pd.DataFrame:
    """(customer, as_of) pairs for customers already registered at as_of, by customer then time."""
    frames = []
    for t in as_of:
        registered = customers.loc[customers["registered_at"] <= t, ["customer_id"]]
        frames.append(registered.assign(as_of=pd.Timestamp(t)))
    queries = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["customer_id", "as_of"])
    )
    queries["as_of"] = queries["as_of"].astype("datetime64[us]")
    return queries.sort_values(["customer_id", "as_of"], kind="stable", ignore_index=True)
