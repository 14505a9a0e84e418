"""The SDK's live stream core without a server: the request stream it sends and the events it types."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from understanding import domain
from understanding.codec.live import live_event_pb
from understanding.v1 import common_pb2, live_pb2
from understanding_client import Decision, Modality
from understanding_client.live import (
    AudioChunk,
    DropReason,
    Frame,
    LiveFinal,
    LiveModeration,
    LiveStatus,
    LiveSummary,
    config_request,
    live_event,
    live_requests,
)


async def test_requests_are_config_items_then_end_with_capture_times_in_microseconds() -> None:
    async def source() -> AsyncIterator[AudioChunk | Frame]:
        yield AudioChunk(b"\x00\x00" * 10, 0.0)
        yield Frame(b"jpeg", 1.5)
        yield AudioChunk(b"\x00\x00")

    config = config_request(media_id="m", language="en", signals=["safety", "visual"], dry_run=True)
    sent = [r async for r in live_requests(config, source())]
    assert [r.WhichOneof("payload") for r in sent] == ["config", "audio", "frame", "audio", "end"]
    c = sent[0].config
    assert c.audio_format == live_pb2.LIVE_AUDIO_FORMAT_PCM_S16LE_16K_MONO and c.dry_run and c.language == "en"
    assert list(c.signals) == [live_pb2.LIVE_SIGNAL_SAFETY, live_pb2.LIVE_SIGNAL_VISUAL]
    assert sent[1].audio.capture_time_us == 1  # 0 would mean "not given"
    assert sent[2].frame.capture_time_us == 1_500_001
    assert sent[3].audio.capture_time_us == 0
    with pytest.raises(ValueError, match="unknown signal 'nudity'"):
        config_request(media_id="m", signals=["nudity"])


def test_events_come_back_typed() -> None:
    final = live_event(
        live_pb2.LiveEvent(
            final=live_pb2.LiveFinal(
                segment=common_pb2.Segment(index=2, start_s=1.0, end_s=2.0, text="hello there"),
                language=common_pb2.Language(code="en", probability=0.9),
            )
        )
    )
    assert isinstance(final, LiveFinal) and final.segment.text == "hello there" and final.language.code == "en"
    status = live_event(
        live_pb2.LiveEvent(
            status=live_pb2.LiveStatus(
                received_s=3.0,
                drops=[live_pb2.LiveDrop(reason=live_pb2.LIVE_DROP_REASON_FRAME_RATE, frames=4)],
            )
        )
    )
    assert isinstance(status, LiveStatus) and status.drops[0].reason is DropReason.FRAME_RATE
    summary = live_event(
        live_pb2.LiveEvent(
            summary=live_pb2.LiveSummary(
                reason=live_pb2.LIVE_END_REASON_IDLE_TIMEOUT,
                analysis=common_pb2.Analysis(media_id="m", modality=common_pb2.MODALITY_SPEECH),
                points=3,
                indexed=True,
            )
        )
    )
    assert isinstance(summary, LiveSummary) and summary.reason == "idle_timeout" and summary.points == 3
    assert live_event(live_pb2.LiveEvent()) is None  # an event kind this SDK does not know yet


def test_a_window_verdict_travels_with_its_evidence() -> None:
    """Server codec -> wire -> SDK: the moderation core's verdict on one segment, evidence included."""
    evidence = domain.Evidence(
        domain.Modality.SPEECH,
        domain.ModelRef("understanding-contacts", "1"),
        start_s=2.0,
        end_s=4.5,
        text="415 555 0132",
        span=(11, 23),
        chunk_index=3,
        detail="phone",
        score=1.0,
    )
    verdict = domain.LiveModeration(
        source="transcript",
        start_s=2.0,
        end_s=4.5,
        segment_index=3,
        moderation=domain.Moderation(
            domain.Decision.REVIEW,
            "default",
            "2026-12-1",
            (domain.CategoryResult("contact.phone", 1.0, domain.Decision.REVIEW, (evidence,)),),
        ),
    )
    message = live_event_pb(verdict)
    assert message is not None and message.WhichOneof("event") == "moderation"
    event = live_event(live_pb2.LiveEvent.FromString(message.SerializeToString()))
    assert isinstance(event, LiveModeration)
    assert (event.source, event.start_s, event.end_s, event.segment_index) == ("transcript", 2.0, 4.5, 3)
    m = event.moderation
    assert m.decision is Decision.REVIEW and (m.policy, m.policy_version) == ("default", "2026-12-1")
    assert m.flagged == ("contact.phone",)
    (got,) = m.categories[0].evidence
    assert got.text == "415 555 0132" and got.span == (11, 23) and got.chunk_index == 3
    assert got.modality is Modality.SPEECH and got.model is not None and got.model.name == "understanding-contacts"


class _FakeCall:
    """The part of a grpc.aio stream-stream call the live writer uses; `headers` answers the config."""

    def __init__(self, headers: tuple[tuple[str, str], ...], *, ends_after: int | None = None) -> None:
        self.headers, self.ends_after = headers, ends_after
        self.written: list[str] = []
        self.half_closed = self.cancelled = False

    def done(self) -> bool:
        return self.cancelled or (self.ends_after is not None and len(self.written) >= self.ends_after)

    async def write(self, request: live_pb2.LiveRequest) -> None:
        self.written.append(str(request.WhichOneof("payload")))

    async def initial_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.headers

    async def done_writing(self) -> None:
        self.half_closed = True

    def cancel(self) -> bool:
        self.cancelled = True
        return True


async def _two_chunks() -> AsyncIterator[AudioChunk | Frame]:
    yield AudioChunk(b"\x00\x00", 0.0)
    yield AudioChunk(b"\x00\x00", 0.1)


async def test_media_is_written_only_once_the_server_admitted_the_stream() -> None:
    from understanding_client.aio import _send_live

    refused = _FakeCall(())  # no header: the server ended the call (RESOURCE_EXHAUSTED)
    await _send_live(refused, live_requests(config_request(media_id="m"), _two_chunks()))
    assert refused.written == ["config"] and not refused.half_closed

    admitted = _FakeCall((("x-live-admitted", "1"),))
    await _send_live(admitted, live_requests(config_request(media_id="m"), _two_chunks()))
    assert admitted.written == ["config", "audio", "audio", "end"] and admitted.half_closed

    ended = _FakeCall((("x-live-admitted", "1"),), ends_after=2)  # the server ended the stream meanwhile
    await _send_live(ended, live_requests(config_request(media_id="m"), _two_chunks()))
    assert ended.written == ["config", "audio"] and not ended.half_closed and not ended.cancelled


async def test_a_source_that_fails_cancels_the_call_and_raises() -> None:
    from understanding_client.aio import _send_live

    async def broken() -> AsyncIterator[AudioChunk | Frame]:
        yield AudioChunk(b"\x00\x00", 0.0)
        raise OSError("camera unplugged")

    call = _FakeCall((("x-live-admitted", "1"),))
    with pytest.raises(OSError, match="camera unplugged"):
        await _send_live(call, live_requests(config_request(media_id="m"), broken()))
    assert call.written == ["config", "audio"] and call.cancelled
