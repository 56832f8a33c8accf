"""Vectorised encodings shared by the feature code: text to vocabulary positions, times to
integer microseconds. Both run in Arrow/numpy, never through Python objects per row."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from suitability.data.contracts import IdSet


def encode(values: pd.Series, vocabulary: Sequence[str] | pd.Index | np.ndarray) -> np.ndarray:
    """Position of each value in `vocabulary` as int64 (-1 for null or unknown)."""
    array = _arrow_text(values)
    if isinstance(vocabulary, list | tuple):
        value_set = _value_set(tuple(vocabulary), array.type)
    else:
        value_set = pa.array(vocabulary, type=array.type, from_pandas=True)
    codes = pc.index_in(array, value_set=value_set).to_numpy(zero_copy_only=False)
    if codes.dtype.kind == "f":  # nulls (null or unknown) came back as NaN
        return np.where(np.isnan(codes), -1, codes).astype(np.int64)
    return codes.astype(np.int64)


def encode_arrow(
    values: pa.Array, value_set: pa.Array | IdSet, dtype: type = np.int64
) -> np.ndarray:
    """`encode` for an arrow text column (dictionary-encoded or not) against an arrow value
    set or an `IdSet`: the position of each value, -1 for null or unknown. A dictionary column
    is looked up once per distinct value."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()

    def lookup(array: pa.Array) -> np.ndarray:
        if isinstance(value_set, IdSet):
            return value_set.positions(array).astype(dtype, copy=False)
        return _positions(pc.index_in(array, value_set=value_set), dtype)

    if pa.types.is_dictionary(values.type):
        table = lookup(values.dictionary)
        indices = values.indices
        if not indices.null_count:
            return table[indices.to_numpy()]
        valid = np.asarray(pc.is_valid(indices))
        codes = np.full(len(indices), -1, dtype=dtype)
        codes[valid] = table[pc.drop_null(indices).to_numpy()]
        return codes
    return lookup(values)


def _positions(found: pa.Array, dtype: type) -> np.ndarray:
    """`index_in` results as integers, -1 where null."""
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _arrow_text(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A text column as arrow: the pandas `str` column's own arrow data when it has some
    (no copy; this runs a dozen times for every request), else converted."""
    array = getattr(values, "array", None)
    if isinstance(values, pd.Series) and isinstance(array, pd.arrays.ArrowStringArray):
        data = array.__arrow_array__()
        if pa.types.is_string(data.type) or pa.types.is_large_string(data.type):
            return data
    return pa.array(values, type=pa.string(), from_pandas=True)


@lru_cache(maxsize=256)
def _value_set(vocabulary: tuple[str, ...], text_type: pa.DataType) -> pa.Array:
    return pa.array(vocabulary, type=text_type, from_pandas=True)


def microseconds(values: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Timestamps as int64 microseconds since 1970."""
    if getattr(values, "dtype", None) == np.dtype("datetime64[us]"):
        return np.asarray(values).view("int64")  # already canonical: no conversion to pay
    return np.asarray(pd.to_datetime(values).to_numpy("datetime64[us]")).view("int64")
