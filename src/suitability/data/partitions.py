"""Customer partitions: the unit of work on a cluster (DESIGN §3, partitions by customer).

A partition is a range of customer ids in sorted order. Each row of every table that names a
customer belongs to exactly one partition, so every rule (the whole-table ones are keyed by
customer) and every feature can be computed partition by partition. Ranges rather than hashes:
a table stored in customer order (as exported per customer) lets a partition read only the
parquet row groups whose statistics overlap its range, where a hash would make every partition
read every row. Rows with no usable customer id, and the tables that name no customer, belong
to the first partition. Problems found per partition merge into the report one process gives.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from suitability.data.contracts import ContractError, Problem, ProblemLog


@dataclass(frozen=True)
class CustomerRange:
    """Partition `index` of `count`: customer ids `lo` <= id < `hi` (None: unbounded)."""

    index: int
    count: int
    lo: str | None = None
    hi: str | None = None

    @property
    def first(self) -> bool:
        """The first partition also holds rows with no usable id and customer-less tables."""
        return self.index == 0

    def __str__(self) -> str:
        return f"partition {self.index + 1} of {self.count} ({self.lo or '…'} – {self.hi or '…'})"

    def rows_of(self, ids: pa.Array | None) -> np.ndarray | None:
        """Positions of the rows of this partition, given a batch's stored customer ids (None
        when the batch has no customer id column); None means every row."""
        if ids is None or not _is_text(ids.type):
            return None if self.first else np.zeros(0, dtype=np.int64)
        if self.lo is None and self.hi is None:
            return None
        if pa.types.is_dictionary(ids.type):
            # One comparison per distinct value, then a lookup per row.
            inside = self._inside(ids.dictionary)
            keep = pc.take(inside, ids.indices)
        else:
            keep = self._inside(ids)
        if self.first:
            keep = pc.or_(pc.fill_null(keep, False), pc.is_null(ids))
        mask = np.asarray(pc.fill_null(keep, False).to_numpy(zero_copy_only=False), dtype=bool)
        return np.flatnonzero(mask)

    def may_hold(self, lo: object, hi: object, has_nulls: bool) -> bool:
        """Whether a row group whose ids span [lo, hi] (its parquet statistics) may hold rows of
        this partition."""
        if not isinstance(lo, str) or not isinstance(hi, str):
            return True
        if has_nulls and self.first:
            return True
        if self.lo is not None and hi < self.lo:
            return False
        return not (self.hi is not None and lo >= self.hi)

    def _inside(self, ids: pa.Array) -> pa.Array:
        ids = pc.cast(ids, pa.large_string())
        keep = pa.array(np.ones(len(ids), dtype=bool))
        if self.lo is not None:
            keep = pc.and_(keep, pc.greater_equal(ids, pa.scalar(self.lo, pa.large_string())))
        if self.hi is not None:
            keep = pc.and_(keep, pc.less(ids, pa.scalar(self.hi, pa.large_string())))
        return keep


def plan_ranges(
    sorted_ids: pa.Array, per_partition: int, min_partitions: int = 1
) -> list[CustomerRange]:
    """Ranges of about `per_partition` customers each (at least `min_partitions` when there
    are enough customers), cut at the distinct, sorted ids `sorted_ids`; the first range is
    open below and the last above, so every possible id falls in exactly one."""
    n = len(sorted_ids)
    count = max(1, min_partitions, -(-n // max(1, per_partition)))
    count = max(1, min(count, n))
    cuts = [sorted_ids[round(i * n / count)].as_py() for i in range(1, count)]
    bounds: list[str | None] = [None, *cuts, None]
    return [CustomerRange(i, count, bounds[i], bounds[i + 1]) for i in range(count)]


def sorted_customer_ids(ids: pa.Array) -> pa.Array:
    """Distinct ids in byte order (how arrow compares text and parquet orders statistics)."""
    ids = pc.unique(pc.drop_null(pc.cast(ids, pa.large_string())))
    return pc.take(ids, pc.sort_indices(ids))


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


# --- problems found partition by partition -------------------------------------------------------


def merged_problems(logs: list[ProblemLog], tables: set[str] | None = None) -> ContractError | None:
    """One error, as one process would raise it, from the problem logs of every partition
    (None when they found nothing). Row problems of different partitions are different rows;
    problems of a whole table or column (a missing column, a wrong type, an unreadable file)
    are seen by several partitions and counted once. `tables`: only these tables' problems."""
    merged = ProblemLog()
    whole: set[tuple[str, str | None, str]] = set()
    counts: Counter[tuple[str, str | None, str]] = Counter()
    kept: list[Problem] = []
    for log in logs:
        for key, n in log.counts.items():
            if tables is not None and key[0] not in tables:
                continue
            if key in log.whole_keys:
                if key in whole:
                    continue
                whole.add(key)
            counts[key] += n
        kept += [
            p
            for p in log.kept
            if (tables is None or p.table in tables)
            and not (p.row is None and any(q == p for q in kept))
        ]
    if not counts:
        return None
    merged.absorb(kept, counts, whole)
    return merged.error()
