"""Request bodies built from a data folder's records: what the matching service would send for
a customer at a time. The examples in `serving/examples/`, the parity test and the benchmark
are made with it, so they send exactly what the batch pipeline reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd

from suitability.data.schema import (
    CUSTOMERS,
    EVENTS,
    INTERVIEW_TAGS,
    QUESTIONNAIRE_RESPONSES,
    TableSchema,
)

#: The longest look-back window of the default behaviour spec: older events change nothing.
DEFAULT_WINDOW_DAYS = 1095


def _json_value(value: Any, kind: str) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if kind == "date":
        return pd.Timestamp(value).date().isoformat()
    if kind == "timestamp":
        return pd.Timestamp(value).isoformat()
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    return str(value)


def _record(row: Mapping[str, Any], schema: TableSchema, keep_id: bool) -> dict[str, Any]:
    out = {}
    for column in schema.columns:
        if column.name == "customer_id" and not keep_id:
            continue
        if column.name not in row:
            continue
        value = _json_value(row[column.name], column.type)
        if value is None and column.optional:
            continue
        out[column.name] = value
    return out


def _time(value: Any) -> pd.Timestamp:
    return pd.Timestamp(value)


def request_body(
    records: Mapping[str, Sequence[Mapping[str, Any]]],
    as_of: datetime | date | str,
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    product: Mapping[str, Any] | None = None,
    initiated_by: str | None = None,
) -> dict[str, Any]:
    """The JSON body for one customer's records (as `data.io.read_customer_records` returns
    them) as of `as_of`: every questionnaire submission and interview tag known by then, and the
    events of the `window_days` before it. With `product` (product_id, risk_level, …) and
    `initiated_by`, a `/suitability` body."""
    when = pd.Timestamp(as_of)
    since = when - pd.Timedelta(days=window_days)
    (profile,) = records["customers"]
    body: dict[str, Any] = {
        "profile": _record(profile, CUSTOMERS, keep_id=True),
        "answers": [
            _record(r, QUESTIONNAIRE_RESPONSES, keep_id=False)
            for r in records["questionnaire_responses"]
            if _time(r["submitted_at"]) <= when
        ],
        "events": [
            _record(r, EVENTS, keep_id=False)
            for r in records["events"]
            if since < _time(r["event_time"]) <= when
        ],
        "tags": [
            _record(r, INTERVIEW_TAGS, keep_id=False)
            for r in records["interview_tags"]
            if _time(r["recorded_at"]) <= when
        ],
        "as_of": when.isoformat(),
    }
    if product is not None:
        body["product"] = dict(product)
        body["initiated_by"] = initiated_by or "investor"
    return body
