"""Benchmark of the synthetic generator: wall time, events per second and peak memory.

    .venv/bin/python benchmarks/bench_synth.py --customers 1000000 --runs 1

Each run writes a fresh world under `--tmp` (default: the system temp folder) and deletes it
afterwards unless `--keep`. Peak memory is reported three ways: the parent process, the largest
worker (both from `resource.getrusage`), and, when psutil is installed, the largest sampled sum
of resident memory over the parent and all its workers at once.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from suitability.data.synth import generate


@dataclass(frozen=True)
class RunResult:
    customers: int
    workers: int
    seconds: float
    events: int
    parent_peak_mb: float
    child_peak_mb: float
    tree_peak_mb: float | None
    disk_mb: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds


class _TreeMemorySampler:
    """Samples the summed RSS of this process and its children in a background thread."""

    def __init__(self, interval_s: float = 0.2) -> None:
        try:
            import psutil
        except ImportError:  # optional: fall back to getrusage only
            self._proc = None
        else:
            self._proc = psutil.Process()
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def available(self) -> bool:
        return self._proc is not None

    def _run(self) -> None:
        assert self._proc is not None
        while not self._stop.is_set():
            total = 0
            for p in [self._proc, *self._proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except Exception:  # a worker may exit between listing and reading
                    continue
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> _TreeMemorySampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def run_once(customers: int, seed: int, workers: int, tmp_root: Path, keep: bool) -> RunResult:
    """Generate one world and measure it."""
    out = Path(tempfile.mkdtemp(prefix="bench-synth-", dir=tmp_root)) / "world"
    try:
        with _TreeMemorySampler() as sampler:
            start = time.perf_counter()
            summary = generate(out, customers, seed, workers=workers)
            seconds = time.perf_counter() - start
        # ru_maxrss is in KiB on Linux.
        parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return RunResult(
            customers=customers,
            workers=workers,
            seconds=seconds,
            events=summary.rows["events"],
            parent_peak_mb=parent,
            child_peak_mb=child,
            tree_peak_mb=sampler.peak_bytes / 2**20 if sampler.available else None,
            disk_mb=_folder_mb(out),
        )
    finally:
        if keep:
            print(f"kept {out}", file=sys.stderr)
        else:
            shutil.rmtree(out.parent, ignore_errors=True)


def _table(results: list[RunResult]) -> str:
    head = (
        "| customers | workers | wall s | events | events/s | peak RSS parent MiB "
        "| peak RSS worker MiB | peak RSS all MiB | disk MiB |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in results:
        tree = f"{r.tree_peak_mb:,.0f}" if r.tree_peak_mb is not None else "n/a"
        lines.append(
            f"| {r.customers:,} | {r.workers} | {r.seconds:,.1f} | {r.events:,} "
            f"| {r.events_per_second:,.0f} | {r.parent_peak_mb:,.0f} | {r.child_peak_mb:,.0f} "
            f"| {tree} | {r.disk_mb:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args(argv)
    results = []
    for i in range(args.runs):
        result = run_once(args.customers, args.seed + i, args.workers, args.tmp, args.keep)
        results.append(result)
        print(f"run {i + 1}/{args.runs}: {result.seconds:.1f} s", file=sys.stderr, flush=True)
    print(_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
