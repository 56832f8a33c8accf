"""Explain a large feature table in bounded memory: read it a batch of rows at a time, write
each batch's predictions and SHAP contributions before reading the next."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from suitability.data.storage import Location, locate, short_error
from suitability.explain.contributions import explain_frame
from suitability.explain.importance import primary_output
from suitability.models.estimators import BinaryLGBM, OrdinalLGBM

#: Rows explained at a time: ~190 float64 contributions per row and output keep this in tens of MB.
BATCH_ROWS = 20_000
_KEEP = ("customer_id", "as_of")


def explain_batch(model: OrdinalLGBM | BinaryLGBM, frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions, the primary output's base value and one `shap_<feature>` column per
    feature (base + the shap columns = the raw output), and the top four features by |SHAP|."""
    output = primary_output(model)
    contributions = explain_frame(model, frame)
    values, base = contributions.of(output)
    out = frame[[c for c in _KEEP if c in frame.columns]].reset_index(drop=True)
    predictions = model.predict_frame(frame).reset_index(drop=True)
    out = pd.concat([out, predictions], axis=1)
    out[f"base_{output}"] = base
    shap = pd.DataFrame(
        values.astype(np.float32), columns=[f"shap_{n}" for n in contributions.feature_names]
    )
    order = np.argsort(-np.abs(values), axis=1)[:, :4]
    names = np.asarray(contributions.feature_names, dtype=object)
    top = pd.DataFrame({f"reason_{k + 1}": names[order[:, k]] for k in range(order.shape[1])})
    return pd.concat([out, top, shap], axis=1)


def explain_table(
    model: OrdinalLGBM | BinaryLGBM,
    source: Path | str | Location,
    out: Path,
    *,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int, int], None] | None = None,
    cluster: object | None = None,
) -> int:
    """Explain every row of the parquet feature table `source` (a local path or an fsspec URL)
    into parquet `out` (written
    to a temporary file and renamed at the end, so a failure leaves nothing half-written).
    Returns the number of rows. `cluster`: a `distributed.Client`; ranges of rows are then
    explained on its workers (which must be able to read `source`) and written here in
    order: the same file contents."""
    source = locate(source)
    if source.suffix.lower() != ".parquet":
        raise ValueError(f"{source}: batch explanations read a parquet feature table")
    if not source.is_file():
        raise ValueError(f"{source}: no such file")
    try:
        meta = source.parquet()
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"{source}: not a readable parquet file ({short_error(exc)})") from None
    model.layout.check(pd.DataFrame(columns=meta.schema_arrow.names))
    total = meta.metadata.num_rows
    if total == 0:
        raise ValueError(f"{source} has no rows")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    writer: pq.ParquetWriter | None = None
    done = 0

    def write(table: pa.Table) -> None:
        nonlocal writer, done
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
        done += table.num_rows

    try:
        if cluster is None:
            for table in _explained_rows(model, source, 0, total, batch_rows):
                write(table)
                if progress:
                    progress(done, total)
        else:
            _explain_on_cluster(cluster, model, source, total, batch_rows, write, progress)
        assert writer is not None
        writer.close()
        writer = None
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return done


#: Rows a cluster task explains (a few of `BATCH_ROWS` batches).
CLUSTER_ROWS = 100_000


def _explain_on_cluster(
    client: object,
    model: OrdinalLGBM | BinaryLGBM,
    source: Location,
    total: int,
    batch_rows: int,
    write: Callable[[pa.Table], None],
    progress: Callable[[int, int], None] | None,
) -> None:
    """Ranges of `CLUSTER_ROWS` rows explained on the workers, handed to `write` in order."""
    from suitability import cluster as dask_cluster

    dask_cluster.check_workers(client)
    # The model travels once, as a task's result: it is made again if its worker is lost.
    shared = client.submit(_same, model, pure=False)  # type: ignore[attr-defined]
    ranges = [(s, min(s + CLUSTER_ROWS, total)) for s in range(0, total, CLUSTER_ROWS)]
    futures = [
        client.submit(_explain_range, shared, source, a, b, batch_rows, pure=False)  # type: ignore[attr-defined]
        for a, b in ranges
    ]
    dask_cluster.run_in_order(
        client, futures, lambda _, tables: [write(t) for t in tables], progress
    )


def _same(value: object) -> object:
    return value


def _explain_range(
    model: OrdinalLGBM | BinaryLGBM, source: Location, start: int, stop: int, batch_rows: int
) -> list[pa.Table]:
    """Rows start … stop - 1 explained (on a worker)."""
    return list(_explained_rows(model, source, start, stop, batch_rows))


def _explained_rows(
    model: OrdinalLGBM | BinaryLGBM, source: Location, start: int, stop: int, batch_rows: int
) -> Iterator[pa.Table]:
    """`explain_batch` of rows start … stop - 1 of a parquet file, at most `batch_rows` at a
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
            yield pa.Table.from_pandas(explain_batch(model, frame), preserve_index=False)
