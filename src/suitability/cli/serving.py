"""The prediction service: serve it, its API keys and its audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from suitability.settings import masked_url

if TYPE_CHECKING:
    pass

from suitability.cli.common import (
    AuditDbOption,
    Command,
    ExportFormat,
    JsonTable,
    KeysFileOption,
    Role,
    app,
    audit_app,
    console,
    err_console,
    keys_app,
    user_errors,
)

# --- serving: keys and audit ----------------------------------------------------------------------


def _keys_file(keys: Path | None) -> Path:
    from suitability.settings import get_settings

    path = keys or get_settings().keys_file
    if path is None:
        raise ValueError("no keys file: pass --keys FILE or set SUITABILITY_KEYS_FILE")
    return path


@keys_app.command("add", cls=Command)
def keys_add(
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            help="matching: prediction endpoints; compliance: also reads audit records.",
        ),
    ],
    keys: KeysFileOption = None,
    label: Annotated[
        str | None, typer.Option("--label", help="Who or what the key is for (stored).")
    ] = None,
) -> None:
    """Create an API key and print it once; the file keeps only its sha256 and role."""
    from suitability.serving.keys import add_key

    with user_errors():
        path = _keys_file(keys)
        new = add_key(path, role.value, label)
    err_console.print(
        f"added {new.key_id} ({new.role}) to {escape(str(path))}. "
        "The key is printed once, below; store it now.",
        highlight=False,
    )
    # The bare key on stdout, so `KEY=$(suitability keys add …)` works.
    print(new.token)


@keys_app.command("list", cls=Command)
def keys_list(keys: KeysFileOption = None, as_json: JsonTable = False) -> None:
    """The keys of a keys file: id, role, label, created (never the key or its hash)."""
    from suitability.serving.keys import list_keys

    with user_errors():
        entries = list_keys(_keys_file(keys))
    rows = [
        {"key_id": e.key_id, "role": e.role, "label": e.label, "created": e.created}
        for e in entries
    ]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("key id", "role", "label", "created")
    for r in rows:
        table.add_row(r["key_id"], r["role"], escape(r["label"] or ""), r["created"])
    console.print(table)


@keys_app.command("remove", cls=Command)
def keys_remove(
    key_id: Annotated[str, typer.Argument(help="The key id `keys list` shows.")],
    keys: KeysFileOption = None,
) -> None:
    """Revoke a key (a running service re-reads the file at its next request: no restart)."""
    from suitability.serving.keys import remove_key

    with user_errors():
        remove_key(_keys_file(keys), key_id)
    console.print(f"removed {escape(key_id)}")


def _audit_log(db: str | None):  # AuditLog | PostgresAuditLog
    from suitability.serving.audit import open_audit
    from suitability.settings import get_settings

    settings = get_settings()
    # Reading only: the retention setting matters to the service, which purges.
    return open_audit(db or settings.audit_target, create=False)


def _time_option(value: str | None, name: str):  # datetime | None
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 date or time, e.g. 2026-11-01") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@audit_app.command("show", cls=Command)
def audit_show(
    request_id: Annotated[str, typer.Argument(help="The request id a response carried.")],
    db: AuditDbOption = None,
) -> None:
    """Print one audit record as JSON: who asked, when, models, rules, feature hash, outputs
    and reasons."""
    with user_errors():
        with _audit_log(db) as log:
            record = log.get(request_id)
        if record is None:
            raise ValueError(f"no audit record with request id {request_id!r}")
    print(json.dumps(record.to_dict(), ensure_ascii=False, indent=2))


@audit_app.command("export", cls=Command)
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="File to write (.jsonl or .csv).")],
    db: AuditDbOption = None,
    fmt: Annotated[
        ExportFormat | None,
        typer.Option("--format", help="jsonl or csv (default: from the file extension)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this time (UTC unless an offset is given).")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Before this time (UTC unless an offset is given)."),
    ] = None,
) -> None:
    """Write the audit records of a time range (all by default) to a file, atomically."""
    with user_errors():
        kind = fmt.value if fmt is not None else out.suffix.lstrip(".").lower()
        if kind not in ("jsonl", "csv"):
            raise ValueError(f"cannot tell the format of {out}: use .jsonl or .csv, or --format")
        start, end = _time_option(since, "--since"), _time_option(until, "--until")
        with _audit_log(db) as log:
            count = log.export(out, kind, since=start, until=end)  # type: ignore[arg-type]
    console.print(f"wrote {count:,} records to {escape(str(out))}", highlight=False)


@app.command("serve", cls=Command)
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Interface to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default 3000).", show_default=False)
    ] = None,
    keys: KeysFileOption = None,
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias",
            help="Registry alias to load both models by (default champion).",
            show_default=False,
        ),
    ] = None,
    audit_db: Annotated[
        Path | None,
        typer.Option(
            "--audit-db",
            help="Audit log file (default ./serving-audit.sqlite).",
            show_default=False,
        ),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-body-bytes",
            min=1,
            help="Larger bodies get 413 (default 1 MiB).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Server processes, each with both models loaded (default: one per CPU). "
            "More serve more concurrent calls; a single call gets no faster.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start the prediction service (BentoML) against the configured MLflow store
    (MLFLOW_TRACKING_URI, default experiments/mlflow.db)."""
    import os
    import sys

    from suitability import tracking
    from suitability.serving.audit import check_retention
    from suitability.serving.keys import KeyStore
    from suitability.settings import get_settings

    with user_errors():
        settings = get_settings()
        from suitability.serving.service import load_scorer  # reads the settings at import

        keys_file = _keys_file(keys)
        KeyStore.load(keys_file)  # a bad file fails here, with its reason
        check_retention(
            settings.audit_retention_days,
            settings.audit_min_retention_days,
            settings.audit_retention_override,
        )
        chosen = alias or settings.model_alias
        uri = tracking.use_store()
        # Load both models once here (checksums included): a missing alias or a tampered
        # artifact is one line now, not a server restarting its worker forever.
        load_scorer(chosen)
    env = {
        "MLFLOW_TRACKING_URI": uri,
        "SUITABILITY_PROJECT_DIR": str(settings.project_dir.resolve()),
        "SUITABILITY_KEYS_FILE": str(keys_file.resolve()),
        "SUITABILITY_MODEL_ALIAS": chosen,
        "SUITABILITY_AUDIT_DB": str((audit_db or settings.audit_db).resolve()),
        # A team's PostgreSQL audit log, when set, is the one written (see `audit_target`).
        **({"SUITABILITY_AUDIT_URL": settings.audit_url} if settings.audit_url else {}),
        "SUITABILITY_MAX_BODY_BYTES": str(max_body_bytes or settings.max_body_bytes),
        "SUITABILITY_HOST": host or settings.host,
        "SUITABILITY_PORT": str(port or settings.port),
        "SUITABILITY_WORKERS": str(workers or settings.server_workers),
        # No usage analytics: the service makes no outbound calls.
        "BENTOML_DO_NOT_TRACK": "true",
        # `bentoml serve` keeps this process id (exec): its workers die with it.
        "SUITABILITY_SUPERVISOR_PID": str(os.getpid()),
    }
    os.environ.update(env)
    bind = f"{env['SUITABILITY_HOST']}:{env['SUITABILITY_PORT']}"
    audit_shown = (
        masked_url(settings.audit_url) if settings.audit_url else env["SUITABILITY_AUDIT_DB"]
    )
    err_console.print(
        f"serving {chosen} models from {escape(masked_url(uri))} on http://{bind} with "
        f"{env['SUITABILITY_WORKERS']} worker(s) (audit log {escape(audit_shown)})",
        highlight=False,
    )
    command = [
        sys.executable, "-m", "bentoml", "serve", "serving.service:Suitability",
        "--working-dir", env["SUITABILITY_PROJECT_DIR"],
        "--host", env["SUITABILITY_HOST"], "--port", env["SUITABILITY_PORT"],
    ]  # fmt: skip
    os.execv(sys.executable, command)
