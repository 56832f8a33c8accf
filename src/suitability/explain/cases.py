"""Assess one customer of a data folder: read their facts, build their features through the
single-customer path the service uses, explain both models and, for a product, decide."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class CaseInputs:
    """One customer's facts read from a data folder and checked, the as-of time and the product:
    everything an assessment needs but the models (so bad arguments fail before models load)."""

    bundle: Bundle
    when: pd.Timestamp
    product: Product | None
    initiated_by: str | None


def parse_as_of(value: pd.Timestamp | str, option: str = "--as-of") -> pd.Timestamp:
    """A naive platform-local date or time; a message naming `option` for anything else."""
    if isinstance(value, pd.Timestamp):
        when = value
    else:
        try:
            when = pd.Timestamp(str(value).strip())
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"{option} {value!r} is not a date or time (e.g. 2026-03-01 or "
                f"2026-03-01T09:30): {error}"
            ) from None
    if pd.isna(when):
        raise ValueError(f"{option} {value!r} is not a date or time")
    if when.tzinfo is not None:
        raise ValueError(
            f"{option} {value!r} has a time zone; give the platform's local time without one"
        )
    return when


def read_case(
    data_dir: Path | str,
    customer_id: str,
    specs: Specs,
    *,
    as_of: pd.Timestamp | str | None = None,
    product_id: str | None = None,
    initiated_by: str | None = None,
) -> CaseInputs:
    """Read and check `customer_id`'s facts, the as-of time (default: the data's last event;
    not before the customer registered) and the product."""
    if initiated_by is not None and initiated_by not in INITIATORS:
        raise ValueError(
            f"initiated_by must be one of {', '.join(INITIATORS)}, not {initiated_by!r}"
        )
    given = parse_as_of(as_of) if as_of is not None else None
    product = find_product(data_dir, product_id, specs) if product_id is not None else None
    when = given if given is not None else default_as_of(data_dir)
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
    return CaseInputs(
        bundle=Bundle.of_inputs(inputs),
        when=when,
        product=product,
        initiated_by=initiated_by or ("investor" if product is not None else None),
    )


def assess_case(
    case: CaseInputs, risk: Explainer, churn: Explainer, specs: Specs, rules: RuleTable
) -> CustomerCase:
    """Both models' answers and reasons for a case read by `read_case` (and, given a product,
    the decision)."""
    return assess_customer(
        case.bundle,
        case.when,
        risk,
        churn,
        specs,
        rules,
        product=case.product,
        initiated_by=case.initiated_by,
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
    case = read_case(
        data_dir,
        customer_id,
        specs,
        as_of=as_of,
        product_id=product_id,
        initiated_by=initiated_by,
    )
    return assess_case(case, risk, churn, specs, rules)
