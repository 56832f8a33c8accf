"""Where input data is read from: a local path or any fsspec URL (`s3://bucket/world`,
`gs://…`, `abfs://…`, `file:///…`).

A `Location` is a path in a pyarrow file system: the native one for local paths (no change in
speed), fsspec's through arrow's `FSSpecHandler` for URLs. Reading code (parquet, CSV, listing
parts) uses only the `Location` methods, so one code path serves both. A `Location` pickles as
the text the user gave and is rebuilt where it is used: a Dask worker opens the URL with its
own fsspec configuration (credentials, endpoints: `FSSPEC_<PROTOCOL>_<OPTION>` environment
variables or `~/.config/fsspec/*.json`, and the backend's own, e.g. `AWS_ACCESS_KEY_ID`).

Outputs are written locally (atomically, by rename); only inputs may be URLs.
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from suitability.settings import masked_reason, masked_url

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class StorageError(ValueError):
    """A URL that cannot be opened (unknown protocol, its fsspec backend not installed, no
    access): names the URL and what to do."""


def is_url(text: str | Path | Location) -> bool:
    """Whether `text` is a URL (`protocol://…`) rather than a local path."""
    if isinstance(text, Location):
        return not text.local
    return isinstance(text, str) and bool(_URL.match(text))


@dataclass(frozen=True)
class Location:
    """A file or folder: `url` as the user named it (a path or a URL), `path` within `fs`.
    Messages show `text`: the URL with any password masked."""

    url: str
    path: str
    fs: pafs.FileSystem = field(compare=False, repr=False)

    @property
    def text(self) -> str:
        return masked_url(self.url) if not self.local else self.url

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    def __str__(self) -> str:
        return self.text

    def __truediv__(self, name: str) -> Location:
        if self.local:
            return Location(str(Path(self.url) / name), str(Path(self.path) / name), self.fs)
        return Location(
            self.url.rstrip("/") + "/" + name, self.path.rstrip("/") + "/" + name, self.fs
        )

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return locate, (self.url,)

    def absolute(self) -> str:
        """What to record about where data came from: the absolute path, or the masked URL."""
        return self.path if self.local else self.text

    def _error(self, what: str, exc: BaseException) -> StorageError:
        kind = "" if isinstance(exc, OSError | pa.ArrowException) else f"{type(exc).__name__}: "
        reason = masked_reason(exc, self.url) if not self.local else short_error(exc)
        return StorageError(f"{self.text}: {what}: {kind}{reason[:200]}")

    def local_path(self) -> Path:
        """The path of a local location (for tools that read only local files)."""
        if not self.local:
            raise StorageError(f"{self.text}: only a local path is accepted here")
        return Path(self.path)

    def _info(self) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.path)
        except Exception as exc:  # also a backend's own errors (credentials, endpoint, …)
            raise self._error("cannot be reached", exc) from None

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def children(self) -> dict[str, pafs.FileType]:
        """What this folder holds directly: name → file or folder (one listing request)."""
        try:
            found = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        except Exception as exc:
            raise self._error("cannot be listed", exc) from None
        return {posixpath.basename(f.path.rstrip("/")): f.type for f in found}

    def files(self, suffix: str) -> list[Location]:
        """The files directly in this folder whose names end with `suffix`, hidden ones (`.`,
        `_`: writers' markers and temporaries) left out, sorted by name."""
        names = sorted(
            name
            for name, kind in self.children().items()
            if kind == pafs.FileType.File and name.endswith(suffix) and name[0] not in "._"
        )
        return [self / n for n in names]

    def parquet(self, **options: object) -> pq.ParquetFile:
        """The parquet file here (its metadata read; row groups read on demand)."""
        return pq.ParquetFile(self.path, filesystem=self.fs, pre_buffer=not self.local, **options)

    def input_stream(self) -> pa.NativeFile:
        """The bytes, read sequentially (the caller closes it, or lets it go)."""
        return self.fs.open_input_stream(self.path)

    @contextmanager
    def text_reader(self, encoding: str) -> Iterator[IO[str]]:
        """The file as text (newlines untranslated, as the csv module wants them)."""
        with self.fs.open_input_stream(self.path) as raw:
            yield io.TextIOWrapper(raw, encoding=encoding, newline="")


def locate(place: str | Path | Location) -> Location:
    """The `Location` of a local path or an fsspec URL. Raises `StorageError` for a URL whose
    protocol is unknown or whose fsspec backend is not installed, naming the package."""
    if isinstance(place, Location):
        return place
    text = str(place)
    if not is_url(place):
        return Location(text, str(Path(text).absolute()), pafs.LocalFileSystem())
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    try:
        fs, path = fsspec.core.url_to_fs(text)
    except ImportError as exc:  # fsspec names the package: "Install s3fs to access S3"
        raise StorageError(
            f"{masked_url(text)}: {masked_reason(exc, text)} (on the client and every worker)"
        ) from None
    except Exception as exc:  # unknown protocol, malformed URL, a backend's own checks
        raise StorageError(
            f"{masked_url(text)}: not a readable URL: {masked_reason(exc, text)}"
        ) from None
    if isinstance(fs, LocalFileSystem):
        return Location(text, path, pafs.LocalFileSystem())
    return Location(text, path, pafs.PyFileSystem(pafs.FSSpecHandler(fs)))


def short_error(exc: BaseException) -> str:
    """The first line of an error's message, at most 200 characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
