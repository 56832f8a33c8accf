"""A real `suitability serve` for tests: started on a free port in its own session, waited for
until ready, and killed with everything under it afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the server did not become ready")


def kill_all(process: subprocess.Popen) -> None:
    """SIGKILL the server and every process under it at once (the test's clean-up: whether
    workers die with their supervisor on their own is a test of its own)."""
    try:
        family = [psutil.Process(process.pid)]
        family += family[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(family, timeout=30)


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_logged(self, text: str, times: int, seconds: float = 120) -> None:
        """Wait until `text` appears `times` times in the log: /readyz answers as soon as
        one worker is up, the others may still be loading their models."""
        deadline = time.monotonic() + seconds
        while self.log_text().count(text) < times:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} was not logged {times} time(s)")
            time.sleep(0.2)


@contextlib.contextmanager
def running_server(
    store: Path, keys: str, out: Path, *, workers: int = 2, env: Mapping[str, str] = ()
) -> Iterator[Server]:
    """`suitability serve --keys KEYS --workers N` on the demo store `store` (its
    `mlflow.db`), logging to `out/server.log`, with extra environment `env`."""
    port = free_port()
    log_path = out / "server.log"
    variables = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{(store / 'mlflow.db').resolve()}",
        "SUITABILITY_AUDIT_DB": str(out / "audit.sqlite"),
        **dict(env),
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "suitability"), "serve", "--keys", keys,
             "--port", str(port), "--workers", str(workers)],
            env=variables, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        server = Server(f"http://127.0.0.1:{port}", port, process, log_path)
        try:
            wait_ready(server.url, process)
            yield server
        finally:
            kill_all(process)
            process.wait(timeout=30)
