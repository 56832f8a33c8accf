"""Features for one customer from an in-memory bundle (profile, questionnaire answers, events,
interview tags): the path serving takes for every request, through the same kernel and the
same data contracts as the batch builder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from suitability.data.contracts import ProblemLog, TableValidator
from suitability.data.schema import (
    CUSTOMERS,
    EVENTS,
    INTERVIEW_TAGS,
    QUESTIONNAIRE_RESPONSES,
    TableSchema,
)
from suitability.features.kernel import FeatureInputs, compute_features
from suitability.specs import Specs

Record = Mapping[str, Any]


@dataclass(frozen=True)
class CustomerBundle:
    """Everything known about one customer, as plain records with the raw tables' columns.

    `customer_id` may be left out of answers, events and tags (it is the profile's); times may
    be datetimes or ISO strings. Facts after the as-of time may be included: they are ignored.
    """

    profile: Record
    answers: Sequence[Record] = field(default_factory=tuple)
    events: Sequence[Record] = field(default_factory=tuple)
    tags: Sequence[Record] = field(default_factory=tuple)


def _table(records: Sequence[Record], schema: TableSchema, customer_id: Any) -> pa.Table:
    columns: dict[str, list[Any]] = {}
    present = {k for r in records for k in r}
    for column in schema.columns:
        if column.optional and column.name not in present:
            continue
        if column.name == "customer_id":
            columns["customer_id"] = [r.get("customer_id", customer_id) for r in records]
        else:
            columns[column.name] = [r.get(column.name) for r in records]
    arrays = {}
    for name, values in columns.items():
        # Values already of the declared type (what a validated request holds) go in as typed
        # arrow arrays, as a Parquet file's would; anything else as text, which the contract
        # parses per the declared type exactly as it does a CSV file's.
        typed = _typed(values, schema.column(name).type)
        arrays[name] = (
            typed
            if typed is not None
            else pa.array([None if _missing(v) else _text(v) for v in values], type=pa.string())
        )
    return pa.table(arrays) if arrays else pa.table({})


#: The exact Python types (one per column; ints may join floats) taken as typed values of
#: each declared column type.
_NATIVE: dict[str, tuple[frozenset[type], ...]] = {
    "string": (frozenset({str}),),
    "timestamp": (frozenset({datetime}), frozenset({date})),
    "date": (frozenset({datetime}), frozenset({date})),
    "float": (frozenset({float}), frozenset({int}), frozenset({int, float})),
    "int": (frozenset({int}),),
}


def _typed(values: Sequence[Any], kind: str) -> pa.Array | None:
    """`values` as an arrow array when, apart from None, they are all of one plain Python type
    of the declared type (times naive; NaN counts as missing, as in text); None otherwise
    (mixed dates and datetimes, subclasses such as pandas timestamps or numpy numbers, …)."""
    types = frozenset(map(type, values)) - {type(None)}
    if types and types not in _NATIVE[kind]:
        return None
    if types == {datetime} and any(v.tzinfo is not None for v in values if v is not None):
        return None
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return None


def _missing(value: Any) -> bool:
    """None, NaN, NaT and pd.NA all mean "no value" (records often come from DataFrames)."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _text(value: Any) -> str:
    if hasattr(value, "isoformat"):  # datetime, date, pd.Timestamp
        return value.isoformat()
    return str(value)


def bundle_inputs(bundle: CustomerBundle, specs: Specs) -> FeatureInputs:
    """Validate a bundle against the data contracts (PII masked on the way) and return the
    kernel's canonical inputs. Raises `ContractError` naming the table, column, row and rule."""
    customer_id = bundle.profile.get("customer_id")
    log = ProblemLog()
    ids = pa.array([None if customer_id is None else str(customer_id)], type=pa.large_string())
    frames = {}
    for schema, records in (
        (CUSTOMERS, [bundle.profile]),
        (QUESTIONNAIRE_RESPONSES, bundle.answers),
        (EVENTS, bundle.events),
        (INTERVIEW_TAGS, bundle.tags),
    ):
        foreign = [
            i + 1
            for i, r in enumerate(records)
            if str(r.get("customer_id", customer_id)) != str(customer_id)
        ]
        if schema is not CUSTOMERS and foreign:
            raise ValueError(
                f"{schema.name}: rows {foreign[:5]} belong to another customer than {customer_id!r}"
            )
        validator = TableValidator(schema, specs, ids)
        frame, findings = validator.validate_batch(_table(records, schema, customer_id))
        log.extend(schema.name, findings)
        log.extend(schema.name, validator.check_whole(frame))
        frames[schema.name] = frame.reset_index(drop=True)
    log.raise_if_any()
    return FeatureInputs(
        customers=frames["customers"],
        questionnaire=frames["questionnaire_responses"],
        events=frames["events"],
        tags=frames["interview_tags"],
    )


def customer_features(
    bundle: CustomerBundle,
    as_of: pd.Timestamp | datetime | date | str | Sequence[pd.Timestamp | datetime | date | str],
    specs: Specs,
) -> pd.DataFrame:
    """One feature row per as-of time for the bundle's customer (same columns and dtypes as the
    batch builder's output). An as-of time before the customer registered is refused, as the
    batch builder gives such a customer no row."""
    return features_of(bundle_inputs(bundle, specs), as_of, specs)


def features_of(
    inputs: FeatureInputs,
    as_of: pd.Timestamp | datetime | date | str | Sequence[pd.Timestamp | datetime | date | str],
    specs: Specs,
) -> pd.DataFrame:
    """`customer_features` for inputs already validated by `bundle_inputs`."""
    single = isinstance(as_of, str | date | datetime | pd.Timestamp | np.datetime64)
    times = pd.DatetimeIndex(pd.to_datetime([as_of] if single else list(as_of)))
    registered = inputs.customers["registered_at"].iloc[0]
    if (times < registered).any():
        raise ValueError(
            f"as-of time {times.min()} is before the customer registered ({registered})"
        )
    queries = pd.DataFrame(
        {
            "customer_id": inputs.customers["customer_id"].iloc[0],
            "as_of": times.astype("datetime64[us]"),
        }
    )
    return compute_features(inputs, queries, specs)
