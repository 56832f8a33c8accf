"""Training at scale: time and peak memory to train both models on ~1M feature rows, beside the
logistic-regression baseline fitted on the same split, and each model's ratio to the best
possible (the generator's true probabilities) on the test split.

    .venv/bin/python benchmarks/bench_train.py [--churn-customers 80000] [--risk-customers 1750000]

Churn rows are active investors at monthly snapshots (~12.7 per customer), risk-level rows are
risk reviews (~0.58 per customer), hence the two world sizes. Each training table is built and
each model trains in a fresh process, so its peak RSS is its own; a table built in this run
gets a line of its own (build time, peak). Tables are cached under benchmarks/results/train/
(delete them to measure the build again); `--tables-only` stops after building them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train"


def _table(model: str, customers: int, seed: int) -> tuple[Path, dict | None]:
    """The model's training table (cached), and how its build went when it was built now: a
    fresh process builds it, so its peak RSS is its own."""
    from suitability.data.synth import generate

    path = RESULTS / f"{model}-{customers}-{seed}.parquet"
    if path.exists():
        return path, None
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        data = Path(tmp) / "data"
        began = time.perf_counter()
        generate(data, customers, seed)
        print(
            f"  {model}: synthesised {customers:,} customers in {time.perf_counter() - began:.0f}s",
            flush=True,
        )
        build = _child(["--table-worker", model, str(data), str(path)])
        print(
            f"  {model}: built {build['rows']:,} training rows in {build['seconds']:.0f}s, "
            f"peak RSS {build['peak_rss_mib']:,.0f} MiB",
            flush=True,
        )
    return path, build | {"customers": customers}


def _table_worker(model: str, data: str, out: str) -> None:
    """Build one training table in this process; print one JSON line (time, peak, rows)."""
    from suitability.models.sources import write_table
    from suitability.models.spec import load_model_spec
    from suitability.models.training_table import build_training_table
    from suitability.specs import load_specs

    specs = load_specs()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=Path(out).parent) as tmp:
        table = build_training_table(load_model_spec(model, specs), data, specs, tmp)
    seconds = time.perf_counter() - began
    write_table(table.frame, Path(out))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": len(table.frame), "seconds": seconds, "peak_rss_mib": peak}))


def _child(args: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker(model: str, path: str) -> None:
    """Train once in this process and print one JSON line of timings and memory."""
    import pandas as pd

    from suitability.models.spec import load_model_spec
    from suitability.models.train import train_on_features
    from suitability.specs import load_specs

    specs = load_specs()
    frame = pd.read_parquet(path)
    began = time.perf_counter()
    result = train_on_features(frame, load_model_spec(model, specs), specs)
    total = time.perf_counter() - began
    name, value = result.primary
    print(
        json.dumps(
            {
                "rows": len(frame),
                "train_rows": result.split.boundaries["train_rows"],
                "total_s": total,
                **{f"{k}_s": v for k, v in result.seconds.items()},
                "best_iterations": result.params["best_iterations"],
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "metric": name,
                "model": value,
                "logistic_regression": result.baselines["logistic_regression"][name],
                "best": (result.best or {}).get(name),
                "ratio": (result.ratios or {}).get(name),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--churn-customers", type=int, default=80_000)
    parser.add_argument("--risk-customers", type=int, default=1_750_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "TABLE"), help=argparse.SUPPRESS)
    parser.add_argument("--table-worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--tables-only", action="store_true", help="build the tables, no training")
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker)
        return
    if args.table_worker:
        _table_worker(*args.table_worker)
        return
    rows, builds = [], []
    for model, customers in (("churn", args.churn_customers), ("risk-level", args.risk_customers)):
        path, build = _table(model, customers, args.seed)
        if build is not None:
            builds.append((model, build))
        if not args.tables_only:
            rows.append((model, _child(["--worker", model, str(path)])))
    if builds:
        print("\n| training table | customers | rows | build s | peak RSS MiB |")
        print("|---|---:|---:|---:|---:|")
        for model, b in builds:
            print(
                f"| {model} | {b['customers']:,} | {b['rows']:,} | {b['seconds']:.0f} | "
                f"{b['peak_rss_mib']:,.0f} |"
            )
    if not rows:
        return
    print()
    print(
        "| model | rows (train) | train total s | LightGBM fit s | logistic baseline s | peak RSS MiB | metric | model | logistic | best possible | model/best |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for model, r in rows:
        best = f"{r['best']:.4f}" if r["best"] is not None else "–"
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "–"
        print(
            f"| {model} | {r['rows']:,} ({r['train_rows']:,}) | {r['total_s']:.0f} | {r['fit_s']:.0f} | "
            f"{r['baselines_s']:.0f} | {r['peak_rss_mib']:,.0f} | {r['metric']} | {r['model']:.4f} | "
            f"{r['logistic_regression']:.4f} | {best} | {ratio} |"
        )


if __name__ == "__main__":
    main()
