"""The benchmark baseline: the behaviour features written the straightforward pandas way
(filter by time, group by customer, pivot), one as-of date at a time.

It is what a data scientist would write first; the benchmark times it against the feature
kernel on the same events, and a test checks that both compute the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from suitability.specs import R_LEVELS, Specs

DAY = pd.Timedelta(days=1)


def pandas_behaviour_features(
    events: pd.DataFrame, customer_ids: pd.Index, t: pd.Timestamp, specs: Specs
) -> pd.DataFrame:
    """Behaviour features at `t` for `customer_ids`, one row per customer (index customer_id)."""
    b = specs.behaviour
    # Columns go into a dict and become a frame once at the end (inserting into a frame one
    # column at a time fragments it).
    index = pd.Index(customer_ids, name="customer_id")
    out: dict[str, pd.Series | float] = {}
    seen = events[events["event_time"] <= t]
    risk_number = {r: i + 1 for i, r in enumerate(R_LEVELS)}
    high = R_LEVELS.index(b.high_risk_from) + 1

    def per_customer(series: pd.Series, fill: float | None = None) -> pd.Series:
        s = series.reindex(index)
        return s.fillna(fill) if fill is not None else s

    for w in b.windows:
        win = seen[seen["event_time"] > t - w * DAY]
        counts = win.groupby(["customer_id", "event_type"]).size().unstack(fill_value=0)
        amounts = win.groupby(["customer_id", "event_type"])["amount"].sum().unstack(fill_value=0.0)
        for name in b.event_types:
            out[f"n_{name}_{w}d"] = (
                per_customer(counts[name], 0).astype("int64") if name in counts else 0
            )
        for name in b.monetary_event_types:
            out[f"amt_{name}_{w}d"] = per_customer(amounts[name], 0.0) if name in amounts else 0.0
        days = win["event_time"].dt.floor("D").groupby(win["customer_id"]).nunique()
        out[f"active_days_{w}d"] = per_customer(days, 0).astype("int64")
        inv = win[win["event_type"] == "invest"].assign(
            risk=lambda d: d["product_risk"].map(risk_number)
        )
        g = inv.groupby("customer_id")
        invested = per_customer(g["amount"].sum())
        high_amount = per_customer(
            inv[inv["risk"] >= high].groupby("customer_id")["amount"].sum(), 0.0
        )
        out[f"invest_share_high_risk_{w}d"] = (high_amount / invested).where(invested > 0)
        weighted = per_customer((inv["risk"] * inv["amount"]).groupby(inv["customer_id"]).sum())
        out[f"invest_avg_risk_{w}d"] = (weighted / invested).where(invested > 0)
        out[f"invest_avg_term_{w}d"] = per_customer(g["term_days"].mean()).astype("float64")
        redeemed = out[f"amt_redeem_{w}d"]
        total = out[f"amt_invest_{w}d"] + redeemed
        out[f"redeem_ratio_{w}d"] = (redeemed / total).where(total > 0)
        withdrawn = out[f"amt_withdraw_{w}d"]
        moved = out[f"amt_deposit_{w}d"] + withdrawn
        out[f"withdraw_ratio_{w}d"] = (withdrawn / moved).where(moved > 0)
        shares = pd.crosstab(win["customer_id"], win["channel"], normalize="index")
        for c in b.channels:
            out[f"channel_share_{c}_{w}d"] = per_customer(shares[c], 0.0) if c in shares else 0.0
        no_events = per_customer(win.groupby("customer_id").size(), 0) == 0
        for c in b.channels:
            out[f"channel_share_{c}_{w}d"] = pd.Series(
                out[f"channel_share_{c}_{w}d"], index=index
            ).mask(no_events)
    last = seen.groupby(["customer_id", "event_type"])["event_time"].max().unstack()
    for name in b.recency_event_types:
        out[f"days_since_{name}"] = (t - per_customer(last[name])) / DAY if name in last else np.nan
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
    out["net_holdings"] = per_customer(signed.groupby(flows["customer_id"]).sum(), 0.0)
    return pd.DataFrame(
        {k: (v if isinstance(v, pd.Series) else pd.Series(v, index=index)) for k, v in out.items()},
        index=index,
    )
