"""The live session's input rules, drop policy and moderation, with a fake recogniser, VAD, decoder,
faces, moderation signals and publisher (the real policy file and `decide`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from understanding.domain import (
    AudioFormat,
    Decision,
    DropReason,
    EndReason,
    Evidence,
    InvalidInput,
    Language,
    LiveConfig,
    LiveEvent,
    LiveFinal,
    LiveModeration,
    LiveSignals,
    Modality,
    ModelRef,
    Segment,
    Signal,
    Transcript,
    Word,
)
from understanding.media.live import DecodedFrame
from understanding.media.video import SampledFrame
from understanding.pipelines.live import (
    DecodeJob,
    FrameCheck,
    LiveSession,
    LiveSettings,
    LiveSpeakers,
    StreamModeration,
)
from understanding.pipelines.policy import load_policy
from understanding.pipelines.screening import FrameFindings
from understanding.pipelines.visual import FrameSignals

from .test_live_speakers import VoiceBySign, loud

MODEL = ModelRef("fake", "1")


class FakeVad:
    def push(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.zeros(0, np.float32)


class FakeDecoder:
    def __init__(self) -> None:
        self.closed = False

    def image(self, data: bytes) -> DecodedFrame:
        if data != b"jpeg":
            raise InvalidInput("not a decodable JPEG or PNG image", field="frame.jpeg")
        return DecodedFrame(np.full((18, 32, 3), 128, np.uint8), 320, 180, np.full((36, 64, 3), 128, np.uint8))

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


def never(job: DecodeJob) -> Transcript:
    return Transcript((), Language("en", 1.0), 0.0, "transcribe", MODEL)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def session(fmt: AudioFormat = AudioFormat.PCM_S16LE_16K_MONO, **kwargs: object) -> tuple[LiveSession, Clock]:
    clock = Clock()
    kwargs.setdefault("recognize", never)
    kwargs.setdefault("vad", FakeVad())
    s = LiveSession(
        LiveConfig("m1", fmt),
        LiveSettings(frame_fps=1.0, status_interval_s=60.0),
        tenant="t",
        model=MODEL,
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


class SpeechEverywhere:
    """A VAD that hears speech in every window."""

    def __init__(self) -> None:
        self._samples = 0

    def push(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        before, self._samples = self._samples // 512, self._samples + samples.size
        return np.full(self._samples // 512 - before, 0.9, np.float32)


async def test_a_decode_that_keeps_up_sheds_no_frames_however_long_it_runs() -> None:
    """Frames are shed by how old the audio being decoded is, not by how much waits for its result:
    everything received while a decode runs is untranscribed, so on a slow CPU `behind_s` passes
    2 s on a stream that keeps up."""
    started, release = threading.Event(), threading.Event()

    def slow(job: DecodeJob) -> Transcript:
        started.set()
        release.wait(30)
        return never(job)

    s, _ = session(recognize=slow, vad=SpeechEverywhere())
    s.start()
    try:
        for _ in range(11):  # 1.1 s of speech: the utterance's first decode starts
            await s.audio(b"\x00\x00" * 1600, 0)
        await asyncio.wait_for(asyncio.to_thread(started.wait, 30), 30)
        for _ in range(15):  # 1.5 s more while it runs
            await s.audio(b"\x00\x00" * 1600, 0)
        assert s.status().behind_s >= 2.0 and s.recognition_lag_s == pytest.approx(1.5, abs=0.15)
        for t in (1.0, 2.0, 3.0):
            s.frame(b"jpeg", int(t * 1e6) + 10_000_000)
            s._pending_frame = None  # noqa: SLF001 - as if analysed at once
        assert s.status().dropped_frames == {}
        for _ in range(10):  # 1 s more: the audio being decoded ended 2.5 s ago
            await s.audio(b"\x00\x00" * 1600, 0)
        for t in (4.0, 5.0, 6.0, 7.0):
            s.frame(b"jpeg", int(t * 1e6) + 10_000_000)
            s._pending_frame = None  # noqa: SLF001
        assert s.status().dropped_frames == {DropReason.FRAME_BEHIND: 2}
    finally:
        release.set()
        s.end(EndReason.CLIENT)
        await asyncio.wait_for(s.wait(), 30)


def test_decodes_waiting_for_whisper_leave_the_default_executor_free() -> None:
    """Each stream's decode may wait for one of Whisper's shared workers: on the streams' own
    executor, not in asyncio's default one, where the frames' and uploads' calls run."""
    asyncio.run(_four_streams_decoding())  # its own loop: the tests' shared loop keeps its executor


async def _four_streams_decoding() -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(2))  # asyncio's 6 on 2 cores, scaled down
    decodes = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="live-decode")
    waiting, release = threading.Semaphore(0), threading.Event()
    threads: list[str] = []

    def blocked(job: DecodeJob) -> Transcript:
        threads.append(threading.current_thread().name)
        waiting.release()
        release.wait(30)
        return never(job)

    sessions = [session(recognize=blocked, vad=SpeechEverywhere(), decode_executor=decodes)[0] for _ in range(4)]
    try:
        for s in sessions:
            s.start()
            for _ in range(11):  # 1.1 s of speech: the stream's first decode starts, and waits
                await s.audio(b"\x00\x00" * 1600, 0)
        deadline = loop.time() + 30
        started = 0
        while started < len(sessions) and loop.time() < deadline:  # every stream's decode is waiting
            if waiting.acquire(blocking=False):
                started += 1
            else:
                await asyncio.sleep(0.01)
        assert started == len(sessions)
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 10) == 42
        assert len(threads) == 4 and all(name.startswith("live-decode") for name in threads)
    finally:
        release.set()
        for s in sessions:
            s.end(EndReason.CLIENT)
            await asyncio.wait_for(s.wait(), 30)
        decodes.shutdown()


async def test_a_frame_is_analysed_and_reported() -> None:
    s, _ = session()
    s.start()
    s.frame(b"jpeg", 5_000_000)
    event = await asyncio.wait_for(next_event(s, LiveSignals), 10)
    assert event.frame_s == 0.0
    s.frame(b"not an image", 7_000_000)
    s.end(EndReason.CLIENT)
    result = await s.wait()
    assert result.status.dropped_frames == {DropReason.FRAME_UNDECODABLE: 1}
    assert result.visual is not None and result.visual.frames_analyzed == 1
    assert result.reason is EndReason.CLIENT


# ---------------------------------------------------------------- moderation per final segment
WINDOW = 512
PHONE_WORDS = "text me on 415 555 0132 tonight".split()
ORDINARY_WORDS = "see you at the meeting tomorrow".split()
PHONE_MODEL = ModelRef("understanding-contacts", "1")


class ScriptedVad:
    """Speech probability 1 inside `speech` (stream seconds), 0 elsewhere, one per 512-sample window."""

    def __init__(self, speech: Sequence[tuple[float, float]]) -> None:
        self._speech = speech
        self._samples = 0
        self._windows = 0

    def push(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self._samples += samples.size
        out = []
        while (self._windows + 1) * WINDOW <= self._samples:
            t = self._windows * WINDOW / 16000
            out.append(1.0 if any(a <= t < b for a, b in self._speech) else 0.0)
            self._windows += 1
        return np.asarray(out, np.float32)


def spoken(words: Sequence[str], start_s: float, step_s: float = 0.25) -> list[Word]:
    return [Word(text, start_s + i * step_s, start_s + i * step_s + 0.2, 0.9) for i, text in enumerate(words)]


class ScriptedRecognizer:
    """Returns the scripted words within each decode job's audio."""

    def __init__(self, words: Sequence[Word]) -> None:
        self._words = words

    def __call__(self, job: DecodeJob) -> Transcript:
        heard = [
            Word(w.text, w.start_s - job.offset_s, w.end_s - job.offset_s, 0.9)
            for w in self._words
            if w.start_s >= job.offset_s - 0.05 and w.end_s <= job.end_s
        ]
        length = job.end_s - job.offset_s
        segment = Segment(0, 0.0, length, " ".join(w.text for w in heard), -0.2, 0.01, tuple(heard))
        return Transcript((segment,) if heard else (), Language("en", 0.99), length, "transcribe", MODEL)


class DigitsAreAPhone:
    """Stands in for the moderation core's text signals: a digit in a segment is a phone number."""

    def __init__(self) -> None:
        self.judged: list[str] = []

    async def __call__(self, final: LiveFinal) -> Sequence[Signal]:
        segment = final.segment
        self.judged.append(segment.text)
        if not any(c.isdigit() for c in segment.text):
            return []
        start = next(i for i, c in enumerate(segment.text) if c.isdigit())
        evidence = Evidence(
            Modality.SPEECH,
            PHONE_MODEL,
            segment.start_s,
            segment.end_s,
            text=segment.text[start:],
            span=(start, len(segment.text)),
        )
        return [Signal("contact.phone", 1.0, evidence)]


@dataclass
class Published:
    verdict: LiveModeration
    modality: Modality
    version: int
    stream_ended: EndReason | None  # the session's state when it was published


class RecordingPublisher:
    def __init__(self) -> None:
        self.session: LiveSession | None = None
        self.published: list[Published] = []

    async def publish(
        self,
        tenant: str,
        media_id: str,
        verdict: LiveModeration,
        *,
        modality: Modality,
        version: int,
        metadata: Mapping[str, str],
        trace_id: str,
    ) -> None:
        assert (tenant, media_id) == ("t", "m1")
        assert self.session is not None
        self.published.append(Published(verdict, modality, version, self.session.ended))


async def next_event(s: LiveSession, kind: type) -> LiveEvent:
    while True:
        event = await s.events.get()
        assert event is not None, "the stream ended without the event"
        if isinstance(event, kind):
            return event


async def drain(s: LiveSession) -> list[LiveEvent]:
    """The events still waiting (the session has ended)."""
    s.events.close()
    events = []
    while (event := await s.events.get()) is not None:
        events.append(event)
    return events


async def play(s: LiveSession, seconds: float) -> None:
    for _ in range(int(round(seconds * 10))):  # 100 ms chunks of PCM
        await s.audio(b"\x00\x00" * 1600, 0)
    await asyncio.sleep(0)


async def test_a_review_segment_is_sent_and_published_once_when_decided_and_allow_publishes_nothing() -> None:
    words = spoken(PHONE_WORDS, 0.5) + spoken(ORDINARY_WORDS, 4.0)
    signals, publisher = DigitsAreAPhone(), RecordingPublisher()
    policy = load_policy().resolve("t")  # the packaged default policy: a phone number is REVIEW
    moderation = StreamModeration(policy=policy, signals=signals, publisher=publisher)
    s, _ = session(
        vad=ScriptedVad([(0.5, 2.3), (4.0, 5.5)]),
        recognize=ScriptedRecognizer(words),
        moderation=moderation,
        version=42,
    )
    publisher.session = s
    s.start()
    await play(s, 3.5)  # the first utterance, and enough silence to end it
    verdict = await asyncio.wait_for(next_event(s, LiveModeration), 30)
    assert isinstance(verdict, LiveModeration)
    assert verdict.source == "transcript" and verdict.segment_index == 0
    assert verdict.moderation.decision is Decision.REVIEW and verdict.moderation.policy == "default"
    assert verdict.moderation.policy_version == policy.version
    (phone,) = verdict.moderation.categories
    assert phone.category == "contact.phone" and phone.severity is Decision.REVIEW
    assert phone.evidence[0].text == "415 555 0132 tonight" and phone.evidence[0].score == 1.0
    assert (verdict.start_s, verdict.end_s) == pytest.approx((0.5, 0.5 + 6 * 0.25 + 0.2))
    # published once, while the stream was still open, with the stream's version
    assert [p.verdict for p in publisher.published] == [verdict]
    assert publisher.published[0].stream_ended is None
    assert publisher.published[0].version == 42 and publisher.published[0].modality is Modality.SPEECH

    await play(s, 3.0)  # the second utterance: ordinary, ALLOW
    s.end(EndReason.CLIENT)
    result = await s.wait()
    assert [seg.text for seg in result.transcript.segments] == [" ".join(PHONE_WORDS), " ".join(ORDINARY_WORDS)]
    assert signals.judged == [seg.text for seg in result.transcript.segments]  # every final segment judged
    assert len(publisher.published) == 1  # the ALLOW segment published nothing
    rest = await drain(s)
    assert not [e for e in rest if isinstance(e, LiveModeration)]  # nor was it sent


async def test_a_cancelled_waiter_leaves_the_analysis_running_for_the_next_one() -> None:
    """The RPC that waits for the summary can be cancelled (the client left) while the last
    segment is still being judged: the stream is then finished in the background, by a new waiter."""
    release = asyncio.Event()

    class SlowSignals(DigitsAreAPhone):
        async def __call__(self, final: LiveFinal) -> Sequence[Signal]:
            await release.wait()
            return await super().__call__(final)

    publisher = RecordingPublisher()
    moderation = StreamModeration(policy=load_policy().resolve("t"), signals=SlowSignals(), publisher=publisher)
    s, _ = session(
        vad=ScriptedVad([(0.5, 2.3)]), recognize=ScriptedRecognizer(spoken(PHONE_WORDS, 0.5)), moderation=moderation
    )
    publisher.session = s
    s.start()
    await play(s, 3.5)
    s.end(EndReason.CLIENT)
    first = asyncio.create_task(s.wait())
    await asyncio.wait_for(next_event(s, LiveFinal), 30)  # the final is out; its verdict is pending
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    result = await asyncio.wait_for(s.wait(), 30)
    assert [seg.text for seg in result.transcript.segments] == [" ".join(PHONE_WORDS)]
    assert len(publisher.published) == 1 and publisher.published[0].verdict.segment_index == 0


async def test_without_moderation_finals_are_not_judged() -> None:
    words = spoken(PHONE_WORDS, 0.5)
    s, _ = session(vad=ScriptedVad([(0.5, 2.3)]), recognize=ScriptedRecognizer(words))
    s.start()
    await play(s, 3.5)
    s.end(EndReason.CLIENT)
    result = await s.wait()
    assert result.transcript.segments
    events = await drain(s)
    assert [e for e in events if isinstance(e, LiveFinal)] and not [e for e in events if isinstance(e, LiveModeration)]


async def test_a_client_ahead_of_real_time_is_paced() -> None:
    s, clock = session()
    for _ in range(100):  # 10 s of audio at once
        await s.audio(b"\x00\x00" * 1600, 0)
    assert s.ahead_s == pytest.approx(10.0)
    assert s.pace_wait_s() == pytest.approx(5.0)
    clock.now += 6.0
    assert s.pace_wait_s() == 0.0


# ---------------------------------------------------------------- moderation per frame
NUDITY_MODEL = ModelRef("open-nsfw", "1")


class NudeEverySecondFrame:
    """Stands in for the picture models: every second frame checked is nude (score 0.97)."""

    models = (NUDITY_MODEL,)

    def __init__(self) -> None:
        self.seen: list[tuple[float, tuple[int, ...], bool, int, int]] = []

    async def __call__(self, frame: SampledFrame, *, new_shot: bool, width: int, height: int) -> FrameCheck | None:
        assert frame.detail is not None
        self.seen.append((frame.t_s, frame.detail.shape, new_shot, width, height))
        nude = len(self.seen) % 2 == 0
        score = 0.97 if nude else 0.01
        evidence = Evidence(Modality.VIDEO, NUDITY_MODEL, frame.t_s, frame.t_s, frame_s=frame.t_s, detail="nsfw")
        signals = (Signal("nudity", score, evidence),) if nude else ()
        return FrameCheck(FrameFindings(t_s=frame.t_s, nudity=score), signals, (NUDITY_MODEL,))


async def test_a_nude_frame_is_blocked_and_published_at_once_and_its_findings_reach_the_result() -> None:
    pictures, publisher = NudeEverySecondFrame(), RecordingPublisher()
    policy = load_policy().resolve("t")  # the packaged default policy: nudity at 0.97 is BLOCK
    moderation = StreamModeration(policy=policy, signals=DigitsAreAPhone(), publisher=publisher, pictures=pictures)
    s, _ = session(moderation=moderation, version=7)
    publisher.session = s
    s.start()
    s.frame(b"jpeg", 1_000_000)  # t = 0: checked, clean
    await asyncio.wait_for(next_event(s, LiveSignals), 10)
    s.frame(b"jpeg", 2_000_000)  # t = 1: checked, nude
    verdict = await asyncio.wait_for(next_event(s, LiveModeration), 10)
    assert isinstance(verdict, LiveModeration)
    assert verdict.source == "frame" and verdict.frame_s == 1.0 and (verdict.start_s, verdict.end_s) == (1.0, 1.0)
    assert verdict.moderation.decision is Decision.BLOCK
    (category,) = verdict.moderation.categories
    assert category.category == "nudity" and category.evidence[0].frame_s == 1.0
    assert [p.verdict for p in publisher.published] == [verdict]
    assert publisher.published[0].stream_ended is None  # during the stream, not at its end
    assert publisher.published[0].modality is Modality.VIDEO and publisher.published[0].version == 7
    # the frame's signals follow its verdict and name the picture model that judged it
    after = await asyncio.wait_for(next_event(s, LiveSignals), 10)
    assert isinstance(after, LiveSignals) and after.frame_s == 1.0 and after.models == (MODEL, NUDITY_MODEL)
    s.end(EndReason.CLIENT)
    result = await s.wait()
    # the models saw each frame's detail copy, with the encoded size; the first frame starts a shot
    assert [(t, shape, width, height) for t, shape, _, width, height in pictures.seen] == [
        (0.0, (36, 64, 3), 320, 180),
        (1.0, (36, 64, 3), 320, 180),
    ]
    assert pictures.seen[0][2] is True
    assert [(f.t_s, f.nudity) for f in result.findings] == [(0.0, 0.01), (1.0, 0.97)]
    assert len(publisher.published) == 1  # the clean frame published nothing


async def test_frames_skip_the_picture_models_while_recognition_is_behind() -> None:
    pictures, publisher = NudeEverySecondFrame(), RecordingPublisher()
    moderation = StreamModeration(
        policy=load_policy().resolve("t"), signals=DigitsAreAPhone(), publisher=publisher, pictures=pictures
    )
    s, _ = session(moderation=moderation)  # not started: nothing decodes the audio
    publisher.session = s
    for _ in range(30):  # 3 s of audio the fake VAD has not caught up with: 2 s behind or more
        await s.audio(b"\x00\x00" * 1600, 0)
    assert s.status().behind_s >= 2.0
    s._tasks = [asyncio.create_task(s._frame_loop())]  # noqa: SLF001 - only the frame side runs
    s.frame(b"jpeg", 11_000_000)
    event = await asyncio.wait_for(next_event(s, LiveSignals), 10)
    assert isinstance(event, LiveSignals) and event.models == (MODEL,)  # no picture model named
    assert pictures.seen == []  # audio first: the picture models waited
    s.end(EndReason.CLIENT)
    await asyncio.wait_for(s._tasks[0], 10)  # noqa: SLF001


# ---------------------------------------------------------------- speakers
async def voiced(s: LiveSession, voices: Sequence[tuple[float, int]]) -> None:
    """100 ms PCM chunks: `(seconds, level)` runs (the fake speaker model tells voices by the sign)."""
    for seconds, level in voices:
        for _ in range(int(round(seconds * 10))):
            await s.audio(np.full(1600, level, "<i2").tobytes(), 0)
            await asyncio.sleep(0)


@pytest.mark.parametrize("online", [False, True])
async def test_speakers_label_the_analysis_at_the_end_and_the_finals_when_asked(online: bool) -> None:
    # A speaks 0.5-6.5 s, B 7.5-17.5 s, A 18.5-21.5 s; Whisper (scripted) hears a word every 0.25 s.
    # B says more than A before its final: with as little speech as A's, the clustering may not tell
    # them apart yet (the contract allows that; here the labels must be right).
    turns = [(0.5, 6.5), (7.5, 17.5), (18.5, 21.5)]
    words = [w for i, (a, b) in enumerate(turns) for w in spoken([f"t{i}"] * int((b - a - 0.2) / 0.25), a)]
    speakers = LiveSpeakers(VoiceBySign(), online=online, detect=loud)  # type: ignore[arg-type]
    s, _ = session(vad=ScriptedVad(turns), recognize=ScriptedRecognizer(words), speakers=speakers)
    s.start()
    await voiced(s, [(0.5, 0), (6.0, 3000), (1.0, 0), (10.0, -3000), (1.0, 0), (3.0, 3000), (1.5, 0)])
    s.end(EndReason.CLIENT)
    result = await s.wait()
    finals = [e for e in await drain(s) if isinstance(e, LiveFinal)]
    assert [f.segment.text.split()[0] for f in finals] == ["t0", "t1", "t2"]
    if online:
        assert [f.speaker for f in finals] == ["S1", "S2", "S1"]
        assert [f.segment.speaker for f in finals] == ["S1", "S2", "S1"]
    else:
        assert [f.speaker for f in finals] == [None, None, None]
    transcript = result.transcript
    assert [seg.speaker for seg in transcript.segments] == ["S1", "S2", "S1"]
    assert [seg.index for seg in transcript.segments] == [0, 1, 2]
    assert all(w.speaker == seg.speaker for seg in transcript.segments for w in seg.words)
    assert transcript.speaker_method == "clustering"
    assert {sp.label: round(sp.speaking_s) for sp in transcript.speakers} == {"S1": 9, "S2": 10}
