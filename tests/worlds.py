"""Generated worlds changed the way real platforms change, for the monitoring tests: the world as it
was known on a day (what a model was trained on), a world whose amounts and channel mix shift after
a date, and one whose reasons for leaving change after a date. Each writes a new data folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: The time at which each raw table's rows become known.
KNOWN_AT = {
    "customers": "registered_at",
    "events": "event_time",
    "questionnaire_responses": "submitted_at",
    "interview_tags": "recorded_at",
    "risk_reviews": "reviewed_at",
}


def known_at(data: Path, out: Path, until: pd.Timestamp) -> Path:
    """A copy of `data` holding only the rows known before `until`: the world a model trained
    on that day saw."""
    shutil.copytree(data, out)
    for table, column in KNOWN_AT.items():
        for part in sorted((out / table).glob("*.parquet")):
            rows = pq.read_table(part)
            keep = pc.less(rows[column], pc.cast(until.to_datetime64(), rows[column].type))
            pq.write_table(rows.filter(keep), part)
    shutil.rmtree(out / "ground_truth")
    return out


def _edit_events(data: Path, out: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    shutil.copytree(data, out)
    for part in sorted((out / "events").glob("*.parquet")):
        events = pq.read_table(part)
        edited = edit(events.to_pandas())
        pq.write_table(
            pa.Table.from_pandas(edited, schema=events.schema, preserve_index=False), part
        )
    shutil.rmtree(out / "ground_truth")  # no longer the truth of these events
    return out


def amounts_and_channels_shift(data: Path, out: Path, since: pd.Timestamp) -> Path:
    """A copy of `data` whose events from `since` on carry three times their amount and arrive
    through an advisor where they arrived through the app."""

    def edit(events: pd.DataFrame) -> pd.DataFrame:
        later = events["event_time"] >= since
        events.loc[later, "amount"] = events.loc[later, "amount"] * 3
        events.loc[later & (events["channel"] == "app"), "channel"] = "advisor"
        return events

    return _edit_events(data, out, edit)


def leavers_change(data: Path, out: Path, since: pd.Timestamp, tier: str, share: float) -> Path:
    """A copy of `data` where, from `since` on, a competitor takes `share` of the customers in
    city tier `tier`: they invest no more. Who leaves no longer follows the drivers the churn
    model learned (activity, complaints, satisfaction) but a trait it found irrelevant."""
    customers = pd.concat(
        pd.read_parquet(part, columns=["customer_id", "city_tier"])
        for part in sorted((data / "customers").glob("*.parquet"))
    )
    rng = np.random.default_rng(2026)
    taken = set(
        customers.loc[
            (customers["city_tier"] == tier) & (rng.random(len(customers)) < share), "customer_id"
        ]
    )

    def edit(events: pd.DataFrame) -> pd.DataFrame:
        gone = (
            (events["event_time"] >= since)
            & events["customer_id"].isin(taken)
            & (events["event_type"] == "invest")
        )
        return events[~gone]

    return _edit_events(data, out, edit)


def activity_falls(data: Path, out: Path, since: pd.Timestamp, keep: float) -> Path:
    """A copy of `data` where, from `since` on, investors log in, look at products and invest
    less: each such event is kept with probability `keep` (a market downturn)."""
    rng = np.random.default_rng(2027)

    def edit(events: pd.DataFrame) -> pd.DataFrame:
        dropped = (
            (events["event_time"] >= since)
            & events["event_type"].isin(["login", "product_view", "invest", "deposit"])
            & (rng.random(len(events)) >= keep)
        )
        return events[~dropped]

    return _edit_events(data, out, edit)
