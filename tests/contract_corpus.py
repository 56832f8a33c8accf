"""A corpus of broken data folders, for checking that the contract checks report exactly the
problems they reported before they moved from pandera to arrow: every rule of `data/schema.py`
(the `RULE_CASES` of test_contracts), each as one parquet file, one CSV file and a folder of
parquet parts read in small batches, plus larger tables with many problems spread over batches.

`python tests/contract_corpus.py OUT.json` writes the reports (the golden file
`tests/data/contract_corpus.json` was written by the pandera-based checks of commit 572e8fa;
since the scale-out work, rules tied in the "by rule" summary are listed in declared order, so
one message's summary lines were reordered, its problems and counts unchanged).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suitability.data.contracts import ContractError
from suitability.data.io import validate_folder
from suitability.specs import Specs, load_specs
from test_contracts import RULE_CASES, tiny_tables, write_tables

GOLDEN = Path(__file__).resolve().parent / "data" / "contract_corpus.json"

Writer = Callable[[Path, dict[str, pd.DataFrame]], None]


def _parquet(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    write_tables(folder, tables)


def _csv(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    write_tables(folder, tables, "csv")


def _parts(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Each table as a folder of parquet parts of at most 3 rows (numbered across parts)."""
    for name, frame in tables.items():
        (folder / name).mkdir(parents=True)
        for i, start in enumerate(range(0, max(len(frame), 1), 3)):
            frame.iloc[start : start + 3].to_parquet(folder / name / f"part-{i:03d}.parquet")


FORMATS: dict[str, tuple[Writer, int]] = {
    # format -> (writer, rows per validated batch)
    "parquet": (_parquet, 1_000_000),
    "csv": (_csv, 1_000_000),
    "parts": (_parts, 2),
}


def _many(specs: Specs) -> dict[str, pd.DataFrame]:
    """3,000 events of 300 customers with problems of every events rule spread over batches,
    a questionnaire with repeats and gaps, and tags out of order."""
    tables = tiny_tables(specs)
    rng = np.random.default_rng(5)
    base = tables["customers"]
    customers = pd.concat([base.iloc[[i % 3]] for i in range(300)], ignore_index=True)
    customers["customer_id"] = [f"C{i:04d}" for i in range(300)]
    tables["customers"] = customers
    events = tables["events"]
    events = pd.concat([events] * 500, ignore_index=True)
    events["customer_id"] = [f"C{i % 300:04d}" for i in range(len(events))]
    bad = rng.choice(len(events), size=60, replace=False)
    events.loc[bad[:10], "event_type"] = "teleport"
    events.loc[bad[10:20], "amount"] = -1.0
    events.loc[bad[20:25], "amount"] = np.inf
    events.loc[bad[25:30], "channel"] = None
    events.loc[bad[30:40], "customer_id"] = "C9999"
    events.loc[bad[40:45], "term_days"] = 10**6
    events.loc[bad[45:50], "duration_s"] = -np.inf
    events.loc[bad[50:55], "product_id"] = "x y"
    events.loc[bad[55:60], "product_risk"] = "R7"
    tables["events"] = events
    q = tables["questionnaire_responses"]
    tables["questionnaire_responses"] = pd.concat([q, q.iloc[[0, 1, 5]]], ignore_index=True).drop(
        index=[3, 20]
    )
    tags = tables["interview_tags"]
    tags = pd.concat([tags] * 50, ignore_index=True)
    tags.loc[::7, "recorded_at"] = pd.Timestamp("2020-01-01")
    tables["interview_tags"] = tags
    return tables


def cases(specs: Specs) -> Iterator[tuple[str, dict[str, pd.DataFrame]]]:
    for table, mutate, column, _row, rule in RULE_CASES:
        tables = tiny_tables(specs)
        mutate(tables)
        yield f"{table}.{column}:{rule}", tables
    yield "many problems", _many(specs)


def report(folder: Path, specs: Specs, batch_rows: int) -> dict[str, object]:
    """What `validate_folder` reports for a folder: the message and every kept problem."""
    try:
        validate_folder(folder, specs, batch_rows=batch_rows)
    except ContractError as exc:
        return {
            "message": str(exc),
            "total": exc.total,
            "problems": [[p.table, p.column, p.row, p.rule, p.value] for p in exc.problems],
            "counts": sorted([*k, n] for k, n in exc.counts.items()),
        }
    return {"message": None}


def reports(specs: Specs) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, tables) in enumerate(cases(specs)):
            for fmt, (write, batch_rows) in FORMATS.items():
                folder = Path(tmp) / f"{i}-{fmt}"
                write(folder, {k: v.copy() for k, v in tables.items()})
                out[f"{name} [{fmt}]"] = report(folder, specs, batch_rows)
    return out


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(
        json.dumps(reports(load_specs()), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
