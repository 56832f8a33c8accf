"""Feature build benchmark: `suitability features build` against the pandas code a data
scientist would write, and DuckDB's own aggregation as the near-limit reference, on the same
data folder, in the same run; then the contract stage alone against pandera, per table.

    .venv/bin/python benchmarks/bench_features.py --data DIR [--as-of 2026-06-01] [--runs 3]
        [--contract-runs 1] [--methods pandas-groupby,pandas,duckdb,suitability] [--json PATH]

Methods (each measured run is a fresh child process, so its peak RSS is its own):
- pandas-groupby: the ten-minute script — read the events (text as categoricals), counts and
  amounts per event type for each window with one groupby per window, write. Validates nothing,
  computes 60 of the ~190 features: the floor `suitability` must beat end to end.
- pandas: the same behaviour features as the kernel, vectorised pandas over the whole table
  (`pandas_baseline.pandas_behaviour_features`, checked against the kernel by a test).
- duckdb: one SQL aggregation of the counts and amounts per (customer, event type) for every
  window straight from the parquet files, written to parquet: near the limit of the machine.
- suitability: `build_features` — validate the four tables the features read (customers,
  questionnaires, events, interview tags), compute all features, write.

Contract stage: each table read and checked by `suitability`'s arrow checks against the same
table read into pandas and checked by pandera with the same rules (`pandera_contracts.py`),
events a file part at a time for both.
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
METHODS = ("pandas-groupby", "pandas", "duckdb", "suitability")
WHAT = {
    "pandas-groupby": "counts and amounts per event type and window (read + groupby + write)",
    "pandas": "all behaviour features, vectorised pandas (read + compute + write)",
    "duckdb": "counts and amounts per event type and window, one SQL query (read + aggregate + write)",
    "suitability": "all features (validate 4 tables + read + kernel + write)",
}


def _table_path(data: Path, name: str) -> Path:
    return data / name if (data / name).is_dir() else data / f"{name}.parquet"


def _child(method: str, data: Path, as_of: str, out: str) -> None:
    """One measured run; prints a JSON line with wall time, peak RSS, sizes and stages."""
    import pandas as pd

    from suitability.specs import load_specs

    sys.path.insert(0, str(HERE))
    specs = load_specs()
    t = pd.Timestamp(as_of)
    windows = specs.behaviour.windows
    stages: dict[str, float] = {}
    began = time.perf_counter()
    if method == "suitability":
        from suitability.features.builder import build_features

        summary = build_features(data, [t], out, specs)
        rows, events, stages = summary.rows, summary.events, summary.seconds
    elif method == "duckdb":
        import duckdb

        events_glob = str(_table_path(data, "events") / "*.parquet")
        if not _table_path(data, "events").is_dir():
            events_glob = str(_table_path(data, "events"))
        aggregates = ", ".join(
            f"count(*) FILTER (WHERE event_time > TIMESTAMP '{as_of}' - INTERVAL {w} DAY) AS n_{w}d, "
            f"sum(amount) FILTER (WHERE event_time > TIMESTAMP '{as_of}' - INTERVAL {w} DAY) AS amt_{w}d"
            for w in windows
        )
        with duckdb.connect() as con:
            events = con.execute(f"SELECT count(*) FROM read_parquet('{events_glob}')").fetchall()[
                0
            ][0]
            con.execute(
                f"""COPY (SELECT customer_id, event_type, {aggregates}
                    FROM read_parquet('{events_glob}')
                    WHERE event_time <= TIMESTAMP '{as_of}'
                    GROUP BY customer_id, event_type) TO '{out}' (FORMAT parquet)"""
            )
            rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()[0][0]
    else:
        from pandas_baseline import (
            COLUMNS,
            pandas_behaviour_features,
            pandas_groupby_counts,
            read_events,
        )

        tick = time.perf_counter()
        if method == "pandas-groupby":
            frame_events = read_events(
                _table_path(data, "events"), ["customer_id", "event_time", "event_type", "amount"]
            )
        else:
            frame_events = read_events(_table_path(data, "events"), COLUMNS)
            customers = pd.read_parquet(
                _table_path(data, "customers"), columns=["customer_id", "registered_at"]
            )
        stages["read"] = time.perf_counter() - tick
        tick = time.perf_counter()
        if method == "pandas-groupby":
            frame = pandas_groupby_counts(frame_events, t, windows)
        else:
            ids = pd.Index(customers.loc[customers["registered_at"] <= t, "customer_id"])
            frame = pandas_behaviour_features(frame_events, ids.sort_values(), t, specs)
        stages["compute"] = time.perf_counter() - tick
        tick = time.perf_counter()
        frame.reset_index().to_parquet(out)
        stages["write"] = time.perf_counter() - tick
        rows, events = len(frame), len(frame_events)
    wall = time.perf_counter() - began
    print(
        json.dumps(
            {
                "method": method,
                "wall_s": wall,
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rows": int(rows),
                "events": int(events),
                "stages": stages,
            }
        )
    )


def _contract_child(method: str, data: Path) -> None:
    """The contract stage alone: seconds and rows per table, one JSON line."""
    import pyarrow.dataset as ds

    from suitability.data import io
    from suitability.data.schema import TABLES
    from suitability.specs import load_specs

    specs = load_specs()
    out: dict[str, dict[str, float]] = {}
    if method == "suitability":
        ids = io.read_customer_ids(data)
        for name in TABLES:
            began = time.perf_counter()
            if name == "events":
                rows = sum(len(a["customer_id"]) for a in io.iter_event_arrays(data, specs, ids))
            else:
                rows = len(io.load_table(data, name, specs, ids))
            out[name] = {"seconds": time.perf_counter() - began, "rows": rows}
    else:
        import pandas as pd
        import pyarrow as pa

        sys.path.insert(0, str(HERE))
        from pandera_contracts import pandera_schema, validate

        text = pd.StringDtype("pyarrow", na_value=float("nan"))
        # The canonical dtypes pandera's schema expects (what `io` hands on).
        types = {pa.string(): text, pa.large_string(): text, pa.int32(): pd.Int64Dtype()}
        types[pa.int64()] = pd.Int64Dtype()
        types = types.get

        customer_ids = None
        for name, table in TABLES.items():
            began = time.perf_counter()
            path = _table_path(data, name)
            parts = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
            columns = [c for c in table.column_names if c in ds.dataset(parts[0]).schema.names]
            rows = failures = 0
            # Events a part at a time (memory); the rest whole (unique keys need every row).
            groups = [[p] for p in parts] if name == "events" else [parts]
            for group in groups:
                table_ = ds.dataset(group).to_table(columns=columns)
                for i, field in enumerate(table_.schema):
                    if pa.types.is_date(field.type):  # dates as the contract's timestamps
                        table_ = table_.set_column(
                            i, field.name, table_[field.name].cast(pa.timestamp("us"))
                        )
                frame = table_.to_pandas(types_mapper=types)
                for c in frame.columns:
                    if str(frame[c].dtype).startswith("datetime64"):
                        frame[c] = frame[c].astype("datetime64[us]")
                failures += validate(frame, pandera_schema(table, specs, customer_ids))
                rows += len(frame)
                if name == "customers":
                    customer_ids = pd.Index(frame["customer_id"].dropna().unique())
            out[name] = {"seconds": time.perf_counter() - began, "rows": rows, "failures": failures}
    print(json.dumps({"method": method, "tables": out}))


def _run_child(args: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(data: Path, as_of: str, runs: int, methods: tuple[str, ...] = METHODS) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        samples: dict[str, list[dict]] = {m: [] for m in methods}
        for i in range(runs):  # the methods take turns, so a slow spell hits all of them
            for method in methods:
                out = str(Path(tmp) / f"{method}-{i}.parquet")
                samples[method].append(
                    _run_child(
                        ["--child", method, "--data", str(data), "--as-of", as_of, "--out", out]
                    )
                )
                print(
                    f"  {method} run {i + 1}/{runs}: {samples[method][-1]['wall_s']:.1f}s",
                    file=sys.stderr,
                )
        for method in methods:
            s = samples[method]
            results.append(
                {
                    "method": method,
                    "runs": runs,
                    "median_wall_s": statistics.median(x["wall_s"] for x in s),
                    "median_peak_mib": statistics.median(x["peak_mib"] for x in s),
                    "rows": s[0]["rows"],
                    "events": s[0]["events"],
                    "median_stage_s": {
                        k: statistics.median(x["stages"][k] for x in s) for k in s[0]["stages"]
                    },
                }
            )
    return results


def measure_contracts(data: Path, runs: int) -> list[dict]:
    samples: dict[str, list[dict]] = {"suitability": [], "pandera": []}
    for i in range(runs):
        for method in samples:
            samples[method].append(_run_child(["--contract-child", method, "--data", str(data)]))
            total = sum(t["seconds"] for t in samples[method][-1]["tables"].values())
            print(f"  contracts {method} run {i + 1}/{runs}: {total:.1f}s", file=sys.stderr)
    rows = []
    for table in samples["suitability"][0]["tables"]:
        ours = statistics.median(s["tables"][table]["seconds"] for s in samples["suitability"])
        theirs = statistics.median(s["tables"][table]["seconds"] for s in samples["pandera"])
        rows.append(
            {
                "table": table,
                "rows": samples["suitability"][0]["tables"][table]["rows"],
                "suitability_s": ours,
                "pandera_s": theirs,
                "pandera_failures": samples["pandera"][0]["tables"][table]["failures"],
                "runs": runs,
            }
        )
    return rows


def print_table(results: list[dict]) -> None:
    by = {r["method"]: r for r in results}
    base = by["pandas-groupby"]["median_wall_s"]
    fair = by["pandas"]["median_wall_s"] if "pandas" in by else float("nan")
    print(
        "| method | what it computes | median wall (s) | events/s | peak RSS (MiB) | "
        "speed-up vs pandas-groupby | speed-up vs pandas (same features) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        wall = r["median_wall_s"]
        print(
            f"| {r['method']} | {WHAT[r['method']]} | {wall:.1f} | {r['events'] / wall:,.0f} | "
            f"{r['median_peak_mib']:,.0f} | {base / wall:.2f}× | "
            + (f"{fair / wall:.2f}× |" if fair == fair else "– |")
        )
    for r in results:
        if r["median_stage_s"]:
            stages = ", ".join(f"{k} {v:.1f}" for k, v in r["median_stage_s"].items())
            print(f"\n{r['method']} stages (median s): {stages}")


def print_contracts(rows: list[dict]) -> None:
    print("\n| table | rows | suitability (s) | pandera (s) | pandera's failure cases | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['table']} | {r['rows']:,} | {r['suitability_s']:.2f} | {r['pandera_s']:.2f} | "
            f"{r['pandera_failures']:,} | {r['pandera_s'] / r['suitability_s']:.1f}× |"
        )
    ours = sum(r["suitability_s"] for r in rows)
    theirs = sum(r["pandera_s"] for r in rows)
    print(f"| all six | | {ours:.2f} | {theirs:.2f} | | {theirs / ours:.1f}× |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", required=True, type=Path, help="data folder (e.g. from `suitability data synth`)"
    )
    parser.add_argument("--as-of", default="2026-06-01")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--contract-runs", type=int, default=1, help="0: skip the contract table")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)} (pandas-groupby is always run)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--contract-child", choices=["suitability", "pandera"], help=argparse.SUPPRESS
    )
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.data, args.as_of, args.out)
        return
    if args.contract_child:
        _contract_child(args.contract_child, args.data)
        return
    wanted = {m.strip() for m in args.methods.split(",")} | {"pandas-groupby"}
    unknown = wanted - set(METHODS)
    if unknown:
        parser.error(f"--methods: unknown {', '.join(sorted(unknown))}")
    results = measure(args.data, args.as_of, args.runs, tuple(m for m in METHODS if m in wanted))
    print_table(results)
    contracts = measure_contracts(args.data, args.contract_runs) if args.contract_runs else []
    if contracts:
        print_contracts(contracts)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"features": results, "contracts": contracts}, indent=2))


if __name__ == "__main__":
    main()
