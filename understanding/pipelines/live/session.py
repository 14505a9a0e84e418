"""One live stream: audio and frames in, events out, and at the end what it understood.

The api feeds a session (`audio`, `frame`, `end`) and forwards
`session.events` to the client; the session decides what runs and what is
dropped:

- Audio is never dropped while frames can be: when speech recognition
  lags `behind_s` (`recognition_lag_s`: the audio being decoded ended that
  long ago), frames are sampled at half the rate (a quarter at twice that);
  a frame that arrives while the previous one still waits replaces it. Only a recogniser that falls `overflow_s` behind loses audio
  (see `asr.py`). Every drop is counted and reported in a status event.
- Decoding runs one job at a time per stream in a thread of the streams'
  own executor (Whisper's workers are shared by every stream and upload);
  frames are analysed in another, so a frame's result does not wait for a
  decode.
- Status events go out every `status_interval_s` and right after a drop.
- With `moderation`, every final segment is judged after its signals: a
  REVIEW or BLOCK is sent to the client and published (moderation topic)
  before the next decode, so a T&S consumer can act during the call. The
  partial verdicts carry the stream's `version`, which its final analysis
  keeps, so a consumer can tie them to the stream's final verdict.
  Frames are judged the same way when the picture models run
  (`StreamModeration.pictures`), in the frame task, so a frame's verdict
  never waits for a decode; the frame's signals event follows its verdict
  and names the picture models that looked at it. While recognition
  lags `behind_s`, frames skip the picture models (audio first): their
  signals then name none.

`wait()` returns a `LiveResult`: the transcript of every final segment,
the frame pass's shots and the picture models' findings, for the core to
assemble, index and publish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from understanding.domain import (
    AudioFormat,
    Decision,
    DropReason,
    EndReason,
    InvalidInput,
    Language,
    LiveConfig,
    LiveFinal,
    LiveModeration,
    LivePartial,
    LiveStatus,
    Modality,
    ModelRef,
    Segment,
    Signal,
    Transcript,
    UnderstandingError,
)
from understanding.media.live import DecodedFrame
from understanding.media.video import SampledFrame
from understanding.pipelines.live.asr import AsrSettings, DecodeJob, StreamingAsr
from understanding.pipelines.live.audio_buffer import AudioBuffer
from understanding.pipelines.live.channel import EventChannel
from understanding.pipelines.live.signals import SignalStep, StreamModeration
from understanding.pipelines.live.speakers import LiveSpeakers
from understanding.pipelines.live.timeline import Timeline
from understanding.pipelines.moderation import decide
from understanding.pipelines.screening import FrameFindings
from understanding.pipelines.text import new_version
from understanding.pipelines.visual import FaceDetector, FramePass, VisualResult

__all__ = ["LiveResult", "LiveSession", "LiveSettings", "StreamDecoding", "Vad"]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# Containers a client may send by mistake instead of raw PCM or Opus packets.
_CONTAINER_MAGIC = {
    b"OggS": "an Ogg",
    b"RIFF": "a WAV",
    b"\x1aE\xdf\xa3": "a WebM/Matroska",
    b"fLaC": "a FLAC",
    b"ID3": "an MP3",
}
_NOT_OPUS_AFTER = 10  # undecodable packets before any good one: the audio is not Opus at all
# Audio kept for the speaker model: a final covers at most `AsrSettings.overflow_s` of audio behind
# the newest sample (older audio was dropped by the recogniser too).
_SPEAKER_AUDIO_S = 40.0


class Vad(Protocol):
    def push(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...


class StreamDecoding(Protocol):
    """Decoding of the stream's untrusted bytes (media.sandbox.StreamDecoder)."""

    def image(self, data: bytes) -> DecodedFrame: ...

    def opus(self, packet: bytes) -> npt.NDArray[np.float32]: ...

    def close(self) -> None: ...


Recognize = Callable[[DecodeJob], Transcript]


@dataclass(frozen=True, slots=True)
class LiveSettings:
    asr: AsrSettings = field(default_factory=AsrSettings)
    frame_fps: float = 1.0  # frames analysed per second at most
    behind_s: float = 2.0  # recognition lagging this much: frames at half rate (twice as much: a quarter)
    status_interval_s: float = 1.0
    max_ahead_s: float = 5.0  # a client further ahead of real time is read at real time
    event_capacity: int = 1024


@dataclass(frozen=True, slots=True)
class LiveResult:
    """What a finished stream understood, for the core to assemble into an `Analysis`."""

    transcript: Transcript
    visual: VisualResult | None
    frame_size: tuple[int, int]
    frames_received: int
    duration_s: float
    status: LiveStatus
    reason: EndReason
    findings: tuple[FrameFindings, ...] = ()  # the picture models' checks, in frame order


@dataclass(slots=True)
class _Frame:
    t_s: float
    data: bytes
    received: float  # clock time


class LiveSession:
    def __init__(
        self,
        config: LiveConfig,
        settings: LiveSettings,
        *,
        tenant: str,
        recognize: Recognize,
        model: ModelRef,
        vad: Vad,
        decoder: StreamDecoding,
        faces: FaceDetector,
        signals: SignalStep,
        moderation: StreamModeration | None = None,
        speakers: LiveSpeakers | None = None,
        version: int | None = None,
        trace_id: str = "",
        clock: Callable[[], float] = time.monotonic,
        decode_executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.tenant = tenant
        self.events = EventChannel(settings.event_capacity)
        self._recognize = recognize
        # Decodes wait for one of Whisper's shared workers: in asyncio's default executor (6 threads
        # on 2 cores) a few streams' waiting decodes would hold every thread, and the frames' and
        # uploads' short calls would queue behind them (None: the default executor, for tests).
        self._decode_executor = decode_executor
        self._model = model
        self._vad = vad
        self._decoder = decoder
        self._signals = signals
        self.moderation = moderation
        self._speakers = speakers
        self._heard = AudioBuffer(SAMPLE_RATE)  # recent audio, for the speaker model (only with `speakers`)
        # The stream's analysis version: its partial verdicts carry it, its final analysis keeps it.
        self.version = version if version is not None else new_version()
        self._trace_id = trace_id
        self._clock = clock
        self._asr = StreamingAsr(settings.asr, language=config.language)
        self._timeline = Timeline()
        self._frames = FramePass(faces=faces, sample_fps=settings.frame_fps)
        self._finals: list[Segment] = []
        self._findings: list[FrameFindings] = []
        self._final_language: Language | None = None
        self._pending_frame: _Frame | None = None
        self._last_frame_s: float | None = None  # last frame accepted (any reason to drop comes later)
        self._last_sampled_s: float | None = None
        self._frame_size = (0, 0)
        self._frames_received = 0
        self._dropped_frames: dict[DropReason, int] = {}
        self._dropped_audio_s: dict[DropReason, float] = {}
        self._opus_ok = False
        self._opus_failed = 0
        self._started_at: float | None = None  # clock time of the first media message
        self._last_status_at = 0.0
        self._audio_wake = asyncio.Event()
        self._frame_wake = asyncio.Event()
        self._ended: EndReason | None = None
        self.ended_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._error: BaseException | None = None
        self._first_audio = True
        self.paced = False
        self._decoding_to_s: float | None = None  # end of the audio of the decode running, if one is

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._decode_loop(), name="live-decode"),
            asyncio.create_task(self._frame_loop(), name="live-frames"),
            asyncio.create_task(self._status_loop(), name="live-status"),
        ]

    @property
    def ended(self) -> EndReason | None:
        return self._ended

    @property
    def error(self) -> BaseException | None:
        return self._error

    def end(self, reason: EndReason) -> None:
        """No more input: finish the open utterance and the waiting frame (first reason wins)."""
        if self._ended is None:
            self._ended = reason
            self.ended_event.set()
            self._asr.finish()
            self._audio_wake.set()
            self._frame_wake.set()

    async def wait(self) -> LiveResult:
        """Wait for the analysis of everything received (after `end`); raises what a loop raised.

        A waiter that is cancelled (its RPC ended while the last utterance was still being
        analysed) leaves the loops running, so `wait` can be called again (the stream is then
        finished in the background); only `abort` stops them.
        """
        loops = asyncio.gather(*self._tasks[:2])
        loops.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved here or by a later wait
        try:
            await asyncio.shield(loops)
        except BaseException:
            if not loops.done():  # only this waiter was cancelled
                raise
            await self._stop_tasks()
            self._decoder.close()
            raise
        await self._stop_tasks()
        self._decoder.close()
        status = self.status()
        self.events.put(status)
        visual = self._frames.finish(max(self.duration_s, self._frames.last_t_s)) if self._frames.analyzed else None
        transcript = self.transcript()
        if self._speakers is not None:  # every segment and word labelled from all the stream's speech
            transcript = await asyncio.to_thread(self._speakers.attribute, transcript)
        return LiveResult(
            transcript=transcript,
            visual=visual,
            frame_size=self._frame_size,
            frames_received=self._frames_received,
            duration_s=self.duration_s,
            status=status,
            reason=self._ended or EndReason.CLIENT_GONE,
            findings=tuple(self._findings),
        )

    async def abort(self) -> None:
        """Stop at once (an error, or nobody to index for); nothing more is analysed."""
        self.end(self._ended or EndReason.CLIENT_GONE)
        await self._stop_tasks()
        self._decoder.close()

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------ input
    @property
    def received_anything(self) -> bool:
        """Whether any audio was accepted or any frame analysed (else there is nothing to index)."""
        return self._timeline.audio_end_s > 0 or self._frames.analyzed > 0 or self._pending_frame is not None

    @property
    def duration_s(self) -> float:
        """Media time received so far (audio, or the last frame's time if later)."""
        return max(self._timeline.audio_end_s, self._last_frame_s or 0.0)

    @property
    def ahead_s(self) -> float:
        """How far the client is ahead of real time (media received vs time since its first media)."""
        if self._started_at is None:
            return 0.0
        return self.duration_s - (self._clock() - self._started_at)

    def pace_wait_s(self) -> float:
        """How long to hold back reading so the client stays within `max_ahead_s` of real time."""
        return max(0.0, self.ahead_s - self.settings.max_ahead_s)

    @property
    def recognition_lag_s(self) -> float:
        """How old the audio is that recognition is working on: received audio since the end of
        the decode running (with none running, audio not yet transcribed).

        This, not `LiveStatus.behind_s`, tells whether recognition keeps up. Just before a
        decode comes back, everything received while it ran is untranscribed: on this
        project's 2-core test machine one Whisper decode takes 1.2-1.5 s, so `behind_s`
        reached 2.7-2.9 s on a single stream that kept up (benchmarks/live_bench.py) and
        frames were shed for nothing.
        """
        if self._decoding_to_s is not None:
            return max(0.0, self._asr.received_s - self._decoding_to_s)
        return self._asr.behind_s

    def _media_arrived(self) -> None:
        if self._started_at is None:
            self._started_at = self._clock()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def audio(self, data: bytes, capture_time_us: int) -> None:
        """One `LiveAudio`: decode, place on the clock, run the VAD, wake the recogniser."""
        self._media_arrived()
        if self._first_audio:
            self._first_audio = False
            self._check_not_container(data)
        if self.config.audio_format is AudioFormat.PCM_S16LE_16K_MONO:
            if len(data) % 2:
                raise InvalidInput(
                    f"{len(data)} bytes are not whole 16-bit PCM samples (LIVE_AUDIO_FORMAT_PCM_S16LE_16K_MONO)",
                    field="audio.data",
                )
            samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        else:
            decoded = await self._opus(data)
            if decoded is None:
                return
            samples = decoded
        gap_s = self._timeline.audio(capture_time_us, samples.size / SAMPLE_RATE)
        if gap_s > 0:
            samples = np.concatenate([np.zeros(int(round(gap_s * SAMPLE_RATE)), np.float32), samples])
        if self._speakers is not None:
            self._heard.append(samples)
            self._heard.drop_before(self._heard.end_s - _SPEAKER_AUDIO_S)
        before = self._asr.dropped_audio_s
        self._asr.push(samples, self._vad.push(samples))
        if self._asr.dropped_audio_s > before:
            self._drop_audio(DropReason.AUDIO_BEHIND, self._asr.dropped_audio_s - before)
        self._audio_wake.set()

    def _check_not_container(self, data: bytes) -> None:
        for magic, name in _CONTAINER_MAGIC.items():
            if data.startswith(magic):
                expected = (
                    "raw 16-bit PCM"
                    if self.config.audio_format is AudioFormat.PCM_S16LE_16K_MONO
                    else "raw Opus packets"
                )
                raise InvalidInput(
                    f"looks like {name} file, but the config announced {expected}: send the decoded stream, not a container",
                    field="audio.data",
                )

    async def _opus(self, packet: bytes) -> npt.NDArray[np.float32] | None:
        try:
            samples = await asyncio.to_thread(self._decoder.opus, packet)
        except InvalidInput:
            self._opus_failed += 1
            if not self._opus_ok and self._opus_failed >= _NOT_OPUS_AFTER:
                raise InvalidInput(
                    f"the first {self._opus_failed} packets are not Opus, but the config announced "
                    "LIVE_AUDIO_FORMAT_OPUS",
                    field="audio.data",
                ) from None
            self._drop_audio(DropReason.AUDIO_UNDECODABLE, 0.02)  # one lost packet, usually 20 ms
            return None
        self._opus_ok = True
        return samples

    def frame(self, data: bytes, capture_time_us: int) -> None:
        """One `LiveFrame`: drop it if it is out of order or over the rate, else queue it (replacing a waiting one)."""
        self._media_arrived()
        self._frames_received += 1
        t_s = self._timeline.frame(capture_time_us)
        if self._last_frame_s is not None and t_s <= self._last_frame_s:
            self._drop_frame(DropReason.FRAME_OUT_OF_ORDER)
            return
        self._last_frame_s = t_s
        interval = 1.0 / self.settings.frame_fps
        behind = self.recognition_lag_s
        reason = DropReason.FRAME_RATE
        if behind >= self.settings.behind_s:
            interval *= 4 if behind >= 2 * self.settings.behind_s else 2
            reason = DropReason.FRAME_BEHIND
        # 10% slack: a camera at exactly 1 fps must not lose every other frame to jitter.
        if self._last_sampled_s is not None and t_s - self._last_sampled_s < interval * 0.9:
            self._drop_frame(reason)
            return
        self._last_sampled_s = t_s
        if self._pending_frame is not None:
            self._drop_frame(DropReason.FRAME_BEHIND)
        self._pending_frame = _Frame(t_s, data, self._clock())
        self._frame_wake.set()

    # ------------------------------------------------------------ loops
    async def _decode_loop(self) -> None:
        try:
            while True:
                settled = self._asr.settle()
                for final in settled:
                    await self._emit(final)
                if settled:
                    continue  # the stream may have ended meanwhile: settle again before deciding
                job = self._asr.next_job()
                if job is None:
                    if self._ended is not None and not self._asr.speaking and self._asr.next_job() is None:
                        return
                    self._audio_wake.clear()
                    await self._audio_wake.wait()
                    continue
                self._decoding_to_s = job.end_s
                try:
                    loop = asyncio.get_running_loop()
                    transcript = await loop.run_in_executor(self._decode_executor, self._recognize, job)
                finally:
                    self._decoding_to_s = None
                for event in self._asr.on_result(job, transcript):
                    await self._emit(event)
        except BaseException as exc:
            self._fail(exc)
            raise

    async def _emit(self, event: LivePartial | LiveFinal) -> None:
        if isinstance(event, LivePartial):
            if self.config.partials:
                self.events.put(event)
            return
        speakers = self._speakers
        if speakers is not None and speakers.online:
            event = await self._with_speaker(event, speakers)
        self._finals.append(event.segment)
        self._final_language = event.language
        self.events.put(event)
        await self._after_final(event)
        if speakers is not None and not speakers.online:  # for the end only: after the final went out
            await self._hear(event.segment, speakers)

    async def _with_speaker(self, final: LiveFinal, speakers: LiveSpeakers) -> LiveFinal:
        """The final with its speaker ("" when not known), before it goes out or is judged."""
        segment = final.segment
        await self._hear(segment, speakers)
        speaker = await asyncio.to_thread(speakers.label, segment)
        return dataclasses.replace(final, segment=dataclasses.replace(segment, speaker=speaker), speaker=speaker)

    async def _hear(self, segment: Segment, speakers: LiveSpeakers) -> None:
        """The speaker model on the stream's audio up to just after this final."""
        lo, hi = speakers.span(segment)
        start = max(lo, self._heard.start_s)
        audio = self._heard.slice(start, hi)  # a copy, on the loop: audio() appends meanwhile
        await asyncio.to_thread(speakers.hear, audio, start)

    async def _after_final(self, final: LiveFinal) -> None:
        signals = await self._signals.transcript(final)
        if signals is not None:
            self.events.put(signals)
        if self.moderation is not None:
            await self._moderate(final, self.moderation)

    async def _moderate(self, final: LiveFinal, moderation: StreamModeration) -> None:
        """Judge a final segment; a REVIEW or BLOCK goes to the client and out at once."""
        segment = final.segment
        found = await moderation.signals(final)
        await self._judge(
            moderation,
            found,
            source="transcript",
            start_s=segment.start_s,
            end_s=segment.end_s,
            segment_index=segment.index,
        )

    async def _moderate_frame(
        self, moderation: StreamModeration, frame: SampledFrame, decoded: DecodedFrame, new_shot: bool
    ) -> tuple[ModelRef, ...]:
        """The picture models on a due frame; a REVIEW or BLOCK goes to the client and out at once.
        Returns the models that looked at it (none when it was not due)."""
        if moderation.pictures is None:
            return ()
        check = await moderation.pictures(frame, new_shot=new_shot, width=decoded.width, height=decoded.height)
        if check is None:
            return ()
        self._findings.append(check.findings)
        await self._judge(
            moderation, check.signals, source="frame", start_s=frame.t_s, end_s=frame.t_s, frame_s=frame.t_s
        )
        return check.models

    async def _judge(
        self,
        moderation: StreamModeration,
        found: Sequence[Signal],
        *,
        source: str,
        start_s: float,
        end_s: float,
        segment_index: int | None = None,
        frame_s: float | None = None,
    ) -> None:
        verdict = decide(found, moderation.policy)
        if verdict.decision is Decision.ALLOW:
            return
        event = LiveModeration(
            source=source,
            start_s=start_s,
            end_s=end_s,
            moderation=verdict,
            segment_index=segment_index,
            frame_s=frame_s,
        )
        self.events.put(event)
        await moderation.publisher.publish(
            self.tenant,
            self.config.media_id,
            event,
            modality=Modality.VIDEO if self._frames.analyzed else Modality.SPEECH,
            version=self.version,
            metadata=self.config.metadata,
            trace_id=self._trace_id,
        )

    async def _frame_loop(self) -> None:
        try:
            while True:
                frame, self._pending_frame = self._pending_frame, None
                if frame is None:
                    if self._ended is not None:
                        return
                    self._frame_wake.clear()
                    await self._frame_wake.wait()
                    continue
                await self._analyse_frame(frame)
        except BaseException as exc:
            self._fail(exc)
            raise

    async def _analyse_frame(self, frame: _Frame) -> None:
        try:
            decoded = await asyncio.to_thread(self._decoder.image, frame.data)
        except UnderstandingError as exc:
            log.info("live frame dropped", extra={"reason": exc.message, "frame_s": round(frame.t_s, 3)})
            self._drop_frame(DropReason.FRAME_UNDECODABLE)
            return
        if self._frame_size == (0, 0):
            self._frame_size = (decoded.width, decoded.height)
        sampled = SampledFrame(frame.t_s, decoded.image, detail=decoded.detail)
        shot_starts: list[bool] = []
        signals = await asyncio.to_thread(
            self._frames.push, sampled, on_sample=lambda _frame, first: shot_starts.append(first)
        )
        found = await self._signals.frame(decoded.image, signals)
        checked_by: tuple[ModelRef, ...] = ()
        # The picture models cost more than the rest of a frame together: while recognition is
        # behind they wait (audio before frames); the frame's signals then name no picture model.
        if self.moderation is not None and self.recognition_lag_s <= self.settings.behind_s:
            new_shot = bool(shot_starts and shot_starts[0])
            checked_by = await self._moderate_frame(self.moderation, sampled, decoded, new_shot=new_shot)
        if found is not None:  # after the verdict: a frame's signals say it has been judged, and by which models
            self.events.put(dataclasses.replace(found, models=(*found.models, *checked_by)))

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.status_interval_s)
            if self._started_at is not None:
                self._send_status()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None and not isinstance(exc, asyncio.CancelledError):
            self._error = exc
            self.end(self._ended or EndReason.CLIENT_GONE)
            self.events.close()

    # ------------------------------------------------------------ status
    def _drop_frame(self, reason: DropReason) -> None:
        self._dropped_frames[reason] = self._dropped_frames.get(reason, 0) + 1
        self._status_soon()

    def _drop_audio(self, reason: DropReason, seconds: float) -> None:
        self._dropped_audio_s[reason] = self._dropped_audio_s.get(reason, 0.0) + seconds
        self._status_soon()

    def _status_soon(self) -> None:
        if self._clock() - self._last_status_at >= 0.25:  # at most 4 a second; the ticker sends the rest
            self._send_status()

    def _send_status(self) -> None:
        self._last_status_at = self._clock()
        self.events.put(self.status())

    def status(self) -> LiveStatus:
        pending = self._pending_frame
        frame_wait = self._clock() - pending.received if pending is not None else 0.0
        ahead = self.ahead_s
        return LiveStatus(
            received_s=self._timeline.audio_end_s,
            transcribed_s=self._asr.transcribed_s,
            behind_s=max(self._asr.behind_s, frame_wait),
            ahead_s=max(0.0, ahead),
            paced=self.paced,
            frames_received=self._frames_received,
            frames_analyzed=self._frames.analyzed,
            dropped_frames=dict(self._dropped_frames),
            dropped_audio_s=dict(self._dropped_audio_s),
        )

    def transcript(self) -> Transcript:
        language = self._final_language or Language(self.config.language or "", 1.0 if self.config.language else 0.0)
        return Transcript(
            segments=tuple(self._finals),
            language=language,
            duration_s=self._timeline.audio_end_s,
            task="transcribe",
            model=self._model,
        )
