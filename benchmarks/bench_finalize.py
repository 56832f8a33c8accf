"""Finalise or not: the same table, split and spec trained twice, once early-stopped on the
validation split (the rounds chosen there, trained on the training rows) and once finalised
(those rounds trained again on training + validation rows, calibrator kept), test metrics side
by side with a paired 95 % bootstrap interval over test customers of the difference.

    .venv/bin/python benchmarks/bench_finalize.py [--tables demo-out] [--bootstrap 1000]
        [--models churn,risk-level] [--churn FILE] [--risk-level FILE] [--json PATH]

`--tables`: a folder with `churn_training.parquet` and `risk_level_training.parquet` (what
`suitability demo` writes); `--churn` / `--risk-level` name other training tables (from
`suitability features training-table`, or the ones `bench_train.py` caches in
`benchmarks/results/train/`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench_peers import SHOWN, TABLES, _bootstrap, print_table
from suitability.models.spec import load_model_spec
from suitability.models.train import BEST_POSSIBLE, evaluate_predictions, train_on_features
from suitability.specs import load_specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=Path, default=Path("demo-out"))
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--models", default="churn,risk-level")
    parser.add_argument("--churn", type=Path, help="churn training table (default: in --tables)")
    parser.add_argument("--risk-level", type=Path, help="risk-level training table (same)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    given = {"churn": args.churn, "risk-level": args.risk_level}
    specs = load_specs()
    report: dict[str, object] = {}
    for name in args.models.split(","):
        table = pd.read_parquet(given[name] or args.tables / TABLES[name])
        spec = load_model_spec(name, specs)
        methods: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        for label, finalize in (("early-stopped", False), ("finalised", True)):
            began = time.perf_counter()
            result = train_on_features(table, spec.model_copy(update={"finalize": finalize}), specs)
            seconds[label] = time.perf_counter() - began
            methods[label] = np.asarray(result.test_predictions["model"])
            print(f"{name} {label}: best iterations {result.params['best_iterations']}")
        if result.best is not None:
            methods["best possible"] = np.asarray(result.test_predictions[BEST_POSSIBLE])
        test = result.split.rows("test")
        classes = list(result.classes)
        scores = {
            k: evaluate_predictions(p, result.y[test], spec.task, classes)
            for k, p in methods.items()
        }
        pair = ("finalised", "early-stopped")
        intervals = _bootstrap(result, methods, args.bootstrap, spec.split.seed, paired=pair)
        b = result.split.boundaries
        print(
            f"\n{name}: {len(table):,} rows (train {b['train_rows']:,}, validation "
            f"{b['validation_rows']:,}, test {len(test):,}); seconds: early-stopped "
            f"{seconds['early-stopped']:.0f}, finalised {seconds['finalised']:.0f}\n"
        )
        report[name] = {
            "rows": len(table),
            "test_rows": len(test),
            "seconds": seconds,
            **print_table(scores, intervals, SHOWN[name], pair, "model"),
        }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
