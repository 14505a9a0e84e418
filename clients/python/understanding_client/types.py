"""Typed results: frozen dataclasses built from the protobuf messages.

Every result keeps the message it came from in `.raw` (excluded from equality
and repr), so a field added to the contract later is reachable before this
module learns about it.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from understanding.v1 import admin_pb2, common_pb2, jobs_pb2
from understanding.v1 import understanding_pb2 as pb


class Modality(str, enum.Enum):
    UNSPECIFIED = "unspecified"
    TEXT = "text"
    SPEECH = "speech"
    VIDEO = "video"

    @classmethod
    def from_pb(cls, value: int) -> Modality:
        return _MODALITY_FROM_PB.get(value, cls.UNSPECIFIED)

    def to_pb(self) -> common_pb2.Modality:
        return _MODALITY_TO_PB[self]


_MODALITY_TO_PB: dict[Modality, common_pb2.Modality] = {
    Modality.UNSPECIFIED: common_pb2.MODALITY_UNSPECIFIED,
    Modality.TEXT: common_pb2.MODALITY_TEXT,
    Modality.SPEECH: common_pb2.MODALITY_SPEECH,
    Modality.VIDEO: common_pb2.MODALITY_VIDEO,
}
_MODALITY_FROM_PB: dict[int, Modality] = {v: k for k, v in _MODALITY_TO_PB.items()}


class JobState(str, enum.Enum):
    UNSPECIFIED = "unspecified"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @classmethod
    def from_pb(cls, value: int) -> JobState:
        return _STATE_FROM_PB.get(value, cls.UNSPECIFIED)

    def to_pb(self) -> jobs_pb2.JobState:
        return _STATE_TO_PB[self]


_STATE_TO_PB: dict[JobState, jobs_pb2.JobState] = {
    JobState.UNSPECIFIED: jobs_pb2.JOB_STATE_UNSPECIFIED,
    JobState.QUEUED: jobs_pb2.JOB_STATE_QUEUED,
    JobState.RUNNING: jobs_pb2.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: jobs_pb2.JOB_STATE_SUCCEEDED,
    JobState.FAILED: jobs_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: jobs_pb2.JOB_STATE_CANCELLED,
}
_STATE_FROM_PB: dict[int, JobState] = {v: k for k, v in _STATE_TO_PB.items()}


class Decision(str, enum.Enum):
    """What a moderation policy calls for; ordered ALLOW < REVIEW < BLOCK."""

    UNSPECIFIED = "unspecified"
    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"

    @classmethod
    def from_pb(cls, value: int) -> Decision:
        return _DECISION_FROM_PB.get(value, cls.UNSPECIFIED)

    def to_pb(self) -> common_pb2.Decision:
        return _DECISION_TO_PB[self]


_DECISION_TO_PB: dict[Decision, common_pb2.Decision] = {
    Decision.UNSPECIFIED: common_pb2.DECISION_UNSPECIFIED,
    Decision.ALLOW: common_pb2.DECISION_ALLOW,
    Decision.REVIEW: common_pb2.DECISION_REVIEW,
    Decision.BLOCK: common_pb2.DECISION_BLOCK,
}
_DECISION_FROM_PB: dict[int, Decision] = {v: k for k, v in _DECISION_TO_PB.items()}


def timestamp(message: Any, present: bool = True) -> dt.datetime | None:
    """A protobuf Timestamp as an aware UTC datetime; None when unset."""
    if not present or (message.seconds == 0 and message.nanos == 0):
        return None
    return dt.datetime.fromtimestamp(message.seconds + message.nanos / 1e9, tz=dt.timezone.utc)


@dataclass(frozen=True, slots=True)
class Tag:
    label: str
    group: str
    score: float
    start_s: float = 0.0
    end_s: float = 0.0
    raw: common_pb2.Tag | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: common_pb2.Tag) -> Tag:
        return cls(m.label, m.group, m.score, m.start_s, m.end_s, raw=m)


@dataclass(frozen=True, slots=True)
class Language:
    code: str
    probability: float
    raw: common_pb2.Language | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: common_pb2.Language) -> Language:
        return cls(m.code, m.probability, raw=m)


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: str
    raw: common_pb2.ModelRef | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: common_pb2.ModelRef) -> ModelRef:
        return cls(m.name, m.version, raw=m)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One embedded unit of a media: a text chunk, a transcript window or a shot."""

    index: int
    text: str
    start_s: float
    end_s: float
    tags: tuple[Tag, ...]
    point_id: str
    # Present only when the request asked for embeddings.
    embedding: tuple[float, ...] = ()
    # Who speaks in the chunk, most talkative first (one label for a transcript window).
    speakers: tuple[str, ...] = ()
    # Detected in this chunk's text (the media's language when too short to tell).
    language: Language | None = None
    raw: common_pb2.Chunk | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: common_pb2.Chunk) -> Chunk:
        return cls(
            m.index,
            m.text,
            m.start_s,
            m.end_s,
            tuple(Tag.from_pb(t) for t in m.tags),
            m.point_id,
            tuple(m.embedding),
            tuple(m.speakers),
            language=Language.from_pb(m.language) if m.HasField("language") else None,
            raw=m,
        )


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start_s: float
    end_s: float
    probability: float
    # Who said it (a label of Transcript.speakers); "" without diarization.
    speaker: str = ""
    raw: common_pb2.Word | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: common_pb2.Word) -> Word:
        return cls(m.text, m.start_s, m.end_s, m.probability, m.speaker, raw=m)


@dataclass(frozen=True, slots=True)
class Segment:
    index: int
    start_s: float
    end_s: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    words: tuple[Word, ...] = ()
    # Who said it (a label of Transcript.speakers); "" without diarization.
    speaker: str = ""
    # Detected from the segment's text when confident (calls switch language), else the transcript's.
    language: Language | None = None
    raw: common_pb2.Segment | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: common_pb2.Segment) -> Segment:
        return cls(
            m.index,
            m.start_s,
            m.end_s,
            m.text,
            m.avg_logprob,
            m.no_speech_prob,
            tuple(Word.from_pb(w) for w in m.words),
            m.speaker,
            language=Language.from_pb(m.language) if m.HasField("language") else None,
            raw=m,
        )


@dataclass(frozen=True, slots=True)
class Speaker:
    """One speaker of a media: "S1", "S2"... (speaker model) or "CH1", "CH2"... (one per channel)."""

    label: str
    speaking_s: float
    turns: int
    # 1-based channel of a per-channel participant; 0 when found by the speaker model.
    channel: int = 0
    raw: common_pb2.Speaker | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: common_pb2.Speaker) -> Speaker:
        return cls(m.label, m.speaking_s, m.turns, m.channel, raw=m)


@dataclass(frozen=True, slots=True)
class Transcript:
    segments: tuple[Segment, ...]
    language: Language | None
    duration_s: float
    task: str
    model: ModelRef | None
    # Most talkative first; empty when diarization was off.
    speakers: tuple[Speaker, ...] = ()
    # The speaker model; None when none ran (per-channel participants, diarization off).
    speaker_model: ModelRef | None = None
    # "clustering", "channels", "single", "none", or "" (diarization off).
    speaker_method: str = ""
    raw: common_pb2.Transcript | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        """The segments' text joined with single spaces."""
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    @classmethod
    def from_pb(cls, m: common_pb2.Transcript) -> Transcript:
        return cls(
            tuple(Segment.from_pb(s) for s in m.segments),
            Language.from_pb(m.language) if m.HasField("language") else None,
            m.duration_s,
            m.task,
            ModelRef.from_pb(m.model) if m.HasField("model") else None,
            tuple(Speaker.from_pb(x) for x in m.speakers),
            ModelRef.from_pb(m.speaker_model) if m.HasField("speaker_model") else None,
            m.speaker_method,
            raw=m,
        )


@dataclass(frozen=True, slots=True)
class VideoInfo:
    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    has_audio: bool
    frames_decoded: int
    frames_analyzed: int
    raw: common_pb2.VideoInfo | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: common_pb2.VideoInfo) -> VideoInfo:
        return cls(
            m.duration_s, m.fps, m.width, m.height, m.codec, m.has_audio, m.frames_decoded, m.frames_analyzed, raw=m
        )


@dataclass(frozen=True, slots=True)
class Shot:
    index: int
    start_s: float
    end_s: float
    keyframe_s: float
    tags: tuple[Tag, ...]
    transcript_text: str
    face_count: int
    # Small JPEG; only when the request asked for keyframes.
    keyframe_jpeg: bytes = field(default=b"", repr=False)
    raw: common_pb2.Shot | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: common_pb2.Shot) -> Shot:
        return cls(
            m.index,
            m.start_s,
            m.end_s,
            m.keyframe_s,
            tuple(Tag.from_pb(t) for t in m.tags),
            m.transcript_text,
            m.face_count,
            m.keyframe_jpeg,
            raw=m,
        )


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where a moderation signal was found and by what. `text` is empty (and `redacted`
    true) for contact details of a request that asked for PII redaction."""

    modality: Modality
    model: ModelRef | None
    start_s: float
    end_s: float
    frame_s: float | None
    box: tuple[float, float, float, float] | None
    text: str
    span: tuple[int, int] | None
    chunk_index: int | None
    speaker: str
    detail: str
    score: float
    redacted: bool
    zero_shot: bool

    @classmethod
    def from_pb(cls, m: common_pb2.Evidence) -> Evidence:
        return cls(
            modality=Modality.from_pb(m.modality),
            model=ModelRef.from_pb(m.model) if m.HasField("model") else None,
            start_s=m.start_s,
            end_s=m.end_s,
            frame_s=m.frame_s if m.HasField("frame_s") else None,
            box=(m.box.x, m.box.y, m.box.width, m.box.height) if m.HasField("box") else None,
            text=m.text,
            span=(m.span.start, m.span.end) if m.HasField("span") else None,
            chunk_index=m.chunk_index if m.HasField("chunk_index") else None,
            speaker=m.speaker,
            detail=m.detail,
            score=m.score,
            redacted=m.redacted,
            zero_shot=m.zero_shot,
        )


@dataclass(frozen=True, slots=True)
class CategoryResult:
    category: str
    score: float
    severity: Decision
    evidence: tuple[Evidence, ...]

    @classmethod
    def from_pb(cls, m: common_pb2.CategoryResult) -> CategoryResult:
        return cls(m.category, m.score, Decision.from_pb(m.severity), tuple(Evidence.from_pb(e) for e in m.evidence))


@dataclass(frozen=True, slots=True)
class Moderation:
    """A moderation policy's verdict: the decision, the policy (name, file version) and every
    category that had a signal, most severe first."""

    decision: Decision
    policy: str
    policy_version: str
    categories: tuple[CategoryResult, ...]

    @property
    def flagged(self) -> tuple[str, ...]:
        """Categories at REVIEW or BLOCK."""
        return tuple(c.category for c in self.categories if c.severity in (Decision.REVIEW, Decision.BLOCK))

    @classmethod
    def from_pb(cls, m: common_pb2.Moderation) -> Moderation:
        return cls(
            Decision.from_pb(m.decision),
            m.policy,
            m.policy_version,
            tuple(CategoryResult.from_pb(c) for c in m.categories),
        )


@dataclass(frozen=True, slots=True)
class ModerationOptions:
    """What a request asks of moderation: a named policy (empty: the tenant's default) and
    PII redaction (contact details masked in stored text, response and events)."""

    policy: str = ""
    redact_pii: bool = False

    def to_pb(self) -> pb.ModerationOptions:
        return pb.ModerationOptions(policy=self.policy, redact_pii=self.redact_pii)


@dataclass(frozen=True, slots=True)
class Analysis:
    """The complete understanding of one media item."""

    media_id: str
    tenant: str
    modality: Modality
    language: Language | None
    tags: tuple[Tag, ...]
    chunks: tuple[Chunk, ...]
    transcript: Transcript | None
    video: VideoInfo | None
    shots: tuple[Shot, ...]
    embedding_model: ModelRef | None
    created_at: dt.datetime | None
    version: int
    metadata: Mapping[str, str]
    raw: common_pb2.Analysis | None = field(default=None, repr=False, compare=False)
    # None when the server runs without moderation.
    moderation: Moderation | None = None

    @classmethod
    def from_pb(cls, m: common_pb2.Analysis) -> Analysis:
        return cls(
            media_id=m.media_id,
            tenant=m.tenant,
            modality=Modality.from_pb(m.modality),
            language=Language.from_pb(m.language) if m.HasField("language") else None,
            tags=tuple(Tag.from_pb(t) for t in m.tags),
            chunks=tuple(Chunk.from_pb(c) for c in m.chunks),
            transcript=Transcript.from_pb(m.transcript) if m.HasField("transcript") else None,
            video=VideoInfo.from_pb(m.video) if m.HasField("video") else None,
            shots=tuple(Shot.from_pb(s) for s in m.shots),
            embedding_model=ModelRef.from_pb(m.embedding_model) if m.HasField("embedding_model") else None,
            created_at=timestamp(m.created_at, m.HasField("created_at")),
            version=m.version,
            metadata=dict(m.metadata),
            raw=m,
            moderation=Moderation.from_pb(m.moderation) if m.HasField("moderation") else None,
        )


@dataclass(frozen=True, slots=True)
class TextItem:
    """A text to analyze; `media_id` empty lets the server derive one from the content."""

    text: str
    media_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    def to_pb(self) -> pb.TextItem:
        return pb.TextItem(text=self.text, media_id=self.media_id, metadata=dict(self.metadata))


@dataclass(frozen=True, slots=True)
class Upload:
    """Media stored with `upload_media`, to be referenced by `submit_job(upload_id=...)`."""

    upload_id: str
    size_bytes: int
    sha256: str
    raw: pb.UploadMediaResponse | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: pb.UploadMediaResponse) -> Upload:
        return cls(m.upload_id, m.size_bytes, m.sha256, raw=m)


@dataclass(frozen=True, slots=True)
class JobProgress:
    fraction: float
    stage: str


@dataclass(frozen=True, slots=True)
class JobError:
    code: str
    message: str
    retriable: bool


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    tenant: str
    media_id: str
    modality: Modality
    state: JobState
    progress: JobProgress
    attempts: int
    error: JobError | None
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    idempotency_key: str
    # Present when the state is SUCCEEDED (and the call returns results).
    result: Analysis | None
    raw: jobs_pb2.Job | None = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once the job reached SUCCEEDED, FAILED or CANCELLED."""
        return self.state.terminal

    @classmethod
    def from_pb(cls, m: jobs_pb2.Job) -> Job:
        return cls(
            job_id=m.job_id,
            tenant=m.tenant,
            media_id=m.media_id,
            modality=Modality.from_pb(m.modality),
            state=JobState.from_pb(m.state),
            progress=JobProgress(m.progress.fraction, m.progress.stage),
            attempts=m.attempts,
            error=JobError(m.error.code, m.error.message, m.error.retriable)
            if m.HasField("error") and m.error.code
            else None,
            created_at=timestamp(m.created_at, m.HasField("created_at")),
            started_at=timestamp(m.started_at, m.HasField("started_at")),
            finished_at=timestamp(m.finished_at, m.HasField("finished_at")),
            idempotency_key=m.idempotency_key,
            result=Analysis.from_pb(m.result) if m.HasField("result") else None,
            raw=m,
        )


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: tuple[Job, ...]
    # Pass to `list_jobs(page_token=...)` for the next page; empty on the last.
    next_page_token: str
    raw: pb.ListJobsResponse | None = field(default=None, repr=False, compare=False)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    @classmethod
    def from_pb(cls, m: pb.ListJobsResponse) -> JobPage:
        return cls(tuple(Job.from_pb(j) for j in m.jobs), m.next_page_token, raw=m)


@dataclass(frozen=True, slots=True)
class SearchHit:
    point_id: str
    score: float
    media_id: str
    modality: Modality
    chunk_index: int
    start_s: float
    end_s: float
    text: str
    matched_terms: tuple[str, ...]
    tags: tuple[Tag, ...]
    language: Language | None
    metadata: Mapping[str, str]
    # With group_by_media: matching points of this media.
    group_hits: int
    embedding_model: ModelRef | None
    created_at: dt.datetime | None
    # Only with `with_vectors=True`.
    vector: tuple[float, ...]
    keyframe_s: float
    # Speakers heard in the point's time range.
    speakers: tuple[str, ...] = ()
    raw: pb.SearchHit | None = field(default=None, repr=False, compare=False)
    # The media's moderation decision and categories at REVIEW/BLOCK; those with evidence in this chunk.
    decision: Decision = Decision.UNSPECIFIED
    moderation_categories: tuple[str, ...] = ()
    chunk_moderation_categories: tuple[str, ...] = ()

    @classmethod
    def from_pb(cls, m: pb.SearchHit) -> SearchHit:
        return cls(
            point_id=m.point_id,
            score=m.score,
            media_id=m.media_id,
            modality=Modality.from_pb(m.modality),
            chunk_index=m.chunk_index,
            start_s=m.start_s,
            end_s=m.end_s,
            text=m.text,
            matched_terms=tuple(m.matched_terms),
            tags=tuple(Tag.from_pb(t) for t in m.tags),
            language=Language.from_pb(m.language) if m.HasField("language") else None,
            metadata=dict(m.metadata),
            group_hits=m.group_hits,
            embedding_model=ModelRef.from_pb(m.embedding_model) if m.HasField("embedding_model") else None,
            created_at=timestamp(m.created_at, m.HasField("created_at")),
            vector=tuple(m.vector),
            keyframe_s=m.keyframe_s,
            speakers=tuple(m.speakers),
            raw=m,
            decision=Decision.from_pb(m.decision),
            moderation_categories=tuple(m.moderation_categories),
            chunk_moderation_categories=tuple(m.chunk_moderation_categories),
        )


@dataclass(frozen=True, slots=True)
class SearchResults:
    hits: tuple[SearchHit, ...]
    # Pass back as `search(cursor=...)` for the next page; empty when none.
    next_cursor: str
    embedding_model: ModelRef | None
    raw: pb.SearchResponse | None = field(default=None, repr=False, compare=False)

    def __iter__(self) -> Iterator[SearchHit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, index: int) -> SearchHit:
        return self.hits[index]

    @classmethod
    def from_pb(cls, m: pb.SearchResponse) -> SearchResults:
        return cls(
            tuple(SearchHit.from_pb(h) for h in m.hits),
            m.next_cursor,
            ModelRef.from_pb(m.embedding_model) if m.HasField("embedding_model") else None,
            raw=m,
        )


@dataclass(frozen=True, slots=True)
class Media:
    """Every stored point of one media, in chunk order (without vectors)."""

    media_id: str
    modality: Modality
    points: tuple[SearchHit, ...]
    version: int
    raw: pb.GetMediaResponse | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: pb.GetMediaResponse) -> Media:
        return cls(
            m.media_id, Modality.from_pb(m.modality), tuple(SearchHit.from_pb(p) for p in m.points), m.version, raw=m
        )


class ReindexPhase(str, enum.Enum):
    """Where an online reindex is (see the Admin service's `ReindexPhase`)."""

    UNSPECIFIED = "unspecified"
    LOADING = "loading"
    COPYING = "copying"
    CATCHING_UP = "catching_up"
    SWITCHING = "switching"
    DONE = "done"
    NOTHING_TO_DO = "nothing_to_do"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (ReindexPhase.DONE, ReindexPhase.NOTHING_TO_DO, ReindexPhase.FAILED)

    @classmethod
    def from_pb(cls, value: int) -> ReindexPhase:
        return _PHASE_FROM_PB.get(value, cls.UNSPECIFIED)


_PHASE_FROM_PB: dict[int, ReindexPhase] = {
    admin_pb2.REINDEX_PHASE_LOADING: ReindexPhase.LOADING,
    admin_pb2.REINDEX_PHASE_COPYING: ReindexPhase.COPYING,
    admin_pb2.REINDEX_PHASE_CATCHING_UP: ReindexPhase.CATCHING_UP,
    admin_pb2.REINDEX_PHASE_SWITCHING: ReindexPhase.SWITCHING,
    admin_pb2.REINDEX_PHASE_DONE: ReindexPhase.DONE,
    admin_pb2.REINDEX_PHASE_NOTHING_TO_DO: ReindexPhase.NOTHING_TO_DO,
    admin_pb2.REINDEX_PHASE_FAILED: ReindexPhase.FAILED,
}


@dataclass(frozen=True, slots=True)
class ReindexProgress:
    """One update of an online reindex: its phase, the collections and how far it got."""

    phase: ReindexPhase
    # The alias readers use, the collection it served and the one being filled.
    alias: str
    from_collection: str
    to_collection: str
    # The model being switched to.
    model: ModelRef | None
    # Points in the current collection when the pass started, and visited by the pass so far.
    total_points: int
    done_points: int
    embedded_points: int
    removed_points: int
    without_text_points: int
    passes: int
    switched: bool
    elapsed_s: float
    write_pause_s: float
    # Why it failed (FAILED), or what was left to do.
    message: str
    # Points in the target collection at the end.
    target_points: int
    raw: admin_pb2.ReindexProgress | None = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once the reindex ended: DONE, NOTHING_TO_DO or FAILED."""
        return self.phase.terminal

    @classmethod
    def from_pb(cls, m: admin_pb2.ReindexProgress) -> ReindexProgress:
        return cls(
            phase=ReindexPhase.from_pb(m.phase),
            alias=m.alias,
            from_collection=m.from_collection,
            to_collection=m.to_collection,
            model=ModelRef.from_pb(m.model) if m.HasField("model") else None,
            total_points=m.total_points,
            done_points=m.done_points,
            embedded_points=m.embedded_points,
            removed_points=m.removed_points,
            without_text_points=m.without_text_points,
            passes=m.passes,
            switched=m.switched,
            elapsed_s=m.elapsed_seconds,
            write_pause_s=m.write_pause_seconds,
            message=m.message,
            target_points=m.target_points,
            raw=m,
        )
