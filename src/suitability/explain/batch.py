"""Explain a large feature table in bounded memory: read it a batch of rows at a time, write
each batch's predictions and SHAP contributions before reading the next."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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
    source: Path,
    out: Path,
    *,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Explain every row of the parquet feature table `source` into parquet `out` (written
    to a temporary file and renamed at the end, so a failure leaves nothing half-written).
    Returns the number of rows."""
    if source.suffix.lower() != ".parquet":
        raise ValueError(f"{source}: batch explanations read a parquet feature table")
    model.layout.check(pd.DataFrame(columns=pq.read_schema(source).names))
    reader = pq.ParquetFile(source)
    total = reader.metadata.num_rows
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    writer: pq.ParquetWriter | None = None
    done = 0
    try:
        for batch in reader.iter_batches(batch_size=batch_rows):
            frame = batch.to_pandas()
            table = pa.Table.from_pandas(explain_batch(model, frame), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            done += len(frame)
            if progress:
                progress(done, total)
        if writer is None:
            raise ValueError(f"{source} has no rows")
        writer.close()
        writer = None
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return done
