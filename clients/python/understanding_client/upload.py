"""Upload sources: a path, a file object or bytes, read in chunks with progress.

A path, bytes or a seekable file can be replayed from the start, so an upload
that failed with a retriable error is sent again whole; a pipe or socket
cannot, and its upload is not retried.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import IO

from understanding_client.errors import UploadSourceError

#: Called after every chunk is handed to gRPC: (bytes_sent, total or None).
ProgressCallback = Callable[[int, int | None], None]
MediaSource = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]

DEFAULT_CHUNK_SIZE = 256 * 1024


class UploadSource:
    """One media source, readable from the start as many times as it allows."""

    def __init__(self, source: MediaSource, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.chunk_size = chunk_size
        self._path: pathlib.Path | None = None
        self._data: memoryview | None = None
        self._file: IO[bytes] | None = None
        self._start = 0
        self._reads = 0
        if isinstance(source, (str, os.PathLike)):
            self._path = pathlib.Path(source)
            if not self._path.is_file():
                raise FileNotFoundError(f"{self._path}: no such file")
            self.total: int | None = self._path.stat().st_size
            self.name = self._path.name
            self.rewindable = True
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self._data = memoryview(source).cast("B")
            self.total = len(self._data)
            self.name = ""
            self.rewindable = True
        elif hasattr(source, "read"):
            self._file = source
            self.name = os.path.basename(str(getattr(source, "name", "") or ""))
            self.rewindable = _seekable(source)
            self.total = None
            if self.rewindable:
                self._start = source.tell()
                end = source.seek(0, io.SEEK_END)
                source.seek(self._start)
                self.total = end - self._start
        else:
            raise TypeError(f"cannot upload a {type(source).__name__}: pass a path, bytes or a binary file object")
        self.sha256 = ""

    def chunks(self, progress: ProgressCallback | None = None) -> Iterator[bytes]:
        """The content from the start, chunk by chunk; sets `sha256` when done."""
        if self._reads and not self.rewindable:
            raise UploadSourceError("the upload source is not seekable, so it cannot be sent again")
        self._reads += 1
        digest = hashlib.sha256()
        sent = 0
        if progress is not None:
            progress(0, self.total)
        for chunk in self._read():
            digest.update(chunk)
            sent += len(chunk)
            yield chunk
            if progress is not None:
                progress(sent, self.total)
        self.sha256 = digest.hexdigest()

    def _read(self) -> Iterator[bytes]:
        if self._data is not None:
            for i in range(0, len(self._data), self.chunk_size):
                yield bytes(self._data[i : i + self.chunk_size])
            return
        if self._path is not None:
            with self._path.open("rb") as fh:
                while chunk := fh.read(self.chunk_size):
                    yield chunk
            return
        assert self._file is not None
        if self.rewindable:
            self._file.seek(self._start)
        while chunk := self._file.read(self.chunk_size):
            if isinstance(chunk, str):
                raise UploadSourceError("the file is open in text mode: open it with 'rb'")
            yield chunk


def _seekable(fh: IO[bytes]) -> bool:
    try:
        return bool(fh.seekable()) and fh.tell() >= 0
    except (AttributeError, OSError, ValueError):
        return False
