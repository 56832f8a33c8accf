"""The audit log: one durable record per served decision (who asked, which models and rules
answered, what came out and why), kept in SQLite in WAL mode so the CLI can read and export it
while the service writes, or, for a team with several replicas, in PostgreSQL
(`SUITABILITY_AUDIT_URL`; `PostgresAuditLog`) with the same records and promises.

A committed record survives the process being killed (`synchronous=FULL`); every append is one
transaction, so a record is either stored whole or not at all. The file (and SQLite's -wal and
-shm beside it, which take its mode) is readable by its owner only. Retention never goes below
the legal minimum without a stated reason, and every purge leaves a record of itself.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import re
import sqlite3
import tempfile
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from suitability.settings import masked_reason, masked_url

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

# What personal data could reach a record is decided by field. Identifiers (request, key,
# customer, product and category ids, model names and run ids, hashes) are opaque: a platform's
# customer id may well be an 11-digit number, and the request contract refuses ids that are not
# plain identifiers (an e-mail, a name). Numbers are measurements. What is left is the text we
# generate from the specs (reasons, decision wording): a phone or ID number there would be our
# bug, so it is withheld from the record and logged as our fault, never turned into a 5xx.
_PII_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an ID number", re.compile(r"(?<!\d)\d{17}[\dXx](?![\dXx])")),
    (
        "a mobile phone number",
        re.compile(r"(?<!\d)(?:(?:\+|00)?86[\s\-]?)?1\d{2}[\s\-]?\d{4}[\s\-]?\d{4}(?!\d)"),
    ),
)
#: The record fields whose text is scanned, and the keys inside them that hold opaque ids.
SCANNED_FIELDS = ("outputs", "reasons")
OPAQUE_KEYS = frozenset({"customer_id", "product_id", "category", "advisor_id"})
#: What replaces a withheld text.
WITHHELD = "[withheld: looked like personal data]"

#: Purges are recorded under this endpoint name.
PURGE_ENDPOINT = "(retention purge)"
#: The regulation's minimum (20 years): decisions must be kept at least this long.
LEGAL_MINIMUM_DAYS = 7305


class AuditLogError(ValueError):
    """The audit database cannot be used: not an audit database, corrupt, or a newer schema."""


logger = logging.getLogger("suitability.serving")


@dataclass(frozen=True)
class Retention:
    """How long records are kept, the legal minimum, and why it is undercut (if it is)."""

    days: int
    minimum_days: int
    override_reason: str | None


def check_retention(days: int, minimum_days: int, override_reason: str | None) -> Retention:
    """The retention to use; raises AuditLogError for one below the legal minimum without a
    reason (a setting of 0 would otherwise delete every decision at the next start)."""
    if days <= 0:
        raise AuditLogError(f"the audit retention must be a positive number of days, got {days}")
    reason = (override_reason or "").strip() or None
    if days < minimum_days and reason is None:
        raise AuditLogError(
            f"the audit retention of {days} days is below the legal minimum of {minimum_days} "
            "days; decisions must be kept that long. To keep them for less, also set "
            "SUITABILITY_AUDIT_RETENTION_OVERRIDE to the reason (it is recorded with every purge)"
        )
    return Retention(days, minimum_days, reason if days < minimum_days else None)


def purge_record(
    now: datetime,
    count: int,
    oldest: str | None,
    newest: str | None,
    cutoff: str,
    retention: Retention,
) -> AuditRecord:
    """The record a purge leaves of itself."""
    return AuditRecord(
        request_id=f"purge-{uuid.uuid4().hex}",
        time=_iso(now),
        endpoint=PURGE_ENDPOINT,
        caller_role="system",
        key_id="-",
        customer_id="-",
        outputs={
            "deleted": count,
            "oldest_deleted": oldest,
            "newest_deleted": newest,
            "cutoff": cutoff,
            "retention_days": retention.days,
            "legal_minimum_days": retention.minimum_days,
            "override_reason": retention.override_reason,
        },
    )


def _owner_only(path: Path) -> None:
    """Create `path` readable and writable by its owner only, or tighten an existing one (and
    its -wal and -shm) to that. SQLite gives the -wal and -shm files it creates the database
    file's mode."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        for member in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            with contextlib.suppress(FileNotFoundError):
                if member.stat().st_mode & 0o077:
                    os.chmod(member, 0o600)
    else:
        os.close(fd)


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


def withhold_pii(record: AuditRecord) -> tuple[AuditRecord, list[str]]:
    """`record` with every scanned text that looks like an unmasked mobile or ID number
    replaced by `WITHHELD`, and the paths of those texts (`reasons.churn[0]`), never the
    values. Identifier fields and numbers are not scanned (see `SCANNED_FIELDS`)."""
    found: list[str] = []
    changes: dict[str, Any] = {}
    for name in SCANNED_FIELDS:
        value = getattr(record, name)
        cleaned = _withheld(value, name, found)
        if cleaned is not value:
            changes[name] = cleaned
    if not changes:
        return record, found
    return replace(record, **changes), found


def _withheld(value: Any, path: str, found: list[str]) -> Any:
    """`value` unchanged (the same object) when nothing in it is withheld, else a copy."""
    if isinstance(value, str):
        if any(pattern.search(value) for _, pattern in _PII_PATTERNS):
            found.append(path)
            return WITHHELD
        return value
    if isinstance(value, Mapping):
        # Keys are field names we chose (`risk_level`, `C3`), never client text.
        out = {
            key: item if key in OPAQUE_KEYS else _withheld(item, f"{path}.{key}", found)
            for key, item in value.items()
        }
        if any(out[key] is not item for key, item in value.items()):
            return out
        return value
    if isinstance(value, list | tuple):
        items = [_withheld(item, f"{path}[{i}]", found) for i, item in enumerate(value)]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return items
        return value
    return value


class _AuditStore(ABC):
    """What both audit backends share: appending one record, exporting, closing."""

    retention: Retention
    retention_days: int

    def append(self, record: AuditRecord) -> None:
        """Store one record; returns once it is committed durably."""
        self.append_many([record])

    @abstractmethod
    def append_many(self, records: Iterable[AuditRecord]) -> int:
        """Store records all-or-nothing in one transaction; returns how many."""

    #: The driver's parameter mark (`?` for sqlite3, `%s` for psycopg).
    _MARK: str

    def records(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[AuditRecord]:
        """Records with `since <= time < until`, oldest first, streamed from one snapshot on a
        connection of its own (records appended meanwhile are not included)."""
        where, params = [], []
        if since is not None:
            where.append(f"time >= {self._MARK}")
            params.append(_iso(_aware(since, "since")))
        if until is not None:
            where.append(f"time < {self._MARK}")
            params.append(_iso(_aware(until, "until")))
        sql = f"SELECT {', '.join(_COLUMNS)} FROM {_TABLE}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time, request_id"
        return self._stream(sql, params)

    @abstractmethod
    def _stream(self, sql: str, params: list[str]) -> Iterator[AuditRecord]:
        """The rows of `sql` as records, from one read snapshot."""

    @property
    def _insert(self) -> str:
        marks = ", ".join([self._MARK] * len(_COLUMNS))
        return f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES ({marks})"

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def _rows(self, records: Iterable[AuditRecord]) -> list[tuple[Any, ...]]:
        """The rows to insert: every record checked (personal data withheld) first."""
        rows = []
        for record in records:
            record, withheld = withhold_pii(record)
            if withheld:
                logger.error(
                    "audit record %s: withheld %s, which looked like personal data (a bug in "
                    "the text we generate; the answer was still recorded)",
                    record.request_id,
                    ", ".join(withheld),
                )
            rows.append(_row(record))
        return rows

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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AuditLog(_AuditStore):
    """Append-only store of audit records in one SQLite file.

    One connection shared by all threads behind a lock (writes are short); reading with
    `records` and `export` uses a connection of its own, so a slow reader never blocks the
    service. Other processes may open the same file at the same time."""

    _MARK = "?"

    def __init__(
        self,
        path: Path | str,
        retention_days: int = LEGAL_MINIMUM_DAYS,
        *,
        create: bool = True,
        minimum_days: int = LEGAL_MINIMUM_DAYS,
        override_reason: str | None = None,
    ) -> None:
        """Open (or, with `create`, make) the audit database at `path`. A `retention_days`
        below `minimum_days` (the legal minimum) is refused unless `override_reason` says why;
        the reason is kept in the record of every purge."""
        self.retention = check_retention(retention_days, minimum_days, override_reason)
        self.retention_days = retention_days
        self.path = Path(path)
        if not create and not self.path.exists():
            raise AuditLogError(f"audit database {self.path} does not exist")
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _owner_only(self.path)
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

    def append_many(self, records: Iterable[AuditRecord]) -> int:
        """Store records all-or-nothing in one transaction (a batch endpoint's decisions);
        returns how many. Every record is checked before anything is written."""
        rows = self._rows(records)
        if not rows:
            return 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(self._insert, rows)
                self._conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._conn.execute("ROLLBACK")
                ids = [row[0] for row in rows]
                raise DuplicateRecordError(
                    f"audit database {self.path} already holds a record with one of these "
                    f"request ids ({_first_repeat(ids, self._stored(ids))}); nothing was stored"
                ) from exc
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        return len(rows)

    def _stored(self, ids: list[str]) -> set[str]:
        """Which of `ids` the log already holds (one query)."""
        marks = ", ".join("?" * len(ids))
        found = self._conn.execute(
            f"SELECT request_id FROM {_TABLE} WHERE request_id IN ({marks})", ids
        )
        return {row[0] for row in found}

    def purge(self, now: datetime | None = None) -> int:
        """Delete records older than the retention period, and in the same transaction add a
        record of the purge (how many, the time range they covered, the retention and any
        override reason); returns how many went."""
        now = _aware(now, "now") if now is not None else datetime.now(UTC)
        cutoff = _iso(now - timedelta(days=self.retention_days))
        where = f"FROM {_TABLE} WHERE time < ? AND endpoint != ?"
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                count, oldest, newest = self._conn.execute(
                    f"SELECT count(*), min(time), max(time) {where}", (cutoff, PURGE_ENDPOINT)
                ).fetchone()
                if count:
                    self._conn.execute(f"DELETE {where}", (cutoff, PURGE_ENDPOINT))
                    record = purge_record(now, count, oldest, newest, cutoff, self.retention)
                    self._conn.execute(self._insert, _row(record))
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        return count

    # --- reading ----------------------------------------------------------------------------------

    def get(self, request_id: str) -> AuditRecord | None:
        """The record of one request, or None."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM {_TABLE} WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else _record(row)

    def _stream(self, sql: str, params: list[str]) -> Iterator[AuditRecord]:
        reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        try:
            reader.execute("BEGIN")  # one read transaction: one snapshot for the whole stream
            for row in reader.execute(sql, params):
                yield _record(row)
        finally:
            reader.close()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute(f"SELECT count(*) FROM {_TABLE}").fetchone()[0]

    # --- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()


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


def _first_repeat(ids: list[str], stored: set[str]) -> str:
    """The first of `ids` that is among `stored` or repeated within `ids`, quoted."""
    seen: set[str] = set()
    for request_id in ids:
        if request_id in seen or request_id in stored:
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


# --- PostgreSQL ----------------------------------------------------------------------------------

_PG_META = "suitability_audit_meta"
_PG_SCHEMA = (
    f"""
CREATE TABLE {_TABLE} (
    request_id   TEXT PRIMARY KEY,
    time         TEXT NOT NULL,
    endpoint     TEXT NOT NULL,
    caller_role  TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    models       TEXT NOT NULL,
    rule_version TEXT,
    feature_hash TEXT,
    outputs      TEXT NOT NULL,
    reasons      TEXT NOT NULL,
    decision     TEXT
)""",
    f"CREATE INDEX {_TABLE}_time ON {_TABLE} (time)",
    f"CREATE TABLE {_PG_META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"INSERT INTO {_PG_META} VALUES ('application', 'suitability-audit'), "
    f"('schema_version', '{_SCHEMA_VERSION}')",
)
#: Serialises schema creation between replicas starting at once (any fixed 64-bit number).
_PG_LOCK = 0x5355_4954_4155_4454


def is_database_url(target: str | Path) -> bool:
    """Whether an audit target is a PostgreSQL URL rather than an SQLite file path."""
    return str(target).startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


class PostgresAuditLog(_AuditStore):
    """The audit log in a PostgreSQL database (`SUITABILITY_AUDIT_URL`), for a team running
    several service replicas: the same records, rules and promises as the SQLite file. Each
    append is one transaction committed with `synchronous_commit = on` before the answer is
    sent; appenders in any number of processes and machines may write at once (the primary key
    keeps request ids unique); `records` streams one snapshot. The tables are created on first
    use, under an advisory lock, with a marker table naming them ours."""

    _MARK = "%s"

    def __init__(
        self,
        url: str,
        retention_days: int = LEGAL_MINIMUM_DAYS,
        *,
        create: bool = True,
        minimum_days: int = LEGAL_MINIMUM_DAYS,
        override_reason: str | None = None,
    ) -> None:
        self.retention = check_retention(retention_days, minimum_days, override_reason)
        self.retention_days = retention_days
        self.url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.path = masked_url(self.url)  # what messages call it
        self._lock = threading.Lock()
        self._conn: Any = None
        with self._lock:
            conn = self._connection()
            try:
                self._prepare(conn, create)
            except BaseException:
                conn.close()
                self._conn = None
                raise

    def _connect(self) -> Any:
        import psycopg

        try:
            conn = psycopg.connect(self.url, connect_timeout=10, application_name="suitability")
        except psycopg.Error as error:
            raise AuditLogError(
                f"cannot connect to the audit database {self.path}: {masked_reason(error, self.url)}"
            ) from None
        conn.execute("SET synchronous_commit = on")
        conn.commit()
        return conn

    def _connection(self) -> Any:
        """The shared connection, made again if the server dropped it (a restart)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _prepare(self, conn: Any, create: bool) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
            names = {
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema() AND table_name IN (%s, %s)",
                    (_TABLE, _PG_META),
                )
            }
            if _TABLE in names and _PG_META not in names:
                raise AuditLogError(
                    f"{self.path} has a table {_TABLE} that is not a suitability audit log"
                )
            if _PG_META in names:
                meta = dict(conn.execute(f"SELECT key, value FROM {_PG_META}").fetchall())
                version = int(meta.get("schema_version", "0"))
                if meta.get("application") != "suitability-audit":
                    raise AuditLogError(f"{self.path} holds another application's {_PG_META}")
                if version > _SCHEMA_VERSION:
                    raise AuditLogError(
                        f"audit database {self.path} has schema version {version}; "
                        f"this version reads up to {_SCHEMA_VERSION}"
                    )
                return
            if not create:
                raise AuditLogError(f"audit database {self.path} holds no audit log")
            for statement in _PG_SCHEMA:
                conn.execute(statement)

    def append_many(self, records: Iterable[AuditRecord]) -> int:
        """Store records all-or-nothing in one transaction; returns how many."""
        import psycopg

        rows = self._rows(records)
        if not rows:
            return 0
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cursor:
                    cursor.executemany(self._insert, rows)
            except psycopg.errors.UniqueViolation:
                ids = [row[0] for row in rows]
                with conn.transaction():
                    found = conn.execute(
                        f"SELECT request_id FROM {_TABLE} WHERE request_id = ANY(%s)", (ids,)
                    )
                    stored = {r[0] for r in found}
                raise DuplicateRecordError(
                    f"audit database {self.path} already holds a record with one of these "
                    f"request ids ({_first_repeat(ids, stored)}); nothing was stored"
                ) from None
        return len(rows)

    def purge(self, now: datetime | None = None) -> int:
        """As `AuditLog.purge`: delete past retention and record the purge, in one
        transaction (replicas purging at once wait for each other's row locks)."""
        now = _aware(now, "now") if now is not None else datetime.now(UTC)
        cutoff = _iso(now - timedelta(days=self.retention_days))
        where = f"FROM {_TABLE} WHERE time < %s AND endpoint != %s"
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK + 1,))
                count, oldest, newest = conn.execute(
                    f"SELECT count(*), min(time), max(time) {where}", (cutoff, PURGE_ENDPOINT)
                ).fetchone()
                if count:
                    conn.execute(f"DELETE {where}", (cutoff, PURGE_ENDPOINT))
                    record = purge_record(now, count, oldest, newest, cutoff, self.retention)
                    conn.execute(self._insert, _row(record))
        return count

    def get(self, request_id: str) -> AuditRecord | None:
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                row = conn.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM {_TABLE} WHERE request_id = %s",
                    (request_id,),
                ).fetchone()
        return None if row is None else _record(row)

    def _stream(self, sql: str, params: list[str]) -> Iterator[AuditRecord]:
        import psycopg

        reader = self._connect()
        try:
            # One snapshot for the whole stream, as SQLite's read transaction gives.
            reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            reader.read_only = True
            with reader.cursor(name="suitability_audit_records") as cursor:
                cursor.execute(sql, params)
                for row in cursor:
                    yield _record(row)
        finally:
            reader.close()

    def __len__(self) -> int:
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                return conn.execute(f"SELECT count(*) FROM {_TABLE}").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


def open_audit(
    target: str | Path,
    retention_days: int = LEGAL_MINIMUM_DAYS,
    *,
    create: bool = True,
    minimum_days: int = LEGAL_MINIMUM_DAYS,
    override_reason: str | None = None,
) -> AuditLog | PostgresAuditLog:
    """The audit log at `target`: a PostgreSQL URL, or the path of an SQLite file."""
    kind = PostgresAuditLog if is_database_url(target) else AuditLog
    return kind(
        str(target) if kind is PostgresAuditLog else target,  # type: ignore[arg-type]
        retention_days,
        create=create,
        minimum_days=minimum_days,
        override_reason=override_reason,
    )
