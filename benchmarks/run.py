"""All foundation benchmarks in one command, each against a named baseline in the same run.

    .venv/bin/python benchmarks/run.py [--customers 1000000] [--runs 3] [--tmp /tmp]

1. Synthetic generator: `generate` with 2 worker processes against the same generator in one
   process (baseline), median of `--runs` runs each: wall time, events/s, peak memory.
2. Feature build: `suitability features build` against the pandas groupby script of the counts
   and amounts, the vectorised pandas implementation of the same behaviour features, and
   DuckDB's aggregation of the counts (reference), on one generated world (or `--data`), median
   of `--runs` runs each, every run in a fresh process; then the contract stage alone against
   pandera, per table (see bench_features.py).

Prints markdown tables and writes benchmarks/results/foundation.json. Needs about 6 GB of free
disk and, at 1M customers, roughly 40 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_features  # noqa: E402
import bench_synth  # noqa: E402
from suitability.data.synth import generate  # noqa: E402


def synth_table(customers: int, runs: int, tmp: Path) -> list[dict]:
    rows = []
    for workers in (1, 2):
        results = [
            bench_synth.run_once(customers, 7 + i, workers, tmp, keep=False) for i in range(runs)
        ]
        for i, r in enumerate(results):
            print(
                f"  synth workers={workers} run {i + 1}/{runs}: {r.seconds:.1f}s", file=sys.stderr
            )
        rows.append(
            {
                "workers": workers,
                "runs": runs,
                "median_wall_s": statistics.median(r.seconds for r in results),
                "events": results[0].events,
                "median_events_per_s": statistics.median(r.events_per_second for r in results),
                "median_peak_all_mib": statistics.median(
                    r.tree_peak_mb
                    if r.tree_peak_mb is not None
                    else r.parent_peak_mb + r.child_peak_mb
                    for r in results
                ),
            }
        )
    base = rows[0]["median_wall_s"]
    print(f"\n### Synthetic generator, {customers:,} customers (median of {runs})\n")
    print(
        "| generator | median wall (s) | events | events/s | peak RSS, all processes (MiB) | speed-up vs one process |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        name = "one process (baseline)" if r["workers"] == 1 else f"{r['workers']} worker processes"
        print(
            f"| {name} | {r['median_wall_s']:.1f} | {r['events']:,} | {r['median_events_per_s']:,.0f} | "
            f"{r['median_peak_all_mib']:,.0f} | {base / r['median_wall_s']:.2f}× |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--as-of", default="2026-06-01")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--contract-runs", type=int, default=1)
    parser.add_argument("--skip-synth", action="store_true", help="only the feature benchmark")
    parser.add_argument("--data", type=Path, help="an existing data folder (seed-7 world) to use")
    args = parser.parse_args()
    began = time.perf_counter()
    report: dict[str, object] = {
        "customers": args.customers,
        "runs": args.runs,
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
    }
    if not args.skip_synth:
        report["synth"] = synth_table(args.customers, args.runs, args.tmp)
    world = Path(tempfile.mkdtemp(prefix="bench-world-", dir=args.tmp))
    try:
        if args.data:
            (world / "data").symlink_to(args.data.resolve())
        else:
            generate(world / "data", args.customers, seed=7)
        print(
            f"\n### Feature build, {args.customers:,} customers, as of {args.as_of} (median of {args.runs})\n"
        )
        features = bench_features.measure(world / "data", args.as_of, args.runs)
        bench_features.print_table(features)
        report["features"] = features
        print(f"\n### Contract stage alone, per table (median of {args.contract_runs})\n")
        contracts = bench_features.measure_contracts(world / "data", args.contract_runs)
        bench_features.print_contracts(contracts)
        report["contracts"] = contracts
    finally:
        shutil.rmtree(world, ignore_errors=True)
    report["total_minutes"] = (time.perf_counter() - began) / 60
    out = HERE / "results" / "foundation.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out} ({report['total_minutes']:.1f} min)")


if __name__ == "__main__":
    main()
