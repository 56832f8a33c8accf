"""How a column becomes counts in bins, shared by the training reference and the drift check so
that both count alike.

Numbers fall into right-closed intervals (-inf, e0], (e0, e1], ..., (e_last, inf) and missing
values into a bin of their own; categories count by name, with a bin for names the reference
never saw and one for missing values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def numbers(column: pd.Series, name: str) -> np.ndarray:
    """A numeric feature's values as float64 (missing: NaN). Text is refused rather than
    coerced: a column read as text would otherwise count as wholly missing and alert as drift."""
    if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
        raise ValueError(
            f"feature {name!r} holds {column.dtype} values, but the reference has it as numbers"
        )
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Edges of about `bins` equal-frequency bins of `values` (NaN ignored).

    A value that alone holds at least a bin's share of the rows (the zero of a count, a
    questionnaire score) gets a bin of its own; the other values share the remaining bins in
    proportion to their number, cut at their quantiles (values that occur, never interpolated).
    Edges that would leave a bin empty are dropped, except that the last bin (above the largest
    value) may be empty: a later value above everything seen in training then stands out.
    Infinite values count in the outer bins but never become edges.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.empty(0)
    distinct, counts = np.unique(finite, return_counts=True)
    total = counts.sum()
    heavy = counts * bins >= total
    # A heavy value v is isolated by the edges (just below v, v].
    parts = [distinct[heavy], np.nextafter(distinct[heavy], -np.inf)]
    light_values, light_counts = distinct[~heavy], counts[~heavy]
    light_total = light_counts.sum()
    light_bins = max(1, round(bins * light_total / total)) if light_total else 0
    if light_bins > 1:
        cumulative = np.cumsum(light_counts)
        targets = light_total * np.arange(1, light_bins) / light_bins
        parts.append(light_values[np.searchsorted(cumulative, targets, side="left")])
    edges = np.unique(np.concatenate(parts))
    below = np.bincount(
        np.searchsorted(edges, distinct, side="left"), weights=counts, minlength=edges.size + 1
    )
    return edges[below[:-1] > 0]


def numeric_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows per bin of `edges`, then the missing rows: `len(edges) + 2` counts."""
    # Counting the rows at or below each edge (one vectorised comparison per edge) and taking
    # differences is several times faster than placing each row with a binary search
    # (`searchsorted`), for the ten-odd edges a reference has. NaN is never at or below an edge.
    at_or_below = np.array([np.count_nonzero(values <= edge) for edge in edges], dtype=np.int64)
    missing = np.count_nonzero(np.isnan(values))
    below_top = at_or_below[-1] if edges.size else 0
    return np.concatenate(
        [at_or_below[:1], np.diff(at_or_below), [values.size - missing - below_top, missing]]
    ).astype(np.int64)


def category_counts(column: pd.Series, categories: Sequence[str]) -> np.ndarray:
    """Rows per category (compared as text), then rows of categories not in `categories`, then
    missing rows: `len(categories) + 2` counts."""
    vocabulary = pd.Index(list(categories), dtype=object)
    unseen, missing = len(categories), len(categories) + 1
    if isinstance(column.dtype, pd.CategoricalDtype):
        # Through the column's few categories, not its rows.
        names = pd.Series(column.cat.categories).astype("string")
        lookup = vocabulary.get_indexer(names.to_numpy(dtype=object, na_value=None))
        lookup = np.append(np.where(lookup < 0, unseen, lookup), missing)
        return np.bincount(lookup[column.cat.codes.to_numpy()], minlength=missing + 1)
    text = column.astype("string")
    index = vocabulary.get_indexer(text.to_numpy(dtype=object, na_value=None))
    index = np.where(index < 0, unseen, index)
    index[text.isna().to_numpy()] = missing
    return np.bincount(index, minlength=missing + 1)


def observed_categories(column: pd.Series, vocabulary: Sequence[str]) -> list[str]:
    """`vocabulary`, then any other value the column holds (as text, sorted)."""
    known = [str(c) for c in vocabulary]
    seen = set(known)
    values = column.dropna().astype("string").unique()
    return known + sorted(str(v) for v in values if str(v) not in seen)
