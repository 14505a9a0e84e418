"""What a media is understood as: analyses, chunks, transcripts, shots, tags."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from understanding.domain.speakers import Speaker

if TYPE_CHECKING:
    from understanding.domain.moderation import Moderation, Signal
    from understanding.domain.visual import BodyPart, ImageInfo, TextLine

Vector = npt.NDArray[np.float32]

# Namespace for deterministic point ids: (tenant, media id, modality, chunk index)
# always maps to the same UUID, so a retry or re-analysis overwrites.
POINT_NAMESPACE = uuid.UUID("6f1d8b7e-3c2a-4e0f-9a51-2b7c4d9e8f10")


class Modality(enum.Enum):
    TEXT = "text"
    SPEECH = "speech"
    VIDEO = "video"
    IMAGE = "image"


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class Language:
    code: str
    probability: float


@dataclass(frozen=True, slots=True)
class Tag:
    label: str
    group: str
    score: float
    start_s: float = 0.0
    end_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Chunk:
    """One embedded unit of a media: text chunk, transcript window or shot."""

    index: int
    text: str
    embedding: Vector
    tags: tuple[Tag, ...] = ()
    start_s: float = 0.0
    end_s: float = 0.0
    language: Language | None = None
    extra: Mapping[str, object] = field(default_factory=dict)
    # Who speaks in the chunk, most talkative first: one label for a transcript
    # window (windows break where the speaker changes), any number for a shot.
    speakers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start_s: float
    end_s: float
    probability: float
    speaker: str = ""


@dataclass(frozen=True, slots=True)
class Segment:
    index: int
    start_s: float
    end_s: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    words: tuple[Word, ...] = ()
    speaker: str = ""
    # Detected from the segment's text when confident (calls switch language), else the transcript's.
    language: Language | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    segments: tuple[Segment, ...]
    language: Language
    duration_s: float
    task: str
    model: ModelRef
    # Speakers, most talkative first; `speaker_model` is None when no model ran
    # (per-channel speakers, diarization off); `speaker_method` is a SpeakerMethod.
    speakers: tuple[Speaker, ...] = ()
    speaker_model: ModelRef | None = None
    speaker_method: str = ""

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())


@dataclass(frozen=True, slots=True)
class VideoInfo:
    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    has_audio: bool
    frames_decoded: int = 0
    frames_analyzed: int = 0


@dataclass(frozen=True, slots=True)
class Shot:
    index: int
    start_s: float
    end_s: float
    keyframe_s: float
    tags: tuple[Tag, ...] = ()
    face_count: int = 0
    transcript_text: str = ""
    keyframe_jpeg: bytes = b""
    # What the moderation models saw on the shot's sampled frames (domain/visual.py): the text
    # read on screen (joined into the shot's chunk text), and the best nudity score with its frame.
    ocr_text: str = ""
    nudity_score: float = 0.0
    nudity_frame_s: float = 0.0
    text_lines: tuple[TextLine, ...] = ()
    nudity_parts: tuple[BodyPart, ...] = ()


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything understood about one media item; what the sinks write out."""

    tenant: str
    media_id: str
    modality: Modality
    language: Language | None
    tags: tuple[Tag, ...]
    chunks: tuple[Chunk, ...]
    embedding_model: ModelRef
    created_at: float
    version: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    transcript: Transcript | None = None
    video: VideoInfo | None = None
    shots: tuple[Shot, ...] = ()
    # What the moderation models found (pipelines fill it) and what the policy decided from it
    # (the analyze use case fills it). Typed in domain/moderation.py.
    signals: tuple[Signal, ...] = ()
    moderation: Moderation | None = None
    # An image's facts and findings (modality IMAGE), and the picture models that looked at
    # the media (nudity, OCR), so a re-analysis can be planned when one changes.
    image: ImageInfo | None = None
    visual_models: tuple[ModelRef, ...] = ()


def point_id(tenant: str, media_id: str, modality: Modality, chunk_index: int) -> str:
    """Deterministic Qdrant point id for a chunk."""
    key = f"{tenant}\x1f{media_id}\x1f{modality.value}\x1f{chunk_index}"
    return str(uuid.uuid5(POINT_NAMESPACE, key))
