"""A throwaway PostgreSQL server for tests: `initdb` in a temporary folder, `postgres` on a free
local port (and a socket in that folder), trust authentication for this machine only, removed
afterwards. PostgreSQL refuses to run as root: as root, the server commands run as the
`postgres` system user (`runuser`)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cluster:
    """A running throwaway server: superuser `postgres`, no password (trust), on 127.0.0.1."""

    port: int
    folder: Path

    def dsn(self, database: str = "postgres") -> str:
        """The URI of `database` on this server (`postgresql://postgres@127.0.0.1:PORT/…`)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        """A new, empty database `name` (an error if it exists: each test picks its own)."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _run_server_command(command: list[str], log: Path | None = None) -> None:
    """Run a server command as the server's user; a failure says what it printed (and the end
    of the server log), which the temporary folder removed afterwards no longer can."""
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True)
    if done.returncode == 0:
        return
    said = (done.stderr or done.stdout).strip()
    if log is not None and log.is_file():
        said += "\nserver log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    raise RuntimeError(f"{command[0]} failed with exit code {done.returncode}: {said}")


def _server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "the tests run as root and PostgreSQL refuses to: they run its server as the "
            "`postgres` system user, which this machine does not have"
        ) from None


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    """A fresh server for the duration of the block: its data folder is made by `initdb`, it
    listens on a free port of 127.0.0.1 with fsync and synchronous commit on (durability is
    tested) and 100 connections (concurrent appenders are), and it is stopped and its folder
    removed afterwards, also when the block fails. Missing binaries are an error, not a skip:
    the machines the tests run on have PostgreSQL 15."""
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if shutil.which(b) is None]
    if missing:
        raise RuntimeError(
            f"the PostgreSQL server binaries {', '.join(missing)} are not on PATH; the team-setup "
            "tests need them (this machine kind has PostgreSQL 15)"
        )
    folder = Path(tempfile.mkdtemp(prefix="suitability-pg-"))
    data, port = folder / "data", _free_port()
    try:
        if os.geteuid() == 0:
            server_user = _server_user()
            os.chown(folder, server_user.pw_uid, server_user.pw_gid)
        # --no-sync: initdb's own flush is skipped (the cluster is thrown away); the server
        # itself runs with fsync on.
        _run_server_command(
            ["initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-sync"]
        )  # fmt: skip
        options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=100 "
            "-c fsync=on -c synchronous_commit=on"
        )
        log = folder / "server.log"
        _run_server_command(
            ["pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60",
             "start"],
            log,
        )  # fmt: skip
        cluster = Cluster(port, folder)
        _wait_accepting(cluster)
        yield cluster
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_server_user(["pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
            )
        shutil.rmtree(folder, ignore_errors=True)


def _wait_accepting(cluster: Cluster, seconds: float = 60) -> None:
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            with psycopg.connect(cluster.dsn(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
