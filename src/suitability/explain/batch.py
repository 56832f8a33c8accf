"""Explain a large feature table in bounded memory: read it a batch of rows at a time, write
each batch's predictions and SHAP contributions before reading the next."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from suitability.data.storage import Location
from suitability.data.table_map import BATCH_ROWS, map_table, open_parquet
from suitability.explain.contributions import explain_frame
from suitability.explain.importance import primary_output
from suitability.models.estimators import BinaryLGBM, OrdinalLGBM

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
    into parquet `out` (written to a temporary file and renamed at the end, so a failure leaves
    nothing half-written). Returns the number of rows. `cluster`: a `distributed.Client`;
    ranges of rows are then explained on its workers (which must be able to read `source`) and
    written here in order: the same file contents."""
    source, reader = open_parquet(source)
    model.layout.check(pd.DataFrame(columns=reader.schema_arrow.names))
    return map_table(
        functools.partial(explain_batch, model),
        source,
        out,
        batch_rows=batch_rows,
        progress=progress,
        cluster=cluster,
    )
