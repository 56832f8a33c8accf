"""Explanations: how fast `explain_frame` computes exact TreeSHAP contributions for both
registered models, against shap's TreeExplainer on the same trees and rows, in the same run.

    .venv/bin/python benchmarks/bench_explain.py [--rows 100000] [--repeats 3] [--work DIR] [--json PATH]

For each model (risk level: 4 cumulative boosters, churn: 1 booster):

1. Throughput, rows/s over `--rows` rows (training rows sampled with replacement), median of
   `--repeats` rounds, the methods interleaved within each round: ours (`explain_frame`, the
   feature matrix build included), ours on the prebuilt matrix (`explain_matrix`), shap's
   `TreeExplainer` default path (baseline) and shap's own C++ TreeSHAP
   (`_cext.dense_tree_shap`), both on the prebuilt matrix, explainers built once. shap 0.51's
   default path for a LightGBM booster calls the booster's own `pred_contrib`, the algorithm ours
   calls too; its C++ path runs when `model_type == "internal"`. shap's LightGBM tree parser gets
   two things wrong for our trees, so that path runs on its parsed arrays corrected to LightGBM's
   rules (see `_shap_internal`), and the values are checked equal to ours.
2. Single-row latency, ms (median and p99 of `--calls` calls after a warm-up, the methods taking
   turns row by row), same methods.
3. Agreement: max |ours - shap| per method and the max additivity error
   (base + sum of contributions - the booster's raw output).
4. Report generation (fresh CLI processes, median of `--repeats`): a model dossier (HTML, PDF)
   and a decision report (PDF), beside the CLI's start-up alone.

Models and data come from a demo store in `--work` (`suitability demo --out DIR`, created when
absent: 20,000 customers, about 7 minutes on 2 cores). Each model is measured in a fresh
process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

MODELS = {"risk-level": "risk_level", "churn": "churn"}
BASELINE = "shap TreeExplainer (default)"


def _ensure_store(work: Path) -> None:
    """Create the demo store under `work` unless both training tables and the store exist."""
    needed = [work / "mlflow.db", *(work / f"{t}_training.parquet" for t in MODELS.values())]
    if all(p.exists() for p in needed):
        return
    cli = Path(sys.executable).with_name("suitability")
    print(f"no demo store in {work}: running `suitability demo --out {work}`", file=sys.stderr)
    subprocess.run([str(cli), "demo", "--out", str(work)], check=True, stdout=subprocess.DEVNULL)


def _load_model(work: Path, name: str):
    import mlflow

    from suitability import tracking

    tracking.use_store(f"sqlite:///{work.resolve()}/mlflow.db")
    uri = f"models:/suitability-{name}@champion"
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().model


def _sample_rows(work: Path, name: str, rows: int, seed: int):
    import pandas as pd

    table = pd.read_parquet(work / f"{MODELS[name]}_training.parquet")
    frame = table.sample(n=rows, replace=rows > len(table), random_state=seed)
    return frame.reset_index(drop=True), len(table)


def _boosters(model) -> list:
    return list(model.boosters) if hasattr(model, "boosters") else [model.booster]


def _iterations(booster) -> int:
    return booster.best_iteration if booster.best_iteration > 0 else booster.num_trees()


def _shap_internal(booster, categorical: list[int]):
    """A `shap.TreeExplainer` forced onto shap's own C++ TreeSHAP, its parsed trees corrected to
    LightGBM's decision rules, and the input transform that goes with it.

    shap's LightGBM parser (0.51) reads category c of a categorical split as bit c-1, so category
    0 (our first vocabulary entry) can never match; and it sends missing values to the default
    child even where LightGBM's `missing_type` is None, under which LightGBM compares NaN as 0.
    Re-encoding category c as bit c with inputs shifted by one, and pointing those nodes' default
    child where 0 would go, reproduces LightGBM's routing exactly; timing is unaffected."""
    import shap

    explainer = shap.TreeExplainer(booster)
    trees = explainer.model
    if trees.trees is None:
        raise ValueError("shap could not parse the trees for its C++ path")
    for t, info in enumerate(booster.dump_model()["tree_info"]):
        stack = [info["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_index" not in node:
                continue
            i = node["split_index"]
            left, right = trees.children_left[t, i], trees.children_right[t, i]
            if node["decision_type"] == "==":
                categories = [int(c) for c in str(node["threshold"]).split("||")]
                if max(categories) >= 30:  # shap's C++ reads the set as an int bitmask
                    raise ValueError("category codes beyond 30 do not fit shap's bitmask")
                trees.thresholds[t, i] = float(sum(2**c for c in categories))
                trees.children_default[t, i] = right  # LightGBM: missing categories go right
            elif node["missing_type"] == "None":
                trees.children_default[t, i] = left if node["threshold"] >= 0.0 else right
            elif node["missing_type"] == "Zero":
                raise ValueError("missing_type Zero has no equivalent in shap's C++ path")
            stack += [node["left_child"], node["right_child"]]
    trees.model_type = "internal"

    def shift(x: np.ndarray) -> np.ndarray:
        shifted = x.copy()
        shifted[:, categorical] += 1
        return shifted

    return explainer, shift


def _interleaved_runs(
    methods: dict[str, Callable[[], object]], repeats: int, log: Callable[[str], None]
) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Run every method once per round, `repeats` rounds, so a slow spell on a shared machine
    falls on all methods alike rather than on whichever ran then. Keeps each method's last output."""
    seconds: dict[str, list[float]] = {label: [] for label in methods}
    outputs: dict[str, object] = {}
    for round_ in range(repeats):
        for label, fn in methods.items():
            began = time.perf_counter()
            outputs[label] = fn()
            seconds[label].append(time.perf_counter() - began)
            log(f"{label}: round {round_ + 1}/{repeats}: {seconds[label][-1]:.1f}s")
    return seconds, outputs


def _interleaved_latency(
    methods: dict[str, Callable[[int], object]], calls: int, warmup: int = 20
) -> dict[str, dict[str, float]]:
    """Milliseconds per single-row call: every method explains row i in turn before row i+1,
    after `warmup` such turns, so a busy spell on the machine hits all methods alike."""
    for i in range(warmup):
        for fn in methods.values():
            fn(i)
    ms: dict[str, list[float]] = {label: [] for label in methods}
    for i in range(calls):
        for label, fn in methods.items():
            began = time.perf_counter()
            fn(i)
            ms[label].append((time.perf_counter() - began) * 1000)
    return {
        label: {"median_ms": statistics.median(v), "p99_ms": float(np.percentile(v, 99))}
        for label, v in ms.items()
    }


def _worker(work: Path, name: str, rows: int, repeats: int, calls: int, seed: int) -> dict:
    """Measure one model in this process; returns one JSON-able dict."""
    import shap

    from suitability.explain.contributions import explain_frame, explain_matrix, raw_outputs

    warnings.filterwarnings("ignore", module="shap")
    model = _load_model(work, name)
    frame, table_rows = _sample_rows(work, name, rows, seed)
    boosters = _boosters(model)
    limits = [_iterations(b) for b in boosters]
    categorical = model.layout.categorical_indices
    x = model.layout.matrix(frame)
    default = [shap.TreeExplainer(b) for b in boosters]
    internal = [_shap_internal(b, categorical) for b in boosters]
    x_shifted = internal[0][1](x)

    def run_default(m: np.ndarray) -> np.ndarray:  # (rows, boosters, features)
        return np.stack(
            [e.shap_values(m, tree_limit=k) for e, k in zip(default, limits, strict=True)], axis=1
        )

    def run_internal(m: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                e.shap_values(m, tree_limit=k, check_additivity=False)
                for (e, _), k in zip(internal, limits, strict=True)
            ],
            axis=1,
        )

    methods: dict[str, Callable[[], object]] = {
        "ours: explain_frame (incl. matrix build)": lambda: explain_frame(model, frame),
        "ours: explain_matrix (prebuilt matrix)": lambda: explain_matrix(model, x),
        BASELINE: lambda: run_default(x),
        "shap TreeExplainer, internal C++": lambda: run_internal(x_shifted),
    }
    seconds, outputs = _interleaved_runs(
        methods, repeats, lambda line: print(f"  {name}: {line}", file=sys.stderr, flush=True)
    )
    throughput = {
        label: {
            "seconds": s,
            "median_s": statistics.median(s),
            "rows_per_s": rows / statistics.median(s),
        }
        for label, s in seconds.items()
    }

    ours = outputs["ours: explain_frame (incl. matrix build)"]
    cuts = ours.values[:, : len(boosters), :]
    raw = raw_outputs(model, frame)
    shap_bases = {
        BASELINE: [np.ravel(e.expected_value)[0] for e in default],
        "shap TreeExplainer, internal C++": [np.ravel(e.expected_value)[0] for e, _ in internal],
    }
    agreement = {
        "additivity_max_abs": float(np.abs(ours.raw - raw).max()),
        **{
            label: {
                "values_max_abs": float(np.abs(outputs[label] - cuts).max()),
                "base_max_abs": float(
                    np.abs(np.array(bases) - ours.base[0, : len(boosters)]).max()
                ),
            }
            for label, bases in shap_bases.items()
        },
    }

    pool = min(calls, rows)  # distinct rows the single-row calls cycle through
    one_rows = [frame.iloc[[i]] for i in range(pool)]
    latency = _interleaved_latency(
        {
            "ours: explain_frame (incl. matrix build)": lambda i: explain_frame(
                model, one_rows[i % pool]
            ),
            "ours: explain_matrix (prebuilt matrix)": lambda i: explain_matrix(
                model, x[i % pool : i % pool + 1]
            ),
            BASELINE: lambda i: run_default(x[i % pool : i % pool + 1]),
            "shap TreeExplainer, internal C++": lambda i: run_internal(
                x_shifted[i % pool : i % pool + 1]
            ),
        },
        calls,
    )
    return {
        "model": name,
        "rows": rows,
        "table_rows": table_rows,
        "features": len(model.layout.names),
        "trees": sum(limits),
        "boosters": len(boosters),
        "throughput": throughput,
        "latency": latency,
        "agreement": agreement,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _decision_case(work: Path) -> tuple[str, str]:
    """The customer and product of the demo's decision report, else the first reviewed customer
    and the first product."""
    import pandas as pd

    for path in sorted((work / "reports").glob("decision-*.pdf")):
        _, customer, product = path.name.split(".")[0].split("-", 2)
        return customer, product
    reviews = pd.read_parquet(work / "risk_level_training.parquet", columns=["customer_id"])
    products = pd.read_parquet(work / "data" / "products.parquet", columns=["product_id"])
    return str(reviews["customer_id"].iloc[0]), str(products["product_id"].iloc[0])


def _reports(work: Path, repeats: int) -> list[dict] | None:
    """Wall time of report commands, each a fresh process (what a user waits for)."""
    cli = str(Path(sys.executable).with_name("suitability"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work.resolve()}/mlflow.db"}
    if subprocess.run([cli, "report", "--help"], capture_output=True, env=env).returncode != 0:
        return None
    customer, product = _decision_case(work)
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "CLI start-up (`report --help`, baseline)": ["report", "--help"],
            "model dossier risk-level, HTML": [
                "report", "model", "risk-level", "--out", f"{tmp}/dossier.html", "--no-log",
            ],
            "model dossier risk-level, PDF": [
                "report", "model", "risk-level", "--out", f"{tmp}/dossier.pdf", "--no-log",
            ],
            f"decision {customer} × {product}, PDF": [
                "report", "decision", "--data", str(work / "data"), "--customer", customer,
                "--product", product, "--out", f"{tmp}/decision.pdf", "--no-log",
            ],
        }  # fmt: skip
        results = []
        for label, args in commands.items():
            seconds = []
            for _ in range(repeats):
                began = time.perf_counter()
                subprocess.run([cli, *args], check=True, capture_output=True, env=env)
                seconds.append(time.perf_counter() - began)
            print(f"  report: {label}: {statistics.median(seconds):.1f}s", file=sys.stderr)
            results.append({"report": label, "seconds": seconds})
    return results


def _print_tables(models: list[dict], reports: list[dict] | None) -> None:
    for m in models:
        base = m["throughput"][BASELINE]["rows_per_s"]
        print(
            f"\n### {m['model']}: {m['rows']:,} rows ({m['table_rows']:,} training rows sampled "
            f"with replacement), {m['features']} features, {m['boosters']} booster(s), "
            f"{m['trees']} trees; peak RSS {m['peak_rss_mib']:,.0f} MiB\n"
        )
        print("| method | median s | rows/s | vs shap default | 1-row median ms | 1-row p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, t in m["throughput"].items():
            lat = m["latency"][label]
            print(
                f"| {label} | {t['median_s']:.1f} | {t['rows_per_s']:,.0f} | "
                f"{t['rows_per_s'] / base:.2f}× | {lat['median_ms']:.2f} | {lat['p99_ms']:.2f} |"
            )
        a = m["agreement"]
        print(
            f"\nmax |ours - shap default| {a[BASELINE]['values_max_abs']:.1e} (base "
            f"{a[BASELINE]['base_max_abs']:.1e}); max |ours - shap internal C++| "
            f"{a['shap TreeExplainer, internal C++']['values_max_abs']:.1e} (base "
            f"{a['shap TreeExplainer, internal C++']['base_max_abs']:.1e}); max additivity "
            f"error {a['additivity_max_abs']:.1e}"
        )
    if reports is None:
        print(
            "\nreport generation: not measured (--skip-reports, or no `suitability report` command)"
        )
        return
    base = statistics.median(reports[0]["seconds"])
    print("\n### Report generation (fresh CLI process each, median)\n")
    print("| report | median s | minus start-up s |")
    print("|---|---:|---:|")
    for r in reports:
        median = statistics.median(r["seconds"])
        print(f"| {r['report']} | {median:.1f} | {median - base:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200, help="single-row calls per method")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_demo")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-reports", action="store_true")
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = _worker(args.work, args.worker, args.rows, args.repeats, args.calls, args.seed)
        print(json.dumps(result))
        return
    began = time.perf_counter()
    _ensure_store(args.work)
    models = []
    for name in MODELS:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", name, "--work", str(args.work),
             "--rows", str(args.rows), "--repeats", str(args.repeats),
             "--calls", str(args.calls), "--seed", str(args.seed)],
            check=True, stdout=subprocess.PIPE, text=True,
        ).stdout  # fmt: skip
        models.append(json.loads(out.strip().splitlines()[-1]))
    reports = None if args.skip_reports else _reports(args.work, args.repeats)
    _print_tables(models, reports)
    report = {
        "rows": args.rows,
        "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "models": models,
        "reports": reports,
        "total_minutes": (time.perf_counter() - began) / 60,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    print(f"\n({report['total_minutes']:.1f} min)")


if __name__ == "__main__":
    main()
