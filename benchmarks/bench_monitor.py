"""Monitoring: how fast `feature_drift` checks a million current rows of the churn model's 190
features against a training reference, beside the obvious code a good engineer would write
first, in the same run.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_monitor.py [--rows 1000000]
        [--reference-rows 100000] [--repeats 3] [--json PATH]

The frame is synthetic, shaped like the catalogue (amounts that are zero for the inactive,
counts, scores, shares with missing values, day counts, flags, the profile categories; see
`catalogue_frame`), so the bench needs no world or model. Timed, median of `--repeats` rounds
with the methods taking turns within each round:

- ours: `feature_drift` (counts in the reference's bins, PSI, Jensen–Shannon distance, the
  binned KS or chi-square test and the status of every feature);
- baseline, pandas: per column `pd.cut` on the reference's edges and `value_counts` (categories:
  `value_counts` of the text), then the PSI with numpy; PSI only, no test;
- numpy binary search: per column `np.searchsorted` on the edges and `np.bincount`, then the PSI
  (what ours did first; ours counts the rows at or below each edge instead).

Every method's PSIs are checked against ours (largest absolute difference shown). Also timed
once: the reference itself at `--reference-rows` rows, and `prediction_drift` on the current
rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from suitability.models.estimators import FeatureLayout
from suitability.monitoring.drift import feature_drift, prediction_drift, psi
from suitability.monitoring.reference import (
    CategoricalReference,
    Reference,
    build_reference,
    reference_to_json,
)
from suitability.monitoring.spec import load_monitoring_spec
from suitability.specs import Specs, load_specs

ROOT = Path(__file__).resolve().parents[1]
#: Share of rows with a non-zero amount, by look-back window.
_ACTIVE = {"7d": 0.2, "30d": 0.4, "90d": 0.6, "365d": 0.8, "1095d": 0.9}


def catalogue_frame(specs: Specs, names: list[str], rows: int, seed: int) -> pd.DataFrame:
    """`rows` rows of the features `names`, each drawn by its catalogue unit."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for name in names:
        info = specs.features_by_name[name]
        active = _ACTIVE.get(name.rsplit("_", 1)[-1], 0.7)
        match info.unit:
            case "amount":
                amounts = np.round(rng.lognormal(9, 1.2, rows), 2)
                columns[name] = amounts * (rng.random(rows) < active)
            case "count":
                columns[name] = rng.poisson(10 * active, rows)
            case "decayed_count":
                columns[name] = rng.exponential(0.5, rows) * (rng.random(rows) < 0.2)
            case "share" | "ratio":
                columns[name] = np.where(rng.random(rows) < 0.3, np.nan, rng.beta(2, 3, rows))
            case "days":
                columns[name] = np.where(rng.random(rows) < 0.1, np.nan, rng.exponential(60, rows))
            case "years":
                columns[name] = rng.integers(18, 80, rows)
            case "score" | "level":
                columns[name] = rng.integers(1, 6, rows)
            case "flag":
                columns[name] = (rng.random(rows) < 0.05).astype(np.int64)
            case "category":
                categories = specs.categories_of(name)
                columns[name] = pd.Categorical(rng.choice(categories, rows), categories=categories)
    return pd.DataFrame(columns)


def pandas_psis(reference: Reference, frame: pd.DataFrame, epsilon: float) -> dict[str, float]:
    """The baseline: `pd.cut` and `value_counts` per column, missing values counted last."""
    out = {}
    for name, column in reference.features.items():
        if isinstance(column, CategoricalReference):
            counts = frame[name].astype(object).value_counts()
            known = [int(counts.get(c, 0)) for c in column.categories]
            missing = int(frame[name].isna().sum())
            current = [*known, len(frame) - sum(known) - missing, missing]
        else:
            cut = pd.cut(frame[name], [-np.inf, *column.edges, np.inf], right=True, labels=False)
            counts = cut.value_counts(sort=False, dropna=False)
            current = [int(counts.get(i, 0)) for i in range(len(column.edges) + 1)]
            current.append(int(cut.isna().sum()))
        out[name] = psi(column.bin_counts(), np.asarray(current), epsilon)
    return out


def searchsorted_psis(
    reference: Reference, frame: pd.DataFrame, epsilon: float
) -> dict[str, float]:
    """Numbers placed by a binary search per row (`searchsorted`, +inf appended so NaN lands
    in the missing bin) and counted by `bincount`; categories as ours count them."""
    from suitability.monitoring.binning import category_counts

    out = {}
    for name, column in reference.features.items():
        if isinstance(column, CategoricalReference):
            current = category_counts(frame[name], column.categories)
        else:
            values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
            closed = np.append(np.asarray(column.edges), np.inf)
            current = np.bincount(
                np.searchsorted(closed, values, side="left"), minlength=len(column.edges) + 2
            )
        out[name] = psi(column.bin_counts(), current, epsilon)
    return out


def _timed(call: Callable[[], object]) -> tuple[float, object]:
    began = time.perf_counter()
    value = call()
    return time.perf_counter() - began, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    specs = load_specs(ROOT / "features")
    spec = load_monitoring_spec(ROOT / "models" / "monitoring.yaml")
    names = [n for n in specs.feature_names if n != "gender"]  # the churn model's 190
    layout = FeatureLayout(
        tuple(names),
        {
            n: tuple(specs.categories_of(n))
            for n in names
            if specs.features_by_name[n].is_categorical
        },
    )
    reference_frame = catalogue_frame(specs, names, args.reference_rows, seed=1)
    proba = np.random.default_rng(1).beta(2, 5, args.reference_rows)
    reference_s, reference = _timed(
        lambda: build_reference(
            reference_frame, proba, layout, task="binary", classes=["0", "1"], bins=spec.bins
        )
    )
    assert isinstance(reference, Reference)
    print(f"generating {args.rows:,} current rows × {len(names)} features …", flush=True)
    current = catalogue_frame(specs, names, args.rows, seed=2)

    methods: dict[str, Callable[[], dict[str, float]]] = {
        "ours: feature_drift (PSI, JS, test, status)": lambda: {
            c.name: c.psi for c in feature_drift(reference, current, spec)
        },
        "baseline: pandas pd.cut + value_counts, PSI": lambda: pandas_psis(
            reference, current, spec.epsilon
        ),
        "numpy searchsorted + bincount, PSI": lambda: searchsorted_psis(
            reference, current, spec.epsilon
        ),
    }
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    psis: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):
        for name, method in methods.items():
            elapsed, value = _timed(method)
            seconds[name].append(elapsed)
            psis[name] = value  # type: ignore[assignment]
    ours, baseline = list(methods)[:2]
    predictions_s, _ = _timed(
        lambda: prediction_drift(reference, np.random.default_rng(3).beta(2, 5, args.rows), spec)
    )

    print(
        f"\n{args.rows:,} current rows × {len(names)} features, reference of "
        f"{args.reference_rows:,} rows; median of {args.repeats}\n"
    )
    print("| method | median s | rows × features / s | × baseline | max abs PSI − ours |")
    print("|---|---:|---:|---:|---:|")
    record = {}
    base = statistics.median(seconds[baseline])
    for name in methods:
        median = statistics.median(seconds[name])
        gap = max(abs(psis[name][k] - psis[ours][k]) for k in psis[ours])
        cells = f"{median:.2f} | {args.rows * len(names) / median:,.0f} | {base / median:.1f} | {gap:.1e}"
        print(f"| {name} | {cells} |")
        record[name] = {"seconds": seconds[name], "median": median, "max_psi_gap": gap}
    size = len(json.dumps(reference_to_json(reference)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nreference of {args.reference_rows:,} rows built in {reference_s:.2f} s "
        f"({size / 1024:.0f} KiB of JSON); prediction_drift on {args.rows:,} rows "
        f"{predictions_s:.2f} s; peak RSS {peak:,.0f} MiB"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "rows": args.rows,
                    "features": len(names),
                    "reference_rows": args.reference_rows,
                    "methods": record,
                    "reference_seconds": reference_s,
                    "reference_json_bytes": size,
                    "prediction_drift_seconds": predictions_s,
                    "peak_rss_mib": peak,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
