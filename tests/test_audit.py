"""Audit log: records round-trip whole, duplicates and batches are all-or-nothing, time filters
and retention work, exports round-trip, readers in other connections and processes see committed
records (also after the writer is killed), and unmasked personal data is refused."""

from __future__ import annotations

import csv
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from suitability.serving.audit import (
    AuditLog,
    AuditLogError,
    AuditRecord,
    DuplicateRecordError,
    check_no_pii,
)

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _record(n: int = 1, at: datetime = T0, **overrides: object) -> AuditRecord:
    values: dict[str, object] = {
        "request_id": f"req-{n:04d}",
        "time": at.isoformat(),
        "endpoint": "/suitability",
        "caller_role": "matching",
        "key_id": "key_1a2b3c4d",
        "customer_id": f"C{n:06d}",
        "models": [
            {
                "name": "risk_level",
                "version": "3",
                "alias": "champion",
                "run_id": "9f86d081884c7d659a2feaa0c55ad015",
            }
        ],
        "rule_version": "SR-2026.1",
        "feature_hash": "sha256:" + "ab" * 32,
        "outputs": {"category": "C3", "probabilities": [0.1, 0.2, 0.4, 0.2, 0.1]},
        "reasons": {"top": [{"code": "loss_tolerance", "text": "能承受较大亏损"}]},
        "decision": "suitable",
    }
    values.update(overrides)
    return AuditRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def log(tmp_path: Path):
    with AuditLog(tmp_path / "audit.sqlite") as opened:
        yield opened


# --- append and get -------------------------------------------------------------------------------


def test_append_then_get_returns_the_same_record(log: AuditLog):
    record = _record()
    log.append(record)
    assert log.get(record.request_id) == record
    assert log.get("req-missing") is None
    assert json.loads(record.to_json())["reasons"]["top"][0]["text"] == "能承受较大亏损"


def test_time_is_normalised_to_utc_and_naive_times_are_refused():
    shanghai = _record(time="2026-03-01T17:30:00+08:00")
    assert shanghai.time == "2026-03-01T09:30:00.000000+00:00"
    assert _record(time="2026-03-01T09:30:00Z").time == shanghai.time
    with pytest.raises(ValueError, match="time zone"):
        _record(time="2026-03-01T09:30:00")
    with pytest.raises(ValueError, match="ISO-8601"):
        _record(time="yesterday")


def test_duplicate_request_id_is_refused_and_the_first_record_kept(log: AuditLog):
    first = _record(decision="suitable")
    log.append(first)
    with pytest.raises(DuplicateRecordError, match="req-0001"):
        log.append(_record(decision="unsuitable"))
    assert log.get(first.request_id) == first
    assert len(log) == 1


def test_append_many_is_all_or_nothing(log: AuditLog):
    log.append(_record(1))
    with pytest.raises(DuplicateRecordError):
        log.append_many([_record(2), _record(3), _record(1)])  # the last one clashes
    with pytest.raises(DuplicateRecordError):
        log.append_many([_record(4), _record(4)])  # clashes within the batch
    with pytest.raises(ValueError, match="outputs"):
        log.append_many([_record(5), _record(6, outputs={"x": object()})])
    assert [r.request_id for r in log.records()] == ["req-0001"]

    assert log.append_many([_record(2), _record(3)]) == 2
    assert len(log) == 3


def test_appends_from_many_threads_are_all_kept(log: AuditLog):
    def append_range(start: int) -> None:
        for n in range(start, start + 25):
            log.append(_record(n))

    threads = [threading.Thread(target=append_range, args=(i * 100,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(log) == 100


# --- reading by time, retention, export -----------------------------------------------------------


def test_records_are_filtered_by_time_and_in_time_order(log: AuditLog):
    for n, hours in [(1, 5), (2, 1), (3, 3), (4, 0)]:  # appended out of time order
        log.append(_record(n, at=T0 + timedelta(hours=hours)))

    everything = [r.request_id for r in log.records()]
    window = [
        r.request_id
        for r in log.records(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=5))
    ]

    assert everything == ["req-0004", "req-0002", "req-0003", "req-0001"]
    assert window == ["req-0002", "req-0003"]  # since inclusive, until exclusive
    with pytest.raises(ValueError, match="time zone"):
        log.records(since=datetime(2026, 1, 1))


def test_records_stream_while_the_log_is_written(log: AuditLog):
    for n in range(3):
        log.append(_record(n, at=T0 + timedelta(minutes=n)))
    stream = log.records()
    assert next(stream).request_id == "req-0000"
    log.append(_record(99))  # a writer is not blocked by an open reader
    assert [r.request_id for r in stream] == ["req-0001", "req-0002"]


def test_purge_deletes_only_records_past_retention(tmp_path: Path):
    with AuditLog(tmp_path / "audit.sqlite", retention_days=30) as log:
        log.append(_record(1, at=T0 - timedelta(days=31)))
        log.append(_record(2, at=T0 - timedelta(days=29)))
        log.append(_record(3, at=T0))

        assert log.purge(now=T0) == 1
        assert [r.request_id for r in log.records()] == ["req-0002", "req-0003"]
        assert log.purge(now=T0) == 0
    with pytest.raises(ValueError, match="positive"):
        AuditLog(tmp_path / "other.sqlite", retention_days=0)


def test_export_jsonl_round_trips(log: AuditLog, tmp_path: Path):
    records = [_record(n, at=T0 + timedelta(minutes=n)) for n in range(3)]
    log.append_many(records)
    out = tmp_path / "export" / "audit.jsonl"

    assert log.export(out, "jsonl", since=T0 + timedelta(minutes=1)) == 2

    lines = out.read_text(encoding="utf-8").splitlines()
    assert [AuditRecord.from_dict(json.loads(line)) for line in lines] == records[1:]
    assert not list(out.parent.glob("*.tmp"))


def test_export_csv_round_trips_with_json_encoded_nested_columns(log: AuditLog, tmp_path: Path):
    records = [_record(1), _record(2, at=T0 + timedelta(seconds=1), rule_version=None)]
    log.append_many(records)
    out = tmp_path / "audit.csv"

    assert log.export(out, "csv") == 2

    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for name in ("models", "outputs", "reasons"):
            row[name] = json.loads(row[name])
        for name in ("rule_version", "feature_hash", "decision"):
            row[name] = row[name] or None
    assert [AuditRecord.from_dict(row) for row in rows] == records


def test_export_refuses_an_unknown_format_and_leaves_nothing(log: AuditLog, tmp_path: Path):
    with pytest.raises(ValueError, match="parquet"):
        log.export(tmp_path / "audit.parquet", "parquet")  # type: ignore[arg-type]
    assert not list(tmp_path.glob("*audit.parquet*"))


# --- other connections and processes --------------------------------------------------------------


def test_wal_database_is_readable_by_a_second_connection_while_open(tmp_path: Path):
    path = tmp_path / "audit.sqlite"
    with AuditLog(path) as writer:
        writer.append(_record(1))
        # A plain connection (another process, say) sees the committed record in WAL mode.
        other = sqlite3.connect(path)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert other.execute("SELECT request_id FROM audit_records").fetchall() == [
                ("req-0001",)
            ]
            # ...and while it holds a write transaction open, the log still reads and writes
            # wait for it rather than failing.
            other.execute("BEGIN IMMEDIATE")
            other.execute("DELETE FROM audit_records")
            with AuditLog(path, create=False) as reader:
                assert reader.get("req-0001") is not None
            other.rollback()
        finally:
            other.close()
        writer.append(_record(2))
        with AuditLog(path, create=False) as reader:
            assert [r.request_id for r in reader.records()] == ["req-0001", "req-0002"]


def test_records_survive_the_writer_being_killed(tmp_path: Path):
    """A child appends records and reports each after append returns; once it has reported
    record N it is killed with SIGKILL, mid-way through later appends. Records 1..N are all
    there and whole, and the log opens and accepts appends afterwards."""
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    path = tmp_path / "audit.sqlite"
    child = textwrap.dedent(
        f"""
        import sys
        from suitability.serving.audit import AuditLog, AuditRecord
        log = AuditLog({str(path)!r})
        n = 0
        while True:
            n += 1
            log.append(AuditRecord(
                request_id=f"req-{{n:04d}}", time="2026-03-01T09:30:00+00:00",
                endpoint="/suitability", caller_role="matching", key_id="key_1",
                customer_id=f"C{{n}}", outputs={{"n": n, "pad": "x" * 2000}},
            ))
            print(n, flush=True)
        """
    )
    n_reported = 20
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if int(line) == n_reported:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    with AuditLog(path, create=False) as log:
        stored = {r.request_id: r for r in log.records()}
        for n in range(1, n_reported + 1):
            assert stored[f"req-{n:04d}"].outputs == {"n": n, "pad": "x" * 2000}
        log.append(_record(9999))
        assert log.get("req-9999") is not None


# --- refusing bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"customer_id": "13812345678"}, "customer_id"),
        ({"outputs": {"note": "电话13812345678请回电"}}, "outputs.note"),
        ({"outputs": {"phone": "+86 138 1234 5678"}}, "outputs.phone"),
        ({"outputs": {"phone": 13812345678}}, "outputs.phone"),
        ({"reasons": [{"text": "身份证 11010519491231002X"}]}, "reasons[0].text"),
        ({"reasons": {"110105194912310021": 1}}, "reasons (a key)"),
        ({"models": [{"name": "m", "run_id": "110105194912310021"}]}, "models[0].run_id"),
        ({"decision": "call 173-1234-5768"}, "decision"),
    ],
)
def test_unmasked_personal_data_is_refused_without_echoing_it(
    log: AuditLog, overrides: dict[str, object], field: str
):
    record = _record(**overrides)
    with pytest.raises(ValueError) as caught:
        log.append(record)
    message = str(caught.value)
    assert repr(field) in message
    for secret in ("13812345678", "138 1234 5678", "11010519491231002", "1234-5768"):
        assert secret not in message
    assert log.get(record.request_id) is None


def test_pii_in_the_request_id_is_refused_without_naming_it():
    with pytest.raises(ValueError, match="'request_id'") as caught:
        check_no_pii(_record(request_id="13812345678"))
    assert "13812345678" not in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        "173****5768",
        "110105********8257",
        "110105*****8257",
        "sha256:ab13812345678" + "c" * 51,  # digits inside a hash are not a phone number
        "e3b0c442-9f86-4d08-a884-13812345678e",  # nor inside a UUID
        "138123456789",  # 12 digits: not a mobile number
        "2026-03-01T09:30:00+00:00",
    ],
)
def test_masked_and_harmless_values_pass(log: AuditLog, value: str):
    record = _record(outputs={"value": value}, feature_hash=value)
    log.append(record)
    assert log.get(record.request_id) == record


def test_probabilities_are_not_mistaken_for_phone_numbers():
    check_no_pii(_record(outputs={"p": 0.13812345678, "q": 1.3812345678e10}))


# --- files that are not audit logs ----------------------------------------------------------------


def test_a_file_that_is_not_a_database_gives_a_clear_error(tmp_path: Path):
    path = tmp_path / "notes.sqlite"
    path.write_text("this is not a database, just some text long enough to matter\n" * 10)
    with pytest.raises(AuditLogError, match=r"notes\.sqlite is not a usable audit database"):
        AuditLog(path)
    assert path.read_text().startswith("this is not a database")


def test_another_sqlite_database_is_not_taken_over(tmp_path: Path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id TEXT)")
    conn.close()
    with pytest.raises(
        AuditLogError, match=r"other\.sqlite is an SQLite database but not an audit log"
    ):
        AuditLog(path)
    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert tables == ["customers"]
    assert mode == "delete"  # not even switched to WAL


def test_opening_without_create_needs_an_existing_log(tmp_path: Path):
    with pytest.raises(AuditLogError, match="does not exist"):
        AuditLog(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()
