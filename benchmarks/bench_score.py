"""Population scoring (`suitability score`): wall time and peak memory for a whole world, in one
process and on a local Dask cluster of two workers, against a named baseline in the same run.

    .venv/bin/python benchmarks/bench_score.py --data DIR --store DIR [--as-of 2026-06-01]
        [--runs 1] [--methods baseline,single,local:2] [--json PATH]

`--data`: a world (`suitability data synth --customers 1000000 --seed 7`); `--store`: a folder
whose `mlflow.db` holds both champions (`suitability demo --out DIR`).

**Baseline** ("predict and explain, codes only"): what a good engineer would write to get the
same numbers without the rest: the same feature build, then for each model LightGBM's own
predictions and exact TreeSHAP (`pred_contrib`, the algorithm `explain` uses) over the feature
table in batches, the two largest contributions' feature codes by argsort, written to parquet.
No reason sentences, no re-assessment triggers, no customer dates: the floor under scoring, since
TreeSHAP for every customer is most of the work. **single** and **local:2**: `score_population`
(what `suitability score` runs) in one process, and with a `local:2` cluster.

Each run is a fresh child process (a cluster's workers are its children), the methods taking
turns; reported: median wall, rows/s, the ratio to the baseline, the client's peak RSS and the
workers' peaks.
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

METHODS = ("baseline", "single", "local:2")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scorers(store: Path):
    from suitability import tracking
    from suitability.models.rules import load_rules
    from suitability.scoring.population import Scorers
    from suitability.specs import load_specs

    tracking.use_store(f"sqlite:///{store.resolve()}/mlflow.db")
    specs = load_specs()
    return Scorers(
        tracking.load_explainer("risk-level@champion", specs),
        tracking.load_explainer("churn@champion", specs),
        load_rules(),
        specs,
    )


def _baseline(data: Path, as_of, scorers, out: Path) -> int:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from suitability.features.builder import build_features

    features = out.with_name("features.parquet")
    build_features(data, [as_of], features, scorers.specs)
    reader = pq.ParquetFile(features)
    writer = None
    rows = 0
    for batch in reader.iter_batches(batch_size=20_000):
        frame = batch.to_pandas()
        columns = {"customer_id": frame["customer_id"].astype(str)}
        for name, model in (("risk", scorers.risk.model), ("churn", scorers.churn.model)):
            x = model.layout.matrix(frame)
            proba = model.proba_of_matrix(x)
            columns[f"{name}_p"] = list(proba) if proba.ndim == 2 else proba
            boosters = list(model.boosters) if hasattr(model, "boosters") else [model.booster]
            total = sum(b.predict(x, pred_contrib=True)[:, :-1] for b in boosters)
            top = np.argsort(-np.abs(total), axis=1)[:, :2]
            names = np.asarray(model.layout.names, dtype=object)
            columns[f"{name}_reason_1"] = names[top[:, 0]]
            columns[f"{name}_reason_2"] = names[top[:, 1]]
        table = pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False)
        writer = writer or pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
        rows += len(frame)
    assert writer is not None
    writer.close()
    return rows


def _child(method: str, data: Path, store: Path, as_of: str, out: str) -> None:
    import pandas as pd

    from suitability import cluster
    from suitability.scoring.population import score_population

    scorers = _scorers(store)
    when = pd.Timestamp(as_of)
    workers: dict[str, float] = {}
    began = time.perf_counter()
    if method == "baseline":
        rows = _baseline(data, when, scorers, Path(out))
    elif method == "single":
        rows = score_population(data, when, scorers, Path(out)).rows
    else:
        with cluster.connect(cluster.parse_cluster(method)) as client:
            began = time.perf_counter()
            rows = score_population(data, when, scorers, Path(out), cluster=client).rows
            workers = client.run(_peak_mib)
    wall = time.perf_counter() - began
    print(json.dumps({"wall": wall, "rows": rows, "client_peak_mib": _peak_mib(),
                      "worker_peak_mib": workers}))  # fmt: skip


def _run(method: str, data: Path, store: Path, as_of: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        out = str(Path(tmp) / "scores.parquet")
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); import bench_score; "
            "bench_score._child(sys.argv[2], bench_score.Path(sys.argv[3]), "
            "bench_score.Path(sys.argv[4]), sys.argv[5], sys.argv[6])"
        )
        here = str(Path(__file__).resolve().parent)
        done = subprocess.run(
            [sys.executable, "-c", code, here, method, str(data), str(store), as_of, out],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--as-of", default="2026-06-01")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    methods = args.methods.split(",")
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for round_ in range(args.runs):
        for method in methods:
            result = _run(method, args.data, args.store, args.as_of)
            results[method].append(result)
            print(f"round {round_ + 1} {method}: {result['wall']:.1f} s", file=sys.stderr)
    base = statistics.median(r["wall"] for r in results.get("baseline", [])) if (
        "baseline" in results
    ) else None  # fmt: skip
    print("| method | rows | median wall (s) | rows/s | vs baseline | client peak (MiB) | "
          "worker peaks (MiB) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|")
    for method, runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        rows = runs[0]["rows"]
        peak = max(r["client_peak_mib"] for r in runs)
        workers = ", ".join(f"{v:,.0f}" for v in runs[-1]["worker_peak_mib"].values()) or "—"
        ratio = f"{base / wall:.2f}×" if base else "—"
        print(f"| {method} | {rows:,} | {wall:.1f} | {rows / wall:,.0f} | {ratio} | "
              f"{peak:,.0f} | {workers} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
