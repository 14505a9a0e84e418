"""The live session's input rules and drop policy, with a fake recogniser, VAD, decoder and faces."""

from __future__ import annotations

import asyncio

import numpy as np
import numpy.typing as npt
import pytest

from understanding.domain import (
    Action,
    AudioFormat,
    DropReason,
    EndReason,
    InvalidInput,
    Language,
    LiveConfig,
    LiveDecision,
    LiveSignals,
    LiveStatus,
    ModelRef,
    Transcript,
)
from understanding.pipelines.live import DecodeJob, LiveSession, LiveSettings
from understanding.pipelines.visual import FrameSignals

MODEL = ModelRef("fake", "1")


class FakeVad:
    def push(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.zeros(0, np.float32)


class FakeDecoder:
    def __init__(self) -> None:
        self.closed = False

    def image(self, data: bytes) -> tuple[npt.NDArray[np.uint8], int, int]:
        if data != b"jpeg":
            raise InvalidInput("not a decodable JPEG or PNG image", field="frame.jpeg")
        return np.full((18, 32, 3), 128, np.uint8), 320, 180

    def opus(self, packet: bytes) -> npt.NDArray[np.float32]:
        if packet != b"opus":
            raise InvalidInput("not a decodable Opus packet", field="audio.data")
        return np.zeros(320, np.float32)

    def close(self) -> None:
        self.closed = True


class FakeFaces:
    def detect(self, image: object) -> tuple[()]:
        return ()


class FakeSignals:
    async def transcript(self, final: object) -> None:
        return None

    async def frame(self, image: object, signals: FrameSignals) -> LiveSignals:
        return LiveSignals("frame", signals.t_s, signals.t_s, (), (MODEL,), frame_s=signals.t_s)


class BlockEverything:
    name, version = "block-all", "1"

    def decide(self, signals: LiveSignals) -> LiveDecision:
        return LiveDecision(Action.BLOCK, ModelRef(self.name, self.version), signals, ("test",))


class Recorder:
    def __init__(self) -> None:
        self.published: list[LiveDecision] = []

    async def publish(self, tenant: str, media_id: str, decision: LiveDecision, *, trace_id: str) -> None:
        self.published.append(decision)


def never(job: DecodeJob) -> Transcript:
    return Transcript((), Language("en", 1.0), 0.0, "transcribe", MODEL)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def session(fmt: AudioFormat = AudioFormat.PCM_S16LE_16K_MONO, **kwargs: object) -> tuple[LiveSession, Clock]:
    clock = Clock()
    s = LiveSession(
        LiveConfig("m1", fmt),
        LiveSettings(frame_fps=1.0, status_interval_s=60.0),
        tenant="t",
        recognize=never,
        model=MODEL,
        vad=FakeVad(),
        decoder=FakeDecoder(),
        faces=FakeFaces(),  # type: ignore[arg-type]
        signals=FakeSignals(),
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )
    return s, clock


async def test_pcm_must_be_whole_samples_and_not_a_container() -> None:
    s, _ = session()
    with pytest.raises(InvalidInput, match="looks like a WAV file") as error:
        await s.audio(b"RIFF\x00\x00\x00\x00WAVEfmt ", 0)
    assert error.value.field == "audio.data"
    s2, _ = session()
    await s2.audio(b"\x00\x00" * 160, 0)
    with pytest.raises(InvalidInput, match="3 bytes are not whole 16-bit PCM samples"):
        await s2.audio(b"\x00\x00\x00", 0)


async def test_audio_that_is_not_opus_is_refused_but_a_lost_packet_is_only_dropped() -> None:
    s, _ = session(AudioFormat.OPUS)
    for _ in range(9):
        await s.audio(b"pcm?", 0)
    with pytest.raises(InvalidInput, match="the first 10 packets are not Opus"):
        await s.audio(b"pcm?", 0)
    s2, _ = session(AudioFormat.OPUS)
    await s2.audio(b"opus", 0)
    for _ in range(20):
        await s2.audio(b"damaged", 0)
    assert s2.status().dropped_audio_s[DropReason.AUDIO_UNDECODABLE] == pytest.approx(0.4)


async def test_frames_out_of_order_over_the_rate_or_superseded_are_dropped_and_counted() -> None:
    s, _ = session()
    s.frame(b"jpeg", 1_000_000)  # anchors: t = 0
    s.frame(b"jpeg", 1_000_000)  # same time: out of order
    s.frame(b"jpeg", 1_300_000)  # 0.3 s later: over 1 fps
    s.frame(b"jpeg", 2_000_000)  # accepted, replaces the first (never analysed: no loop running)
    status = s.status()
    assert status.frames_received == 4
    assert status.dropped_frames == {
        DropReason.FRAME_OUT_OF_ORDER: 1,
        DropReason.FRAME_RATE: 1,
        DropReason.FRAME_BEHIND: 1,
    }


async def test_frames_are_sampled_down_before_any_audio_is_lost_when_recognition_is_behind() -> None:
    s, _ = session()
    for _ in range(30):  # 3 s of audio the VAD (a fake that classifies nothing) has not caught up with
        await s.audio(b"\x00\x00" * 1600, 0)
    assert s.status().behind_s >= 2.0
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):  # 1 fps from the camera
        s.frame(b"jpeg", int(t * 1e6) + 10_000_000)
        s._pending_frame = None  # noqa: SLF001 - as if analysed at once
    status = s.status()
    # half the rate: every other frame goes, and no audio at all
    assert status.dropped_frames == {DropReason.FRAME_BEHIND: 2}
    assert status.dropped_audio_s == {}


async def test_a_frame_is_analysed_reported_and_judged_and_a_block_is_published_at_once() -> None:
    recorder = Recorder()
    s, _ = session(policy=BlockEverything(), publisher=recorder)
    s.start()
    s.frame(b"jpeg", 5_000_000)
    events = []
    while len(events) < 2:
        event = await asyncio.wait_for(s.events.get(), 10)
        if not isinstance(event, LiveStatus):
            events.append(event)
    assert isinstance(events[0], LiveSignals) and events[0].frame_s == 0.0
    assert isinstance(events[1], LiveDecision) and events[1].action is Action.BLOCK
    assert recorder.published == [events[1]]  # before the stream ended
    s.frame(b"not an image", 7_000_000)
    s.end(EndReason.CLIENT)
    result = await s.wait()
    assert result.status.dropped_frames == {DropReason.FRAME_UNDECODABLE: 1}
    assert result.visual is not None and result.visual.frames_analyzed == 1
    assert result.reason is EndReason.CLIENT


async def test_a_client_ahead_of_real_time_is_paced() -> None:
    s, clock = session()
    for _ in range(100):  # 10 s of audio at once
        await s.audio(b"\x00\x00" * 1600, 0)
    assert s.ahead_s == pytest.approx(10.0)
    assert s.pace_wait_s() == pytest.approx(5.0)
    clock.now += 6.0
    assert s.pace_wait_s() == 0.0
