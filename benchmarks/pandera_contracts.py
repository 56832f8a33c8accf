"""The contract checks written with pandera, the baseline of the contract benchmark: the same
column checks as `data/schema.py` declares (types, nulls, allowed values, bounds, identifier
syntax, customer references), the unique keys, and the row rules as vectorised pandas
DataFrame checks — how the project checked batches before the arrow engine (commit 572e8fa).

`pandera_schema(table, specs, customer_ids)` builds the schema; `validate(frame, schema)`
returns the number of failure cases (0: clean).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pandera
from pandera.errors import SchemaErrors

from suitability.data.contracts import IDENTIFIER_RULE, allowed_rule, max_rule
from suitability.data.schema import (
    IDENTIFIER,
    RULE_REFERENCE,
    Column,
    Combination,
    Ordered,
    RequiredWhen,
    TableSchema,
)
from suitability.specs import Specs

_DTYPES = {
    "string": pd.StringDtype("pyarrow", na_value=np.nan),
    "timestamp": "datetime64[us]",
    "date": "datetime64[us]",
    "float": "float64",
    "int": "Int64",
}


def _column(column: Column, specs: Specs, customer_ids: pd.Index | None) -> pandera.Column:
    checks = []
    if column.allowed is not None:
        allowed = column.allowed(specs)
        checks.append(pandera.Check.isin(sorted(allowed), error=allowed_rule(allowed)))
    if column.type == "float":
        checks.append(pandera.Check(lambda s: np.isfinite(s), error="must be a finite number"))
    if column.min is not None:
        checks.append(pandera.Check.ge(column.min, error=f"must be ≥ {column.min:g}"))
    if column.max is not None:
        checks.append(pandera.Check.le(column.max, error=max_rule(column.max)))
    reference = column.name == "customer_id" and customer_ids is not None
    if column.identifier and not reference:
        checks.append(pandera.Check.str_matches(IDENTIFIER, error=IDENTIFIER_RULE))
    if reference:
        checks.append(pandera.Check.isin(customer_ids, error=RULE_REFERENCE))
    return pandera.Column(
        _DTYPES[column.type], checks=checks, nullable=column.nullable, required=not column.optional
    )


def _row_check(rule: object, specs: Specs) -> pandera.Check:
    """A declared row rule as a pandas DataFrame check (true where a row keeps it)."""
    if isinstance(rule, Ordered):
        later, earlier = rule.later, rule.earlier

        def ordered(df: pd.DataFrame) -> pd.Series:
            broken = df[earlier] >= df[later] if rule.strict else df[earlier] > df[later]
            return ~broken.fillna(False)

        return pandera.Check(ordered, error=rule.rule)
    if isinstance(rule, RequiredWhen):
        values = sorted(rule.values(specs))

        def required(df: pd.DataFrame) -> pd.Series:
            return ~(df[rule.when].isin(values) & df[rule.column].isna())

        return pandera.Check(required, error=rule.rule)
    assert isinstance(rule, Combination)
    allowed = pd.MultiIndex.from_tuples(sorted(rule.allowed(specs)), names=list(rule.columns))

    def combined(df: pd.DataFrame) -> pd.Series:
        keys = pd.MultiIndex.from_frame(df[list(rule.columns)].astype(object))
        present = df[list(rule.columns)].notna().all(axis=1)
        return ~present | pd.Series(keys.isin(allowed), index=df.index)

    return pandera.Check(combined, error=rule.rule)


def pandera_schema(
    table: TableSchema, specs: Specs, customer_ids: pd.Index | None = None
) -> pandera.DataFrameSchema:
    ids = customer_ids if table.references_customers else None
    return pandera.DataFrameSchema(
        {c.name: _column(c, specs, ids) for c in table.columns},
        checks=[_row_check(r, specs) for r in table.row_rules],
        unique=list(table.unique) or None,
        strict=False,
        coerce=False,
    )


def validate(frame: pd.DataFrame, schema: pandera.DataFrameSchema) -> int:
    """Failure cases pandera finds in `frame` (all checks, lazily)."""
    try:
        schema.validate(frame, lazy=True, inplace=True)
    except SchemaErrors as exc:
        return len(exc.failure_cases)
    return 0
