"""The cluster switch: parsing, reaching a scheduler, and refusing workers that run other code."""

from __future__ import annotations

import socket

import pytest

from suitability import cluster
from suitability.cluster import ClusterError, ClusterSpec, parse_cluster


def test_no_switch_and_no_variable_means_this_process(monkeypatch):
    monkeypatch.delenv(cluster.ENV_SCHEDULER, raising=False)
    assert parse_cluster(None) is None
    assert parse_cluster("  ") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("local:2", ClusterSpec(local_workers=2)),
        ("local:1", ClusterSpec(local_workers=1)),
        ("tcp://10.0.0.5:8786", ClusterSpec(address="tcp://10.0.0.5:8786")),
        ("scheduler.internal:8786", ClusterSpec(address="tcp://scheduler.internal:8786")),
        ("localhost:8786", ClusterSpec(address="tcp://localhost:8786")),
    ],
)
def test_the_switch_names_a_local_cluster_or_a_scheduler(text, expected):
    assert parse_cluster(text) == expected
    assert str(parse_cluster(text)) in {text, f"tcp://{text}"}


def test_local_alone_starts_one_worker_per_core(monkeypatch):
    monkeypatch.setattr(cluster.os, "cpu_count", lambda: 6)
    assert parse_cluster("local") == ClusterSpec(local_workers=6)


def test_the_variable_is_used_when_the_switch_is_absent(monkeypatch):
    monkeypatch.setenv(cluster.ENV_SCHEDULER, "tcp://sched:8786")
    assert parse_cluster(None) == ClusterSpec(address="tcp://sched:8786")
    assert parse_cluster("local:2") == ClusterSpec(local_workers=2)  # the switch wins
    monkeypatch.setenv(cluster.ENV_SCHEDULER, "local:zero")
    with pytest.raises(ClusterError, match=cluster.ENV_SCHEDULER):
        parse_cluster(None)


@pytest.mark.parametrize("text", ["local:0", "local:two", "two words", "http://x:1/path"])
def test_a_bad_switch_is_named_with_what_is_expected(text):
    with pytest.raises(ClusterError) as caught:
        parse_cluster(text)
    assert "--cluster" in str(caught.value) and repr(text) in str(caught.value)


def test_an_unreachable_scheduler_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    with (
        pytest.raises(
            ClusterError, match=rf"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"
        ),
        cluster.connect(ClusterSpec(address=f"tcp://127.0.0.1:{port}")),
    ):
        pass


@pytest.mark.slow
def test_a_local_cluster_is_checked_and_a_worker_with_other_code_is_refused():
    with cluster.connect(ClusterSpec(local_workers=2)) as client:
        assert cluster.check_workers(client) == 2
        worker = sorted(client.scheduler_info()["workers"])[0]
        # That worker now reports another package version, as an older install would.
        client.run(exec, "import suitability; suitability.__version__ = '0.0.1'", workers=[worker])
        with pytest.raises(ClusterError) as caught:
            cluster.check_workers(client)
    message = str(caught.value)
    assert "1 of 2 worker(s)" in message and worker in message and "0.0.1" in message
    assert "Install the same package version" in message


@pytest.mark.slow
def test_results_come_in_order_progress_as_tasks_finish_and_a_failing_task_raises():
    import operator
    import time

    calls: list[tuple[int, int]] = []
    got: list[tuple[int, object]] = []
    with cluster.connect(ClusterSpec(local_workers=2)) as client:
        # The first task finishes last: its result still comes first.
        slow = client.submit(lambda: time.sleep(1.0) or 0, pure=False)
        futures = [slow, *(client.submit(operator.mul, i, 10, pure=False) for i in range(1, 5))]
        cluster.run_in_order(
            client,
            futures,
            lambda i, result: got.append((i, result)),
            lambda done, total: calls.append((done, total)),
        )
        assert got == [(0, 0), (1, 10), (2, 20), (3, 30), (4, 40)]
        assert calls == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
        failing = [client.submit(operator.truediv, 1, d, pure=False) for d in (1, 0, 2)]
        with pytest.raises(ZeroDivisionError):
            cluster.run_in_order(client, failing, lambda i, result: None)
