"""The contract checks report exactly what they reported before they moved from pandera to
arrow (and whole-table checks to DuckDB): every rule, as parquet, CSV and parquet parts read in
small batches, plus tables with many problems spread over batches. The golden reports in
tests/data/contract_corpus.json were written by the pandera-based checks (commit 572e8fa)."""

from __future__ import annotations

import json

import pytest

from contract_corpus import GOLDEN, reports
from suitability.data import contracts


@pytest.fixture(scope="module")
def golden() -> dict[str, dict[str, object]]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def _compare(got: dict[str, dict[str, object]], golden: dict[str, dict[str, object]]) -> None:
    assert sorted(got) == sorted(golden)
    for case, want in golden.items():
        assert got[case] == want, case


@pytest.mark.slow
def test_every_broken_table_is_reported_as_before(specs, golden):
    assert all(r["message"] for r in golden.values())  # every case is broken
    _compare(reports(specs), golden)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["duckdb", "arrow"])
def test_whole_table_prechecks_of_every_engine_report_as_before(specs, golden, monkeypatch, engine):
    # Sorted tables are pre-checked by comparing neighbours (the default, tested above); here
    # that is off, so unsorted tables' engines run: DuckDB for any size, or arrow's hashing.
    monkeypatch.setattr(contracts, "_same_as_previous", lambda *_a: None)
    monkeypatch.setattr(contracts, "_DUCKDB_FROM_ROWS", 2 if engine == "duckdb" else 10**12)
    _compare(reports(specs), golden)
