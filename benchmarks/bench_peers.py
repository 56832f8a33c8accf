"""Our models against a peer: FLAML AutoML with a time budget, on the same split, features and
test rows, for both models; the generator's true probabilities (best possible) beside them.
Intervals: 95 % bootstrap over test customers (all rows of a drawn customer together).

    .venv/bin/python benchmarks/bench_peers.py [--tables demo-out] [--budget 300]
        [--bootstrap 1000] [--json PATH]

`--tables`: a folder with `churn_training.parquet` and `risk_level_training.parquet` (what
`suitability demo` writes). FLAML is a benchmark-only dependency, pinned apart from the
project's set (it needs xgboost): `make bench-install` installs
`benchmarks/requirements-bench.lock` into `.venv`. It searches LightGBM, random forests and
extra trees (`--estimators`),
minimising log loss, holding out our validation split; its best model is then scored on our
test split like ours.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from suitability.models.spec import load_model_spec
from suitability.models.train import (
    BEST_POSSIBLE,
    TrainingResult,
    evaluate_predictions,
    train_on_features,
)
from suitability.specs import load_specs

SHOWN = {"churn": ("roc_auc", "log_loss", "ece"), "risk-level": ("qwk", "log_loss", "ece")}
TABLES = {"churn": "churn_training.parquet", "risk-level": "risk_level_training.parquet"}


def _flaml(result: TrainingResult, budget: float, estimators: list[str], seed: int) -> np.ndarray:
    """FLAML's test-split probabilities (classes in our order)."""
    from flaml import AutoML

    names = list(result.model.feature_names)
    split = result.split
    x = {s: result.rows(s)[names] for s in ("train", "validation", "test")}
    y = {s: result.y[split.rows(s)] for s in ("train", "validation", "test")}
    automl = AutoML()
    automl.fit(
        X_train=x["train"],
        y_train=y["train"],
        X_val=x["validation"],
        y_val=y["validation"],
        task="classification",
        metric="log_loss",
        time_budget=budget,
        estimator_list=estimators,
        seed=seed,
        n_jobs=-1,
        verbose=0,
    )
    proba = np.asarray(automl.predict_proba(x["test"]), dtype=np.float64)
    print(f"  FLAML best: {automl.best_estimator} {automl.best_config}")
    if result.spec.task == "binary":
        return proba[:, 1]
    # classes FLAML saw in training, in our order (a level absent from training gets 0)
    out = np.zeros((len(proba), len(result.classes)))
    out[:, np.asarray(automl.classes_, dtype=int)] = proba
    return out


def _bootstrap(
    result: TrainingResult,
    methods: dict[str, np.ndarray],
    draws: int,
    seed: int,
    paired: tuple[str, str] = ("ours", "FLAML"),
) -> dict[str, dict[str, tuple[float, float]]]:
    """95 % intervals of each shown metric per method, test customers drawn with replacement;
    and of the difference of the `paired` methods on the same draws (`"a − b"`)."""
    test = result.split.rows("test")
    customers = result.table[result.id_column].to_numpy()[test]
    codes, uniques = pd.factorize(customers)
    rows_of = [np.flatnonzero(codes == c) for c in range(len(uniques))]
    y = result.y[test]
    rng = np.random.default_rng(seed)
    shown = SHOWN[result.spec.name]
    samples: dict[str, dict[str, list[float]]] = {k: {s: [] for s in shown} for k in methods}
    for _ in range(draws):
        rows = np.concatenate([rows_of[c] for c in rng.integers(0, len(uniques), len(uniques))])
        for name, p in methods.items():
            got = evaluate_predictions(p[rows], y[rows], result.spec.task, list(result.classes))
            for s in shown:
                samples[name][s].append(got[s])
    a, b = paired
    if a in samples and b in samples:  # paired: the same draws for both
        samples[f"{a} − {b}"] = {s: list(np.subtract(samples[a][s], samples[b][s])) for s in shown}
    return {
        name: {s: tuple(np.nanpercentile(v, [2.5, 97.5])) for s, v in by.items()}
        for name, by in samples.items()
    }


def print_table(
    scores: dict[str, dict[str, float]],
    intervals: dict[str, dict[str, tuple[float, float]]],
    shown: tuple[str, ...],
    paired: tuple[str, str],
    first: str,
) -> dict[str, object]:
    """Print the metrics with their intervals as a markdown table, the difference of the
    `paired` methods last (signed), and return them for the JSON record."""
    a, b = paired
    difference = f"{a} − {b}"
    scores[difference] = {s: scores[a][s] - scores[b][s] for s in shown}
    print(f"| {first} | " + " | ".join(f"{s} (95 % interval)" for s in shown) + " |")
    print("|---|" + "---:|" * len(shown))
    for k in intervals:
        sign = "+" if k == difference else ""
        cells = [
            f"{scores[k][s]:{sign}.4f} ({intervals[k][s][0]:.4f} … {intervals[k][s][1]:.4f})"
            for s in shown
        ]
        print(f"| {k} | " + " | ".join(cells) + " |")
    print()
    return {
        "metrics": {k: {s: scores[k][s] for s in shown} for k in scores},
        "intervals": {k: {s: list(v) for s, v in by.items()} for k, by in intervals.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=Path, default=Path("demo-out"))
    parser.add_argument("--budget", type=float, default=300.0, help="FLAML seconds per model")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--estimators", default="lgbm,rf,extra_tree")
    parser.add_argument("--models", default="churn,risk-level")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    specs = load_specs()
    report: dict[str, object] = {}
    for name in args.models.split(","):
        table = pd.read_parquet(args.tables / TABLES[name])
        spec = load_model_spec(name, specs)
        began = time.perf_counter()
        result = train_on_features(table, spec, specs)
        ours_s = time.perf_counter() - began
        print(f"{name}: ours trained in {ours_s:.0f} s; FLAML {args.budget:.0f} s …")
        began = time.perf_counter()
        flaml = _flaml(result, args.budget, args.estimators.split(","), spec.split.seed)
        flaml_s = time.perf_counter() - began
        test = result.split.rows("test")
        methods = {"ours": np.asarray(result.test_predictions["model"]), "FLAML": flaml}
        if result.best is not None:
            methods["best possible"] = np.asarray(result.test_predictions[BEST_POSSIBLE])
        scores = {
            k: evaluate_predictions(p, result.y[test], spec.task, list(result.classes))
            for k, p in methods.items()
        }
        intervals = _bootstrap(result, methods, args.bootstrap, spec.split.seed)
        shown = SHOWN[name]
        customers = result.table[result.id_column].iloc[test].nunique()
        print(
            f"\n{name}: {len(test):,} test rows, {customers:,} customers; seconds: ours "
            f"{ours_s:.0f}, FLAML {flaml_s:.0f}\n"
        )
        report[name] = {
            "test_rows": len(test),
            "customers": int(customers),
            "seconds": {"ours": ours_s, "FLAML": flaml_s},
            **print_table(scores, intervals, shown, ("ours", "FLAML"), "method"),
        }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
