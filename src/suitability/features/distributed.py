"""Feature and training tables, and contract checks, on a Dask cluster (DESIGN §3).

The customers are cut into ranges (`data.partitions`); each range is validated and computed on
a worker by the same code that runs in one process (`compute_features_of`, `validate_folder`
with `part`), and the client writes the partitions' rows in customer order, as they arrive, to
the same output file. Problems found by any partition are merged into the one report a single
process gives: nothing is written when there is any.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from suitability import cluster as dask_cluster
from suitability.data import io
from suitability.data.contracts import ContractError, ExtraColumnsWarning, ProblemLog
from suitability.data.partitions import (
    CustomerRange,
    merged_problems,
    plan_ranges,
    sorted_customer_ids,
)
from suitability.data.storage import locate
from suitability.features.builder import (
    _SIDE_TABLES,
    _TABLES_USED,
    BuildSummary,
    FileSink,
    LabelQueries,
    ListSink,
    Progress,
    compute_features_of,
)
from suitability.settings import get_settings
from suitability.specs import Specs

#: Which tables' problems a partition's error is about, by the stage that raised it (as in one
#: process: customers first with the side tables, then the side tables, then the events).
_STAGES: tuple[frozenset[str], ...] = (
    frozenset(_SIDE_TABLES),
    frozenset(_SIDE_TABLES[1:]),
    frozenset({"events"}),
)


@dataclass
class _PartResult:
    """What a partition sends back: its rows (or its problems), counts and the worker's peak
    memory."""

    results: list
    rows: int
    customers: int
    events: int
    seconds: dict[str, float]
    worker: str
    peak_mib: float
    log: ProblemLog | None = None
    stage: int = 0
    empty: pd.DataFrame | None = None


def partitions_of(data_dir: io.DataDir, workers: int) -> list[CustomerRange]:
    """The customer ranges of a data folder: `SUITABILITY_CLUSTER_PARTITION_CUSTOMERS`
    customers each (default 100,000), and at least two per worker so that a slow or lost
    partition does not hold up the others."""
    try:
        ids = sorted_customer_ids(io.read_customer_ids(data_dir))
    except ContractError:
        # No usable customer ids to cut at: one partition, which reports the problems as one
        # process does.
        return [CustomerRange(0, 1)]
    return plan_ranges(ids, get_settings().cluster_partition_customers, 2 * max(1, workers))


def build_on_cluster(
    client: object,
    data_dir: io.DataDir,
    as_of: Sequence[pd.Timestamp],
    out_path: Path,
    specs: Specs,
    *,
    queries: pd.DataFrame | None = None,
    label_queries: LabelQueries | None = None,
    chunk_customers: int | None = None,
    progress: Progress | None = None,
) -> BuildSummary:
    """`build_features` with each customer partition validated and computed on a worker; the
    same rows in the same order, or the same problems."""
    began = time.perf_counter()
    workers = dask_cluster.check_workers(client)
    io.warn_extra_columns(data_dir, _TABLES_USED)
    parts = partitions_of(data_dir, workers)
    csv = out_path.suffix == ".csv"
    # Travels in the tasks (66 kB), not scattered: data of a task can be made again when its
    # worker is lost, scattered data cannot.
    slices = [None] * len(parts) if queries is None else _query_slices(queries, parts)
    futures = [
        client.submit(  # type: ignore[attr-defined]
            _compute_partition,
            locate(data_dir),  # (pickles as its URL; opened again on the worker)
            list(as_of),
            specs,
            part,
            part_queries,
            label_queries,
            csv,
            chunk_customers,
            key=f"features-{part.index}-of-{part.count}-{os.urandom(4).hex()}",
            pure=False,
        )
        for part, part_queries in zip(parts, slices, strict=True)
    ]
    seconds = dict.fromkeys(("load_and_validate", "events", "compute", "write"), 0.0)
    done: list[_PartResult] = []
    failed: list[_PartResult] = []
    with tempfile.TemporaryDirectory(prefix=".features-", dir=out_path.parent) as tmp:
        sink = FileSink(Path(tmp) / ("features" + out_path.suffix))

        def consume(_: int, result: _PartResult) -> None:
            if result.log is not None:
                failed.append(result)
            done.append(result)
            if failed:
                return  # nothing will be written; the other partitions still report problems
            start = time.perf_counter()
            for rows in result.results:
                sink.write(rows)
            result.results = []
            seconds["write"] += time.perf_counter() - start

        try:
            dask_cluster.run_in_order(client, futures, consume, progress)
        finally:
            sink.close()
        if failed:
            stage = min(r.stage for r in failed)
            error = merged_problems([r.log for r in failed], set(_STAGES[stage]))  # type: ignore[misc]
            assert error is not None
            raise error
        for result in done:
            for stage in ("load_and_validate", "events", "compute"):
                seconds[stage] += result.seconds[stage]
        rows = sum(r.rows for r in done)
        if rows == 0:
            sink.write_empty(done[0].empty, specs)
        os.replace(sink.path, out_path)
    seconds["partitions"] = time.perf_counter() - began
    peaks: dict[str, float] = {}
    for r in done:
        peaks[r.worker] = max(peaks.get(r.worker, 0.0), r.peak_mib)
    return BuildSummary(
        out_path=out_path,
        rows=rows,
        customers=sum(r.customers for r in done),
        as_of=list(as_of),
        events=sum(r.events for r in done),
        seconds=seconds,
        partitions=len(parts),
        worker_peak_mib=peaks,
    )


def validate_on_cluster(
    client: object,
    data_dir: io.DataDir,
    specs: Specs,
    progress: Progress | None = None,
    *,
    batch_rows: int = io.BATCH_ROWS,
) -> dict[str, int]:
    """`io.validate_folder` with each customer partition checked on a worker: the same row
    counts, or one `ContractError` with the same problems."""
    workers = dask_cluster.check_workers(client)
    io.locate_tables(data_dir, list(io.TABLE_NAMES))
    io.warn_extra_columns(data_dir, io.TABLE_NAMES)
    parts = partitions_of(data_dir, workers)
    futures = [
        client.submit(  # type: ignore[attr-defined]
            _validate_partition,
            locate(data_dir),  # (pickles as its URL; opened again on the worker)
            specs,
            part,
            batch_rows,
            key=f"validate-{part.index}-of-{part.count}-{os.urandom(4).hex()}",
            pure=False,
        )
        for part in parts
    ]
    counts = dict.fromkeys(io.TABLE_NAMES, 0)
    logs: list[ProblemLog] = []

    def consume(_: int, result: dict[str, int] | ProblemLog) -> None:
        if isinstance(result, ProblemLog):
            logs.append(result)
        else:
            for name, n in result.items():
                counts[name] += n

    dask_cluster.run_in_order(client, futures, consume, progress)
    error = merged_problems(logs)
    if error is not None:
        raise error
    return counts


# --- on the workers ------------------------------------------------------------------------------


def _query_slices(queries: pd.DataFrame, parts: list[CustomerRange]) -> list[pd.DataFrame]:
    """Each partition's queries (`queries` sorted by customer id)."""
    ids = queries["customer_id"].astype(str).to_numpy()
    bounds = [p.lo for p in parts[1:]]
    cuts = [0, *(int(v) for v in pd.Index(ids).searchsorted(bounds, side="left")), len(ids)]
    return [queries.iloc[cuts[i] : cuts[i + 1]] for i in range(len(parts))]


def _one_core_per_thread() -> None:
    """Arrow's thread pool sized to the worker's threads, so that a worker uses the cores it
    was given and no more (as Dask sets OMP_NUM_THREADS=1 for numpy's)."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except ValueError:  # not on a worker
        return
    if pa.cpu_count() != threads:
        pa.set_cpu_count(threads)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:  # not on a worker (called directly)
        return "local"


def _log_of(error: ContractError) -> ProblemLog:
    if error.log is not None:
        return error.log
    log = ProblemLog()
    whole = {(p.table, p.column, p.rule) for p in error.problems if p.row is None}
    log.absorb(error.problems, error.counts, whole)
    return log


def _stage_of(log: ProblemLog) -> int:
    tables = {key[0] for key in log.counts}
    if "customers" in tables:
        return 0
    return 2 if "events" in tables else 1


def _compute_partition(
    data_dir: io.DataDir,
    as_of: list[pd.Timestamp],
    specs: Specs,
    part: CustomerRange,
    queries: pd.DataFrame | None,
    label_queries: LabelQueries | None,
    csv: bool,
    chunk_customers: int | None,
) -> _PartResult:
    """One partition's feature rows (or its problems), on a worker, computed on the task's
    thread alone: the worker's other threads run other partitions."""
    _one_core_per_thread()
    sink = ListSink()
    with (
        tempfile.TemporaryDirectory(prefix="suitability-part-") as scratch,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ExtraColumnsWarning)  # the client warned once
        try:
            computed = compute_features_of(
                data_dir,
                as_of,
                specs,
                sink,
                scratch=Path(scratch),
                csv=csv,
                queries=queries,
                label_queries=label_queries,
                chunk_customers=chunk_customers,
                threads=0,
                part=part,
            )
        except ContractError as exc:
            log = _log_of(exc)
            seconds = dict.fromkeys(("load_and_validate", "events", "compute", "write"), 0.0)
            return _PartResult(
                [], 0, 0, 0, seconds, _worker_name(), _peak_mib(), log, _stage_of(log)
            )
    return _PartResult(
        sink.results,
        computed.rows,
        computed.customers,
        computed.events,
        computed.seconds,
        _worker_name(),
        _peak_mib(),
        empty=computed.empty,
    )


def _validate_partition(
    data_dir: io.DataDir, specs: Specs, part: CustomerRange, batch_rows: int
) -> dict[str, int] | ProblemLog:
    """One partition's row counts per table, or its problems."""
    _one_core_per_thread()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtraColumnsWarning)
        try:
            return io.validate_folder(data_dir, specs, batch_rows=batch_rows, part=part)
        except ContractError as exc:
            return _log_of(exc)
