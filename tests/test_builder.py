"""The batch builder end to end on generated data: training/serving parity through the bundle
path, point-in-time on real files, atomic output, PII never written, and the CLI's errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from suitability.cli import app
from suitability.data.pii import id_pseudonym
from suitability.data.synth import generate
from suitability.features.builder import (
    AsOfError,
    build_features,
    monthly_snapshots,
    parse_as_of,
)
from suitability.features.bundle import CustomerBundle, customer_features

AS_OF = [pd.Timestamp("2025-03-01"), pd.Timestamp("2026-01-01")]
runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "data"
    generate(out, 400, seed=3)
    return out


@pytest.fixture(scope="module")
def built(world, tmp_path_factory, specs) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("features") / "features.parquet"
    # Small chunks so several chunks (and their boundaries) are exercised.
    build_features(world, AS_OF, out, specs, chunk_customers=70)
    return pd.read_parquet(out)


def _raw(world: Path, table: str) -> pd.DataFrame:
    return pq.read_table(world / table).to_pandas()


def test_one_row_per_registered_customer_and_as_of(built, world, specs):
    customers = _raw(world, "customers")
    for t in AS_OF:
        registered = set(customers.loc[customers["registered_at"] <= t, "customer_id"])
        assert set(built.loc[built["as_of"] == t, "customer_id"]) == registered
    assert not built.duplicated(["customer_id", "as_of"]).any()
    assert list(built.columns) == ["customer_id", "as_of", *specs.feature_names]


def test_batch_and_single_customer_agree_exactly_on_100_customers(built, world, specs):
    customers = _raw(world, "customers")
    answers = _raw(world, "questionnaire_responses")
    events = _raw(world, "events")
    tags = _raw(world, "interview_tags")
    ids = built.groupby("customer_id").size().loc[lambda s: s == len(AS_OF)].index[:100]
    assert len(ids) == 100
    for cid in ids:
        bundle = CustomerBundle(
            profile=customers[customers["customer_id"] == cid].iloc[0].to_dict(),
            answers=answers[answers["customer_id"] == cid].to_dict("records"),
            events=events[events["customer_id"] == cid].to_dict("records"),
            tags=tags[tags["customer_id"] == cid].to_dict("records"),
        )
        single = customer_features(bundle, AS_OF, specs)
        batch = built[built["customer_id"] == cid].reset_index(drop=True)
        pd.testing.assert_frame_equal(single, batch, check_exact=True)


def test_builder_ignores_facts_after_as_of(world, tmp_path, specs):
    """Append future facts to the raw files; features at t are unchanged."""
    t = pd.Timestamp("2025-03-01")
    before = tmp_path / "before.parquet"
    build_features(world, [t], before, specs)
    future = tmp_path / "future"
    shutil.copytree(world, future)
    events = _raw(world, "events")
    late = events.sample(2000, random_state=0).assign(
        event_time=lambda d: (t + pd.to_timedelta(np.arange(len(d)) % 5000 + 1, unit="s")).astype(
            "datetime64[us]"
        )
    )
    pq.write_table(
        pq.read_table(world / "events").schema.empty_table(),
        future / "events" / "part-99998.parquet",
    )
    late_table = pq.read_table(world / "events").schema
    pq.write_table(
        __import__("pyarrow").Table.from_pandas(late, schema=late_table, preserve_index=False),
        future / "events" / "part-99999.parquet",
    )
    after = tmp_path / "after.parquet"
    build_features(future, [t], after, specs)
    pd.testing.assert_frame_equal(pd.read_parquet(before), pd.read_parquet(after), check_exact=True)


def test_output_is_atomic_on_a_contract_error(world, tmp_path, specs):
    broken = tmp_path / "broken"
    shutil.copytree(world, broken)
    first = sorted((broken / "events").glob("*.parquet"))[0]
    events = pq.read_table(first).to_pandas()
    events.loc[5, "event_type"] = "teleport"
    pq.write_table(
        __import__("pyarrow").Table.from_pandas(
            events, schema=pq.read_table(first).schema, preserve_index=False
        ),
        first,
    )
    out = tmp_path / "features.parquet"
    out.write_bytes(b"previous contents")
    with pytest.raises(ValueError, match=r"events\.event_type, row 6: value not allowed"):
        build_features(broken, AS_OF, out, specs)
    assert out.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "features.parquet"]


def test_parse_as_of():
    assert parse_as_of("2025-02-01,2025-01-01,2025-02-01") == [
        pd.Timestamp("2025-01-01"),
        pd.Timestamp("2025-02-01"),
    ]
    for bad in ["", "2025-1-01", "2025-02-30", "yesterday", "2025-01-01,", "2025-01-01T10:00"]:
        with pytest.raises(AsOfError):
            parse_as_of(bad)
    assert monthly_snapshots("2025-01-15", "2025-04-01") == [
        pd.Timestamp(f"2025-0{m}-01") for m in (2, 3, 4)
    ]


PII = {
    "name": "欧阳明远",
    "id_number": "11010519491231002X",
    "phone": "13912345678",
}


def test_no_unmasked_pii_in_anything_the_pipeline_writes(tmp_path):
    """Known PII in the raw tables (and a phone in a free-text note); run the pipeline of this
    issue through the CLI; no unmasked value appears in any file written or anything printed."""
    data = tmp_path / "data"
    assert (
        runner.invoke(
            app, ["data", "synth", "--customers", "150", "--seed", "5", "--out", str(data)]
        ).exit_code
        == 0
    )
    customers_file = sorted((data / "customers").glob("*.parquet"))[0]
    customers = pq.read_table(customers_file)
    frame = customers.to_pandas()
    for column, value in PII.items():
        frame[column] = value
    import pyarrow as pa

    pq.write_table(
        pa.Table.from_pandas(frame, schema=customers.schema, preserve_index=False), customers_file
    )
    tags_file = sorted((data / "interview_tags").glob("*.parquet"))[0]
    tags = pq.read_table(tags_file)
    tag_frame = tags.to_pandas()
    tag_frame["note"] = f"客户要求回电 {PII['phone']}，身份证 {PII['id_number']}"
    pq.write_table(
        pa.Table.from_pandas(tag_frame, schema=tags.schema, preserve_index=False), tags_file
    )
    raw_files = {p for p in data.rglob("*") if p.is_file()}

    outputs = tmp_path / "out"
    outputs.mkdir()
    printed = []
    for args in (
        ["data", "validate", "--data", str(data)],
        [
            "features",
            "build",
            "--data",
            str(data),
            "--as-of",
            "2025-06-01,2026-01-01",
            "--out",
            str(outputs / "f.parquet"),
        ],
        [
            "features",
            "build",
            "--data",
            str(data),
            "--monthly",
            "2025-01-01:2025-03-01",
            "--out",
            str(outputs / "f.csv"),
        ],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        printed.append(result.output)
    # A contract error that involves a customer row with PII does not echo it either.
    frame["gender"] = "X"
    pq.write_table(
        pa.Table.from_pandas(frame, schema=customers.schema, preserve_index=False), customers_file
    )
    result = runner.invoke(
        app,
        [
            "features",
            "build",
            "--data",
            str(data),
            "--as-of",
            "2025-06-01",
            "--out",
            str(outputs / "g.parquet"),
        ],
    )
    assert result.exit_code == 1 and "customers.gender" in result.output
    printed.append(result.output)

    written = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and p not in raw_files and p != customers_file and p != tags_file
    ]
    assert {p.name for p in written} == {"f.parquet", "f.csv"}
    texts = list(printed)
    for path in written:
        if path.suffix == ".parquet":
            texts.append(pd.read_parquet(path).astype(str).to_csv())
        texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    for text in texts:
        for value in (*PII.values(), "明远"):
            assert value not in text


def test_loaded_customers_carry_only_masked_pii(tmp_path, specs):
    import pyarrow as pa

    from suitability.data.io import load_table

    data = tmp_path / "data"
    generate(data, 50, seed=1)
    part = sorted((data / "customers").glob("*.parquet"))[0]
    table = pq.read_table(part)
    frame = table.to_pandas()
    for column, value in PII.items():
        frame[column] = value
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), part)
    loaded = load_table(data, "customers", specs)
    assert set(loaded["name"]) == {"欧阳*"}
    assert set(loaded["id_number"]) == {id_pseudonym(PII["id_number"])}
    assert set(loaded["phone"]) == {"139****5678"}


def test_csv_tables_give_the_same_features_as_parquet(world, built, tmp_path, specs):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for table in (
        "customers",
        "questionnaire_responses",
        "events",
        "interview_tags",
        "risk_reviews",
    ):
        _raw(world, table).to_csv(csv_dir / f"{table}.csv", index=False)
    pd.read_parquet(world / "products.parquet").to_csv(csv_dir / "products.csv", index=False)
    out = tmp_path / "from_csv.parquet"
    build_features(csv_dir, AS_OF, out, specs, chunk_customers=150)
    pd.testing.assert_frame_equal(pd.read_parquet(out), built, check_exact=True)


def test_unsorted_events_fall_back_and_give_the_same_features(world, built, tmp_path, specs):
    """Events in no particular order (one big shuffled file) take the DuckDB path; small
    batches on sorted data exercise chunks that span batches. Both match the reference."""
    shuffled = tmp_path / "shuffled"
    shutil.copytree(world, shuffled)
    events = _raw(world, "events").sample(frac=1, random_state=4)
    shutil.rmtree(shuffled / "events")
    events.to_parquet(shuffled / "events.parquet", index=False)
    out = tmp_path / "shuffled.parquet"
    build_features(shuffled, AS_OF, out, specs, chunk_customers=90)
    pd.testing.assert_frame_equal(pd.read_parquet(out), built, check_exact=True)


def test_event_chunks_cut_a_sorted_stream_at_customer_boundaries():
    from suitability.features.builder import _event_chunks, _Unsorted
    from suitability.features.kernel import EventArrays

    codes = np.array([0, 0, 1, 2, 2, 2, 4, 5])
    n = np.arange(len(codes))
    events = EventArrays(codes, n, n, n, n, n, n, n % 2 == 0)

    def batches(*cuts: tuple[int, int]) -> list[EventArrays]:
        return [EventArrays(*(getattr(events, f)[a:b] for f in _NAMES)) for a, b in cuts]

    stream = batches((0, 3), (3, 6), (6, 8))
    chunks = list(_event_chunks(iter(stream), per_chunk=2, n_chunks=3))
    # customer codes renumbered within each chunk; every other column carried along
    assert [c.codes.tolist() for c in chunks] == [[0, 0, 1], [0, 0, 0], [0, 1]]
    assert [c.times_us.tolist() for c in chunks] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert [c.has_term.tolist() for c in chunks][2] == [True, False]
    # a chunk without events (customer 3) is an empty chunk, not skipped
    singles = list(_event_chunks(iter(batches((0, 8))), per_chunk=1, n_chunks=6))
    assert [len(c) for c in singles] == [2, 1, 3, 0, 1, 1]
    with pytest.raises(_Unsorted):
        list(_event_chunks(iter(batches((3, 8), (0, 3))), per_chunk=2, n_chunks=3))
    with pytest.raises(_Unsorted):
        list(_event_chunks(iter([EventArrays(*(getattr(events, f)[::-1] for f in _NAMES))]), 2, 3))


_NAMES = ("codes", "times_us", "etype", "channel", "cents", "risk", "term", "has_term")


# --- the columnar, multi-threaded batch path -------------------------------------------------


@pytest.mark.parametrize(("threads", "chunk"), [(1, 400), (3, 33)])
def test_threads_and_chunk_sizes_give_the_same_bits(
    world, built, tmp_path, specs, monkeypatch, threads, chunk
):
    from suitability.settings import get_settings

    monkeypatch.setenv("SUITABILITY_FEATURE_THREADS", str(threads))
    get_settings.cache_clear()
    try:
        out = tmp_path / "threads.parquet"
        build_features(world, AS_OF, out, specs, chunk_customers=chunk)
    finally:
        get_settings.cache_clear()
    pd.testing.assert_frame_equal(pd.read_parquet(out), built, check_exact=True)


def test_personal_data_is_not_read_but_its_type_is_checked(world, tmp_path, specs):
    from suitability.data.contracts import ContractError

    broken = tmp_path / "broken"
    shutil.copytree(world, broken)
    customers = _raw(world, "customers")
    customers["phone"] = np.arange(len(customers))  # numbers where text belongs
    shutil.rmtree(broken / "customers")
    customers.to_parquet(broken / "customers.parquet", index=False)
    with pytest.raises(ContractError) as caught:
        build_features(broken, AS_OF, tmp_path / "f.parquet", specs)
    assert "customers.phone: wrong type: expected text, found int64" in str(caught.value)
    assert not (tmp_path / "f.parquet").exists()


def test_a_questionnaire_problem_is_reported_before_event_problems(world, tmp_path, specs):
    """Questionnaires and tags are checked beside the events stream; their problems still come
    first (as when they were checked before the events), and nothing is written."""
    from suitability.data.contracts import ContractError

    broken = tmp_path / "broken"
    shutil.copytree(world, broken)
    answers = _raw(world, "questionnaire_responses")
    answers.loc[3, "answer"] = "Z"
    shutil.rmtree(broken / "questionnaire_responses")
    answers.to_parquet(broken / "questionnaire_responses.parquet", index=False)
    events = _raw(world, "events")
    events.loc[5, "channel"] = "fax"
    shutil.rmtree(broken / "events")
    events.to_parquet(broken / "events.parquet", index=False)
    with pytest.raises(ContractError) as caught:
        build_features(broken, AS_OF, tmp_path / "f.parquet", specs, chunk_customers=50)
    assert {p.table for p in caught.value.problems} == {"questionnaire_responses"}
    assert "questionnaire_responses.answer, row 4" in str(caught.value)
    assert not (tmp_path / "f.parquet").exists()
    assert not list(tmp_path.glob(".features-*"))
