"""The verdicts a monitoring check can reach, and how several combine into one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

#: ok / warn / alert; "insufficient": too few rows or labels for a verdict; "not_logged": the
#: training run logged no value to compare a realised metric with.
Status = Literal["ok", "warn", "alert", "insufficient", "not_logged"]
#: Least to most severe: a check without a verdict never outweighs one with a verdict.
SEVERITY: dict[str, int] = {"not_logged": 0, "insufficient": 0, "ok": 1, "warn": 2, "alert": 3}


def worst(statuses: Iterable[str]) -> Status:
    """The most severe of `statuses`; "ok" when there are none."""
    return max(statuses, key=SEVERITY.__getitem__, default="ok")  # type: ignore[return-value]
