"""Play audio (and frames) to AnalyzeLive at real time over the raw stubs; collect what comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import grpc
import numpy as np

from understanding.v1 import live_pb2, understanding_pb2_grpc

CHUNK_S = 0.1


def jpeg(value: int, *, width: int = 640, height: int = 360) -> bytes:
    """A frame with a face-free picture whose brightness follows `value` (0..255)."""
    image = np.full((height, width, 3), value % 256, np.uint8)
    cv2.circle(image, (width // 2, height // 2), height // 4, (0, 0, 255), -1)
    return bytes(cv2.imencode(".jpg", image)[1].tobytes())


@dataclass
class Received:
    events: list[tuple[float, Any]] = field(default_factory=list)  # (seconds since playback started, LiveEvent)
    code: grpc.StatusCode | None = None
    details: str = ""
    trailers: dict[str, str] = field(default_factory=dict)

    def of(self, kind: str) -> list[Any]:
        return [getattr(e, kind) for _, e in self.events if e.WhichOneof("event") == kind]


def config(media_id: str, **fields: Any) -> live_pb2.LiveRequest:
    fields.setdefault("audio_format", live_pb2.LIVE_AUDIO_FORMAT_PCM_S16LE_16K_MONO)
    return live_pb2.LiveRequest(config=live_pb2.LiveConfig(media_id=media_id, **fields))


async def paced(
    pcm: bytes, *, frames: Sequence[tuple[float, bytes]] = (), speed: float = 1.0, end: bool = True, first: Any = None
) -> AsyncIterator[live_pb2.LiveRequest]:
    """`first` (a config), then 100 ms PCM chunks and frames at their capture times, at `speed` x real time."""
    if first is not None:
        yield first
    started = time.perf_counter()
    pending = sorted(frames)
    step = int(CHUNK_S * 16000) * 2
    for offset in range(0, len(pcm), step):
        t = offset / 32000
        while pending and pending[0][0] <= t:
            t_frame, data = pending.pop(0)
            yield live_pb2.LiveRequest(
                frame=live_pb2.LiveFrame(jpeg=data, capture_time_us=1_000_000 + int(t_frame * 1e6))
            )
        delay = t / speed - (time.perf_counter() - started)
        if delay > 0:
            await asyncio.sleep(delay)
        yield live_pb2.LiveRequest(
            audio=live_pb2.LiveAudio(data=pcm[offset : offset + step], capture_time_us=1_000_000 + int(t * 1e6))
        )
    if end:
        yield live_pb2.LiveRequest(end=live_pb2.LiveEnd())


async def run(target: str, requests: AsyncIterator[Any], *, tenant: str, timeout_s: float = 600.0) -> Received:
    """Send `requests`, read every event until the RPC ends; the status and trailers too."""
    received = Received()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = understanding_pb2_grpc.UnderstandingStub(channel)
        call = stub.AnalyzeLive(requests, metadata=[("x-tenant-id", tenant)], timeout=timeout_s)
        started = time.perf_counter()
        try:
            async for event in call:
                received.events.append((time.perf_counter() - started, event))
        except grpc.RpcError:
            pass
        received.code = await call.code()
        received.details = await call.details() or ""
        received.trailers = {k: v for k, v in (await call.trailing_metadata() or ()) if isinstance(v, str)}
    return received
