"""Domain <-> public protobuf conversion, shared by the gRPC edge and the events.

This package (with `records` for the internal topics) is, with api/ and the
client SDK, the only code that imports the generated stubs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from understanding.domain import (
    Analysis,
    BodyPart,
    Box,
    CategoryResult,
    ChannelMode,
    Chunk,
    Decision,
    Evidence,
    ImageInfo,
    ImageOptions,
    InvalidInput,
    Job,
    Language,
    Modality,
    ModelRef,
    Moderation,
    ModerationOptions,
    Segment,
    Shot,
    Speaker,
    SpeechOptions,
    Tag,
    TextLine,
    Transcript,
    VideoInfo,
    VideoOptions,
    Word,
    language_code,
    point_id,
)
from understanding.v1 import common_pb2, events_pb2, jobs_pb2, moderation_pb2, understanding_pb2

SCHEMA_VERSION = 1
CONTENT_TYPE = b"application/x-protobuf"

MODALITY_TO_PROTO = {
    Modality.TEXT: common_pb2.MODALITY_TEXT,
    Modality.SPEECH: common_pb2.MODALITY_SPEECH,
    Modality.VIDEO: common_pb2.MODALITY_VIDEO,
    Modality.IMAGE: common_pb2.MODALITY_IMAGE,
}
MODALITY_FROM_PROTO = {v: k for k, v in MODALITY_TO_PROTO.items()}


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def tag_pb(tag: Tag) -> common_pb2.Tag:
    return common_pb2.Tag(label=tag.label, group=tag.group, score=tag.score, start_s=tag.start_s, end_s=tag.end_s)


def tags_pb(tags: Iterable[Tag]) -> list[common_pb2.Tag]:
    return [tag_pb(t) for t in tags]


def language_pb(language: Language | None) -> common_pb2.Language | None:
    if language is None:
        return None
    return common_pb2.Language(code=language.code, probability=language.probability)


def model_pb(model: ModelRef) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=model.name, version=model.version)


def chunk_pb(analysis: Analysis, chunk: Chunk, *, with_embedding: bool) -> common_pb2.Chunk:
    return common_pb2.Chunk(
        index=chunk.index,
        text=chunk.text,
        start_s=chunk.start_s,
        end_s=chunk.end_s,
        embedding=[float(x) for x in chunk.embedding] if with_embedding else [],
        tags=tags_pb(chunk.tags),
        point_id=point_id(analysis.tenant, analysis.media_id, analysis.modality, chunk.index),
        language=language_pb(chunk.language or analysis.language),
        speakers=list(chunk.speakers),
    )


def segment_pb(segment: Segment) -> common_pb2.Segment:
    return common_pb2.Segment(
        index=segment.index,
        start_s=segment.start_s,
        end_s=segment.end_s,
        text=segment.text,
        avg_logprob=segment.avg_logprob,
        no_speech_prob=segment.no_speech_prob,
        words=[
            common_pb2.Word(text=w.text, start_s=w.start_s, end_s=w.end_s, probability=w.probability, speaker=w.speaker)
            for w in segment.words
        ],
        language=language_pb(segment.language),
        speaker=segment.speaker,
    )


def speaker_pb(speaker: Speaker) -> common_pb2.Speaker:
    return common_pb2.Speaker(
        label=speaker.label, speaking_s=speaker.speaking_s, turns=speaker.turns, channel=speaker.channel
    )


def transcript_pb(transcript: Transcript) -> common_pb2.Transcript:
    msg = common_pb2.Transcript(
        segments=[segment_pb(s) for s in transcript.segments],
        language=language_pb(transcript.language),
        duration_s=transcript.duration_s,
        task=transcript.task,
        model=model_pb(transcript.model),
        speakers=[speaker_pb(s) for s in transcript.speakers],
        speaker_method=transcript.speaker_method,
    )
    if transcript.speaker_model is not None:
        msg.speaker_model.CopyFrom(model_pb(transcript.speaker_model))
    return msg


def video_pb(info: VideoInfo) -> common_pb2.VideoInfo:
    return common_pb2.VideoInfo(
        duration_s=info.duration_s,
        fps=info.fps,
        width=info.width,
        height=info.height,
        codec=info.codec,
        has_audio=info.has_audio,
        frames_decoded=info.frames_decoded,
        frames_analyzed=info.frames_analyzed,
    )


def box_pb(box: Box) -> common_pb2.Box:
    return common_pb2.Box(x=box.x, y=box.y, width=box.width, height=box.height)


def text_line_pb(line: TextLine) -> common_pb2.TextLine:
    return common_pb2.TextLine(text=line.text, score=line.score, box=box_pb(line.box), frame_s=line.frame_s)


def body_part_pb(part: BodyPart) -> common_pb2.BodyPart:
    return common_pb2.BodyPart(label=part.label, score=part.score, box=box_pb(part.box), frame_s=part.frame_s)


def image_pb(info: ImageInfo) -> common_pb2.ImageInfo:
    return common_pb2.ImageInfo(
        width=info.width,
        height=info.height,
        format=info.format,
        color_mode=info.color_mode,
        frame_count=info.frame_count,
        face_count=info.face_count,
        nudity_score=info.nudity_score,
        nudity_parts=[body_part_pb(p) for p in info.nudity_parts],
        ocr_text=info.ocr_text,
        text_lines=[text_line_pb(line) for line in info.text_lines],
    )


def shot_pb(shot: Shot, *, with_keyframe: bool) -> common_pb2.Shot:
    return common_pb2.Shot(
        index=shot.index,
        start_s=shot.start_s,
        end_s=shot.end_s,
        keyframe_s=shot.keyframe_s,
        keyframe_jpeg=shot.keyframe_jpeg if with_keyframe else b"",
        tags=tags_pb(shot.tags),
        transcript_text=shot.transcript_text,
        face_count=shot.face_count,
        ocr_text=shot.ocr_text,
        nudity_score=shot.nudity_score,
        nudity_frame_s=shot.nudity_frame_s,
        text_lines=[text_line_pb(line) for line in shot.text_lines],
        nudity_parts=[body_part_pb(p) for p in shot.nudity_parts],
    )


def analysis_pb(
    analysis: Analysis, *, with_embeddings: bool = False, with_keyframes: bool = False
) -> common_pb2.Analysis:
    msg = common_pb2.Analysis(
        media_id=analysis.media_id,
        tenant=analysis.tenant,
        modality=MODALITY_TO_PROTO[analysis.modality],
        tags=tags_pb(analysis.tags),
        chunks=[chunk_pb(analysis, c, with_embedding=with_embeddings) for c in analysis.chunks],
        embedding_model=model_pb(analysis.embedding_model),
        created_at=timestamp(analysis.created_at),
        version=analysis.version,
        metadata=dict(analysis.metadata),
        shots=[shot_pb(s, with_keyframe=with_keyframes) for s in analysis.shots],
        visual_models=[model_pb(m) for m in analysis.visual_models],
    )
    if analysis.image is not None:
        msg.image.CopyFrom(image_pb(analysis.image))
    if analysis.language is not None:
        msg.language.CopyFrom(language_pb(analysis.language))
    if analysis.transcript is not None:
        msg.transcript.CopyFrom(transcript_pb(analysis.transcript))
    if analysis.video is not None:
        msg.video.CopyFrom(video_pb(analysis.video))
    if analysis.moderation is not None:
        msg.moderation.CopyFrom(moderation_pb(analysis.moderation))
    return msg


def event_id_for(analysis: Analysis) -> str:
    """Stable per result: the same (tenant, media, version) always gets the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"analysis/{analysis.tenant}/{analysis.media_id}/{analysis.version}"))


def analysis_event(analysis: Analysis, *, collection: str, produced_at: float) -> events_pb2.AnalysisEvent:
    return events_pb2.AnalysisEvent(
        event_id=event_id_for(analysis),
        schema_version=SCHEMA_VERSION,
        produced_at=timestamp(produced_at),
        analysis=analysis_pb(analysis),
        collection=collection,
    )


def media_deleted_event(
    tenant: str, media_id: str, deleted: int, *, produced_at: float
) -> events_pb2.MediaDeletedEvent:
    return events_pb2.MediaDeletedEvent(
        event_id=str(uuid.uuid4()),
        schema_version=SCHEMA_VERSION,
        produced_at=timestamp(produced_at),
        tenant=tenant,
        media_id=media_id,
        points_deleted=deleted,
    )


_JOB_STATES = {
    "QUEUED": jobs_pb2.JOB_STATE_QUEUED,
    "RUNNING": jobs_pb2.JOB_STATE_RUNNING,
    "SUCCEEDED": jobs_pb2.JOB_STATE_SUCCEEDED,
    "FAILED": jobs_pb2.JOB_STATE_FAILED,
    "CANCELLED": jobs_pb2.JOB_STATE_CANCELLED,
}
JOB_STATE_FROM_PROTO = {v: k for k, v in _JOB_STATES.items()}


def job_pb(job: Job, *, with_result: bool = True) -> jobs_pb2.Job:
    msg = jobs_pb2.Job(
        job_id=job.job_id,
        tenant=job.tenant,
        media_id=job.spec.media_id,
        modality=MODALITY_TO_PROTO[job.spec.modality],
        state=_JOB_STATES[job.state.value],
        progress=jobs_pb2.JobProgress(fraction=job.progress, stage=job.stage),
        attempts=job.attempts,
        created_at=timestamp(job.created_at),
        idempotency_key=job.idempotency_key,
    )
    if job.started_at is not None:
        msg.started_at.CopyFrom(timestamp(job.started_at))
    if job.finished_at is not None:
        msg.finished_at.CopyFrom(timestamp(job.finished_at))
    if job.error is not None:
        msg.error.CopyFrom(
            jobs_pb2.JobError(code=job.error.code, message=job.error.message, retriable=job.error.retriable)
        )
    if with_result and job.result:
        msg.result.ParseFromString(job.result)
    return msg


def job_event(job: Job, *, produced_at: float) -> events_pb2.JobEvent:
    """Terminal-state event; the id is stable per (job, state) so redeliveries dedupe."""
    return events_pb2.JobEvent(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"job/{job.job_id}/{job.state.value}")),
        schema_version=SCHEMA_VERSION,
        produced_at=timestamp(produced_at),
        job=job_pb(job),
    )


# ---------------------------------------------------------------- protobuf -> domain
def tag_from_pb(msg: common_pb2.Tag) -> Tag:
    return Tag(label=msg.label, group=msg.group, score=msg.score, start_s=msg.start_s, end_s=msg.end_s)


def language_from_pb(msg: common_pb2.Language) -> Language:
    return Language(code=msg.code, probability=msg.probability)


def model_from_pb(msg: common_pb2.ModelRef) -> ModelRef:
    return ModelRef(name=msg.name, version=msg.version)


def speaker_from_pb(msg: common_pb2.Speaker) -> Speaker:
    return Speaker(label=msg.label, speaking_s=msg.speaking_s, turns=msg.turns, channel=msg.channel)


def transcript_from_pb(msg: common_pb2.Transcript) -> Transcript:
    return Transcript(
        segments=tuple(
            Segment(
                index=s.index,
                start_s=s.start_s,
                end_s=s.end_s,
                text=s.text,
                avg_logprob=s.avg_logprob,
                no_speech_prob=s.no_speech_prob,
                words=tuple(Word(w.text, w.start_s, w.end_s, w.probability, w.speaker) for w in s.words),
                speaker=s.speaker,
                language=language_from_pb(s.language) if s.HasField("language") else None,
            )
            for s in msg.segments
        ),
        language=language_from_pb(msg.language),
        duration_s=msg.duration_s,
        task=msg.task,
        model=model_from_pb(msg.model),
        speakers=tuple(speaker_from_pb(s) for s in msg.speakers),
        speaker_model=model_from_pb(msg.speaker_model) if msg.HasField("speaker_model") else None,
        speaker_method=msg.speaker_method,
    )


def box_from_pb(msg: common_pb2.Box) -> Box:
    return Box(msg.x, msg.y, msg.width, msg.height)


def text_line_from_pb(msg: common_pb2.TextLine) -> TextLine:
    return TextLine(text=msg.text, score=msg.score, box=box_from_pb(msg.box), frame_s=msg.frame_s)


def body_part_from_pb(msg: common_pb2.BodyPart) -> BodyPart:
    return BodyPart(label=msg.label, score=msg.score, box=box_from_pb(msg.box), frame_s=msg.frame_s)


def image_from_pb(msg: common_pb2.ImageInfo) -> ImageInfo:
    return ImageInfo(
        width=msg.width,
        height=msg.height,
        format=msg.format,
        color_mode=msg.color_mode,
        frame_count=msg.frame_count,
        face_count=msg.face_count,
        nudity_score=msg.nudity_score,
        nudity_parts=tuple(body_part_from_pb(p) for p in msg.nudity_parts),
        ocr_text=msg.ocr_text,
        text_lines=tuple(text_line_from_pb(line) for line in msg.text_lines),
    )


def analysis_from_pb(msg: common_pb2.Analysis) -> Analysis:
    """The inverse of `analysis_pb(..., with_embeddings=True, with_keyframes=True)`, up to what
    the public message leaves out (the chunks' extra payload: see `codec.records`)."""
    v = msg.video
    return Analysis(
        tenant=msg.tenant,
        media_id=msg.media_id,
        modality=MODALITY_FROM_PROTO[msg.modality],
        language=language_from_pb(msg.language) if msg.HasField("language") else None,
        tags=tuple(tag_from_pb(t) for t in msg.tags),
        chunks=tuple(
            Chunk(
                index=c.index,
                text=c.text,
                embedding=np.asarray(c.embedding, dtype=np.float32),
                tags=tuple(tag_from_pb(t) for t in c.tags),
                start_s=c.start_s,
                end_s=c.end_s,
                language=language_from_pb(c.language) if c.HasField("language") else None,
                speakers=tuple(c.speakers),
            )
            for c in msg.chunks
        ),
        embedding_model=model_from_pb(msg.embedding_model),
        created_at=msg.created_at.ToNanoseconds() / 1e9,
        version=msg.version,
        metadata=dict(msg.metadata),
        transcript=transcript_from_pb(msg.transcript) if msg.HasField("transcript") else None,
        video=VideoInfo(
            v.duration_s, v.fps, v.width, v.height, v.codec, v.has_audio, v.frames_decoded, v.frames_analyzed
        )
        if msg.HasField("video")
        else None,
        shots=tuple(
            Shot(
                index=s.index,
                start_s=s.start_s,
                end_s=s.end_s,
                keyframe_s=s.keyframe_s,
                tags=tuple(tag_from_pb(t) for t in s.tags),
                face_count=s.face_count,
                transcript_text=s.transcript_text,
                keyframe_jpeg=s.keyframe_jpeg,
                ocr_text=s.ocr_text,
                nudity_score=s.nudity_score,
                nudity_frame_s=s.nudity_frame_s,
                text_lines=tuple(text_line_from_pb(line) for line in s.text_lines),
                nudity_parts=tuple(body_part_from_pb(p) for p in s.nudity_parts),
            )
            for s in msg.shots
        ),
        moderation=moderation_from_pb(msg.moderation) if msg.HasField("moderation") else None,
        image=image_from_pb(msg.image) if msg.HasField("image") else None,
        visual_models=tuple(model_from_pb(m) for m in msg.visual_models),
    )


# ---------------------------------------------------------------- options
_TASK_FROM_PROTO = {
    understanding_pb2.SPEECH_TASK_UNSPECIFIED: "transcribe",
    understanding_pb2.SPEECH_TASK_TRANSCRIBE: "transcribe",
    understanding_pb2.SPEECH_TASK_TRANSLATE: "translate",
}
_TASK_TO_PROTO = {
    "transcribe": understanding_pb2.SPEECH_TASK_TRANSCRIBE,
    "translate": understanding_pb2.SPEECH_TASK_TRANSLATE,
}


_CHANNELS_FROM_PROTO: dict[int, ChannelMode] = {
    understanding_pb2.CHANNEL_MODE_UNSPECIFIED: "auto",
    understanding_pb2.CHANNEL_MODE_AUTO: "auto",
    understanding_pb2.CHANNEL_MODE_MIX: "mix",
    understanding_pb2.CHANNEL_MODE_SEPARATE: "separate",
}
_CHANNELS_TO_PROTO = {
    "auto": understanding_pb2.CHANNEL_MODE_AUTO,
    "mix": understanding_pb2.CHANNEL_MODE_MIX,
    "separate": understanding_pb2.CHANNEL_MODE_SEPARATE,
}


def speech_options_from_pb(msg: understanding_pb2.SpeechOptions) -> SpeechOptions:
    """Validated domain options (raises `InvalidInput` naming `speech.<field>`).

    An explicit `num_speakers` of 0 is refused like any value outside 1..32:
    leaving the field out is how a caller asks to detect the count.
    """
    from understanding.domain import InvalidInput

    if msg.task not in _TASK_FROM_PROTO:
        raise InvalidInput(f"unknown task {msg.task}", field="speech.task")
    if msg.channels not in _CHANNELS_FROM_PROTO:
        raise InvalidInput(f"unknown channel mode {msg.channels}", field="speech.channels")
    return SpeechOptions(
        language=language_code(msg.language),
        task=_TASK_FROM_PROTO[msg.task],  # type: ignore[arg-type]
        word_timestamps=msg.word_timestamps,
        vad=not msg.disable_vad,
        initial_prompt=msg.initial_prompt or None,
        hotwords=msg.hotwords or None,
        beam_size=msg.beam_size or 5,
        diarize=not msg.disable_diarization,
        num_speakers=msg.num_speakers if msg.HasField("num_speakers") else None,
        channels=_CHANNELS_FROM_PROTO[msg.channels],
    )


def speech_options_pb(options: SpeechOptions) -> understanding_pb2.SpeechOptions:
    msg = understanding_pb2.SpeechOptions(
        language=options.language or "",
        task=_TASK_TO_PROTO[options.task],
        word_timestamps=options.word_timestamps,
        disable_vad=not options.vad,
        initial_prompt=options.initial_prompt or "",
        hotwords=options.hotwords or "",
        beam_size=options.beam_size,
        disable_diarization=not options.diarize,
        channels=_CHANNELS_TO_PROTO[options.channels],
    )
    if options.num_speakers is not None:
        msg.num_speakers = options.num_speakers
    return msg


def video_options_from_pb(msg: understanding_pb2.VideoOptions) -> VideoOptions:
    """Validated domain options; `sample_fps` 0 means the server default."""
    return VideoOptions(
        sample_fps=msg.sample_fps or None, return_keyframes=msg.return_keyframes, skip_audio=msg.skip_audio
    )


def video_options_pb(options: VideoOptions) -> understanding_pb2.VideoOptions:
    return understanding_pb2.VideoOptions(
        sample_fps=options.sample_fps or 0.0, return_keyframes=options.return_keyframes, skip_audio=options.skip_audio
    )


# ---------------------------------------------------------------- moderation
DECISION_TO_PROTO = {
    Decision.ALLOW: common_pb2.DECISION_ALLOW,
    Decision.REVIEW: common_pb2.DECISION_REVIEW,
    Decision.BLOCK: common_pb2.DECISION_BLOCK,
}
DECISION_FROM_PROTO = {v: k for k, v in DECISION_TO_PROTO.items()}


def evidence_pb(evidence: Evidence) -> common_pb2.Evidence:
    msg = common_pb2.Evidence(
        modality=MODALITY_TO_PROTO.get(evidence.modality, common_pb2.MODALITY_UNSPECIFIED),
        model=model_pb(evidence.model),
        start_s=evidence.start_s,
        end_s=evidence.end_s,
        text=evidence.text,
        speaker=evidence.speaker,
        detail=evidence.detail,
        score=evidence.score,
        redacted=evidence.redacted,
        zero_shot=evidence.zero_shot,
    )
    if evidence.frame_s is not None:
        msg.frame_s = evidence.frame_s
    if evidence.box is not None:
        x, y, width, height = evidence.box
        msg.box.CopyFrom(common_pb2.Box(x=x, y=y, width=width, height=height))
    if evidence.span is not None:
        msg.span.CopyFrom(common_pb2.TextSpan(start=evidence.span[0], end=evidence.span[1]))
    if evidence.chunk_index is not None:
        msg.chunk_index = evidence.chunk_index
    return msg


def moderation_pb(moderation: Moderation) -> common_pb2.Moderation:
    return common_pb2.Moderation(
        decision=DECISION_TO_PROTO[moderation.decision],
        policy=moderation.policy,
        policy_version=moderation.policy_version,
        categories=[
            common_pb2.CategoryResult(
                category=c.category,
                score=c.score,
                severity=DECISION_TO_PROTO[c.severity],
                evidence=[evidence_pb(e) for e in c.evidence],
            )
            for c in moderation.categories
        ],
    )


def evidence_from_pb(msg: common_pb2.Evidence) -> Evidence:
    return Evidence(
        modality=MODALITY_FROM_PROTO.get(msg.modality, Modality.TEXT),
        model=model_from_pb(msg.model),
        start_s=msg.start_s,
        end_s=msg.end_s,
        frame_s=msg.frame_s if msg.HasField("frame_s") else None,
        box=(msg.box.x, msg.box.y, msg.box.width, msg.box.height) if msg.HasField("box") else None,
        text=msg.text,
        span=(msg.span.start, msg.span.end) if msg.HasField("span") else None,
        chunk_index=msg.chunk_index if msg.HasField("chunk_index") else None,
        speaker=msg.speaker,
        detail=msg.detail,
        score=msg.score,
        redacted=msg.redacted,
        zero_shot=msg.zero_shot,
    )


def moderation_from_pb(msg: common_pb2.Moderation) -> Moderation:
    return Moderation(
        decision=DECISION_FROM_PROTO.get(msg.decision, Decision.ALLOW),
        policy=msg.policy,
        policy_version=msg.policy_version,
        categories=tuple(
            CategoryResult(
                category=c.category,
                score=c.score,
                severity=DECISION_FROM_PROTO.get(c.severity, Decision.ALLOW),
                evidence=tuple(evidence_from_pb(e) for e in c.evidence),
            )
            for c in msg.categories
        ),
    )


def moderation_event_id(tenant: str, media_id: str, version: int, *, window: tuple[float, float] | None = None) -> str:
    """Stable per verdict: a final one per (tenant, media, version), a partial one per window."""
    suffix = "" if window is None else f"/window/{window[0]:.3f}-{window[1]:.3f}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"moderation/{tenant}/{media_id}/{version}{suffix}"))


def moderation_event(
    *,
    tenant: str,
    media_id: str,
    modality: Modality,
    version: int,
    moderation: Moderation,
    produced_at: float,
    metadata: dict[str, str] | None = None,
    window: tuple[float, float] | None = None,
) -> moderation_pb2.ModerationEvent:
    """A final verdict (`window` None) or a live window's partial one."""
    msg = moderation_pb2.ModerationEvent(
        event_id=moderation_event_id(tenant, media_id, version, window=window),
        schema_version=SCHEMA_VERSION,
        produced_at=timestamp(produced_at),
        tenant=tenant,
        media_id=media_id,
        modality=MODALITY_TO_PROTO.get(modality, common_pb2.MODALITY_UNSPECIFIED),
        version=version,
        moderation=moderation_pb(moderation),
        partial=window is not None,
        metadata=dict(metadata or {}),
    )
    if window is not None:
        msg.window_start_s, msg.window_end_s = window
    return msg


def moderation_options_from_pb(msg: understanding_pb2.ModerationOptions) -> ModerationOptions:
    """Validated options (InvalidInput naming `moderation.policy`)."""
    policy = msg.policy.strip()
    if msg.policy and not policy:
        raise InvalidInput("must not be blank", field="moderation.policy")
    return ModerationOptions(policy=policy or None, redact_pii=msg.redact_pii)


def moderation_options_pb(options: ModerationOptions) -> understanding_pb2.ModerationOptions:
    return understanding_pb2.ModerationOptions(policy=options.policy or "", redact_pii=options.redact_pii)


def image_options_from_pb(msg: understanding_pb2.ImageOptions) -> ImageOptions:
    return ImageOptions(skip_ocr=msg.skip_ocr, skip_nudity=msg.skip_nudity)


def image_options_pb(options: ImageOptions) -> understanding_pb2.ImageOptions:
    return understanding_pb2.ImageOptions(skip_ocr=options.skip_ocr, skip_nudity=options.skip_nudity)
