"""Client-side upload stream for the streaming RPCs."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Iterator

from understanding.v1 import understanding_pb2 as pb


def upload_requests(
    data: bytes | pathlib.Path, header: pb.UploadHeader, *, chunk_size: int = 64 * 1024, end: bool = True
) -> Iterator[pb.UploadRequest]:
    raw = data.read_bytes() if isinstance(data, pathlib.Path) else data
    yield pb.UploadRequest(header=header)
    for i in range(0, len(raw), chunk_size):
        yield pb.UploadRequest(chunk=raw[i : i + chunk_size])
    if end:
        yield pb.UploadRequest(end=pb.UploadEnd(sha256=hashlib.sha256(raw).hexdigest()))
