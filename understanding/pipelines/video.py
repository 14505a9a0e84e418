"""Video understanding: facts, shots, keyframes and visual signals, plus the
audio track through the speech path, indexed one chunk per shot.

The picture and the sound are analysed at the same time: the frame pass
(decode, shot detection, faces, signals) runs in one worker thread while the
audio is decoded and transcribed in another, so a video costs about the
longer of the two rather than their sum. Either failing stops the other.

Each shot becomes one `Chunk` (index = shot index) embedded from what is said
during it; a shot nobody speaks in is embedded from a one-line description of
its visual signals ("a dark scene with two faces (people), little motion,
mostly blue"), so text search still finds it.

Keyframe JPEGs are encoded only when `VideoInput.return_keyframes` is set
(`Shot.keyframe_jpeg` is empty otherwise; `keyframe_s` is always set): they
cost encoding time and would otherwise travel in every job result.

The moderation models (nudity, OCR) look at sampled frames while the frame
pass goes on (pipelines/screening.py: which frames, at what size, cached per
shot). The text read on screen is joined into its shot's chunk text after what
is said, so it is embedded, tagged and found by search; nudity scores and the
contact details found in that text become the analysis's signals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from understanding.domain import (
    Analysis,
    Chunk,
    ImageOptions,
    InvalidInput,
    Language,
    Modality,
    ModelRef,
    Shot,
    Signal,
    SpeechOptions,
    Tag,
    Transcript,
    Vector,
    VideoInfo,
    VideoOptions,
)
from understanding.media.video import DecodeStats, VideoLimits
from understanding.pipelines.attribution import speakers_between
from understanding.pipelines.screening import (
    FrameFindings,
    FrameScreener,
    ScreeningSettings,
    ShotFindings,
    VisualModels,
    contact_signals,
    nudity_signals,
    shot_findings,
)
from understanding.pipelines.speech import Progress, SpeechPipeline
from understanding.pipelines.text import TextPipeline, Window, new_version
from understanding.pipelines.visual import FaceDetector, VisualResult, VisualShot, analyze_frames

__all__ = ["VideoInput", "VideoPipeline", "VideoSettings", "align_transcript", "shift_transcript"]

log = logging.getLogger(__name__)

_MIN_OFFSET_S = 0.02  # audio starting later than the picture by less than this is left alone


@dataclass(frozen=True, slots=True)
class VideoSettings:
    sample_fps: float = 2.0  # frames analysed per second when the request does not say
    analysis_width: int = 320  # downscale width before analysis
    max_pixels: int = 3840 * 2160  # width*height above this -> LimitExceeded(field="video.resolution")
    max_duration_s: float = 4 * 3600.0
    max_frames: int = 200_000  # decoded frame budget -> LimitExceeded
    keyframe_max_px: int = 320

    def __post_init__(self) -> None:
        VideoOptions(sample_fps=self.sample_fps)  # the same bounds as a request's


@dataclass(frozen=True, slots=True)
class VideoInput:
    media_id: str
    path: pathlib.Path
    speech_options: SpeechOptions = field(default_factory=SpeechOptions)
    options: VideoOptions = field(default_factory=VideoOptions)  # sample_fps None -> settings.sample_fps
    metadata: Mapping[str, str] = field(default_factory=dict)
    image_options: ImageOptions = field(default_factory=ImageOptions)  # which picture models see the frames


class _Stop(threading.Event):
    """Set by us (the other half failed) or by the caller's `cancelled` event.

    The workers only poll `is_set()`, so a subclass can answer for both.
    """

    def __init__(self, caller: threading.Event | None) -> None:
        super().__init__()
        self._caller = caller

    def is_set(self) -> bool:
        return super().is_set() or (self._caller is not None and self._caller.is_set())


def align_transcript(shots: Sequence[tuple[float, float]], transcript: Transcript | None) -> list[str]:
    """The text spoken during each shot, from word timestamps when the
    transcript has them (a sentence across a cut is split at the cut), else
    whole segments, each to the shot it overlaps most."""
    texts: list[list[str]] = [[] for _ in shots]
    if transcript is None or not shots:
        return ["" for _ in shots]
    starts = [s for s, _ in shots]

    def shot_at(t: float) -> int:
        index = int(np.searchsorted(starts, t, side="right")) - 1
        return min(max(index, 0), len(shots) - 1)

    for segment in transcript.segments:
        if segment.words:
            for word in segment.words:
                if word.text.strip():
                    texts[shot_at((word.start_s + word.end_s) / 2)].append(word.text.strip())
            continue
        text = segment.text.strip()
        if not text:
            continue
        overlaps = [max(0.0, min(end, segment.end_s) - max(start, segment.start_s)) for start, end in shots]
        best = int(np.argmax(overlaps))
        if overlaps[best] <= 0:
            best = shot_at((segment.start_s + segment.end_s) / 2)
        texts[best].append(text)
    return [" ".join(" ".join(parts).split()) for parts in texts]


def shift_transcript(transcript: Transcript, offset_s: float) -> Transcript:
    """The transcript on the video's clock: every time moved by `offset_s` (never below 0)."""

    def at(t: float) -> float:
        return max(0.0, t + offset_s)

    segments = tuple(
        dataclasses.replace(
            s,
            start_s=at(s.start_s),
            end_s=at(s.end_s),
            words=tuple(dataclasses.replace(w, start_s=at(w.start_s), end_s=at(w.end_s)) for w in s.words),
        )
        for s in transcript.segments
    )
    return dataclasses.replace(transcript, segments=segments)


def _mean_unit(vectors: Sequence[Vector]) -> Vector:
    if len(vectors) == 1:
        return vectors[0]
    mean = np.mean(np.stack(list(vectors)), axis=0)
    norm = float(np.linalg.norm(mean))
    unit: Vector = (mean / norm if norm > 0 else mean).astype(np.float32)
    return unit


def _merge_tags(chunks: Sequence[Chunk], start_s: float, end_s: float) -> tuple[Tag, ...]:
    """Text tags of the pieces of one shot: best score per label, over the shot's range."""
    best: dict[str, Tag] = {}
    for chunk in chunks:
        for tag in chunk.tags:
            if tag.label not in best or tag.score > best[tag.label].score:
                best[tag.label] = tag
    return tuple(dataclasses.replace(t, start_s=start_s, end_s=end_s) for t in best.values())


class VideoPipeline:
    """Analyses one video file into an `Analysis` (modality VIDEO)."""

    def __init__(
        self,
        *,
        speech: SpeechPipeline,
        text: TextPipeline,
        settings: VideoSettings,
        faces: FaceDetector | None = None,
        models: VisualModels | None = None,
        screening: ScreeningSettings | None = None,
    ) -> None:
        self._speech = speech
        self._text = text
        self._settings = settings
        self._faces = faces if faces is not None else FaceDetector()
        self._faces.warm_up()
        self._models = models or VisualModels()
        self._screening = screening or ScreeningSettings()

    @property
    def settings(self) -> VideoSettings:
        return self._settings

    @property
    def faces(self) -> FaceDetector:
        """The face model, shared with the live path's frame analysis."""
        return self._faces

    async def analyze(
        self,
        tenant: str,
        item: VideoInput,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
    ) -> Analysis:
        settings = self._settings
        sample_fps = item.options.sample_fps or self._settings.sample_fps
        limits = VideoLimits(settings.max_pixels, settings.max_duration_s, settings.max_frames)
        started = time.perf_counter()
        if progress:
            progress("probe", 0.0)
        info = await asyncio.to_thread(self._speech.decoder.probe_video, item.path, limits)
        with_audio = info.has_audio and not item.options.skip_audio
        stop = _Stop(cancelled)
        shares = {"frames": 0.0, "audio": 0.0 if with_audio else 1.0, "reported": -1.0}
        report_lock = threading.Lock()

        def report(part: str, fraction: float) -> None:
            # Called from both worker threads: one combined, never decreasing figure.
            with report_lock:
                shares[part] = max(shares[part], min(1.0, fraction))
                overall = 0.9 * (shares["frames"] + shares["audio"]) / 2
                if progress is None or overall <= shares["reported"]:
                    return
                shares["reported"] = overall
                progress("analyze", overall)

        stats = DecodeStats()
        longest = max(info.width, info.height)
        screener = FrameScreener(
            self._models,
            self._screening,
            item.image_options,
            asyncio.get_running_loop(),
            scale=lambda image: max(image.shape[:2]) / longest if longest else 1.0,
            stop=stop,
        )
        visual_task = asyncio.ensure_future(
            asyncio.to_thread(self._visual_pass, item, info, sample_fps, limits, stats, report, stop, screener)
        )
        audio_task = asyncio.ensure_future(self._transcript(item, report, stop)) if with_audio else None
        tasks = [visual_task, *([audio_task] if audio_task is not None else [])]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            error = next((t.exception() for t in done if t.exception() is not None), None)
            if error is not None:
                raise error
            visual = visual_task.result()
            transcript = audio_task.result() if audio_task is not None else None
            findings = await screener.results()
        except BaseException:
            stop.set()  # stop the other half at its next frame / segment, and wait for it
            screener.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if progress:
            progress("embed", 0.9)
        analysis = await self.assemble(
            tenant,
            media_id=item.media_id,
            metadata=item.metadata,
            info=info,
            stats=stats,
            visual=visual,
            transcript=transcript,
            findings=findings,
            visual_models=self._models.refs(item.image_options) if findings else (),
        )
        log.info(
            "video analysed",
            extra={
                "media_id": item.media_id,
                "seconds": round(time.perf_counter() - started, 2),
                "duration_s": round(analysis.video.duration_s if analysis.video else 0.0, 2),
                "shots": len(analysis.shots),
                "frames_decoded": stats.frames_decoded,
                "frames_analyzed": visual.frames_analyzed,
                "frames_screened": len(findings),
                "frames_read_reused": screener.reused,
                "truncated": stats.truncated,
            },
        )
        return analysis

    def _visual_pass(
        self,
        item: VideoInput,
        info: VideoInfo,
        sample_fps: float,
        limits: VideoLimits,
        stats: DecodeStats,
        report: Progress,
        stop: threading.Event,
        screener: FrameScreener,
    ) -> VisualResult:
        frames = self._speech.decoder.sample_frames(
            item.path,
            sample_fps=sample_fps,
            width=self._settings.analysis_width,
            limits=limits,
            stats=stats,
            cancelled=stop,
            detail_max_side=self._screening.detail_max_side if screener.enabled else 0,
        )

        def end_of_video(last_sample_s: float) -> float:
            decoded_to = stats.last_t_s + (1.0 / info.fps if info.fps else 0.0)
            if stats.truncated or info.duration_s <= 0:
                return max(decoded_to, last_sample_s)
            return max(info.duration_s, last_sample_s)

        def on_frame(t_s: float) -> None:
            if info.duration_s > 0:
                report("frames", t_s / info.duration_s)

        result = analyze_frames(
            frames,
            faces=self._faces,
            sample_fps=sample_fps,
            end_s=end_of_video,
            keyframes=item.options.return_keyframes,
            keyframe_max_px=self._settings.keyframe_max_px,
            on_frame=on_frame,
            on_sample=screener.offer if screener.enabled else None,
        )
        report("frames", 1.0)
        return result

    async def _transcript(self, item: VideoInput, report: Progress, stop: threading.Event) -> Transcript | None:
        try:
            transcript = await self._speech.transcript(
                item.path, item.speech_options, lambda _, f: report("audio", f), stop
            )
        except InvalidInput as exc:
            if exc.field != "chunk":
                raise  # the request's fault (an option), not the media's
            # A broken or empty audio track does not make the picture unusable.
            log.warning(
                "audio track not decodable; picture only", extra={"media_id": item.media_id, "reason": exc.message}
            )
            report("audio", 1.0)
            return None
        report("audio", 1.0)
        offset = await asyncio.to_thread(self._speech.decoder.audio_offset_s, item.path)
        return shift_transcript(transcript, offset) if abs(offset) >= _MIN_OFFSET_S else transcript

    async def assemble(
        self,
        tenant: str,
        *,
        media_id: str,
        metadata: Mapping[str, str],
        info: VideoInfo,
        stats: DecodeStats,
        visual: VisualResult,
        transcript: Transcript | None,
        findings: Sequence[FrameFindings] = (),
        visual_models: tuple[ModelRef, ...] = (),
    ) -> Analysis:
        """One `Analysis` from the frame pass and the transcript: a chunk per shot (also for live streams)."""
        shots = visual.shots
        spoken = align_transcript([(s.start_s, s.end_s) for s in shots], transcript)
        language: Language | None = transcript.language if transcript is not None and transcript.segments else None
        seen = shot_findings(
            findings, [(s.start_s, s.end_s) for s in shots], max_lines=self._screening.max_lines_per_shot
        )
        # What is said, then what is shown as text; a shot with neither is described.
        texts = ["\n".join(p for p in (said, found.ocr_text) if p) for said, found in zip(spoken, seen, strict=True)]
        windows = [
            Window(text or shot.description, shot.start_s, shot.end_s) for shot, text in zip(shots, texts, strict=True)
        ]
        # One call per shot so a long monologue's pieces map back to its shot; the micro-batcher batches them.
        embedded = await asyncio.gather(*(self._text.embed_windows([w]) for w in windows))
        chunks: list[Chunk] = []
        domain_shots: list[Shot] = []
        text_pieces: list[Chunk] = []
        signals: list[Signal] = []
        for shot, said, text, found, pieces in zip(shots, spoken, texts, seen, embedded, strict=True):
            text_tags = _merge_tags(pieces, shot.start_s, shot.end_s) if text else ()
            if text:
                text_pieces.extend(pieces)
            tags = shot.tags + text_tags
            if not pieces:  # never for non-empty text; a description is never empty
                raise RuntimeError(f"no embedding for shot {shot.index}")
            vector = _mean_unit([p.embedding for p in pieces])
            extra: dict[str, object] = {"keyframe_s": float(shot.keyframe_s), "face_count": int(shot.face_count)}
            if found.ocr_text:
                extra["ocr_text"] = found.ocr_text
            if found.frames_checked:
                extra["nudity_score"] = float(found.nudity_score)
            chunks.append(
                Chunk(
                    index=shot.index,
                    text=text or shot.description,
                    embedding=vector,
                    tags=tags,
                    start_s=shot.start_s,
                    end_s=shot.end_s,
                    language=(pieces[0].language or language) if text else None,
                    extra=extra,
                    speakers=speakers_between(transcript, shot.start_s, shot.end_s) if said else (),
                )
            )
            domain_shots.append(_shot(shot, tags, said, found))
            signals += self._signals(shot, found, text, said, language)
        end_s = shots[-1].end_s if shots else info.duration_s
        video = dataclasses.replace(
            info,
            duration_s=end_s if (stats.truncated or info.duration_s <= 0) else info.duration_s,
            frames_decoded=stats.frames_decoded,
            frames_analyzed=visual.frames_analyzed,
        )
        text_tags = self._text.overall_tags(text_pieces, end_s=video.duration_s) if text_pieces else ()
        return Analysis(
            tenant=tenant,
            media_id=media_id,
            modality=Modality.VIDEO,
            language=language,
            tags=visual.tags + tuple(text_tags),
            chunks=tuple(chunks),
            embedding_model=self._text.model,
            created_at=time.time(),
            version=new_version(),
            metadata=dict(metadata),
            transcript=transcript,
            video=video,
            shots=tuple(domain_shots),
            signals=tuple(signals),
            visual_models=visual_models,
        )

    def _signals(
        self, shot: VisualShot, found: ShotFindings, text: str, said: str, language: Language | None
    ) -> list[Signal]:
        """The shot's nudity and on-screen contact-detail signals (evidence: frame time, box, span)."""
        models = self._models
        signals: list[Signal] = []
        if found.frames_checked and models.nudity_model is not None:
            signals += nudity_signals(
                found.nudity_score,
                found.nudity_parts,
                frame_s=found.nudity_frame_s,
                modality=Modality.VIDEO,
                model=models.nudity_model,
                min_score=self._screening.nudity_min_score,
                start_s=shot.start_s,
                end_s=shot.end_s,
                chunk_index=shot.index,
            )
        if found.ocr_text and models.ocr_model is not None:
            hint = language.code if language is not None else self._text.detect_language(found.ocr_text).code
            offset = len(said) + 1 if said else 0  # the OCR text follows what is said in the chunk text
            signals += contact_signals(
                found.text_lines,
                found.ocr_text,
                modality=Modality.VIDEO,
                model=models.ocr_model,
                chunks=[(shot.index, offset, text)],
                language=hint if hint != "und" else None,
                start_s=shot.start_s,
                end_s=shot.end_s,
            )
        return signals


def _shot(shot: VisualShot, tags: tuple[Tag, ...], text: str, found: ShotFindings) -> Shot:
    return Shot(
        index=shot.index,
        start_s=shot.start_s,
        end_s=shot.end_s,
        keyframe_s=shot.keyframe_s,
        tags=tags,
        face_count=shot.face_count,
        transcript_text=text,
        keyframe_jpeg=shot.keyframe_jpeg,
        ocr_text=found.ocr_text,
        nudity_score=found.nudity_score,
        nudity_frame_s=found.nudity_frame_s,
        text_lines=found.text_lines,
        nudity_parts=found.nudity_parts,
    )
