"""API keys for the prediction service: each key has a role, and the keys file stores only the
sha256 of each token, so a leaked file (or backup) does not let anyone call the service.

Keys file format (JSON, written atomically with mode 0600)::

    {"format": 1, "keys": [{"key_id": "key_1a2b3c4d", "role": "matching", "label": "crm",
                            "created": "2026-01-01T00:00:00+00:00", "sha256": "<64 hex>"}]}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

try:  # POSIX only; elsewhere concurrent `keys add` runs are not serialised.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("suitability.serving")

Role = Literal["matching", "compliance"]
Permission = Literal["predict", "audit"]

#: Every role a key may have: `matching` calls prediction endpoints; `compliance` also reads
#: audit records.
ROLES: tuple[Role, ...] = get_args(Role)
PERMISSIONS: tuple[Permission, ...] = get_args(Permission)

_ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "matching": frozenset({"predict"}),
    "compliance": frozenset({"predict", "audit"}),
}

#: Tokens start with this, so a leaked one is recognisable (and findable by secret scanners).
TOKEN_PREFIX = "suit_"
FORMAT_VERSION = 1

_REQUIRED_FIELDS = ("key_id", "role", "sha256", "created")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# RFC 6750 `b64token`: what may follow "Bearer ".
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class KeyFileError(ValueError):
    """The keys file is missing or malformed; the message names the file, entry and field
    (never a token or hash)."""


@dataclass(frozen=True)
class NewKey:
    """A freshly created key. `token` is shown to the operator once and stored nowhere."""

    key_id: str
    role: Role
    token: str = field(repr=False)  # kept out of repr so a stray log line cannot leak it


@dataclass(frozen=True)
class Caller:
    """Who made an authenticated request."""

    key_id: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return role_allows(self.role, permission)


@dataclass(frozen=True)
class KeyEntry:
    """One stored key, as listed to an operator (no hash)."""

    key_id: str
    role: Role
    label: str | None
    created: str


def role_allows(role: str, permission: Permission) -> bool:
    """Whether a key with `role` may do `permission`; an unknown role may do nothing."""
    return permission in _ROLE_PERMISSIONS.get(role, frozenset())


def hash_token(token: str) -> str:
    """The sha256 hex digest stored for a token. A plain hash is enough (no salt or slow KDF):
    tokens are 256-bit random, so there is nothing to brute-force."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_bearer(header_value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None for anything else
    (missing header, another scheme, no token, spaces inside the token)."""
    if not header_value:
        return None
    parts = header_value.strip().split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    token = parts[1].strip()
    return token if _BEARER_TOKEN.fullmatch(token) else None


# --- the store the service authenticates against -------------------------------------------------


class KeyStore:
    """The keys of one keys file, looked up by token hash."""

    def __init__(self, entries: list[KeyEntry], hashes: dict[str, str]) -> None:
        """`hashes` maps each sha256 hex digest to its key id."""
        self._entries = {e.key_id: e for e in entries}
        self._by_hash = dict(hashes)

    @classmethod
    def load(cls, path: Path | str) -> KeyStore:
        """Read and validate a keys file; raises KeyFileError if it is missing or malformed."""
        path = Path(path)
        raw = _read_entries(path, missing_ok=False)
        entries = [_entry(item) for item in raw]
        return cls(entries, {item["sha256"]: item["key_id"] for item in raw})

    def authenticate(self, token: str | None) -> Caller | None:
        """The caller a token belongs to, or None if it is no key's token.

        A dict lookup by hash is safe against timing attacks: the attacker controls the token,
        not its sha256, so timing reveals nothing about stored hashes."""
        if not token or not isinstance(token, str):
            return None
        key_id = self._by_hash.get(hash_token(token))
        if key_id is None:
            return None
        return Caller(key_id=key_id, role=self._entries[key_id].role)

    @property
    def entries(self) -> list[KeyEntry]:
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


class WatchedKeys:
    """The keys of a keys file as it is now: every lookup first compares the file's identity
    (inode, size, modification time) with the one last read, and re-reads the file when it
    changed, so a key revoked with `suitability keys remove` stops working at the next request,
    without a restart. A file that can no longer be read (deleted, or broken by a hand edit)
    trusts no key until it is fixed: failing closed is the safe side of a revocation."""

    def __init__(self, path: Path | str) -> None:
        """Read `path` now; raises KeyFileError if it is missing or malformed."""
        self.path = Path(path)
        self._signature = self._stat()
        self._store: KeyStore | None = KeyStore.load(self.path)
        self.problem: str | None = None

    def current(self) -> KeyStore | None:
        """The keys to authenticate against, or None while the file cannot be read (the
        reason is in `problem`)."""
        signature = self._stat()
        if signature != self._signature:
            self._signature = signature
            try:
                self._store = KeyStore.load(self.path)
                self.problem = None
                logger.info("keys file %s re-read: %d key(s)", self.path, len(self._store))
            except KeyFileError as error:
                self._store = None
                self.problem = str(error)
                logger.error("keys file changed and cannot be used; no key is trusted: %s", error)
        return self._store

    def _stat(self) -> tuple[int, ...] | None:
        try:
            s = os.stat(self.path)
        except OSError:
            return None
        return (s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)


# --- editing the keys file (the CLI's side) ------------------------------------------------------


def add_key(path: Path | str, role: str, label: str | None = None) -> NewKey:
    """Create a key with `role`, store its hash in the keys file (created if missing) and return
    the token, which exists nowhere else. A malformed existing file is an error, never
    overwritten."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; allowed roles: {', '.join(ROLES)}")
    path = Path(path)
    with _exclusive(path):
        raw = _read_entries(path, missing_ok=True)
        taken = {item["key_id"] for item in raw}
        key_id = _new_key_id(taken)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        raw.append(
            {
                "key_id": key_id,
                "role": role,
                "label": label,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "sha256": hash_token(token),
            }
        )
        _write_entries(path, raw)
    return NewKey(key_id=key_id, role=role, token=token)  # type: ignore[arg-type]


def remove_key(path: Path | str, key_id: str) -> None:
    """Revoke a key by deleting it from the keys file; raises ValueError if there is none."""
    path = Path(path)
    with _exclusive(path):
        raw = _read_entries(path, missing_ok=False)
        kept = [item for item in raw if item["key_id"] != key_id]
        if len(kept) == len(raw):
            raise ValueError(f"no key {key_id!r} in keys file {path}")
        _write_entries(path, kept)


def list_keys(path: Path | str) -> list[KeyEntry]:
    """The keys in a keys file, without their hashes."""
    return KeyStore.load(path).entries


# --- file I/O and validation ---------------------------------------------------------------------


def _new_key_id(taken: set[str]) -> str:
    while True:
        key_id = f"key_{secrets.token_hex(4)}"
        if key_id not in taken:
            return key_id


def _entry(item: dict[str, Any]) -> KeyEntry:
    return KeyEntry(
        key_id=item["key_id"], role=item["role"], label=item.get("label"), created=item["created"]
    )


def _read_entries(path: Path, *, missing_ok: bool) -> list[dict[str, Any]]:
    """The validated entries of a keys file ([] if it is missing and `missing_ok`).

    Validated by hand rather than with pydantic because pydantic's messages quote the input
    value, which here could be a hash."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return []
        raise KeyFileError(
            f"keys file {path} does not exist (create one with `suitability keys add`)"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # The decoder's message gives a position only, never the text.
        raise KeyFileError(
            f"keys file {path} is not valid JSON: {exc.msg} (line {exc.lineno})"
        ) from None
    if not isinstance(data, dict):
        raise KeyFileError(f"keys file {path} must hold a JSON object with 'format' and 'keys'")
    if data.get("format") != FORMAT_VERSION:
        raise KeyFileError(
            f"keys file {path} has format {data.get('format')!r}; "
            f"this version reads format {FORMAT_VERSION}"
        )
    items = data.get("keys")
    if not isinstance(items, list):
        raise KeyFileError(f"keys file {path}: 'keys' must be a list")
    seen_ids: dict[str, int] = {}
    seen_hashes: dict[str, int] = {}
    for index, item in enumerate(items):
        where = f"keys file {path}: entry {index}"
        if not isinstance(item, dict):
            raise KeyFileError(f"{where} must be a JSON object")
        for name in _REQUIRED_FIELDS:
            if name not in item:
                raise KeyFileError(f"{where} is missing field {name!r}")
            if not isinstance(item[name], str) or not item[name]:
                raise KeyFileError(f"{where}: field {name!r} must be a non-empty string")
        if item.get("label") is not None and not isinstance(item["label"], str):
            raise KeyFileError(f"{where}: field 'label' must be a string or null")
        if item["role"] not in ROLES:
            raise KeyFileError(
                f"{where}: unknown role {item['role']!r} in field 'role'; "
                f"allowed roles: {', '.join(ROLES)}"
            )
        if not _SHA256_HEX.fullmatch(item["sha256"]):
            raise KeyFileError(f"{where}: field 'sha256' is not a lowercase sha256 hex digest")
        if item["key_id"] in seen_ids:
            raise KeyFileError(
                f"{where}: duplicate key id {item['key_id']!r} in field 'key_id' "
                f"(also entry {seen_ids[item['key_id']]})"
            )
        if item["sha256"] in seen_hashes:
            raise KeyFileError(
                f"{where}: field 'sha256' repeats entry {seen_hashes[item['sha256']]}'s"
            )
        seen_ids[item["key_id"]] = index
        seen_hashes[item["sha256"]] = index
    return items


def _write_entries(path: Path, items: list[dict[str, Any]]) -> None:
    """Replace the keys file atomically: a crash leaves the old file or the new one, never half
    of one. mkstemp creates the temporary file with mode 0600, and os.replace keeps it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": FORMAT_VERSION, "keys": items}, indent=2, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # mkstemp already does, but say so where it matters
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); not possible or needed on every platform."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the keys file, so two `keys add` runs at once cannot drop
    each other's key. The lock is on a sibling file because the keys file itself is replaced."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
