"""Audit log: records round-trip whole, duplicates and batches are all-or-nothing, time filters
and retention work, exports round-trip, readers in other connections and processes see committed
records (also after the writer is killed), the file is its owner's only, retention never goes
below the legal minimum unasked and leaves a record of each purge, and personal data in the
text we generate is withheld while opaque ids that look like phone numbers are kept."""

from __future__ import annotations

import csv
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from suitability.serving.audit import (
    PURGE_ENDPOINT,
    WITHHELD,
    AuditLog,
    AuditLogError,
    AuditRecord,
    DuplicateRecordError,
    PostgresAuditLog,
    masked_url,
    open_audit,
    withhold_pii,
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


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path: Path) -> str:
    """Where a fresh audit log goes: an SQLite file, or a new database on the throwaway
    PostgreSQL server. Every test that takes it runs on both backends."""
    if request.param == "sqlite":
        return str(tmp_path / "audit.sqlite")
    server = request.getfixturevalue("postgres")
    name = f"audit_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    return server.dsn(name)


@pytest.fixture
def log(target: str):
    with open_audit(target) as opened:
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


def test_purge_deletes_only_records_past_retention_and_records_itself(tmp_path: Path):
    reason = "test world: records are synthetic"
    with AuditLog(tmp_path / "audit.sqlite", retention_days=30, override_reason=reason) as log:
        log.append(_record(1, at=T0 - timedelta(days=40)))
        log.append(_record(2, at=T0 - timedelta(days=31)))
        log.append(_record(3, at=T0 - timedelta(days=29)))
        log.append(_record(4, at=T0))

        assert log.purge(now=T0) == 2
        kept = list(log.records())
        assert [r.request_id for r in kept if r.endpoint != PURGE_ENDPOINT] == [
            "req-0003",
            "req-0004",
        ]
        (purge,) = [r for r in kept if r.endpoint == PURGE_ENDPOINT]
        assert purge.time == T0.isoformat(timespec="microseconds")
        assert purge.outputs["deleted"] == 2
        assert purge.outputs["oldest_deleted"] == (T0 - timedelta(days=40)).isoformat(
            timespec="microseconds"
        )
        assert purge.outputs["newest_deleted"] == (T0 - timedelta(days=31)).isoformat(
            timespec="microseconds"
        )
        assert purge.outputs["retention_days"] == 30
        assert purge.outputs["override_reason"] == reason
        # Nothing more to delete: no second purge record; the record of a purge stays.
        assert log.purge(now=T0 + timedelta(days=400)) == 2
        assert sum(r.endpoint == PURGE_ENDPOINT for r in log.records()) == 2


@pytest.mark.parametrize("days", [0, 1, 7304])
def test_a_retention_below_the_legal_minimum_needs_a_reason(tmp_path: Path, days: int):
    path = tmp_path / "audit.sqlite"
    with pytest.raises(AuditLogError, match=r"legal minimum|positive") as caught:
        AuditLog(path, retention_days=days)
    assert "Traceback" not in str(caught.value)
    assert not path.exists()  # refused before anything was created
    with pytest.raises(AuditLogError):
        AuditLog(path, retention_days=days, override_reason="   ")  # blank is no reason
    if days > 0:
        AuditLog(path, retention_days=days, override_reason="a regulator's written consent").close()
    with AuditLog(path if path.exists() else tmp_path / "b.sqlite", retention_days=7305) as log:
        assert log.retention.override_reason is None  # at or above the minimum: no override


def test_the_database_and_its_wal_are_readable_by_the_owner_only(tmp_path: Path):
    path = tmp_path / "audit.sqlite"
    with AuditLog(path) as log:
        log.append(_record(1))
        for member in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert member.exists(), member
            assert member.stat().st_mode & 0o777 == 0o600, member
    loose = tmp_path / "loose.sqlite"
    AuditLog(loose).close()
    loose.chmod(0o644)
    with AuditLog(loose) as log:  # an existing file made readable to others is tightened
        log.append(_record(2))
        assert loose.stat().st_mode & 0o777 == 0o600


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


def test_records_survive_the_writer_being_killed(target: str, tmp_path: Path):
    """A child appends records and reports each after append returns; once it has reported
    record N it is killed with SIGKILL, mid-way through later appends. Records 1..N are all
    there and whole, and the log opens and accepts appends afterwards."""
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    child = textwrap.dedent(
        f"""
        import sys
        from suitability.serving.audit import AuditRecord, open_audit
        log = open_audit({target!r})
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

    with open_audit(target, create=False) as log:
        stored = {r.request_id: r for r in log.records()}
        for n in range(1, n_reported + 1):
            assert stored[f"req-{n:04d}"].outputs == {"n": n, "pad": "x" * 2000}
        log.append(_record(9999))
        assert log.get("req-9999") is not None


# --- refusing bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"customer_id": "13812345678"},
        {"customer_id": "C13000000001"},
        {"customer_id": "110105194912310021"},
        {"outputs": {"product": {"product_id": "13812345678", "category": "13912345678"}}},
        {"outputs": {"phone": 13812345678}},  # numbers are measurements
        {"models": [{"name": "m", "run_id": "110105194912310021"}]},
    ],
)
def test_opaque_ids_and_numbers_are_kept_whatever_they_look_like(
    log: AuditLog, overrides: dict[str, object]
):
    record = _record(**overrides)
    assert withhold_pii(record) == (record, [])
    log.append(record)
    assert log.get(record.request_id) == record


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"outputs": {"note": "电话13812345678请回电"}}, "outputs.note"),
        ({"outputs": {"phone": "+86 138 1234 5678"}}, "outputs.phone"),
        ({"reasons": [{"text": "身份证 11010519491231002X"}]}, "reasons[0].text"),
        ({"reasons": {"churn": ["call 173-1234-5768"]}}, "reasons.churn[0]"),
    ],
)
def test_personal_data_in_generated_text_is_withheld_and_logged_without_the_value(
    log: AuditLog, overrides: dict[str, object], field: str, caplog
):
    record = _record(**overrides)
    with caplog.at_level("ERROR", logger="suitability.serving"):
        log.append(record)  # stored, never an exception (it would become a 5xx)
    stored = log.get(record.request_id)
    assert stored is not None
    assert WITHHELD in json.dumps(stored.to_dict(), ensure_ascii=False)
    assert stored.customer_id == record.customer_id and stored.models == record.models
    text = caplog.text + json.dumps(stored.to_dict(), ensure_ascii=False)
    assert field in caplog.text
    for secret in ("13812345678", "138 1234 5678", "11010519491231002", "1234-5768"):
        assert secret not in text


@pytest.mark.parametrize(
    "value",
    [
        "173****5768",
        "110105********8257",
        "110105*****8257",
        "2026-03-01T09:30:00+00:00",
        "138123456789",  # 12 digits: not a mobile number
    ],
)
def test_masked_and_harmless_values_pass(log: AuditLog, value: str):
    record = _record(outputs={"value": value}, feature_hash=value)
    log.append(record)
    assert log.get(record.request_id) == record


def test_probabilities_are_not_mistaken_for_phone_numbers():
    record = _record(outputs={"p": 0.13812345678, "q": 1.3812345678e10})
    assert withhold_pii(record) == (record, [])


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


# --- PostgreSQL: the team setup ---------------------------------------------------------------------


def test_concurrent_appenders_in_many_processes_all_land(postgres):
    """Eight processes (as replicas' workers would) append 150 records each at once."""
    name = f"audit_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    url = postgres.dsn(name)
    PostgresAuditLog(url).close()  # the schema once; the appenders find it
    child = textwrap.dedent(
        """
        import sys
        from suitability.serving.audit import AuditRecord, open_audit
        url, worker = sys.argv[1], int(sys.argv[2])
        with open_audit(url) as log:
            for n in range(150):
                log.append(AuditRecord(
                    request_id=f"w{worker}-{n}", time="2026-03-01T09:30:00+00:00",
                    endpoint="/churn", caller_role="matching", key_id="key_1",
                    customer_id=f"C{n}", outputs={"n": n},
                ))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", child, url, str(w)], stderr=subprocess.PIPE)
        for w in range(8)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    with open_audit(url, create=False) as log:
        ids = [r.request_id for r in log.records()]
    assert len(ids) == len(set(ids)) == 8 * 150


def test_a_postgresql_database_of_someone_else_is_not_taken_over(postgres):
    import psycopg

    name = f"other_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    with psycopg.connect(postgres.dsn(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE audit_records (id int)")
    with pytest.raises(AuditLogError, match="not a suitability audit log"):
        PostgresAuditLog(postgres.dsn(name))
    empty = f"empty_{uuid.uuid4().hex[:12]}"
    postgres.create_database(empty)
    with pytest.raises(AuditLogError, match="holds no audit log"):
        PostgresAuditLog(postgres.dsn(empty), create=False)


def test_an_unreachable_server_is_a_clear_error_that_hides_the_password():
    with pytest.raises(AuditLogError) as caught:
        PostgresAuditLog("postgresql://auditor:s3cret-pw@127.0.0.1:9/audit")
    message = str(caught.value)
    assert "cannot connect to the audit database" in message and "127.0.0.1" in message
    assert "s3cret-pw" not in message
    assert masked_url("postgresql://a:b@h:5/d") == "postgresql://a:***@h:5/d"
