"""How much of the gap to the best possible is reachable at all: train each model as usual, then
again with the generator's hidden variables added as columns (same split, same trainer). A
model given the truth it cannot observe bounds what better features could ever buy.

    .venv/bin/python benchmarks/oracle_gap.py [--customers 60000] [--seed 7]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from suitability.data.synth import generate
from suitability.models.estimators import BinaryLGBM, FeatureLayout, OrdinalLGBM
from suitability.models.spec import load_model_spec
from suitability.models.split import split_out_of_time
from suitability.models.train import evaluate_predictions, label_codes
from suitability.models.training_table import build_training_table
from suitability.specs import load_specs

ORACLES = {
    "risk-level": {
        "+ true stated tolerance": ["o_stated"],
        "+ true stated tolerance and misstatement flag": ["o_stated", "o_misstated"],
        "+ true risk tolerance (sanity check)": ["o_risk_tolerance"],
    },
    "churn": {
        "+ true engagement, satisfaction, quit status, misstatement": [
            "o_engagement",
            "o_satisfaction",
            "o_quit",
            "o_misstated",
        ],
    },
}


def _with_truth(table: pd.DataFrame, truth: pd.DataFrame, model: str) -> pd.DataFrame:
    latents = [
        "risk_tolerance",
        "stated_shift",
        "misstatement",
        "engagement",
        "satisfaction",
        "quit",
    ]
    g = truth[["customer_id", "snapshot", *latents]].rename(columns={"snapshot": "as_of"})
    g["as_of"] = g["as_of"].astype(table["as_of"].dtype)
    g["customer_id"] = g["customer_id"].astype(table["customer_id"].dtype)
    g = g.rename(columns={c: f"o_{c}" for c in latents})
    if model == "churn":
        out = table.merge(g, on=["customer_id", "as_of"], how="left")
    else:  # risk tolerance and misstatement do not move over time
        out = table.merge(g.drop_duplicates("customer_id").drop(columns="as_of"), on="customer_id")
    out["o_stated"] = out["o_risk_tolerance"] + out["o_stated_shift"]
    out["o_misstated"] = (out["o_misstatement"] != "none").astype(float)
    out["o_quit"] = out["o_quit"].astype(float)
    return out


def _fit(table: pd.DataFrame, model: str, extra: list[str], specs) -> tuple[float, float]:
    spec = load_model_spec(model, specs)
    names = [*spec.feature_names(specs), *extra]
    categories = {
        n: tuple(specs.categories_of(n))
        for n in names
        if n in specs.features_by_name and specs.features_by_name[n].is_categorical
    }
    layout = FeatureLayout(tuple(names), categories)
    classes = list(spec.classes) if spec.task == "ordinal" else ["0", "1"]
    y = label_codes(table[spec.label], classes, spec.label)
    split = split_out_of_time(table["customer_id"], table["as_of"], spec.split)
    tr, va, te = (split.rows(s) for s in ("train", "validation", "test"))
    if spec.task == "ordinal":
        est = OrdinalLGBM(
            layout, classes, spec.params, spec.monotone, spec.max_rounds, spec.early_stopping_rounds
        )
        truth = table.iloc[te][[f"truth_p_{c}" for c in classes]].to_numpy()
    else:
        est = BinaryLGBM(
            layout,
            spec.params,
            spec.monotone,
            spec.max_rounds,
            spec.early_stopping_rounds,
            spec.calibration,
        )
        truth = table.iloc[te]["truth_p_churn"].to_numpy()
    est.fit(table.iloc[tr], y[tr], table.iloc[va], y[va])
    metric = spec.primary_metric
    got = evaluate_predictions(est.predict_proba(table.iloc[te]), y[te], spec.task, classes)[metric]
    best = evaluate_predictions(truth, y[te], spec.task, classes)[metric]
    return got, best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    specs = load_specs()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate(data, args.customers, args.seed)
        truth = pd.read_parquet(data / "ground_truth")
        for model, oracles in ORACLES.items():
            built = build_training_table(load_model_spec(model, specs), data, specs, tmp).frame
            table = _with_truth(built, truth, model)
            got, best = _fit(table, model, [], specs)
            rows.append((model, "observable features (as trained)", got, best))
            for label, extra in oracles.items():
                got, best = _fit(table, model, extra, specs)
                rows.append((model, label, got, best))
            if model == "churn":
                quit_rows = table["truth_p_churn"] >= 1 - 1e-9
                kept = ~quit_rows
                share = quit_rows.mean()
                auc_all = roc_auc_score(table["churned"], table["truth_p_churn"])
                auc_kept = roc_auc_score(table["churned"][kept], table["truth_p_churn"][kept])
    print(
        f"| model ({args.customers:,} customers, seed {args.seed}) | columns | metric | best possible | model/best |"
    )
    print("|---|---|---:|---:|---:|")
    for model, label, got, best in rows:
        print(f"| {model} | {label} | {got:.4f} | {best:.4f} | {got / best:.3f} |")
    print()
    print(
        f"churn rows of investors who already quit (true p = 1): {share:.1%}; best possible ROC AUC "
        f"{auc_all:.3f} with them, {auc_kept:.3f} without (all rows, not only test)"
    )


if __name__ == "__main__":
    main()
