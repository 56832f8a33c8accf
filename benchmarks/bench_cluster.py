"""Scale-out benchmark: `features build` in one process against the same build on a Dask
`LocalCluster` of one and of two worker processes, on the same data folder, in the same run;
then churn training on a ~1M-row training table the same three ways.

    .venv/bin/python benchmarks/bench_cluster.py --data DIR [--as-of 2026-06-01] [--runs 3]
        [--methods single,local:1,local:2] [--churn-table PATH] [--train-runs 1] [--json PATH]

`--churn-table` defaults to the table `bench_train.py` caches (80,000 customers, seed 7:
`benchmarks/results/train/churn-80000-7.parquet`; `bench_train.py --tables-only` builds it);
`--train-runs 0` skips training.

Each measured run is a fresh child process (the client; a cluster's workers are its children),
the methods taking turns within each round. Reported: median wall time of the build (starting
the local cluster, about two seconds, is shown apart), events/s, the speed-up
from one worker to two (the scale-out figure: each worker is one process with one thread and
one core's worth of arrow threads), the single process for reference (it uses every core by
threads), the client's peak RSS and each worker's peak RSS, and the measured seconds per
partition (what a capacity plan multiplies).
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

METHODS = ("single", "local:1", "local:2")


def _child(method: str, data: Path, as_of: str, out: str) -> None:
    """One measured run; prints a JSON line."""
    import pandas as pd

    from suitability import cluster
    from suitability.features.builder import build_features
    from suitability.specs import load_specs

    specs = load_specs()
    began = time.perf_counter()
    startup = 0.0
    worker_cpu: dict[str, float] = {}
    if method == "single":
        cpu = _cpu_seconds()
        summary = build_features(data, [pd.Timestamp(as_of)], out, specs)
        workers: dict[str, float] = {}
        wall = time.perf_counter() - began
    else:
        with cluster.connect(cluster.parse_cluster(method)) as client:
            started = time.perf_counter()
            startup = started - began
            before = client.run(_cpu_seconds)
            cpu = _cpu_seconds()
            summary = build_features(data, [pd.Timestamp(as_of)], out, specs, cluster=client)
            wall = time.perf_counter() - started
            workers = summary.worker_peak_mib
            after = client.run(_cpu_seconds)
            worker_cpu = {w: after[w] - before.get(w, 0.0) for w in after}
    client_cpu = _cpu_seconds() - cpu
    print(
        json.dumps(
            {
                "wall": wall,
                "startup": startup,
                "rows": summary.rows,
                "events": summary.events,
                "customers": summary.customers,
                "partitions": summary.partitions,
                "seconds": summary.seconds,
                "client_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker_peak_mib": workers,
                "client_cpu_s": client_cpu,
                "worker_cpu_s": worker_cpu,
            }
        )
    )


def _cpu_seconds() -> float:
    """User and system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _train_child(method: str, table: str) -> None:
    """Train churn once; print a JSON line (times, metric, peaks)."""
    import pandas as pd

    from suitability import cluster
    from suitability.models.spec import load_model_spec
    from suitability.models.train import train_on_features
    from suitability.specs import load_specs

    specs = load_specs()
    spec = load_model_spec("churn", specs)
    frame = pd.read_parquet(table)
    workers: dict[str, float] = {}
    began = time.perf_counter()
    if method == "single":
        result = train_on_features(frame, spec, specs)
    else:
        with cluster.connect(cluster.parse_cluster(method)) as client:
            began = time.perf_counter()
            result = train_on_features(frame, spec, specs, cluster=client)
            workers = client.run(_peak_mib)
    total = time.perf_counter() - began
    name, value = result.primary
    print(
        json.dumps(
            {
                "wall": total,
                "rows": len(frame),
                "train_rows": result.split.boundaries["train_rows"],
                "seconds": result.seconds,
                "best_iterations": result.params["best_iterations"],
                "metric": name,
                "value": value,
                "client_peak_mib": _peak_mib(),
                "worker_peak_mib": workers,
            }
        )
    )


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(method: str, data: Path, as_of: str, table: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        out = str(Path(tmp) / "features.parquet")
        if table is None:
            call = "bench_cluster._child(sys.argv[2], bench_cluster.Path(sys.argv[3]), sys.argv[4], sys.argv[5])"
            args = [method, str(data), as_of, out]
        else:
            call = "bench_cluster._train_child(sys.argv[2], sys.argv[3])"
            args = [method, str(table)]
        code = f"import sys; sys.path.insert(0, sys.argv[1]); import bench_cluster; {call}"
        done = subprocess.run(
            [sys.executable, "-c", code, str(Path(__file__).parent), *args],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"{method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--as-of", default="2026-06-01")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--churn-table",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "train" / "churn-80000-7.parquet",
    )
    parser.add_argument("--train-runs", type=int, default=1)
    parser.add_argument("--runs-only-train", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for r in range(0 if args.runs_only_train else args.runs):
        for method in methods:
            got = _run(method, args.data, args.as_of)
            runs[method].append(got)
            print(
                f"round {r + 1}: {method:8} {got['wall']:7.1f} s "
                f"(partitions {got['partitions']}, workers {got['worker_peak_mib']})",
                file=sys.stderr,
            )
    summary = {}
    for method, got in runs.items():
        if not got:
            continue
        walls = [g["wall"] for g in got]
        peaks = [max(g["worker_peak_mib"].values(), default=0.0) for g in got]
        per_part = [
            g["seconds"]["partitions"] / g["partitions"] * (len(g["worker_peak_mib"]) or 1)
            for g in got
            if g["partitions"] > 1
        ]
        summary[method] = {
            "wall": statistics.median(walls),
            "walls": walls,
            "startup": statistics.median(g["startup"] for g in got),
            "events": got[0]["events"],
            "rows": got[0]["rows"],
            "partitions": got[0]["partitions"],
            "client_peak_mib": statistics.median(g["client_peak_mib"] for g in got),
            "worker_peak_mib": statistics.median(peaks),
            "seconds_per_partition_per_worker": statistics.median(per_part) if per_part else None,
            "client_cpu_s": statistics.median(g["client_cpu_s"] for g in got),
            "worker_cpu_s": statistics.median(sum(g["worker_cpu_s"].values()) for g in got),
        }
    base = summary.get("local:1", {}).get("wall")
    if summary:
        _print_features(summary, base)
    _train_table(args, methods, runs, summary)


def _print_features(summary: dict, base: float | None) -> None:
    print(
        "| method | partitions | median wall (s) | runs (s) | cluster start (s) | events/s "
        "| speed-up vs local:1 "
        "| client peak RSS (MiB) | peak RSS per worker (MiB) | worker-seconds per partition "
        "| CPU s: client | CPU s: workers |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for method, s in summary.items():
        ratio = f"{base / s['wall']:.2f}×" if base else "–"
        per = s["seconds_per_partition_per_worker"]
        print(
            f"| {method} | {s['partitions']} | {s['wall']:.1f} | "
            f"{', '.join(f'{w:.1f}' for w in s['walls'])} | {s['startup']:.1f} | "
            f"{s['events'] / s['wall']:,.0f} | "
            f"{ratio} | {s['client_peak_mib']:,.0f} | "
            f"{s['worker_peak_mib']:,.0f} | {'–' if per is None else f'{per:.1f}'} | "
            f"{s['client_cpu_s']:.1f} | {s['worker_cpu_s']:.1f} |"
        )


def _train_table(args: argparse.Namespace, methods: list[str], runs: dict, summary: dict) -> None:
    trained: dict[str, list[dict]] = {m: [] for m in methods}
    for r in range(args.train_runs):
        for method in methods:
            got = _run(method, args.data, args.as_of, args.churn_table)
            trained[method].append(got)
            print(f"train round {r + 1}: {method:8} {got['wall']:7.1f} s", file=sys.stderr)
    if args.train_runs:
        base = statistics.median(g["wall"] for g in trained.get("local:1", [{"wall": 0}])) or None
        first = next(iter(trained.values()))[0]
        print(
            f"\nchurn training, {first['rows']:,} rows ({first['train_rows']:,} train), "
            f"medians of {args.train_runs}:\n"
        )
        print(
            "| method | total (s) | LightGBM fit (s) | baselines (s) | best iteration | ROC AUC "
            "| speed-up vs local:1 | client peak RSS (MiB) | peak RSS per worker (MiB) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for method, got in trained.items():
            wall = statistics.median(g["wall"] for g in got)
            peak = statistics.median(max(g["worker_peak_mib"].values(), default=0) for g in got)
            print(
                f"| {method} | {wall:.1f} | "
                f"{statistics.median(g['seconds']['fit'] for g in got):.1f} | "
                f"{statistics.median(g['seconds']['baselines'] for g in got):.1f} | "
                f"{got[0]['best_iterations']} | {statistics.median(g['value'] for g in got):.4f} | "
                f"{f'{base / wall:.2f}×' if base else '–'} | "
                f"{statistics.median(g['client_peak_mib'] for g in got):,.0f} | "
                f"{peak:,.0f} |"
            )
    if args.json:
        args.json.write_text(
            json.dumps({"runs": runs, "summary": summary, "train": trained}, indent=1)
        )


if __name__ == "__main__":
    main()
