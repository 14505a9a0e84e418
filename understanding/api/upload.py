"""Client-streamed uploads spooled to disk: header first, then chunks, then an optional end.

The bytes never sit in memory as a whole: each chunk is appended to a file in
the spool directory while its size and SHA-256 are tracked. Any protocol
violation raises a domain error naming the offending message, and the spool
file is removed whatever happens (the caller owns it only on success).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import pathlib
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from understanding.domain import InvalidInput, LimitExceeded


@dataclass(frozen=True, slots=True)
class SpoolGuard:
    """Keeps a full disk a RESOURCE_EXHAUSTED for the uploader, never an INTERNAL for everyone.

    Uploads are refused while the spool's file system has less than
    `min_free_bytes` free (so the store, the outbox and the job queue on the
    same disk keep room to work), and a write that fails with ENOSPC/EDQUOT
    becomes the same error. `faults` (tests) can make the next writes fail as
    if the disk were full (`spool_full=N`).
    """

    min_free_bytes: int = 0
    retry_after_s: float = 5.0
    faults: Any = None

    def check(self, spool_dir: pathlib.Path) -> None:
        if self.faults is not None and self.faults.take("spool_full"):
            raise self.full("injected: no space left on device")
        if self.min_free_bytes > 0:
            free = shutil.disk_usage(spool_dir).free
            if free < self.min_free_bytes:
                raise self.full(f"{free} bytes free, {self.min_free_bytes} kept in reserve")

    def full(self, why: str) -> LimitExceeded:
        return LimitExceeded(
            f"the server's upload spool is full ({why}); retry later", field="chunk", retry_after_s=self.retry_after_s
        )


_guards: dict[pathlib.Path, SpoolGuard] = {}
_guards_lock = threading.Lock()


def guard_spool(spool_dir: pathlib.Path, guard: SpoolGuard) -> None:
    """Install `guard` for every upload into `spool_dir` (the composition root does, once)."""
    with _guards_lock:
        _guards[spool_dir.resolve()] = guard


@dataclass(frozen=True, slots=True)
class Spooled:
    """An upload on disk. `header` is the protobuf header message (api/ only)."""

    path: pathlib.Path
    size_bytes: int
    sha256: str
    header: Any


async def spool_upload(
    stream: AsyncIterator[Any],
    *,
    spool_dir: pathlib.Path,
    max_bytes: int,
    header_field: str = "header",
    on_progress: Callable[[int], None] | None = None,
    on_header: Callable[[Any], None] | None = None,
    allow_empty: bool = False,
) -> Spooled:
    """Consume an upload stream whose messages have a `payload` oneof of header/chunk/end."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    guard = _guards.get(spool_dir.resolve()) or SpoolGuard()
    guard.check(spool_dir)
    try:
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=spool_dir)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise guard.full(os.strerror(error.errno)) from None
        raise
    path = pathlib.Path(name)
    ok = False
    try:
        with os.fdopen(fd, "wb") as out:
            header: Any = None
            ended = False
            size = 0
            digest = hashlib.sha256()
            index = -1
            async for message in stream:
                index += 1
                kind = message.WhichOneof("payload")
                if kind is None:
                    raise InvalidInput(f"message {index} has no payload", field="payload")
                if ended:
                    raise InvalidInput(f"message {index} ({kind}) arrived after the end message", field=kind)
                if kind == header_field:
                    if header is not None:
                        raise InvalidInput(f"sent twice (again at message {index})", field=header_field)
                    header = getattr(message, header_field)
                    declared = int(getattr(_media_header(header), "size_bytes", 0) or 0)
                    if declared > max_bytes:
                        raise LimitExceeded(
                            f"declared {declared} bytes exceed the limit of {max_bytes}", field="size_bytes"
                        )
                    if on_header is not None:
                        on_header(header)  # validate options before accepting megabytes
                    continue
                if header is None:
                    raise InvalidInput(f"must be the first message (got {kind} first)", field=header_field)
                if kind == "chunk":
                    size += len(message.chunk)
                    if size > max_bytes:
                        raise LimitExceeded(f"upload exceeds the limit of {max_bytes} bytes", field="chunk")
                    guard.check(spool_dir)
                    out.write(message.chunk)
                    digest.update(message.chunk)
                    if on_progress is not None:
                        on_progress(size)
                elif kind == "end":
                    expected = message.end.sha256.strip().lower()
                    if expected and expected != digest.hexdigest():
                        raise InvalidInput("sha256 does not match the uploaded bytes", field="end.sha256")
                    ended = True
            if header is None:
                raise InvalidInput("the stream is empty: a header message is required", field=header_field)
            if size == 0 and not allow_empty:
                raise InvalidInput("no media bytes were uploaded (zero-length upload)", field="chunk")
        ok = True
        return Spooled(path=path, size_bytes=size, sha256=digest.hexdigest(), header=header)
    except OSError as error:  # a write or the final flush
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise guard.full(os.strerror(error.errno)) from None
        raise
    finally:
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _media_header(header: Any) -> Any:
    """UploadHeader, or the `media` header inside a JobSpec."""
    return header.media if hasattr(header, "media") else header


@contextlib.contextmanager
def removing(path: pathlib.Path) -> Iterator[pathlib.Path]:
    """Delete a spool file when the block ends, however it ends."""
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
