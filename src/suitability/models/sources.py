"""The three ways to feed training — raw tables, a prebuilt feature table, a user's flat table —
read at the edge and turned into a `TrainingResult`, so the CLI and the demo stay thin."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from suitability.data.io import DataDir
from suitability.data.storage import locate
from suitability.features.builder import Progress
from suitability.models.flat import prepare_flat_table, read_flat_table
from suitability.models.spec import ModelSpec
from suitability.models.train import TrainingResult, train_on_features, train_on_flat_table
from suitability.models.training_table import TIME_COLUMN, build_training_table
from suitability.specs import C_LEVELS, Specs


def read_feature_table(path: Path | str) -> pd.DataFrame:
    """A training table written by `suitability features training-table` (parquet or CSV; a
    local path or an fsspec URL)."""
    place = locate(path)
    if not place.is_file():
        raise ValueError(f"--features {place}: no such file")
    if place.suffix == ".parquet":
        try:
            frame = pd.read_parquet(place.path, filesystem=place.fs)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise ValueError(f"--features {place}: not a readable parquet file ({exc})") from None
    elif place.suffix == ".csv":
        with place.input_stream() as handle:
            frame = pd.read_csv(handle)
    else:
        raise ValueError(f"--features {place}: use a .parquet or .csv file")
    if TIME_COLUMN in frame.columns:
        parsed = pd.to_datetime(frame[TIME_COLUMN], errors="coerce", format="ISO8601")
        bad = parsed.isna() & frame[TIME_COLUMN].notna()
        if bad.any() or frame[TIME_COLUMN].isna().any():
            rows = (np.flatnonzero(bad | frame[TIME_COLUMN].isna()) + 1)[:10].tolist()
            raise ValueError(
                f"--features {place}: column {TIME_COLUMN!r} has "
                f"{int((bad | frame[TIME_COLUMN].isna()).sum())} value(s) that are not times "
                f"(rows {rows}; row 1 is the first data row)"
            )
        frame[TIME_COLUMN] = parsed
    return frame


def write_table(frame: pd.DataFrame, path: Path | str) -> None:
    """Write a table atomically (parquet or CSV by suffix): a temporary file, then a rename."""
    path = Path(path)
    if path.suffix not in {".parquet", ".csv"}:
        raise ValueError(f"--out {path}: use a .parquet or .csv file name")
    if not path.parent.is_dir():
        raise ValueError(f"--out {path}: folder {path.parent} does not exist")
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=".table-", suffix=path.suffix, delete=False
    ) as handle:
        tmp = Path(handle.name)
    try:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False, compression="zstd")
        else:
            frame.to_csv(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def train_from_data(
    spec: ModelSpec,
    data_dir: DataDir,
    specs: Specs,
    *,
    build_progress: Progress | None = None,
    fit_progress: Progress | None = None,
    cluster: object | None = None,
) -> TrainingResult:
    """Build the training table from raw tables, then train (both on `cluster` when given)."""
    with tempfile.TemporaryDirectory(prefix="suitability-train-") as scratch:
        table = build_training_table(
            spec, data_dir, specs, scratch, progress=build_progress, cluster=cluster
        )
    return train_on_features(
        table.frame, spec, specs, mode="data", progress=fit_progress, cluster=cluster
    )


def train_from_features(
    spec: ModelSpec,
    path: Path | str,
    specs: Specs,
    *,
    fit_progress: Progress | None = None,
    cluster: object | None = None,
) -> TrainingResult:
    return train_on_features(
        read_feature_table(path),
        spec,
        specs,
        mode="features",
        progress=fit_progress,
        cluster=cluster,
    )


def train_from_flat_table(
    spec: ModelSpec,
    path: Path | str,
    *,
    target: str,
    id_column: str,
    time_column: str | None = None,
    fit_progress: Progress | None = None,
    cluster: object | None = None,
) -> TrainingResult:
    """Flat-table mode: any CSV/parquet with a target and an id column."""
    frame = read_flat_table(path)
    order = None
    if spec.task == "ordinal" and target in frame.columns:
        values = {str(v).strip().upper() for v in frame[target].dropna().unique()}
        if values and values <= set(C_LEVELS):
            order = list(C_LEVELS)
    flat = prepare_flat_table(
        frame,
        target=target,
        id_column=id_column,
        task="ordinal" if spec.task == "ordinal" else "binary",
        time_column=time_column,
        ordinal_order=order,
        source=str(path),
    )
    spec = spec.model_copy(update={"label": target})
    return train_on_flat_table(
        flat, spec, id_column=id_column, progress=fit_progress, cluster=cluster
    )
