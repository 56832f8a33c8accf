"""Risk-level calibration, measured: the same training table, split and boosters trained with
`calibration: none` and with `calibration: cumulative_logit`, test metrics side by side (and
the generator's true probabilities, the best possible, when the table carries them).

    .venv/bin/python benchmarks/bench_calibration.py --table demo-out/risk_level_training.parquet

The table: `suitability demo` writes it (`demo-out/risk_level_training.parquet`), or
`suitability features training-table risk-level --data DIR --out FILE`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from suitability.models.spec import load_model_spec
from suitability.models.train import train_on_features
from suitability.specs import load_specs

METRICS = ("qwk", "log_loss", "ece", "accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, required=True, help="risk-level training table")
    args = parser.parse_args()
    specs = load_specs()
    table = pd.read_parquet(args.table)
    spec = load_model_spec("risk-level", specs)
    rows = []
    best = None
    for method in ("none", "cumulative_logit"):
        began = time.perf_counter()
        result = train_on_features(table, spec.model_copy(update={"calibration": method}), specs)
        seconds = time.perf_counter() - began
        test, valid = result.metrics["test"], result.metrics["validation"]
        rows.append(
            [
                method,
                *(f"{test[m]:.4f}" for m in METRICS),
                f"{valid['log_loss']:.4f}",
                f"{seconds:.0f}",
            ]
        )
        best = result.best
        if result.calibration is not None:
            for part in ("slopes", "weights", "thresholds"):
                print(f"{part} {[round(v, 3) for v in result.calibration[part]]}")
    if best is not None:
        rows.append(["best possible", *(f"{best[m]:.4f}" for m in METRICS), "–", "–"])
    test_rows = len(result.split.rows("test"))
    print(f"\nrisk level, {len(table):,} rows ({test_rows:,} test), {args.table}\n")
    header = ["calibration", *(f"test {m}" for m in METRICS), "validation log_loss", "s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
