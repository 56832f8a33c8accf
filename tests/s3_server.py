"""A throwaway S3 endpoint for tests: moto's server on a local port, in this process (a thread),
and the fsspec/AWS settings that point s3fs at it, for this process and for the worker
processes a `LocalCluster` starts afterwards (they inherit the environment)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec
import fsspec.config
import pytest

BUCKET = "suitability-test"


@contextmanager
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[fsspec.AbstractFileSystem]:
    """Start the server with an empty bucket; yields an s3fs file system on it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    settings = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": endpoint,  # fsspec's own configuration, read by workers
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    # This process imported fsspec before the variables were set: apply them here too.
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    try:
        fs = fsspec.filesystem("s3", endpoint_url=endpoint, skip_instance_cache=True)
        fs.mkdir(BUCKET)
        yield fs
    finally:
        server.stop()


def upload(fs: fsspec.AbstractFileSystem, folder: Path, key: str) -> str:
    """Copy a local folder to `s3://BUCKET/key` and return that URL."""
    fs.put(str(folder), f"{BUCKET}/{key}", recursive=True)
    fs.invalidate_cache()
    fsspec.filesystem("s3").invalidate_cache()  # the instance the code under test uses
    return f"s3://{BUCKET}/{key}"
