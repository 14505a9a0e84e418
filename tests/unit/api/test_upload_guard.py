"""A full spool disk is RESOURCE_EXHAUSTED with a retry hint for the uploader, and leaves no file behind."""

from __future__ import annotations

import errno
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from understanding.api import upload
from understanding.api.upload import SpoolGuard, guard_spool, spool_upload
from understanding.domain import LimitExceeded
from understanding.faults import FaultInjector
from understanding.v1 import understanding_pb2 as pb


async def stream(*chunks: bytes) -> AsyncIterator[Any]:
    yield pb.UploadRequest(header=pb.UploadHeader(media_id="m"))
    for chunk in chunks:
        yield pb.UploadRequest(chunk=chunk)


async def test_injected_full_disk_then_recovery(tmp_path: pathlib.Path) -> None:
    guard_spool(tmp_path, SpoolGuard(faults=FaultInjector.from_spec("spool_full=2"), retry_after_s=3))
    for _ in range(2):
        with pytest.raises(LimitExceeded) as err:
            await spool_upload(stream(b"abc"), spool_dir=tmp_path, max_bytes=1000)
        assert err.value.field == "chunk" and "spool is full" in err.value.message and err.value.retry_after_s == 3
        assert list(tmp_path.iterdir()) == []
    spooled = await spool_upload(stream(b"abc"), spool_dir=tmp_path, max_bytes=1000)
    assert spooled.path.read_bytes() == b"abc"
    spooled.path.unlink()


async def test_free_space_floor(tmp_path: pathlib.Path) -> None:
    guard_spool(tmp_path, SpoolGuard(min_free_bytes=2**62))  # more than any disk has
    with pytest.raises(LimitExceeded) as err:
        await spool_upload(stream(b"abc"), spool_dir=tmp_path, max_bytes=1000)
    assert "kept in reserve" in err.value.message
    assert list(tmp_path.iterdir()) == []


async def test_enospc_while_writing(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guard_spool(tmp_path, SpoolGuard())
    real_fdopen = upload.os.fdopen

    class FullDisk:
        def __init__(self, f: Any) -> None:
            self._f = f

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self._f.close()

    monkeypatch.setattr(upload.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(LimitExceeded) as err:
        await spool_upload(stream(b"abc"), spool_dir=tmp_path, max_bytes=1000)
    assert "No space left on device" in err.value.message and err.value.retry_after_s
    assert list(tmp_path.iterdir()) == []
