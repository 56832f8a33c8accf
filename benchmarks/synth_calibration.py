"""How hard the synthetic world is: churn base rate, best possible churn ROC AUC, level and
questionnaire-band marginals, planted misstatements. Numbers a model can later be held to.

    .venv/bin/python benchmarks/synth_calibration.py [--customers 20000] [--seed 7]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from suitability.data.synth import CHURN_HORIZON_DAYS, generate

ACTIVE_DAYS = 180  # "active at t": invested in the 180 days before t


def churn_rows(data: Path) -> pd.DataFrame:
    """Ground-truth rows of active customers with their realised label (no invest in (t, t+90d])."""
    events = pd.read_parquet(data / "events", columns=["customer_id", "event_time", "event_type"])
    invest = events.loc[events["event_type"] == "invest", ["customer_id", "event_time"]]
    truth = pd.read_parquet(data / "ground_truth")
    truth = truth[truth["p_churn"].notna()]
    out = []
    for snapshot, rows in truth.groupby("snapshot"):
        before = invest[
            (invest["event_time"] > snapshot - pd.Timedelta(days=ACTIVE_DAYS))
            & (invest["event_time"] <= snapshot)
        ]
        after = invest[
            (invest["event_time"] > snapshot)
            & (invest["event_time"] <= snapshot + pd.Timedelta(days=CHURN_HORIZON_DAYS))
        ]
        active = rows[rows["customer_id"].isin(set(before["customer_id"]))]
        out.append(active.assign(churned=~active["customer_id"].isin(set(after["customer_id"]))))
    return pd.concat(out, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        summary = generate(data, args.customers, args.seed)
        rows = churn_rows(data)
        reviews = pd.read_parquet(data / "risk_reviews")
        truth = pd.read_parquet(
            data / "ground_truth", columns=["customer_id", "misstatement"]
        ).drop_duplicates("customer_id")
    levels = reviews["confirmed_level"].value_counts(normalize=True).sort_index()
    misstated = truth["misstatement"].value_counts(normalize=True)
    print(f"| measure ({args.customers:,} customers, seed {args.seed}) | value |")
    print("|---|---:|")
    print(f"| events per customer | {summary.rows['events'] / args.customers:.1f} |")
    print(f"| active (customer, snapshot) rows | {len(rows):,} |")
    print(f"| churn label rate among active rows | {rows['churned'].mean():.1%} |")
    print(f"| mean true p_churn on those rows | {rows['p_churn'].mean():.1%} |")
    print(
        f"| best possible churn ROC AUC (true p_churn vs realised label) | {roc_auc_score(rows['churned'], rows['p_churn']):.3f} |"
    )
    print(f"| confirmed levels C1…C5 | {' / '.join(f'{v:.1%}' for v in levels)} |")
    print(
        f"| understate / overstate shares | {misstated.get('understate', 0):.1%} / {misstated.get('overstate', 0):.1%} |"
    )


if __name__ == "__main__":
    main()
