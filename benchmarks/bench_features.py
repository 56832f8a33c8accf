"""Feature build benchmark: `suitability`'s builder against a straightforward pandas groupby
implementation of the same behaviour features, on the same data folder, in the same run.

Each measured run is a fresh child process, so its peak memory (max RSS) is its own.

    .venv/bin/python benchmarks/bench_features.py --data DIR [--as-of 2026-06-01] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _child(method: str, data: str, as_of: str, out: str) -> None:
    """One measured run; prints a JSON line with wall time, peak RSS and sizes."""
    import pandas as pd

    from suitability.specs import load_specs

    specs = load_specs()
    t = pd.Timestamp(as_of)
    began = time.perf_counter()
    if method == "suitability":
        from suitability.features.builder import build_features

        summary = build_features(data, [t], out, specs)
        rows, events, stages = summary.rows, summary.events, summary.seconds
    else:
        import pyarrow.dataset as ds

        sys.path.insert(0, str(HERE))
        from pandas_baseline import pandas_behaviour_features

        columns = [
            "customer_id",
            "event_time",
            "event_type",
            "amount",
            "product_risk",
            "term_days",
            "channel",
        ]
        # The generator writes whole customers per part, so the baseline can go 10 parts
        # (100k customers, like the builder's chunks) at a time and stay within memory.
        customers = (
            ds.dataset(_table_path(Path(data), "customers"), format="parquet")
            .to_table(columns=["customer_id", "registered_at"])
            .to_pandas()
        )
        registered = set(customers.loc[customers["registered_at"] <= t, "customer_id"])
        parts = sorted(_table_path(Path(data), "events").glob("*.parquet"))
        stages = {"read": 0.0, "compute": 0.0, "write": 0.0}
        frames, events = [], 0
        for i in range(0, len(parts), 10):
            tick = time.perf_counter()
            events_df = (
                ds.dataset(parts[i : i + 10], format="parquet")
                .to_table(columns=columns)
                .to_pandas()
            )
            stages["read"] += time.perf_counter() - tick
            tick = time.perf_counter()
            ids = pd.Index(sorted(registered & set(events_df["customer_id"].unique())))
            frames.append(pandas_behaviour_features(events_df, ids, t, specs))
            stages["compute"] += time.perf_counter() - tick
            events += len(events_df)
        tick = time.perf_counter()
        frame = pd.concat(frames)
        frame.reset_index().to_parquet(out)
        stages["write"] = time.perf_counter() - tick
        rows = len(frame)
    wall = time.perf_counter() - began
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "method": method,
                "wall_s": wall,
                "peak_mib": peak_mib,
                "rows": rows,
                "events": events,
                "stages": stages,
            }
        )
    )


def _table_path(data: Path, name: str) -> Path:
    return data / name if (data / name).is_dir() else data / f"{name}.parquet"


def measure(data: Path, as_of: str, runs: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("pandas", "suitability"):
            samples = []
            for i in range(runs):
                out = str(Path(tmp) / f"{method}-{i}.parquet")
                proc = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        method,
                        "--data",
                        str(data),
                        "--as-of",
                        as_of,
                        "--out",
                        out,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                samples.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(
                    f"  {method} run {i + 1}/{runs}: {samples[-1]['wall_s']:.1f}s", file=sys.stderr
                )
            results.append(
                {
                    "method": method,
                    "runs": runs,
                    "median_wall_s": statistics.median(s["wall_s"] for s in samples),
                    "median_peak_mib": statistics.median(s["peak_mib"] for s in samples),
                    "rows": samples[0]["rows"],
                    "events": samples[0]["events"],
                    "median_stage_s": {
                        k: statistics.median(s["stages"][k] for s in samples)
                        for k in samples[0]["stages"]
                    },
                }
            )
    return results


def print_table(results: list[dict]) -> None:
    base = next(r for r in results if r["method"] == "pandas")
    print(
        "| method | what it computes | median wall (s) | events/s | peak RSS (MiB) | speed-up vs pandas |"
    )
    print("|---|---|---:|---:|---:|---:|")
    what = {
        "pandas": "behaviour features only (read + groupby)",
        "suitability": "all features (validate + read + kernel + write)",
    }
    for r in results:
        print(
            f"| {r['method']} | {what[r['method']]} | {r['median_wall_s']:.1f} | "
            f"{r['events'] / r['median_wall_s']:,.0f} | {r['median_peak_mib']:,.0f} | "
            f"{base['median_wall_s'] / r['median_wall_s']:.2f}× |"
        )
    ours = next(r for r in results if r["method"] == "suitability")
    stages = ours["median_stage_s"]
    print(
        "\nsuitability stages (median s): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    )
    print(
        "\ncompute stage alone, like for like (both from events already in memory): pandas "
        f"{base['median_stage_s']['compute']:.1f}s for the behaviour features, suitability kernel "
        f"{stages['compute']:.1f}s for all features "
        f"({base['median_stage_s']['compute'] / stages['compute']:.2f}× faster)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", required=True, type=Path, help="data folder (e.g. from `suitability data synth`)"
    )
    parser.add_argument("--as-of", default="2026-06-01")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=["pandas", "suitability"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, str(args.data), args.as_of, args.out)
        return
    results = measure(args.data, args.as_of, args.runs)
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
