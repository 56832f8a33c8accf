"""Assess one customer of a data folder: read their facts, build their features through the
single-customer path the service uses, explain both models and, for a product, decide."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from suitability.data.io import event_time_range, load_table, read_customer_records
from suitability.explain.assessment import CustomerCase, Explainer, Product, assess_customer
from suitability.features.bundle import CustomerBundle, bundle_inputs
from suitability.features.online import Bundle
from suitability.models.rules import RuleTable
from suitability.specs import Specs

INITIATORS = ("investor", "platform")


def default_as_of(data_dir: Path | str) -> pd.Timestamp:
    """A data folder is a snapshot: by default, assess as of its last event."""
    return event_time_range(data_dir)[1]


def find_product(data_dir: Path | str, product_id: str, specs: Specs) -> Product:
    """The product's R-level, term and category from the folder's products table."""
    products = load_table(data_dir, "products", specs)
    hits = products[products["product_id"].astype(str) == str(product_id)]
    if hits.empty:
        sample = ", ".join(products["product_id"].astype(str).head(3))
        raise ValueError(
            f"product {product_id!r} is not in the products table of {data_dir} "
            f"({len(products):,} products, e.g. {sample})"
        )
    row = hits.iloc[0]
    term = row.get("term_days")
    return Product(
        product_id=str(row["product_id"]),
        risk_level=str(row["risk_level"]),
        category=str(row.get("category") or ""),
        term_days=None if pd.isna(term) else int(term),
    )


def customer_case(
    data_dir: Path | str,
    customer_id: str,
    risk: Explainer,
    churn: Explainer,
    specs: Specs,
    rules: RuleTable,
    *,
    as_of: pd.Timestamp | str | None = None,
    product_id: str | None = None,
    initiated_by: str | None = None,
) -> CustomerCase:
    """Everything said about `customer_id` as of `as_of` (default: the data's last event)."""
    if initiated_by is not None and initiated_by not in INITIATORS:
        raise ValueError(
            f"initiated_by must be one of {', '.join(INITIATORS)}, not {initiated_by!r}"
        )
    product = find_product(data_dir, product_id, specs) if product_id is not None else None
    when = pd.Timestamp(as_of) if as_of is not None else default_as_of(data_dir)
    records = read_customer_records(data_dir, customer_id)
    bundle = CustomerBundle(
        profile=records["customers"][0],
        answers=records["questionnaire_responses"],
        events=records["events"],
        tags=records["interview_tags"],
    )
    # Records read from files may hold text: the batch contracts parse and check them, then
    # the per-request path computes, explains and decides, as the service does.
    inputs = bundle_inputs(bundle, specs)
    registered = inputs.customers["registered_at"].iloc[0]
    if when < registered:
        raise ValueError(f"as-of time {when} is before the customer registered ({registered})")
    return assess_customer(
        Bundle.of_inputs(inputs),
        when,
        risk,
        churn,
        specs,
        rules,
        product=product,
        initiated_by=initiated_by or ("investor" if product is not None else None),
    )
