"""One settings object for paths and knobs, read from env vars (SUITABILITY_*) and `.env` when asked."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

# src/suitability/settings.py -> the repository root of a source checkout or editable install.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _default_project_dir() -> Path:
    """The folder holding `features/` and `models/`: the working directory if it has them,
    else the checkout this package was installed from."""
    cwd = Path.cwd()
    if (cwd / "features").is_dir():
        return cwd
    return _SOURCE_ROOT


class Settings(BaseSettings):
    """Where specs live and how big batches are. Override with SUITABILITY_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="SUITABILITY_", env_file=".env", extra="ignore")

    project_dir: Path = Field(default_factory=_default_project_dir)
    features_dir: Path | None = None
    models_dir: Path | None = None
    #: Customers per chunk when building features; bounds memory for any number of customers.
    feature_chunk_customers: int = Field(default=25_000, gt=0)
    #: Threads computing feature chunks side by side while the next events are read and
    #: validated (default: the machine's cores).
    feature_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, gt=0)
    #: Customers per partition on a Dask cluster (`--cluster`): the unit a worker validates
    #: and computes, and what is redone when a worker is lost.
    cluster_partition_customers: int = Field(default=100_000, gt=0)
    #: Problems listed in a contract error before "... and N more".
    max_problems_shown: int = Field(default=20, gt=0)

    #: Key of the ID-number pseudonyms (HMAC); unset: the key file below.
    pii_key: SecretStr | None = None
    #: Key file used when `pii_key` is unset (default ~/.config/suitability/pii.key).
    pii_key_file: Path | None = None

    # --- serving (DESIGN §3; `suitability serve` flags override these) ---
    #: API keys file (hashes and roles; `suitability keys add` writes it).
    keys_file: Path | None = None
    #: Registry alias the service loads each model by.
    model_alias: str = "champion"
    #: Where every served decision is appended (SQLite, WAL mode)...
    audit_db: Path = Path("serving-audit.sqlite")
    #: ...unless a team's PostgreSQL database is named here (postgresql://user@host/db).
    audit_url: str | None = Field(default=None, pattern=r"^(postgresql|postgres)(\+psycopg)?://")
    #: Audit records older than this are deleted (20 years by default).
    audit_retention_days: int = Field(default=7305, gt=0)
    #: The legal minimum retention: a shorter `audit_retention_days` is refused at start-up...
    audit_min_retention_days: int = Field(default=7305, gt=0)
    #: ...unless this says why (recorded in the audit log with every purge).
    audit_retention_override: str | None = None
    #: Request bodies above this size are refused with 413, unread.
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    #: Requests one worker holds at a time (running or waiting for a thread); more are
    #: answered 503 with Retry-After at once instead of queueing into a timeout.
    max_in_flight: int = Field(default=64, gt=0)
    #: Seconds from arrival within which a request is answered; one that is not gets 503 and
    #: leaves no audit record (the answer and its record go together, or neither does).
    request_timeout_s: float = Field(default=30.0, gt=0)
    #: Times in requests and data carry no zone: they are local to this one. "Now" (the
    #: default as-of time, the limit for "in the future") is taken here.
    time_zone: str = "Asia/Shanghai"
    #: Who runs this service, as its API document names them (the matching service's
    #: developers write there when an answer surprises them).
    api_contact_name: str = "The team that runs this suitability service"
    api_contact_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    api_contact_url: str | None = Field(default=None, pattern=r"^https?://")
    host: str = "127.0.0.1"
    port: int = Field(default=3000, gt=0, lt=65536)
    #: Server processes, each with both models loaded (None: one per CPU this process may use).
    #: A request runs on one core (Python holds one lock per process), so throughput under
    #: concurrent calls grows with processes up to the cores; a single call gets no faster.
    workers: int | None = Field(default=None, gt=0)

    @property
    def server_workers(self) -> int:
        """`workers`, else one per CPU this process may run on."""
        if self.workers is not None:
            return self.workers
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1

    @property
    def audit_target(self) -> str | Path:
        """The audit log the service writes: `audit_url` if set, else `audit_db`."""
        return self.audit_url or self.audit_db

    @property
    def pii_key_path(self) -> Path:
        if self.pii_key_file is not None:
            return self.pii_key_file
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "suitability" / "pii.key"

    @property
    def features_path(self) -> Path:
        return self.features_dir or self.project_dir / "features"

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.project_dir / "models"


def masked_url(url: str) -> str:
    """`url` with any password replaced by `***`, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def masked_reason(error: Exception, url: str) -> str:
    """A driver error's first line, with the password of `url` (if any) blanked: connection
    errors may quote the URL they were given."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    password = urlsplit(url).password
    return first.replace(password, "***") if password else first


class SettingsError(ValueError):
    """A SUITABILITY_* variable (or `.env` entry) that cannot be used, named with the reason."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process (tests clear the cache to change them). Raises
    `SettingsError` naming each unusable variable."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"SUITABILITY_{'_'.join(str(part) for part in e['loc']).upper()}: {e['msg']}"
            for e in error.errors()
        )
        raise SettingsError(f"bad setting (environment or .env): {problems}") from None
