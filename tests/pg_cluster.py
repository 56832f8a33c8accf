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
    port: int
    folder: Path

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
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


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if shutil.which(b) is None]
    if missing:
        raise RuntimeError(
            f"the PostgreSQL server binaries {', '.join(missing)} are not on PATH; the team-setup "
            "tests need them (this machine kind has PostgreSQL 15)"
        )
    folder = Path(tempfile.mkdtemp(prefix="suitability-pg-"))
    if os.geteuid() == 0:
        server_user = pwd.getpwnam("postgres")
        os.chown(folder, server_user.pw_uid, server_user.pw_gid)
    data, port = folder / "data", _free_port()
    try:
        subprocess.run(
            _as_server_user(["initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E",
                             "UTF8", "--no-sync"]),
            check=True, capture_output=True,
        )  # fmt: skip
        options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=100 "
            "-c fsync=on -c synchronous_commit=on"
        )
        subprocess.run(
            _as_server_user(["pg_ctl", "-D", str(data), "-o", options, "-l",
                             str(folder / "server.log"), "-w", "-t", "60", "start"]),
            check=True, capture_output=True,
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
