"""A finished analysis as plain JSON, for the results topic (worker -> store owner).

Lossless for what the store and the analysis event need (vectors, chunk
language and extra payload, keyframes), unlike the public protobuf which leaves
some of it out. Vectors travel as base64 little-endian float32, so a record is
about 1.4x the raw vector size rather than 5x as a JSON list of numbers.
"""

from __future__ import annotations

import base64
from typing import Any, Mapping

import numpy as np

from understanding.domain import (
    Analysis,
    Chunk,
    Language,
    Modality,
    ModelRef,
    Segment,
    Shot,
    Tag,
    Transcript,
    VideoInfo,
    Word,
)


def _tag(t: Tag) -> list[Any]:
    return [t.label, t.group, t.score, t.start_s, t.end_s]


def _tag_from(d: list[Any]) -> Tag:
    return Tag(label=d[0], group=d[1], score=float(d[2]), start_s=float(d[3]), end_s=float(d[4]))


def _lang(lang: Language | None) -> list[Any] | None:
    return None if lang is None else [lang.code, lang.probability]


def _lang_from(d: list[Any] | None) -> Language | None:
    return None if d is None else Language(code=d[0], probability=float(d[1]))


def _vector(v: Any) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()


def _vector_from(s: str) -> Any:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float32)


def analysis_to_json(a: Analysis) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tenant": a.tenant,
        "media_id": a.media_id,
        "modality": a.modality.value,
        "language": _lang(a.language),
        "tags": [_tag(t) for t in a.tags],
        "chunks": [
            {
                "index": c.index,
                "text": c.text,
                "embedding": _vector(c.embedding),
                "tags": [_tag(t) for t in c.tags],
                "start_s": c.start_s,
                "end_s": c.end_s,
                "language": _lang(c.language),
                "extra": dict(c.extra),
            }
            for c in a.chunks
        ],
        "embedding_model": [a.embedding_model.name, a.embedding_model.version],
        "created_at": a.created_at,
        "version": a.version,
        "metadata": dict(a.metadata),
        "transcript": None,
        "video": None,
        "shots": [
            {
                "index": s.index,
                "start_s": s.start_s,
                "end_s": s.end_s,
                "keyframe_s": s.keyframe_s,
                "tags": [_tag(t) for t in s.tags],
                "face_count": s.face_count,
                "transcript_text": s.transcript_text,
                "keyframe_jpeg": base64.b64encode(s.keyframe_jpeg).decode(),
            }
            for s in a.shots
        ],
    }
    if a.transcript is not None:
        t = a.transcript
        doc["transcript"] = {
            "segments": [
                {
                    "index": s.index,
                    "start_s": s.start_s,
                    "end_s": s.end_s,
                    "text": s.text,
                    "avg_logprob": s.avg_logprob,
                    "no_speech_prob": s.no_speech_prob,
                    "words": [[w.text, w.start_s, w.end_s, w.probability] for w in s.words],
                }
                for s in t.segments
            ],
            "language": _lang(t.language),
            "duration_s": t.duration_s,
            "task": t.task,
            "model": [t.model.name, t.model.version],
        }
    if a.video is not None:
        v = a.video
        doc["video"] = [v.duration_s, v.fps, v.width, v.height, v.codec, v.has_audio, v.frames_decoded, v.frames_analyzed]
    return doc


def analysis_from_json(doc: Mapping[str, Any]) -> Analysis:
    t = doc.get("transcript")
    v = doc.get("video")
    language = _lang_from(doc.get("language"))
    return Analysis(
        tenant=doc["tenant"],
        media_id=doc["media_id"],
        modality=Modality(doc["modality"]),
        language=language,
        tags=tuple(_tag_from(x) for x in doc["tags"]),
        chunks=tuple(
            Chunk(
                index=int(c["index"]),
                text=c["text"],
                embedding=_vector_from(c["embedding"]),
                tags=tuple(_tag_from(x) for x in c["tags"]),
                start_s=float(c["start_s"]),
                end_s=float(c["end_s"]),
                language=_lang_from(c.get("language")),
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
            language=_lang_from(t["language"]) or Language("und", 0.0),
            duration_s=float(t["duration_s"]),
            task=t["task"],
            model=ModelRef(*t["model"]),
        ),
        video=None if v is None else VideoInfo(float(v[0]), float(v[1]), int(v[2]), int(v[3]), v[4], bool(v[5]), int(v[6]), int(v[7])),
        shots=tuple(
            Shot(
                index=int(s["index"]),
                start_s=float(s["start_s"]),
                end_s=float(s["end_s"]),
                keyframe_s=float(s["keyframe_s"]),
                tags=tuple(_tag_from(x) for x in s["tags"]),
                face_count=int(s["face_count"]),
                transcript_text=s["transcript_text"],
                keyframe_jpeg=base64.b64decode(s["keyframe_jpeg"]),
            )
            for s in doc.get("shots") or ()
        ),
    )
