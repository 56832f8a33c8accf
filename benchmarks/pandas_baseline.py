"""The benchmark baselines: what a data scientist writes in pandas, fast and vectorised.

- `pandas_groupby_counts`: the ten-minute script — counts and amounts per event type for each
  look-back window, one `groupby` per window. It computes a fraction of the behaviour features
  and validates nothing: the floor a feature pipeline is measured against.
- `pandas_behaviour_features`: the same behaviour features as the kernel (counts, amounts,
  active days, risk and term mix, ratios, channel shares, recency, trends, net holdings), the
  straightforward vectorised way: one pass of groupbys per window over categorical columns, no
  Python loop over customers or chunks. A test checks it computes the kernel's numbers.

Both take the whole events table at once (read with `read_events`: text columns as pandas
categoricals, as a good engineer reads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from suitability.specs import R_LEVELS, Specs

DAY = pd.Timedelta(days=1)
COLUMNS = [
    "customer_id",
    "event_time",
    "event_type",
    "amount",
    "product_risk",
    "term_days",
    "channel",
]
TEXT = ["customer_id", "event_type", "product_risk", "channel"]


def read_events(path: Path | str, columns: Sequence[str] = COLUMNS) -> pd.DataFrame:
    """An events parquet file or folder of parts, text columns read as categoricals."""
    columns = list(columns)
    text = [c for c in TEXT if c in columns]
    return pq.read_table(path, columns=columns, read_dictionary=text).to_pandas()


def pandas_groupby_counts(
    events: pd.DataFrame, t: pd.Timestamp, windows: Sequence[int]
) -> pd.DataFrame:
    """Counts and amounts per (customer, event type) in each window (t - w days, t]."""
    seen = events[events["event_time"] <= t]
    parts = []
    for w in windows:
        win = seen[seen["event_time"] > t - w * DAY]
        g = win.groupby(["customer_id", "event_type"], observed=True)["amount"].agg(["size", "sum"])
        g = g.unstack(fill_value=0)
        g.columns = [f"{'n' if stat == 'size' else 'amt'}_{kind}_{w}d" for stat, kind in g.columns]
        parts.append(g)
    return pd.concat(parts, axis=1)


def pandas_behaviour_features(
    events: pd.DataFrame, customer_ids: pd.Index, t: pd.Timestamp, specs: Specs
) -> pd.DataFrame:
    """Behaviour features at `t` for `customer_ids`, one row per customer (index customer_id)."""
    b = specs.behaviour
    index = pd.Index(customer_ids, name="customer_id")
    events = events.astype({c: "category" for c in TEXT if events[c].dtype != "category"})
    out: dict[str, pd.Series] = {}
    seen = events[events["event_time"] <= t]
    risk_number = {r: i + 1 for i, r in enumerate(R_LEVELS)}
    high = R_LEVELS.index(b.high_risk_from) + 1

    def per_customer(series: pd.Series, fill: float | None = None) -> pd.Series:
        s = series.reindex(index)
        return s.fillna(fill) if fill is not None else s

    def wide(series: pd.Series, columns: Sequence[str], fill: float) -> pd.DataFrame:
        """A (customer, category) series as one column per category, one row per customer."""
        table = series.unstack(fill_value=fill) if len(series) else pd.DataFrame(index=index)
        return table.reindex(index=index, columns=list(columns), fill_value=fill).fillna(fill)

    for w in b.windows:
        win = seen[seen["event_time"] > t - w * DAY]
        by_type = win.groupby(["customer_id", "event_type"], observed=True)["amount"]
        counts = wide(by_type.size(), list(b.event_types), 0)
        amounts = wide(by_type.sum(), list(b.event_types), 0.0)
        for name in b.event_types:
            out[f"n_{name}_{w}d"] = counts[name].astype("int64")
        for name in b.monetary_event_types:
            out[f"amt_{name}_{w}d"] = amounts[name]
        days = win[["customer_id"]].assign(day=win["event_time"].dt.floor("D")).drop_duplicates()
        out[f"active_days_{w}d"] = per_customer(
            days.groupby("customer_id", observed=True).size(), 0
        ).astype("int64")
        inv = win[win["event_type"] == "invest"]
        risk = inv["product_risk"].map(risk_number).astype("float64")
        invest = pd.DataFrame(
            {
                "customer_id": inv["customer_id"],
                "amount": inv["amount"],
                "high": inv["amount"].where(risk >= high, 0.0),
                "weighted": risk * inv["amount"],
                "known": inv["amount"].where(risk.notna()),
                "term": inv["term_days"].astype("float64"),
            }
        )
        g = invest.groupby("customer_id", observed=True).agg(
            amount=("amount", "sum"),
            high=("high", "sum"),
            weighted=("weighted", "sum"),
            known=("known", "sum"),
            term=("term", "mean"),
        )
        g = g.reindex(index)
        out[f"invest_share_high_risk_{w}d"] = (g["high"] / g["amount"]).where(g["amount"] > 0)
        out[f"invest_avg_risk_{w}d"] = (g["weighted"] / g["known"]).where(g["known"] > 0)
        out[f"invest_avg_term_{w}d"] = g["term"]
        redeemed = out[f"amt_redeem_{w}d"]
        total = out[f"amt_invest_{w}d"] + redeemed
        out[f"redeem_ratio_{w}d"] = (redeemed / total).where(total > 0)
        withdrawn = out[f"amt_withdraw_{w}d"]
        moved = out[f"amt_deposit_{w}d"] + withdrawn
        out[f"withdraw_ratio_{w}d"] = (withdrawn / moved).where(moved > 0)
        channels = wide(
            win.groupby(["customer_id", "channel"], observed=True).size(), list(b.channels), 0
        )
        n_events = counts.sum(axis=1)
        for c in b.channels:
            out[f"channel_share_{c}_{w}d"] = (channels[c] / n_events).where(n_events > 0)
    last = seen.groupby(["customer_id", "event_type"], observed=True)["event_time"].max()
    last = last.unstack() if len(last) else pd.DataFrame(index=index)
    last = last.reindex(index=index, columns=list(b.recency_event_types))
    for name in b.recency_event_types:
        out[f"days_since_{name}"] = (t - last[name]) / DAY
    short, long = b.trend.short_days, b.trend.long_days
    logins_long = out[f"n_login_{long}d"]
    out["trend_login"] = ((out[f"n_login_{short}d"] / short) / (logins_long / long)).where(
        logins_long > 0
    )
    invest_long = out[f"amt_invest_{long}d"]
    out["trend_invest_amount"] = (
        (out[f"amt_invest_{short}d"] / short) / (invest_long / long)
    ).where(invest_long > 0)
    flows = seen[seen["event_type"].isin(["invest", "redeem"])]
    signed = flows["amount"].where(flows["event_type"] == "invest", -flows["amount"])
    out["net_holdings"] = per_customer(
        signed.groupby(flows["customer_id"], observed=True).sum(), 0.0
    )
    return pd.DataFrame(out, index=index)


__all__ = ["COLUMNS", "pandas_behaviour_features", "pandas_groupby_counts", "read_events"]
