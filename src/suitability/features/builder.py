"""Batch feature builder: one row per (customer_id, as_of) for every customer of a data folder.

Customers are processed in chunks so memory stays bounded for any number of them; each chunk's
facts go through the same kernel that serving uses for one customer. DuckDB reads the event
files for each chunk (row-group statistics skip the rest when files are sorted by customer).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from suitability.data import io
from suitability.data.schema import EVENTS
from suitability.features.kernel import FeatureInputs, compute_features
from suitability.settings import get_settings
from suitability.specs import Specs

#: Feature rows per kernel call; bounds the memory of the feature matrix (~170 float columns).
_QUERY_BUDGET = 250_000
_TABLES_USED = ("customers", "questionnaire_responses", "events", "interview_tags")
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
    #: (validate and read), compute, write.
    seconds: dict[str, float]


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


def check_paths(data_dir: Path | str, out_path: Path | str) -> tuple[Path, Path]:
    """Fail fast, before any work, on an output that cannot be written or a data folder that
    lacks a table the features need."""
    data_dir, out_path = Path(data_dir), Path(out_path)
    if out_path.suffix not in {".parquet", ".csv"}:
        raise ValueError(f"--out {out_path}: use a .parquet or .csv file name")
    if out_path.is_dir():
        raise ValueError(f"--out {out_path}: is a folder; name a file")
    if not out_path.parent.is_dir():
        raise ValueError(f"--out {out_path}: folder {out_path.parent} does not exist")
    if not data_dir.is_dir():
        raise ValueError(f"--data {data_dir}: no such folder")
    if out_path.resolve().is_relative_to(data_dir.resolve()):
        raise ValueError(
            f"--out {out_path}: is inside the data folder {data_dir}; write it elsewhere"
        )
    io.locate_tables(data_dir, _TABLES_USED)
    return data_dir, out_path


def build_features(
    data_dir: Path | str,
    as_of: Sequence[pd.Timestamp],
    out_path: Path | str,
    specs: Specs,
    *,
    queries: pd.DataFrame | None = None,
    label_queries: LabelQueries | None = None,
    chunk_customers: int | None = None,
    progress: Progress | None = None,
) -> BuildSummary:
    """Validate the raw tables of `data_dir` and write features for every customer registered at
    each as-of time to `out_path` (parquet or csv by extension), atomically.

    Training tables ask for more: `queries` (customer_id, as_of and any label columns, which are
    passed through) replaces the as-of grid, and `label_queries(queries, events)` may drop and
    label each chunk's queries from that chunk's validated events (all of them, past and
    future), in the same single pass over the events."""
    data_dir, out_path = check_paths(data_dir, out_path)
    if queries is None and not as_of:
        raise AsOfError("no as-of dates given")
    if queries is not None:
        missing = {"customer_id", "as_of"} - set(queries.columns)
        if missing:
            raise ValueError(f"queries lack columns {sorted(missing)}")
        queries = queries.sort_values(["customer_id", "as_of"], kind="stable", ignore_index=True)
    seconds = dict.fromkeys(("load_and_validate", "events", "compute", "write"), 0.0)
    began = time.perf_counter()
    tables = io.load_tables(
        data_dir, specs, tables=("customers", "questionnaire_responses", "interview_tags")
    )
    customers = tables["customers"].sort_values("customer_id", kind="stable", ignore_index=True)
    questionnaire = _by_customer(tables["questionnaire_responses"])
    tags = _by_customer(tables["interview_tags"])
    ids = customers["customer_id"]
    seconds["load_and_validate"] = time.perf_counter() - began

    chunk_customers = chunk_customers or get_settings().feature_chunk_customers
    per_customer = len(as_of) if queries is None else max(1, len(queries) // max(1, len(ids)))
    per_chunk = max(1, min(chunk_customers, _QUERY_BUDGET // per_customer))
    chunks = [customers.iloc[i : i + per_chunk] for i in range(0, len(customers), per_chunk)]
    last_ids = [c["customer_id"].iloc[-1] for c in chunks]
    # Scratch space beside the output, so the final rename stays on one file system.
    with tempfile.TemporaryDirectory(prefix=".features-", dir=out_path.parent) as tmp:
        part = Path(tmp) / ("features" + out_path.suffix)

        def write_all(events: Iterator[pd.DataFrame]) -> int:
            rows = 0
            writer: pq.ParquetWriter | None = None
            try:
                for i, chunk in enumerate(chunks):
                    began = time.perf_counter()
                    chunk_events = next(events)
                    seconds["events"] += time.perf_counter() - began
                    began = time.perf_counter()
                    lo, hi = chunk["customer_id"].iloc[0], chunk["customer_id"].iloc[-1]
                    inputs = FeatureInputs(
                        customers=chunk,
                        questionnaire=_slice(questionnaire, lo, hi),
                        events=chunk_events,
                        tags=_slice(tags, lo, hi),
                    )
                    chunk_queries = (
                        _queries(chunk, as_of) if queries is None else _slice(queries, lo, hi)
                    )
                    if label_queries is not None:
                        chunk_queries = label_queries(chunk_queries, chunk_events)
                    frame = compute_features(inputs, chunk_queries[["customer_id", "as_of"]], specs)
                    extra = chunk_queries.columns.difference(["customer_id", "as_of"], sort=False)
                    if len(extra):
                        frame = pd.concat(
                            [frame, chunk_queries[list(extra)].reset_index(drop=True)], axis=1
                        )
                    seconds["compute"] += time.perf_counter() - began
                    began = time.perf_counter()
                    rows += len(frame)
                    if out_path.suffix == ".csv":
                        frame.to_csv(part, mode="a", header=(i == 0), index=False)
                    else:
                        table = pa.Table.from_pandas(frame, preserve_index=False)
                        writer = writer or pq.ParquetWriter(part, table.schema, compression="zstd")
                        writer.write_table(table)
                    seconds["write"] += time.perf_counter() - began
                    if progress:
                        progress(i + 1, len(chunks))
                began = time.perf_counter()
                for _ in events:  # the rest of the stream: validation must see every row
                    pass
                seconds["events"] += time.perf_counter() - began
            finally:
                if writer is not None:
                    writer.close()
            return rows

        counted = _Counted(io.iter_events(data_dir, specs, ids))
        try:
            # One pass when the events arrive sorted by customer (as generated or exported
            # per customer): validate, cut into chunks and compute as the batches stream by.
            rows = write_all(_event_chunks(counted, last_ids))
            n_events = counted.rows
        except _Unsorted:
            part.unlink(missing_ok=True)
            seconds.update(events=0.0, compute=0.0, write=0.0)
            began = time.perf_counter()
            source, n_events = io.stage_events(data_dir, specs, ids, Path(tmp))
            seconds["events"] += time.perf_counter() - began
            with duckdb.connect() as con:
                rows = write_all(
                    _events_between(
                        con, source, c["customer_id"].iloc[0], c["customer_id"].iloc[-1]
                    )
                    for c in chunks
                )
        if rows == 0 and out_path.suffix == ".parquet":
            empty = compute_features(
                FeatureInputs(
                    customers.iloc[:0],
                    questionnaire.iloc[:0],
                    io.empty_frame(EVENTS),
                    tags.iloc[:0],
                ),
                _queries(customers.iloc[:0], as_of),
                specs,
            )
            pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), part)
        elif rows == 0:
            header = ",".join(["customer_id", "as_of", *specs.feature_names])
            part.write_text(header + "\n", encoding="utf-8")
        os.replace(part, out_path)
    return BuildSummary(
        out_path=out_path,
        rows=rows,
        customers=len(customers),
        as_of=list(as_of),
        events=n_events,
        seconds=seconds,
    )


#: (queries of one chunk, all events of that chunk's customers) -> the queries to keep, labelled.
LabelQueries = Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]


class _Unsorted(Exception):
    """The event stream is not sorted by customer_id; the builder falls back to DuckDB."""


class _Counted:
    """An iterator of frames that counts the rows it has passed on."""

    def __init__(self, frames: Iterator[pd.DataFrame]) -> None:
        self.frames = frames
        self.rows = 0

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for frame in self.frames:
            self.rows += len(frame)
            yield frame


def _event_chunks(
    frames: Iterable[pd.DataFrame], last_ids: Sequence[str]
) -> Iterator[pd.DataFrame]:
    """Cut a stream of event batches sorted by customer_id into one frame per customer chunk
    (chunk i ends with customer `last_ids[i]`), then pass on whatever follows the last chunk.
    Raises `_Unsorted` at the first customer id that goes backwards."""
    buffer: list[pd.DataFrame] = []
    i, previous = 0, None
    for frame in frames:
        ids = frame["customer_id"]
        if len(ids) == 0:
            continue
        if not ids.is_monotonic_increasing or (previous is not None and ids.iloc[0] < previous):
            raise _Unsorted
        previous = ids.iloc[-1]
        while len(frame) and i < len(last_ids):
            cut = int(frame["customer_id"].searchsorted(last_ids[i], side="right"))
            buffer.append(frame.iloc[:cut])
            frame = frame.iloc[cut:]
            if len(frame) == 0:
                break  # chunk i may continue in the next batch
            yield _concat_events(buffer)
            buffer, i = [], i + 1
        if len(frame):
            yield frame  # beyond every chunk: unknown customers, which validation reports
    while i < len(last_ids):
        yield _concat_events(buffer)
        buffer, i = [], i + 1


def _concat_events(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return io.empty_frame(EVENTS)
    return (
        pd.concat(frames, ignore_index=True)
        if len(frames) > 1
        else frames[0].reset_index(drop=True)
    )


def _by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer_id", kind="stable", ignore_index=True)


def _slice(frame: pd.DataFrame, lo: str, hi: str) -> pd.DataFrame:
    """Rows of customers lo..hi from a frame sorted by customer_id."""
    ids = frame["customer_id"]
    return frame.iloc[ids.searchsorted(lo, side="left") : ids.searchsorted(hi, side="right")]


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
