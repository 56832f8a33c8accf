"""Vectorised encodings shared by the feature code: text to vocabulary positions, times to
integer microseconds. Both run in Arrow/numpy, never through Python objects per row."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def encode(values: pd.Series, vocabulary: Sequence[str] | pd.Index | np.ndarray) -> np.ndarray:
    """Position of each value in `vocabulary` as int64 (-1 for null or unknown)."""
    array = pa.array(values, type=pa.string(), from_pandas=True)
    value_set = pa.array(vocabulary, type=pa.string(), from_pandas=True)
    codes = pc.fill_null(pc.index_in(array, value_set=value_set), -1)
    return codes.to_numpy(zero_copy_only=False).astype(np.int64)


def microseconds(values: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Timestamps as int64 microseconds since 1970."""
    if getattr(values, "dtype", None) == np.dtype("datetime64[us]"):
        return np.asarray(values).view("int64")  # already canonical: no conversion to pay
    return np.asarray(pd.to_datetime(values).to_numpy("datetime64[us]")).view("int64")
