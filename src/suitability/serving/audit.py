"""The audit log: one durable record per served decision (who asked, which models and rules
answered, what came out and why), kept in SQLite in WAL mode so the CLI can read and export it
while the service writes.

A committed record survives the process being killed (`synchronous=FULL`); every append is one
transaction, so a record is either stored whole or not at all.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

ExportFormat = Literal["jsonl", "csv"]

# Marks a SQLite file as ours (PRAGMA application_id), so that pointing the service at some other
# database is an error rather than a new table inside it. "SUIT" in ASCII.
_APPLICATION_ID = 0x53554954
_SCHEMA_VERSION = 1
_TABLE = "audit_records"

_SCHEMA = (
    f"""
CREATE TABLE {_TABLE} (
    request_id   TEXT PRIMARY KEY,
    time         TEXT NOT NULL,  -- ISO-8601 UTC, fixed width, so text order is time order
    endpoint     TEXT NOT NULL,
    caller_role  TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    models       TEXT NOT NULL,  -- JSON
    rule_version TEXT,
    feature_hash TEXT,
    outputs      TEXT NOT NULL,  -- JSON
    reasons      TEXT NOT NULL,  -- JSON
    decision     TEXT
)""",
    f"CREATE INDEX {_TABLE}_time ON {_TABLE} (time)",
)

_JSON_FIELDS = ("models", "outputs", "reasons")

# Unmasked personal data that must never reach the log. Masked forms (`173****5768`,
# `110105********8257`) break the digit runs and pass. Digit-only look-arounds, so that a number
# glued to letters or Chinese text ("电话13812345678") is still caught.
_PII_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an ID number", re.compile(r"(?<!\d)\d{17}[\dXx](?![\dXx])")),
    (
        "a mobile phone number",
        re.compile(r"(?<!\d)(?:(?:\+|00)?86[\s\-]?)?1\d{2}[\s\-]?\d{4}[\s\-]?\d{4}(?!\d)"),
    ),
)
# Hex identifiers (sha256 feature hashes, MLflow run ids, UUIDs) are random hex and hold an
# 11-digit run starting with 1 by chance in about 1 of 200 sha256s; they are blanked before the
# PII check instead of refusing a legitimate record. Only tokens of 32+ characters with at
# least one hex letter qualify, so a bare number is still checked.
_HEX_IDENTIFIER = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f\-]{32,}(?![0-9A-Za-z])")


class AuditLogError(ValueError):
    """The audit database cannot be used: not an audit database, corrupt, or a newer schema."""


class DuplicateRecordError(AuditLogError):
    """A record with this request id is already in the log (the stored one is unchanged)."""


def now_iso() -> str:
    """The current time in the form `AuditRecord.time` stores."""
    return _iso(datetime.now(UTC))


@dataclass(frozen=True)
class AuditRecord:
    """One served decision. `customer_id` is the pseudonymous id, never personal data; `models`
    lists each model used as {"name", "version", "alias", "run_id"}."""

    request_id: str
    time: str
    endpoint: str
    caller_role: str
    key_id: str
    customer_id: str
    models: list[dict[str, Any]] = field(default_factory=list)
    rule_version: str | None = None
    feature_hash: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, Any] | list[Any] = field(default_factory=dict)
    decision: str | None = None

    def __post_init__(self) -> None:
        # Normalise the time to fixed-width UTC: the table orders and filters by its text.
        object.__setattr__(self, "time", _iso(_parse_time(self.time, "time")))
        for name in ("request_id", "endpoint", "caller_role", "key_id", "customer_id"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"audit record field {name!r} must be a non-empty string")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """One line of JSON (UTF-8 text kept readable, keys in field order)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def check_no_pii(record: AuditRecord) -> None:
    """Refuse a record holding something that looks like an unmasked mobile or ID number.
    The error names the field (e.g. `outputs.note` or `models[0].name`), never the value."""
    # The fields as they are (no deep copy: nothing here changes them).
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    texts = (item for name, value in values.items() for item in _texts(value, name))
    for path, text in texts:
        text = _HEX_IDENTIFIER.sub(_blank_hex, text)
        for what, pattern in _PII_PATTERNS:
            if pattern.search(text):
                # Keys were checked before the values under them, so `path` is clean; the
                # request id is named only when it is not the offender.
                which = "" if path == "request_id" else f" {record.request_id!r}"
                raise ValueError(
                    f"audit record{which} refused: field {path!r} holds what looks like "
                    f"{what}; mask personal data before it reaches the audit log"
                )


class AuditLog:
    """Append-only store of audit records in one SQLite file.

    One connection shared by all threads behind a lock (writes are short); reading with
    `records` and `export` uses a connection of its own, so a slow reader never blocks the
    service. Other processes may open the same file at the same time."""

    def __init__(
        self, path: Path | str, retention_days: int = 7305, *, create: bool = True
    ) -> None:
        """Open (or, with `create`, make) the audit database at `path`."""
        if retention_days <= 0:
            raise ValueError(f"retention_days must be positive, got {retention_days}")
        self.path = Path(path)
        self.retention_days = retention_days
        if not create and not self.path.exists():
            raise AuditLogError(f"audit database {self.path} does not exist")
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly, so each one is visible here.
        self._conn = sqlite3.connect(
            self.path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        try:
            self._prepare()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise AuditLogError(
                f"{self.path} is not a usable audit database (not SQLite, or corrupt): {exc}"
            ) from exc
        except BaseException:
            self._conn.close()
            raise

    def _prepare(self) -> None:
        conn = self._conn
        # Look before switching to WAL: switching would change someone else's database.
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if tables:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if app_id != _APPLICATION_ID or _TABLE not in tables:
                raise AuditLogError(
                    f"{self.path} is an SQLite database but not an audit log "
                    f"(tables: {', '.join(sorted(tables))})"
                )
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise AuditLogError(
                    f"audit database {self.path} has schema version {version}; "
                    f"this version reads up to {_SCHEMA_VERSION}"
                )
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AuditLogError(f"audit database {self.path} cannot use WAL mode (got {mode!r})")
        # FULL fsyncs the WAL at every commit: a committed record survives a crash or power
        # loss, not just a killed process.
        conn.execute("PRAGMA synchronous=FULL")
        if not tables:
            self._create_schema()

    def _create_schema(self) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have created it between our look and our lock.
            if not conn.execute("SELECT 1 FROM sqlite_master").fetchone():
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # --- writing ----------------------------------------------------------------------------------

    def append(self, record: AuditRecord) -> None:
        """Store one record; returns once it is committed to disk."""
        self.append_many([record])

    def append_many(self, records: Iterable[AuditRecord]) -> int:
        """Store records all-or-nothing in one transaction (a batch endpoint's decisions);
        returns how many. Every record is checked before anything is written."""
        rows = []
        for record in records:
            check_no_pii(record)
            rows.append(_row(record))
        if not rows:
            return 0
        columns = ", ".join(_COLUMNS)
        marks = ", ".join("?" * len(_COLUMNS))
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(f"INSERT INTO {_TABLE} ({columns}) VALUES ({marks})", rows)
                self._conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._conn.execute("ROLLBACK")
                raise DuplicateRecordError(
                    f"audit database {self.path} already holds a record with one of these "
                    f"request ids ({_first_duplicate(self._conn, rows)}); nothing was stored"
                ) from exc
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        return len(rows)

    def purge(self, now: datetime | None = None) -> int:
        """Delete records older than the retention period; returns how many went."""
        now = _aware(now, "now") if now is not None else datetime.now(UTC)
        cutoff = _iso(now - timedelta(days=self.retention_days))
        with self._lock:
            cursor = self._conn.execute(f"DELETE FROM {_TABLE} WHERE time < ?", (cutoff,))
        return cursor.rowcount

    # --- reading ----------------------------------------------------------------------------------

    def get(self, request_id: str) -> AuditRecord | None:
        """The record of one request, or None."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM {_TABLE} WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else _record(row)

    def records(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[AuditRecord]:
        """Records with `since <= time < until`, oldest first, streamed from a consistent
        snapshot (records appended meanwhile are not included)."""
        where, params = [], []
        if since is not None:
            where.append("time >= ?")
            params.append(_iso(_aware(since, "since")))
        if until is not None:
            where.append("time < ?")
            params.append(_iso(_aware(until, "until")))
        sql = f"SELECT {', '.join(_COLUMNS)} FROM {_TABLE}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time, request_id"
        return self._stream(sql, params)

    def _stream(self, sql: str, params: list[str]) -> Iterator[AuditRecord]:
        reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        try:
            reader.execute("BEGIN")  # one read transaction: one snapshot for the whole stream
            for row in reader.execute(sql, params):
                yield _record(row)
        finally:
            reader.close()

    def export(
        self,
        out_path: Path | str,
        fmt: ExportFormat,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Write the records in `[since, until)` to `out_path` as JSON lines or CSV (nested
        columns JSON-encoded, None as an empty cell); returns the number of rows. The file
        appears whole or not at all."""
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"unknown export format {fmt!r}; use 'jsonl' or 'csv'")
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
        count = 0
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                records = self.records(since, until)
                if fmt == "jsonl":
                    for record in records:
                        f.write(record.to_json() + "\n")
                        count += 1
                else:
                    writer = csv.writer(f)
                    writer.writerow(_COLUMNS)
                    for record in records:
                        writer.writerow(_csv_row(record))
                        count += 1
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return count

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute(f"SELECT count(*) FROM {_TABLE}").fetchone()[0]

    # --- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --- rows and values -----------------------------------------------------------------------------

_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AuditRecord))


def _row(record: AuditRecord) -> tuple[Any, ...]:
    values = {c: getattr(record, c) for c in _COLUMNS}  # read only: no deep copy needed
    for name in _JSON_FIELDS:
        try:
            values[name] = json.dumps(values[name], ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"audit record {record.request_id!r}: field {name!r} is not JSON-able ({exc})"
            ) from None
    return tuple(values[c] for c in _COLUMNS)


def _record(row: tuple[Any, ...]) -> AuditRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name])
    return AuditRecord(**values)


def _csv_row(record: AuditRecord) -> list[str]:
    values = record.to_dict()
    out = []
    for name in _COLUMNS:
        value = values[name]
        if name in _JSON_FIELDS:
            out.append(json.dumps(value, ensure_ascii=False))
        else:
            out.append("" if value is None else value)
    return out


def _first_duplicate(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> str:
    """The first request id of `rows` that is already stored or repeated within `rows`."""
    ids = [row[0] for row in rows]
    seen: set[str] = set()
    for request_id in ids:
        stored = conn.execute(f"SELECT 1 FROM {_TABLE} WHERE request_id = ?", (request_id,))
        if request_id in seen or stored.fetchone():
            return repr(request_id)
        seen.add(request_id)
    return "?"


def _parse_time(value: object, name: str) -> datetime:
    if isinstance(value, datetime):
        return _aware(value, name)
    if not isinstance(value, str):
        raise ValueError(f"audit record field {name!r} must be an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"audit record field {name!r} is not an ISO-8601 time") from None
    return _aware(parsed, name)


def _aware(value: datetime, name: str) -> datetime:
    """`value` in UTC. A naive time is refused: guessing its zone would shift records by hours."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone (e.g. +00:00), got a naive time")
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _texts(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string (and integer, as a phone number may be one) inside a JSON-like value, with
    its path. Floats are skipped: their digits are measurements, not identifiers."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, int) and not isinstance(value, bool):
        yield path, str(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            # A key is reported by its parent's path: a key may itself be the offending text.
            yield f"{path} (a key)", str(key)
            yield from _texts(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _texts(item, f"{path}[{index}]")


def _blank_hex(match: re.Match[str]) -> str:
    token = match.group(0)
    return "_" if re.search(r"[A-Fa-f]", token) else token
