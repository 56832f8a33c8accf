"""Would batching requests together pay off? In-process, without HTTP: the scoring engine answers
k `/suitability` requests one call each (what the service does per request) and in one call of k
(what adaptive batching, or a `/suitability/batch` call, would do). Batching can only help as far
as the per-item time of one call of k falls below the single-request time.

    .venv/bin/python benchmarks/bench_batching.py --store DIR [--repeats 5] [--sizes 1,8,32]

`--store` is a `suitability demo --out DIR` folder (its data and registered champions). The
bodies are the first customers (by id) with a questionnaire, as of the data's last event.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd

from suitability import tracking
from suitability.data.io import read_customer_records
from suitability.explain.cases import default_as_of
from suitability.serving.bodies import request_body
from suitability.serving.keys import Caller
from suitability.serving.requests import SuitabilityRequest
from suitability.serving.service import load_scorer

PRODUCT = {"product_id": "P00008", "risk_level": "R3", "category": "mixed_fund", "term_days": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="a `suitability demo` folder")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="1,8,32")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    tracking.use_store(f"sqlite:///{(args.store / 'mlflow.db').resolve()}")
    scorer = load_scorer("champion")
    data = args.store / "data"
    as_of = default_as_of(data)
    ids = sorted(pd.read_parquet(data / "customers")["customer_id"].astype(str))
    requests: list[SuitabilityRequest] = []
    for cid in ids:
        body = request_body(
            read_customer_records(data, cid), as_of, product=PRODUCT, initiated_by="investor"
        )
        if body["answers"]:
            requests.append(SuitabilityRequest.model_validate(body, strict=False))
        if len(requests) == max(sizes):
            break
    caller = Caller("bench", "matching")
    scorer.suitability(requests[:1], ["warm"], caller)

    print(f"{'k':>4} {'k single calls ms/item':>24} {'one call of k ms/item':>22} {'ratio':>7}")
    for k in sizes:
        batch = requests[:k]
        ids_k = [f"r{i}" for i in range(k)]
        singles, together = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for i, request in enumerate(batch):
                scorer.suitability([request], [ids_k[i]], caller)
            singles.append((time.perf_counter() - start) / k * 1e3)
            start = time.perf_counter()
            scorer.suitability(batch, ids_k, caller, batch=True)
            together.append((time.perf_counter() - start) / k * 1e3)
        one, many = statistics.median(singles), statistics.median(together)
        print(f"{k:>4} {one:>24.2f} {many:>22.2f} {many / one:>7.2f}")


if __name__ == "__main__":
    main()
