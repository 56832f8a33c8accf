"""Where the Python time of one `/suitability` answer goes, by library: cProfile over in-process
answers (the service's own scorer, on the typical bundle of `bench_serve.py`), each function's
own time summed per package.

    .venv/bin/python benchmarks/profile_serve.py --store DIR [--calls 50] [--seed 7]

`--store` is a demo store (`suitability demo --out DIR`). cProfile slows every Python call, so
the shares are what to read, not the milliseconds.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
from collections import Counter
from pathlib import Path

import bench_serve


def _package(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/src/suitability/" in path:
        return "suitability." + path.split("/src/suitability/", 1)[1].split("/", 1)[0]
    if path == "~":
        return "(built-in functions)"
    return "(standard library)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, required=True, help="a demo store")
    parser.add_argument("--calls", type=int, default=50, help="answers profiled")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if not (args.store / "mlflow.db").is_file():
        parser.error(f"{args.store} holds no mlflow.db: make one with `suitability demo --out DIR`")

    from suitability import tracking
    from suitability.serving.keys import Caller
    from suitability.serving.requests import SuitabilityRequest
    from suitability.serving.service import load_scorer

    workload = bench_serve.build_workload(args.store.resolve(), args.seed)
    tracking.use_store(bench_serve._store_uri(args.store.resolve()))
    scorer = load_scorer("champion")
    body = json.dumps(workload.suitability).encode()
    request = SuitabilityRequest.model_validate_json(body, strict=True)
    caller = Caller("profile", "matching")
    for i in range(10):
        scorer.suitability([request], [f"w{i}"], caller)
    profile = cProfile.Profile()
    profile.enable()
    for i in range(args.calls):
        scorer.suitability([request], [f"p{i}"], caller)
    profile.disable()

    own: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for (path, _, _), (_, n, seconds, _, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        own[_package(path)] += seconds
        calls[_package(path)] += n
    total = sum(own.values())
    print(
        f"{args.calls} answers: {total / args.calls * 1000:.1f} ms each under cProfile, "
        f"{sum(calls.values()) / args.calls:,.0f} Python calls each\n"
    )
    print("| package | share of own time | calls per answer |\n|---|---:|---:|")
    for name, seconds in own.most_common(12):
        print(f"| {name} | {seconds / total:.0%} | {calls[name] / args.calls:,.0f} |")


if __name__ == "__main__":
    sys.exit(main())
