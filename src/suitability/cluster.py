"""The Dask cluster a batch command runs on (DESIGN §3: scale-out through Dask distributed).

`--cluster ADDRESS` (or `SUITABILITY_DASK_SCHEDULER`) joins a running scheduler; `--cluster
local` or `local:N` starts a `LocalCluster` of N single-threaded worker processes on this
machine for the command's lifetime. Before any work, every worker must run the same
`suitability` code as the client (package version and a digest of its modules), and Dask's own
version check must pass; the specs travel with the tasks, so they cannot differ.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import suitability

ENV_SCHEDULER = "SUITABILITY_DASK_SCHEDULER"
_LOCAL = re.compile(r"^local(?::(\d+))?$")
_ADDRESS = re.compile(
    r"^(?:(?:tcp|tls|ucx)://)?(?:[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)
#: Seconds to wait for a scheduler before saying it cannot be reached.
CONNECT_TIMEOUT = 20


class ClusterError(RuntimeError):
    """A cluster that cannot be used: bad address, unreachable, or workers that differ."""


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: a scheduler `address`, or `local_workers` processes started here."""

    address: str | None = None
    local_workers: int | None = None

    def __str__(self) -> str:
        return self.address or f"local:{self.local_workers}"


def parse_cluster(text: str | None, *, option: str = "--cluster") -> ClusterSpec | None:
    """`local`, `local:N` or a scheduler address (`tcp://host:8786`, `host:8786`); None or
    empty (with no `SUITABILITY_DASK_SCHEDULER`) means: no cluster, run in this process."""
    if text is None or not text.strip():
        text = os.environ.get(ENV_SCHEDULER, "")
        option = ENV_SCHEDULER
        if not text.strip():
            return None
    text = text.strip()
    local = _LOCAL.match(text)
    if local:
        n = int(local.group(1)) if local.group(1) else os.cpu_count() or 1
        if n < 1:
            raise ClusterError(f"{option} {text!r}: a local cluster needs at least 1 worker")
        return ClusterSpec(local_workers=n)
    if text.startswith("local:") or not _ADDRESS.match(text):
        raise ClusterError(
            f"{option} {text!r}: expected local, local:N or a scheduler address such as "
            "tcp://host:8786"
        )
    return ClusterSpec(address=text if "://" in text else f"tcp://{text}")


@lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of this installation's `suitability` modules (names and bytes)."""
    root = Path(suitability.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _identity() -> tuple[str, str]:
    return suitability.__version__, code_digest()


def check_workers(client: object) -> int:
    """Raise `ClusterError` naming every worker whose `suitability` differs from this
    process's (or none are connected); return the number of workers."""
    try:
        client.get_versions(check=True)  # type: ignore[attr-defined]
    except ValueError as exc:  # Dask's own mismatch report (python, dask, msgpack …)
        raise ClusterError(f"the cluster's workers differ from this client: {exc}") from None
    seen = client.run(_identity)  # type: ignore[attr-defined]
    if not seen:
        raise ClusterError("the cluster has no workers")
    mine = _identity()
    differ = {worker: got for worker, got in seen.items() if tuple(got) != mine}
    if differ:
        listed = "; ".join(
            f"{worker}: suitability {v} (code {d})" for worker, (v, d) in sorted(differ.items())
        )
        raise ClusterError(
            f"{len(differ)} of {len(seen)} worker(s) run other suitability code than this "
            f"client (suitability {mine[0]}, code {mine[1]}): {listed}. Install the same "
            "package version on every worker."
        )
    return len(seen)


def run_in_order(
    client: object,
    futures: Sequence[object],
    consume: Callable[[int, object], None],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Hand each future's result to `consume(i, result)` in the futures' order, as soon as it
    and every earlier one are done (results do not pile up on the client), calling
    `progress(done, total)` as tasks finish in any order. A task that fails (a worker that
    died more often than Dask retries, a bug) cancels the rest and raises: `ClusterError` for
    lost workers, the task's own error otherwise."""
    from distributed import KilledWorker, as_completed
    from distributed.client import FutureCancelledError

    pending = list(futures)
    total, done, next_i = len(pending), 0, 0
    try:
        for future in as_completed(pending):
            if future.status == "error":  # type: ignore[attr-defined]
                future.result()  # type: ignore[attr-defined]  # raises the task's error
            done += 1
            if progress:
                progress(done, total)
            while next_i < total and pending[next_i].done():  # type: ignore[attr-defined]
                result = pending[next_i].result()  # type: ignore[attr-defined]
                pending[next_i] = None  # released: the worker may forget it
                consume(next_i, result)
                next_i += 1
    except (KilledWorker, FutureCancelledError) as exc:
        client.cancel([f for f in pending if f is not None])  # type: ignore[attr-defined]
        raise ClusterError(
            f"a task was lost with its worker too often to retry ({type(exc).__name__}: "
            f"{exc}); nothing was written. Workers die when they run out of memory: give "
            "them more, or smaller partitions (SUITABILITY_CLUSTER_PARTITION_CUSTOMERS)"
        ) from None
    except BaseException:
        client.cancel([f for f in pending if f is not None])  # type: ignore[attr-defined]
        raise


def dashboard_link(client: object) -> str | None:
    """The scheduler's dashboard address, when it serves one."""
    try:
        link = client.dashboard_link  # type: ignore[attr-defined]
    except (AttributeError, KeyError):
        return None
    return str(link) if link else None


def _quiet_stdout() -> object:
    """A worker plugin (also run by workers that restart): the worker process's stdout (file
    descriptor 1) goes to /dev/null."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class QuietStdout(WorkerPlugin):
        def setup(self, worker: object) -> None:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.close(null)

    return QuietStdout()


def _local_worker_environment() -> dict[str, object]:
    """Dask's environment for new worker processes less `MALLOC_TRIM_THRESHOLD_`: setting it
    turns off glibc's adaptive mmap threshold, so every large array the kernel allocates is a
    fresh mmap, page-faulted in and unmapped again (measured: a third more CPU time, most of it
    in the kernel, for the same partitions)."""
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return {"distributed.nanny.pre-spawn-environ": environ}


@contextlib.contextmanager
def connect(spec: ClusterSpec) -> Iterator[object]:
    """A checked `distributed.Client` on `spec`; a local cluster is shut down afterwards."""
    import dask
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if spec.local_workers is not None:
            stack.enter_context(dask.config.set(_local_worker_environment()))
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=spec.local_workers,
                    threads_per_worker=1,
                    processes=True,
                    # The command shows its own progress; the scheduler's HTTP server (health,
                    # metrics) takes any free port, so clusters side by side do not collide.
                    dashboard_address=":0",
                    silence_logs=40,  # errors only: the command prints its own progress
                )
            )
            client = stack.enter_context(Client(cluster))
            # Worker processes here share this terminal: what libraries print on the workers'
            # stdout (LightGBM's network set-up) stays off it; their logs still reach stderr.
            client.register_plugin(_quiet_stdout(), name="suitability-quiet-stdout")
        else:
            try:
                client = stack.enter_context(
                    Client(spec.address, timeout=CONNECT_TIMEOUT, set_as_default=False)
                )
            except (OSError, TimeoutError) as exc:
                raise ClusterError(
                    f"cannot reach the Dask scheduler at {spec.address} "
                    f"(waited {CONNECT_TIMEOUT} s): {type(exc).__name__}"
                ) from None
        check_workers(client)
        yield client
