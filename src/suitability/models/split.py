"""Train / validation / test splits that cannot leak a customer's future into training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from suitability.models.spec import FlatSplitSpec, SplitSpec

SPLITS = ("train", "validation", "test")
DROPPED = "dropped"


@dataclass(frozen=True)
class Split:
    """Each row's split (`train`, `validation`, `test` or `dropped`) and what decided it."""

    assignment: np.ndarray
    boundaries: dict[str, Any]

    def rows(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.assignment == name)

    def counts(self) -> dict[str, int]:
        return {name: int((self.assignment == name).sum()) for name in (*SPLITS, DROPPED)}


def customer_groups(ids: pd.Series, spec: SplitSpec) -> np.ndarray:
    """Each customer's group (train, validation or test), from a seeded hash of the id: stable
    across runs, row order and data size, so a customer never changes group between retrains."""
    key = f"suitability{spec.seed:05d}"[-16:].rjust(16, "0")
    u = pd.util.hash_pandas_object(ids.astype("str"), index=False, hash_key=key).to_numpy()
    u = u.astype(np.float64) / 2.0**64
    return np.where(
        u < spec.test_customers,
        "test",
        np.where(u < spec.test_customers + spec.validation_customers, "validation", "train"),
    )


def split_out_of_time(ids: pd.Series, times: pd.Series, spec: SplitSpec) -> Split:
    """Out of time and grouped by customer (see `SplitSpec`): training customers' rows at least
    `embargo_days` before the evaluation period train; validation and test customers' rows
    inside it evaluate; every other row is dropped."""
    if len(ids) != len(times):
        raise ValueError("ids and times differ in length")
    t = pd.to_datetime(times).to_numpy("datetime64[us]")
    distinct = np.unique(t)
    if len(distinct) < 2:
        raise ValueError(
            "all rows share one observation time; an out-of-time split needs at least two"
        )
    boundary = np.quantile(t.astype(np.int64), 1 - spec.later_share, method="lower")
    boundary = np.datetime64(int(boundary), "us")
    if boundary >= distinct[-1]:
        boundary = distinct[-2]
    train_end = boundary - np.timedelta64(spec.embargo_days, "D")
    group = customer_groups(ids, spec)
    later = t > boundary
    assignment = np.full(len(t), DROPPED, dtype=object)
    assignment[(group == "train") & (t <= train_end)] = "train"
    assignment[(group == "validation") & later] = "validation"
    assignment[(group == "test") & later] = "test"
    assignment = assignment.astype(str)
    split = Split(assignment, {})
    counts = split.counts()
    for name in SPLITS:
        if counts[name] == 0:
            raise ValueError(
                f"the {name} split is empty ({len(t):,} rows, {len(distinct)} observation "
                f"times, evaluation period after {pd.Timestamp(boundary)}); add data or change "
                "the split shares"
            )
    boundaries: dict[str, Any] = {
        "method": "out_of_time_grouped",
        "first_time": str(pd.Timestamp(distinct[0])),
        "train_end": str(pd.Timestamp(train_end)),
        "evaluation_start_after": str(pd.Timestamp(boundary)),
        "last_time": str(pd.Timestamp(distinct[-1])),
        "embargo_days": spec.embargo_days,
        "later_share": spec.later_share,
        "validation_customer_share": spec.validation_customers,
        "test_customer_share": spec.test_customers,
        "seed": spec.seed,
    }
    for name in SPLITS:
        rows = assignment == name
        boundaries[f"{name}_rows"] = counts[name]
        boundaries[f"{name}_customers"] = int(ids[rows].nunique())
        boundaries[f"{name}_from"] = str(pd.Timestamp(t[rows].min()))
        boundaries[f"{name}_to"] = str(pd.Timestamp(t[rows].max()))
    boundaries["dropped_rows"] = counts[DROPPED]
    return Split(assignment, boundaries)


def split_flat(
    y: np.ndarray, ids: pd.Series, times: pd.Series | None, spec: FlatSplitSpec
) -> tuple[np.ndarray, dict[str, Any]]:
    """A user table's split, each id in one split only.

    One row per id: by time when a time column is given (oldest rows train, newest test), else
    stratified at random. Several rows per id (panel data): ids are hashed into groups, and
    with a time column the split is also out of time, as for the built-in tables."""
    n = len(y)
    grouped = not pd.Series(ids).is_unique
    assignment = np.full(n, "train", dtype=object)
    if grouped:
        groups = SplitSpec(
            later_share=spec.validation + spec.test,
            validation_customers=spec.validation,
            test_customers=spec.test,
            seed=spec.seed,
        )
        ids = pd.Series(ids).reset_index(drop=True)
        if times is not None:
            split = split_out_of_time(ids, pd.Series(times).reset_index(drop=True), groups)
            return split.assignment, {**split.boundaries, "method": "time_grouped_by_id"}
        assignment = customer_groups(ids, groups).astype(object)
        info: dict[str, Any] = {"method": "random_grouped_by_id"}
    elif times is not None:
        order = np.argsort(pd.to_datetime(times).to_numpy("datetime64[us]"), kind="stable")
        n_test = round(n * spec.test)
        n_valid = round(n * spec.validation)
        assignment[order[n - n_test :]] = "test"
        assignment[order[n - n_test - n_valid : n - n_test]] = "validation"
        ordered = pd.to_datetime(times).iloc[order]
        info = {
            "method": "time",
            "train_to": str(ordered.iloc[max(0, n - n_test - n_valid - 1)]),
            "test_from": str(ordered.iloc[min(n - 1, n - n_test)]),
        }
    else:
        index = np.arange(n)
        counts = np.bincount(y)
        stratify = y if counts[counts > 0].min() >= 3 else None
        rest, test = train_test_split(
            index, test_size=spec.test, random_state=spec.seed, stratify=stratify
        )
        share = spec.validation / (1 - spec.test)
        _train, valid = train_test_split(
            rest,
            test_size=share,
            random_state=spec.seed,
            stratify=None if stratify is None else y[rest],
        )
        assignment[valid] = "validation"
        assignment[test] = "test"
        info = {"method": "stratified_random" if stratify is not None else "random"}
    info.update(validation=spec.validation, test=spec.test, seed=spec.seed)
    return assignment.astype(str), info
