"""Apply a frame-to-frame function to every row of a parquet table in bounded memory: read a
batch of rows, transform it, write it before reading the next; on a Dask cluster, ranges of
rows are transformed on the workers and written here in order. The output (parquet or CSV) is
written to a temporary file and renamed at the end, so a failure leaves nothing half-written.

Batch explanations (`explain.batch`) and population scoring (`scoring.population`) are such
maps; the function carries the models and travels to the workers once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from suitability.data.storage import Location, locate, short_error

#: Rows transformed at a time (~200 float64 columns per row keep this in tens of MB).
BATCH_ROWS = 20_000
#: Rows a cluster task transforms (a few batches).
CLUSTER_ROWS = 100_000

#: A batch of rows in, its output rows out (an arrow table when the types must not depend on
#: the batch, such as a text column that happens to be empty in one batch).
Transform = Callable[[pd.DataFrame], pd.DataFrame | pa.Table]


def open_parquet(source: Path | str | Location) -> tuple[Location, pq.ParquetFile]:
    """The parquet table at `source` (a local path or an fsspec URL), with a clear error when
    it is missing, not parquet or unreadable."""
    source = locate(source)
    if source.suffix.lower() != ".parquet":
        raise ValueError(f"{source}: expected a parquet table")
    if not source.is_file():
        raise ValueError(f"{source}: no such file")
    try:
        return source, source.parquet()
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"{source}: not a readable parquet file ({short_error(exc)})") from None


def map_table(
    transform: Transform,
    source: Path | str | Location,
    out: Path,
    *,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int, int], None] | None = None,
    cluster: object | None = None,
    metadata: Mapping[str, str] | None = None,
) -> int:
    """`transform` of every row of `source` into `out` (parquet, or CSV by its suffix), in
    row order; `metadata` goes into the parquet file's key-value metadata. Returns the number
    of rows written. `cluster`: a `distributed.Client` whose workers can read `source`."""
    source, reader = open_parquet(source)
    total = reader.metadata.num_rows
    if total == 0:
        raise ValueError(f"{source} has no rows")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    csv = out.suffix.lower() == ".csv"
    writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
    done = 0

    def write(table: pa.Table) -> None:
        nonlocal writer, done
        if writer is None:
            if csv:
                writer = pacsv.CSVWriter(tmp, table.schema)
            else:
                schema = table.schema.with_metadata(
                    {**(table.schema.metadata or {}), **dict(metadata or {})}
                )
                writer = pq.ParquetWriter(tmp, schema)
        writer.write_table(table)
        done += table.num_rows

    try:
        if cluster is None:
            for table in _mapped_rows(transform, source, 0, total, batch_rows):
                write(table)
                if progress:
                    progress(done, total)
        else:
            _map_on_cluster(cluster, transform, source, total, batch_rows, write, progress)
        assert writer is not None
        writer.close()
        writer = None
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return done


def _map_on_cluster(
    client: object,
    transform: Transform,
    source: Location,
    total: int,
    batch_rows: int,
    write: Callable[[pa.Table], None],
    progress: Callable[[int, int], None] | None,
) -> None:
    """Ranges of `CLUSTER_ROWS` rows transformed on the workers, handed to `write` in order."""
    from suitability import cluster as dask_cluster

    dask_cluster.check_workers(client)
    # The function (and the models it holds) travels once, as a task's result: it is made
    # again if its worker is lost.
    shared = client.submit(_same, transform, pure=False)  # type: ignore[attr-defined]
    ranges = [(s, min(s + CLUSTER_ROWS, total)) for s in range(0, total, CLUSTER_ROWS)]
    futures = [
        client.submit(_map_range, shared, source, a, b, batch_rows, pure=False)  # type: ignore[attr-defined]
        for a, b in ranges
    ]
    dask_cluster.run_in_order(
        client, futures, lambda _, tables: [write(t) for t in tables], progress
    )


def _same(value: object) -> object:
    return value


def _map_range(
    transform: Transform, source: Location, start: int, stop: int, batch_rows: int
) -> list[pa.Table]:
    """Rows start … stop - 1 transformed (on a worker)."""
    return list(_mapped_rows(transform, source, start, stop, batch_rows))


def _mapped_rows(
    transform: Transform, source: Location, start: int, stop: int, batch_rows: int
) -> Iterator[pa.Table]:
    """`transform` of rows start … stop - 1 of a parquet file, at most `batch_rows` at a
    time, reading only the row groups that hold them."""
    reader = source.parquet()
    meta = reader.metadata
    groups, position, offset = [], None, 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if offset < stop and offset + n > start:
            groups.append(g)
            position = offset if position is None else position
        offset += n
    if position is None:
        return
    for batch in reader.iter_batches(batch_size=batch_rows, row_groups=groups):
        lo, hi = max(start, position), min(stop, position + batch.num_rows)
        position += batch.num_rows
        if hi > lo:
            frame = batch.slice(lo - (position - batch.num_rows), hi - lo).to_pandas()
            result = transform(frame)
            if isinstance(result, pd.DataFrame):
                result = pa.Table.from_pandas(result, preserve_index=False)
            yield result
