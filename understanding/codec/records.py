"""Records of the internal Kafka topics (job state, jobs, results) in protobuf.

Messages are defined in protos/understanding/internal/v1/records.proto. Readers
also accept the JSON that earlier versions wrote (a record starting with `{`),
so a new worker reads what an old API replica produced during a rolling upgrade.
Vectors travel as packed float32 (the public Chunk.embedding), not decimal text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from understanding import codec
from understanding.domain import (
    Analysis,
    AnalysisOptions,
    BodyPart,
    Box,
    CategoryResult,
    Chunk,
    Decision,
    Evidence,
    ImageInfo,
    Job,
    JobError,
    JobSpec,
    JobState,
    Language,
    Modality,
    ModelRef,
    Moderation,
    Segment,
    Shot,
    Signal,
    Speaker,
    SpeechOptions,
    Tag,
    TextLine,
    Transcript,
    VideoInfo,
    VideoOptions,
    Word,
)
from understanding.internal.v1 import records_pb2


# ---------------------------------------------------------------- jobs
def job_spec_record(spec: JobSpec) -> records_pb2.JobSpecRecord:
    return records_pb2.JobSpecRecord(
        modality=codec.MODALITY_TO_PROTO[spec.modality],
        media_id=spec.media_id,
        text=spec.text,
        filename=spec.filename,
        blob=spec.blob,
        media_sha256=spec.media_sha256,
        metadata=dict(spec.metadata),
        speech=codec.speech_options_pb(spec.options.speech),
        video=codec.video_options_pb(spec.options.video),
        moderation=codec.moderation_options_pb(spec.options.moderation),
        image=codec.image_options_pb(spec.options.image),
    )


def job_spec_from_record(msg: records_pb2.JobSpecRecord) -> JobSpec:
    return JobSpec(
        modality=codec.MODALITY_FROM_PROTO[msg.modality],
        media_id=msg.media_id,
        text=msg.text,
        filename=msg.filename,
        blob=msg.blob,
        media_sha256=msg.media_sha256,
        options=AnalysisOptions(
            speech=codec.speech_options_from_pb(msg.speech),
            video=codec.video_options_from_pb(msg.video),
            moderation=codec.moderation_options_from_pb(msg.moderation),
            image=codec.image_options_from_pb(msg.image),
        ),
        metadata=dict(msg.metadata),
    )


def job_record(job: Job) -> records_pb2.JobRecord:
    msg = records_pb2.JobRecord(
        job_id=job.job_id,
        tenant=job.tenant,
        spec=job_spec_record(job.spec),
        state=job.state.value,
        created_at=job.created_at,
        idempotency_key=job.idempotency_key,
        fingerprint=job.fingerprint,
        progress=job.progress,
        stage=job.stage,
        attempts=job.attempts,
        started_at=job.started_at or 0.0,
        finished_at=job.finished_at or 0.0,
        not_before=job.not_before,
    )
    if job.error is not None:
        msg.error.CopyFrom(
            records_pb2.JobErrorRecord(code=job.error.code, message=job.error.message, retriable=job.error.retriable)
        )
    if job.result is not None:
        msg.result = job.result
    return msg


def job_from_record(msg: records_pb2.JobRecord) -> Job:
    return Job(
        job_id=msg.job_id,
        tenant=msg.tenant,
        spec=job_spec_from_record(msg.spec),
        state=JobState(msg.state),
        created_at=msg.created_at,
        idempotency_key=msg.idempotency_key,
        fingerprint=msg.fingerprint,
        progress=msg.progress,
        stage=msg.stage,
        attempts=msg.attempts,
        error=JobError(msg.error.code, msg.error.message, msg.error.retriable) if msg.HasField("error") else None,
        started_at=msg.started_at or None,
        finished_at=msg.finished_at or None,
        not_before=msg.not_before,
        result=msg.result if msg.HasField("result") else None,
    )


def encode_job(job: Job) -> bytes:
    data: bytes = job_record(job).SerializeToString()
    return data


def decode_job(value: bytes) -> Job:
    """A job state / jobs topic value (protobuf, or the JSON of earlier versions)."""
    if value[:1] == b"{":
        return _legacy_job(json.loads(value))
    return job_from_record(records_pb2.JobRecord.FromString(value))


# ---------------------------------------------------------------- analyses
def _tag_record(t: Tag) -> records_pb2.TagRecord:
    return records_pb2.TagRecord(label=t.label, group=t.group, score=t.score, start_s=t.start_s, end_s=t.end_s)


def _tag_from(t: records_pb2.TagRecord) -> Tag:
    return Tag(label=t.label, group=t.group, score=t.score, start_s=t.start_s, end_s=t.end_s)


def _language_record(language: Language | None) -> records_pb2.LanguageRecord | None:
    return (
        None if language is None else records_pb2.LanguageRecord(code=language.code, probability=language.probability)
    )


def _language_from(msg: records_pb2.LanguageRecord) -> Language:
    return Language(code=msg.code, probability=msg.probability)


def _box_record(b: Box) -> records_pb2.BoxRecord:
    return records_pb2.BoxRecord(x=b.x, y=b.y, width=b.width, height=b.height)


def _box_from(b: records_pb2.BoxRecord) -> Box:
    return Box(b.x, b.y, b.width, b.height)


def _line_record(line: TextLine) -> records_pb2.TextLineRecord:
    return records_pb2.TextLineRecord(text=line.text, score=line.score, box=_box_record(line.box), frame_s=line.frame_s)


def _line_from(r: records_pb2.TextLineRecord) -> TextLine:
    return TextLine(text=r.text, score=r.score, box=_box_from(r.box), frame_s=r.frame_s)


def _part_record(part: BodyPart) -> records_pb2.BodyPartRecord:
    return records_pb2.BodyPartRecord(
        label=part.label, score=part.score, box=_box_record(part.box), frame_s=part.frame_s
    )


def _part_from(r: records_pb2.BodyPartRecord) -> BodyPart:
    return BodyPart(label=r.label, score=r.score, box=_box_from(r.box), frame_s=r.frame_s)


def _image_record(i: ImageInfo) -> records_pb2.ImageRecord:
    return records_pb2.ImageRecord(
        width=i.width,
        height=i.height,
        format=i.format,
        color_mode=i.color_mode,
        frame_count=i.frame_count,
        face_count=i.face_count,
        nudity_score=i.nudity_score,
        nudity_parts=[_part_record(p) for p in i.nudity_parts],
        ocr_text=i.ocr_text,
        text_lines=[_line_record(line) for line in i.text_lines],
    )


def _image_from(r: records_pb2.ImageRecord) -> ImageInfo:
    return ImageInfo(
        width=r.width,
        height=r.height,
        format=r.format,
        color_mode=r.color_mode,
        frame_count=r.frame_count,
        face_count=r.face_count,
        nudity_score=r.nudity_score,
        nudity_parts=tuple(_part_from(p) for p in r.nudity_parts),
        ocr_text=r.ocr_text,
        text_lines=tuple(_line_from(line) for line in r.text_lines),
    )


def analysis_record(a: Analysis) -> records_pb2.AnalysisRecord:
    msg = records_pb2.AnalysisRecord(
        tenant=a.tenant,
        media_id=a.media_id,
        modality=codec.MODALITY_TO_PROTO[a.modality],
        language=_language_record(a.language),
        tags=[_tag_record(t) for t in a.tags],
        chunks=[
            records_pb2.ChunkRecord(
                index=c.index,
                text=c.text,
                embedding=np.asarray(c.embedding, dtype="<f4").tobytes(),
                tags=[_tag_record(t) for t in c.tags],
                start_s=c.start_s,
                end_s=c.end_s,
                language=_language_record(c.language),
                extra_json=json.dumps(dict(c.extra), separators=(",", ":")) if c.extra else "",
                speakers=list(c.speakers),
            )
            for c in a.chunks
        ],
        embedding_model=codec.model_pb(a.embedding_model),
        created_at=a.created_at,
        version=a.version,
        metadata=dict(a.metadata),
        shots=[
            records_pb2.ShotRecord(
                index=s.index,
                start_s=s.start_s,
                end_s=s.end_s,
                keyframe_s=s.keyframe_s,
                tags=[_tag_record(t) for t in s.tags],
                face_count=s.face_count,
                transcript_text=s.transcript_text,
                keyframe_jpeg=s.keyframe_jpeg,
                ocr_text=s.ocr_text,
                nudity_score=s.nudity_score,
                nudity_frame_s=s.nudity_frame_s,
                text_lines=[_line_record(line) for line in s.text_lines],
                nudity_parts=[_part_record(p) for p in s.nudity_parts],
            )
            for s in a.shots
        ],
        visual_models=[codec.model_pb(m) for m in a.visual_models],
    )
    if a.image is not None:
        msg.image.CopyFrom(_image_record(a.image))
    if a.transcript is not None:
        t = a.transcript
        msg.transcript.CopyFrom(
            records_pb2.TranscriptRecord(
                segments=[
                    records_pb2.SegmentRecord(
                        index=s.index,
                        start_s=s.start_s,
                        end_s=s.end_s,
                        text=s.text,
                        avg_logprob=s.avg_logprob,
                        no_speech_prob=s.no_speech_prob,
                        words=[
                            records_pb2.WordRecord(
                                text=w.text,
                                start_s=w.start_s,
                                end_s=w.end_s,
                                probability=w.probability,
                                speaker=w.speaker,
                            )
                            for w in s.words
                        ],
                        speaker=s.speaker,
                        language=_language_record(s.language),
                    )
                    for s in t.segments
                ],
                language=_language_record(t.language),
                duration_s=t.duration_s,
                task=t.task,
                model=codec.model_pb(t.model),
                speakers=[
                    records_pb2.SpeakerRecord(label=x.label, speaking_s=x.speaking_s, turns=x.turns, channel=x.channel)
                    for x in t.speakers
                ],
                speaker_method=t.speaker_method,
            )
        )
        if t.speaker_model is not None:
            msg.transcript.speaker_model.CopyFrom(codec.model_pb(t.speaker_model))
    if a.moderation is not None:
        msg.moderation.CopyFrom(_moderation_record(a.moderation))
    msg.signals.extend(
        records_pb2.SignalRecord(
            category=x.category, score=x.score, evidence=_evidence_record(x.evidence), zero_shot=x.zero_shot
        )
        for x in a.signals
    )
    if a.video is not None:
        v = a.video
        msg.video.CopyFrom(
            records_pb2.VideoRecord(
                duration_s=v.duration_s,
                fps=v.fps,
                width=v.width,
                height=v.height,
                codec=v.codec,
                has_audio=v.has_audio,
                frames_decoded=v.frames_decoded,
                frames_analyzed=v.frames_analyzed,
            )
        )
    return msg


def analysis_from_record(msg: records_pb2.AnalysisRecord) -> Analysis:
    t, v = msg.transcript, msg.video
    return Analysis(
        tenant=msg.tenant,
        media_id=msg.media_id,
        modality=codec.MODALITY_FROM_PROTO[msg.modality],
        language=_language_from(msg.language) if msg.HasField("language") else None,
        tags=tuple(_tag_from(x) for x in msg.tags),
        chunks=tuple(
            Chunk(
                index=c.index,
                text=c.text,
                embedding=np.frombuffer(c.embedding, dtype="<f4").astype(np.float32),
                tags=tuple(_tag_from(x) for x in c.tags),
                start_s=c.start_s,
                end_s=c.end_s,
                language=_language_from(c.language) if c.HasField("language") else None,
                extra=json.loads(c.extra_json) if c.extra_json else {},
                speakers=tuple(c.speakers),
            )
            for c in msg.chunks
        ),
        embedding_model=codec.model_from_pb(msg.embedding_model),
        created_at=msg.created_at,
        version=msg.version,
        metadata=dict(msg.metadata),
        transcript=Transcript(
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
                    language=_language_from(s.language) if s.HasField("language") else None,
                )
                for s in t.segments
            ),
            language=_language_from(t.language),
            duration_s=t.duration_s,
            task=t.task,
            model=codec.model_from_pb(t.model),
            speakers=tuple(Speaker(x.label, x.speaking_s, x.turns, x.channel) for x in t.speakers),
            speaker_model=codec.model_from_pb(t.speaker_model) if t.HasField("speaker_model") else None,
            speaker_method=t.speaker_method,
        )
        if msg.HasField("transcript")
        else None,
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
                tags=tuple(_tag_from(x) for x in s.tags),
                face_count=s.face_count,
                transcript_text=s.transcript_text,
                keyframe_jpeg=s.keyframe_jpeg,
                ocr_text=s.ocr_text,
                nudity_score=s.nudity_score,
                nudity_frame_s=s.nudity_frame_s,
                text_lines=tuple(_line_from(line) for line in s.text_lines),
                nudity_parts=tuple(_part_from(p) for p in s.nudity_parts),
            )
            for s in msg.shots
        ),
        signals=tuple(
            Signal(category=x.category, score=x.score, evidence=_evidence_from(x.evidence), zero_shot=x.zero_shot)
            for x in msg.signals
        ),
        moderation=_moderation_from(msg.moderation) if msg.HasField("moderation") else None,
        image=_image_from(msg.image) if msg.HasField("image") else None,
        visual_models=tuple(codec.model_from_pb(m) for m in msg.visual_models),
    )


# ---------------------------------------------------------------- moderation
def _evidence_record(e: Evidence) -> records_pb2.EvidenceRecord:
    msg = records_pb2.EvidenceRecord(
        modality=codec.MODALITY_TO_PROTO[e.modality],
        model=codec.model_pb(e.model),
        start_s=e.start_s,
        end_s=e.end_s,
        box=list(e.box) if e.box is not None else [],
        text=e.text,
        span=list(e.span) if e.span is not None else [],
        speaker=e.speaker,
        detail=e.detail,
        score=e.score,
        redacted=e.redacted,
        zero_shot=e.zero_shot,
    )
    if e.frame_s is not None:
        msg.frame_s = e.frame_s
    if e.chunk_index is not None:
        msg.chunk_index = e.chunk_index
    return msg


def _evidence_from(msg: records_pb2.EvidenceRecord) -> Evidence:
    box = tuple(msg.box)
    span = tuple(msg.span)
    return Evidence(
        modality=codec.MODALITY_FROM_PROTO[msg.modality],
        model=codec.model_from_pb(msg.model),
        start_s=msg.start_s,
        end_s=msg.end_s,
        frame_s=msg.frame_s if msg.HasField("frame_s") else None,
        box=(box[0], box[1], box[2], box[3]) if len(box) == 4 else None,
        text=msg.text,
        span=(span[0], span[1]) if len(span) == 2 else None,
        chunk_index=msg.chunk_index if msg.HasField("chunk_index") else None,
        speaker=msg.speaker,
        detail=msg.detail,
        score=msg.score,
        redacted=msg.redacted,
        zero_shot=msg.zero_shot,
    )


def _moderation_record(m: Moderation) -> records_pb2.ModerationRecord:
    return records_pb2.ModerationRecord(
        decision=m.decision.value,
        policy=m.policy,
        policy_version=m.policy_version,
        categories=[
            records_pb2.CategoryRecord(
                category=c.category,
                score=c.score,
                severity=c.severity.value,
                evidence=[_evidence_record(e) for e in c.evidence],
            )
            for c in m.categories
        ],
    )


def _moderation_from(msg: records_pb2.ModerationRecord) -> Moderation:
    return Moderation(
        decision=Decision(msg.decision),
        policy=msg.policy,
        policy_version=msg.policy_version,
        categories=tuple(
            CategoryResult(
                category=c.category,
                score=c.score,
                severity=Decision(c.severity),
                evidence=tuple(_evidence_from(e) for e in c.evidence),
            )
            for c in msg.categories
        ),
    )


def encode_result(job: Job, analysis: Analysis) -> bytes:
    """A results topic value: the job (as the worker saw it) and its lossless analysis."""
    data: bytes = records_pb2.ResultRecord(job=job_record(job), analysis=analysis_record(analysis)).SerializeToString()
    return data


def decode_result(value: bytes) -> tuple[Job, Analysis]:
    if value[:1] == b"{":
        doc = json.loads(value)
        return _legacy_job(doc["job"]), _legacy_analysis(doc["analysis"])
    msg = records_pb2.ResultRecord.FromString(value)
    return job_from_record(msg.job), analysis_from_record(msg.analysis)


# ---------------------------------------------------------------- JSON of earlier versions
def _legacy_spec(doc: Mapping[str, Any]) -> JobSpec:
    options = doc.get("options", {})
    speech, video = options.get("speech") or {}, options.get("video") or {}
    return JobSpec(
        modality=Modality(doc["modality"]),
        media_id=doc["media_id"],
        text=doc.get("text", ""),
        filename=doc.get("filename", ""),
        blob=doc.get("blob", ""),
        media_sha256=doc.get("media_sha256", ""),
        options=AnalysisOptions(
            speech=SpeechOptions(**speech),
            video=VideoOptions(
                sample_fps=video.get("sample_fps") or None,
                return_keyframes=bool(video.get("return_keyframes", False)),
                skip_audio=bool(video.get("skip_audio", False)),
            ),
        ),
        metadata=dict(options.get("metadata", {})),
    )


def _legacy_job(doc: Mapping[str, Any]) -> Job:
    err, result = doc.get("error"), doc.get("result")
    return Job(
        job_id=doc["job_id"],
        tenant=doc["tenant"],
        spec=_legacy_spec(doc["spec"]),
        state=JobState(doc["state"]),
        created_at=float(doc["created_at"]),
        idempotency_key=doc.get("idempotency_key", ""),
        fingerprint=doc.get("fingerprint", ""),
        progress=float(doc.get("progress", 0.0)),
        stage=doc.get("stage", ""),
        attempts=int(doc.get("attempts", 0)),
        error=None if err is None else JobError(err[0], err[1], bool(err[2])),
        started_at=doc.get("started_at"),
        finished_at=doc.get("finished_at"),
        not_before=float(doc.get("not_before", 0.0)),
        result=None if result is None else base64.b64decode(result),
    )


def _tag(d: list[Any]) -> Tag:
    return Tag(label=d[0], group=d[1], score=float(d[2]), start_s=float(d[3]), end_s=float(d[4]))


def _lang(d: list[Any] | None) -> Language | None:
    return None if d is None else Language(code=d[0], probability=float(d[1]))


def _legacy_analysis(doc: Mapping[str, Any]) -> Analysis:
    t, v = doc.get("transcript"), doc.get("video")
    return Analysis(
        tenant=doc["tenant"],
        media_id=doc["media_id"],
        modality=Modality(doc["modality"]),
        language=_lang(doc.get("language")),
        tags=tuple(_tag(x) for x in doc["tags"]),
        chunks=tuple(
            Chunk(
                index=int(c["index"]),
                text=c["text"],
                embedding=np.frombuffer(base64.b64decode(c["embedding"]), dtype="<f4").astype(np.float32),
                tags=tuple(_tag(x) for x in c["tags"]),
                start_s=float(c["start_s"]),
                end_s=float(c["end_s"]),
                language=_lang(c.get("language")),
                extra=dict(c.get("extra") or {}),
            )
            for c in doc["chunks"]
        ),
        embedding_model=ModelRef(*doc["embedding_model"]),
        created_at=float(doc["created_at"]),
        version=int(doc["version"]),
        metadata=dict(doc.get("metadata") or {}),
        transcript=None
        if t is None
        else Transcript(
            segments=tuple(
                Segment(
                    index=int(s["index"]),
                    start_s=float(s["start_s"]),
                    end_s=float(s["end_s"]),
                    text=s["text"],
                    avg_logprob=float(s["avg_logprob"]),
                    no_speech_prob=float(s["no_speech_prob"]),
                    words=tuple(Word(w[0], float(w[1]), float(w[2]), float(w[3])) for w in s["words"]),
                )
                for s in t["segments"]
            ),
            language=_lang(t["language"]) or Language("und", 0.0),
            duration_s=float(t["duration_s"]),
            task=t["task"],
            model=ModelRef(*t["model"]),
        ),
        video=None
        if v is None
        else VideoInfo(float(v[0]), float(v[1]), int(v[2]), int(v[3]), v[4], bool(v[5]), int(v[6]), int(v[7])),
        shots=tuple(
            Shot(
                index=int(s["index"]),
                start_s=float(s["start_s"]),
                end_s=float(s["end_s"]),
                keyframe_s=float(s["keyframe_s"]),
                tags=tuple(_tag(x) for x in s["tags"]),
                face_count=int(s["face_count"]),
                transcript_text=s["transcript_text"],
                keyframe_jpeg=base64.b64decode(s["keyframe_jpeg"]),
            )
            for s in doc.get("shots") or ()
        ),
    )
