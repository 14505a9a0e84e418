"""Live streams (AnalyzeLive): typed events, the request stream, and a file played as a live source.

    async with AsyncClient(...) as client:
        async for event in client.live(FileSource("call.mp4"), media_id="call-42"):
            if isinstance(event, LiveFinal):
                print(event.segment.text)
            elif isinstance(event, LiveModeration):  # REVIEW or BLOCK, as soon as it is decided
                print(event.moderation.decision, event.moderation.flagged)

A source is any async iterable of `AudioChunk` and `Frame` (capture times in
seconds on one clock). `FileSource` plays a media file at real time (PyAV,
an optional dependency): 16 kHz mono PCM in 100 ms chunks, and the video
track's frames as JPEG at `fps`. Events come back as they arrive; the last
is a `LiveSummary`.
"""

from __future__ import annotations

import asyncio
import enum
import pathlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from understanding.v1 import live_pb2

from understanding_client.types import Analysis, Language, ModelRef, Moderation, Segment, Tag

__all__ = [
    "AudioChunk",
    "FileSource",
    "Frame",
    "LiveDrop",
    "LiveEvent",
    "LiveFinal",
    "LiveModeration",
    "LivePartial",
    "LiveSignals",
    "LiveStatus",
    "LiveSummary",
    "live_event",
    "live_requests",
]

SAMPLE_RATE = 16000


# ---------------------------------------------------------------- input
@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Audio in the stream's format (PCM s16le 16 kHz mono, or one Opus packet)."""

    data: bytes
    capture_s: float | None = None  # None: right after the previous chunk


@dataclass(frozen=True, slots=True)
class Frame:
    jpeg: bytes
    capture_s: float | None = None  # None: "now" (the end of the audio sent so far)


def _us(seconds: float | None) -> int:
    # 0 means "not given" on the wire, so times start at 1 µs.
    return 0 if seconds is None else 1 + round(seconds * 1e6)


_SIGNALS = {
    "safety": live_pb2.LIVE_SIGNAL_SAFETY,
    "topics": live_pb2.LIVE_SIGNAL_TOPICS,
    "visual": live_pb2.LIVE_SIGNAL_VISUAL,
}


def config_request(
    *,
    media_id: str,
    language: str = "",
    opus: bool = False,
    signals: Sequence[str] = (),
    policy: str = "",
    metadata: Mapping[str, str] | None = None,
    partials: bool = True,
    dry_run: bool = False,
) -> live_pb2.LiveRequest:
    fmt = live_pb2.LIVE_AUDIO_FORMAT_OPUS if opus else live_pb2.LIVE_AUDIO_FORMAT_PCM_S16LE_16K_MONO
    try:
        kinds = [_SIGNALS[s] for s in signals]
    except KeyError as error:
        raise ValueError(f"unknown signal {error.args[0]!r} (use {', '.join(_SIGNALS)})") from None
    return live_pb2.LiveRequest(
        config=live_pb2.LiveConfig(
            media_id=media_id,
            language=language,
            audio_format=fmt,
            signals=kinds,
            policy=policy,
            metadata=dict(metadata or {}),
            disable_partials=not partials,
            dry_run=dry_run,
        )
    )


async def live_requests(config: live_pb2.LiveRequest, source: AsyncIterable[AudioChunk | Frame]) -> AsyncIterator[Any]:
    """The client stream: the config, every item of `source`, then `end`."""
    yield config
    async for item in source:
        if isinstance(item, AudioChunk):
            yield live_pb2.LiveRequest(audio=live_pb2.LiveAudio(data=item.data, capture_time_us=_us(item.capture_s)))
        else:
            yield live_pb2.LiveRequest(frame=live_pb2.LiveFrame(jpeg=item.jpeg, capture_time_us=_us(item.capture_s)))
    yield live_pb2.LiveRequest(end=live_pb2.LiveEnd())


# ---------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class LivePartial:
    segment_index: int
    text: str
    stable_text: str  # will not change any more
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class LiveFinal:
    segment: Segment
    language: Language
    speaker: str


@dataclass(frozen=True, slots=True)
class LiveSignals:
    source: str  # "transcript" or "frame"
    start_s: float
    end_s: float
    frame_s: float
    segment_index: int
    tags: tuple[Tag, ...]
    text: str
    models: tuple[ModelRef, ...]


@dataclass(frozen=True, slots=True)
class LiveModeration:
    """A REVIEW or BLOCK verdict on one window, sent as soon as it is made (the same one is
    published on the moderation topic as a partial ModerationEvent)."""

    source: str  # "transcript"
    start_s: float
    end_s: float
    segment_index: int
    frame_s: float
    moderation: Moderation


class DropReason(str, enum.Enum):
    FRAME_BEHIND = "frame_behind"
    FRAME_RATE = "frame_rate"
    FRAME_UNDECODABLE = "frame_undecodable"
    FRAME_OUT_OF_ORDER = "frame_out_of_order"
    AUDIO_BEHIND = "audio_behind"
    AUDIO_UNDECODABLE = "audio_undecodable"
    UNSPECIFIED = "unspecified"


_DROPS = {
    live_pb2.LIVE_DROP_REASON_FRAME_BEHIND: DropReason.FRAME_BEHIND,
    live_pb2.LIVE_DROP_REASON_FRAME_RATE: DropReason.FRAME_RATE,
    live_pb2.LIVE_DROP_REASON_FRAME_UNDECODABLE: DropReason.FRAME_UNDECODABLE,
    live_pb2.LIVE_DROP_REASON_FRAME_OUT_OF_ORDER: DropReason.FRAME_OUT_OF_ORDER,
    live_pb2.LIVE_DROP_REASON_AUDIO_BEHIND: DropReason.AUDIO_BEHIND,
    live_pb2.LIVE_DROP_REASON_AUDIO_UNDECODABLE: DropReason.AUDIO_UNDECODABLE,
}
_ENDS = {
    live_pb2.LIVE_END_REASON_CLIENT: "client",
    live_pb2.LIVE_END_REASON_IDLE_TIMEOUT: "idle_timeout",
    live_pb2.LIVE_END_REASON_MAX_DURATION: "max_duration",
    live_pb2.LIVE_END_REASON_SERVER_SHUTDOWN: "server_shutdown",
}


@dataclass(frozen=True, slots=True)
class LiveDrop:
    reason: DropReason
    frames: int
    audio_s: float


@dataclass(frozen=True, slots=True)
class LiveStatus:
    received_s: float
    transcribed_s: float
    behind_s: float
    ahead_s: float
    paced: bool
    frames_received: int
    frames_analyzed: int
    drops: tuple[LiveDrop, ...] = field(default_factory=tuple)

    @classmethod
    def from_pb(cls, m: live_pb2.LiveStatus) -> LiveStatus:
        return cls(
            m.received_s,
            m.transcribed_s,
            m.behind_s,
            m.ahead_s,
            m.paced,
            m.frames_received,
            m.frames_analyzed,
            tuple(LiveDrop(_DROPS.get(d.reason, DropReason.UNSPECIFIED), d.frames, d.audio_s) for d in m.drops),
        )


@dataclass(frozen=True, slots=True)
class LiveSummary:
    reason: str  # client, idle_timeout, max_duration, server_shutdown
    analysis: Analysis
    points: int
    indexed: bool
    status: LiveStatus


LiveEvent = LivePartial | LiveFinal | LiveSignals | LiveModeration | LiveStatus | LiveSummary


def live_event(m: live_pb2.LiveEvent) -> LiveEvent | None:
    """The typed form of one event; None for kinds this SDK version does not know yet."""
    kind = m.WhichOneof("event")
    if kind == "partial":
        p = m.partial
        return LivePartial(p.segment_index, p.text, p.stable_text, p.start_s, p.end_s)
    if kind == "final":
        return LiveFinal(Segment.from_pb(m.final.segment), Language.from_pb(m.final.language), m.final.speaker)
    if kind == "signals":
        s = m.signals
        return LiveSignals(
            s.source,
            s.start_s,
            s.end_s,
            s.frame_s,
            s.segment_index,
            tuple(Tag.from_pb(t) for t in s.tags),
            s.text,
            tuple(ModelRef.from_pb(x) for x in s.models),
        )
    if kind == "moderation":
        v = m.moderation
        return LiveModeration(
            v.source, v.start_s, v.end_s, v.segment_index, v.frame_s, Moderation.from_pb(v.moderation)
        )
    if kind == "status":
        return LiveStatus.from_pb(m.status)
    if kind == "summary":
        s = m.summary
        return LiveSummary(
            _ENDS.get(s.reason, "unspecified"),
            Analysis.from_pb(s.analysis),
            s.points,
            s.indexed,
            LiveStatus.from_pb(s.status),
        )
    return None


# ---------------------------------------------------------------- a file played as a live source
class FileSource:
    """Plays a media file at `speed` x real time: its audio as 16 kHz mono PCM chunks of `chunk_s`
    and (with `fps` > 0) its video frames as JPEG, `fps` a second. Needs PyAV (`pip install av`)."""

    def __init__(self, path: str | pathlib.Path, *, speed: float = 1.0, fps: float = 1.0, chunk_s: float = 0.1) -> None:
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(self.path)
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed, self.fps, self.chunk_s = speed, fps, chunk_s

    def items(self) -> Iterator[AudioChunk | Frame]:
        """Everything in capture order, without waiting (the async iterator paces it)."""
        audio = list(self._audio())
        frames = list(self._frames()) if self.fps > 0 else []
        merged: list[AudioChunk | Frame] = [*audio, *frames]
        merged.sort(key=lambda item: (item.capture_s or 0.0, isinstance(item, AudioChunk)))
        return iter(merged)

    async def __aiter__(self) -> AsyncIterator[AudioChunk | Frame]:
        items = await asyncio.to_thread(lambda: list(self.items()))
        started = time.perf_counter()
        for item in items:
            delay = (item.capture_s or 0.0) / self.speed - (time.perf_counter() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            yield item

    def _audio(self) -> Iterator[AudioChunk]:
        import av

        with av.open(str(self.path)) as container:
            if not container.streams.audio:
                return
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            pcm = bytearray()
            for decoded in container.decode(audio=0):
                for frame in resampler.resample(decoded):
                    pcm += bytes(frame.planes[0])[: frame.samples * 2]
            for frame in resampler.resample(None):
                pcm += bytes(frame.planes[0])[: frame.samples * 2]
        step = int(self.chunk_s * SAMPLE_RATE) * 2
        for offset in range(0, len(pcm), step):
            yield AudioChunk(bytes(pcm[offset : offset + step]), offset / 2 / SAMPLE_RATE)

    def _frames(self) -> Iterator[Frame]:
        import fractions

        import av

        with av.open(str(self.path)) as container:
            if not container.streams.video:
                return
            stream = container.streams.video[0]
            next_t = 0.0
            encoder = None
            for frame in container.decode(stream):
                if frame.time is None or frame.time + 1e-6 < next_t:
                    continue
                next_t = frame.time + 1.0 / self.fps
                if encoder is None:
                    encoder = av.CodecContext.create("mjpeg", "w")
                    encoder.width, encoder.height = frame.width - frame.width % 2, frame.height - frame.height % 2
                    encoder.pix_fmt = "yuvj420p"
                    encoder.time_base = stream.time_base or fractions.Fraction(1, 1000)
                    encoder.open()
                image = frame.reformat(width=encoder.width, height=encoder.height, format="yuvj420p")
                packets = encoder.encode(image)
                data = b"".join(bytes(p) for p in packets)
                if data:
                    yield Frame(data, float(frame.time))
