"""A live stream as the layers below the api see it: its config and the events it produces.

The api converts `LiveRequest`/`LiveEvent` messages to and from these; the
live pipeline (pipelines/live) only ever sees these types.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from understanding.domain.media import Analysis, Language, ModelRef, Segment, Tag
from understanding.domain.moderation import Moderation


class AudioFormat(enum.Enum):
    PCM_S16LE_16K_MONO = "pcm_s16le_16k_mono"
    OPUS = "opus"


class SignalKind(enum.Enum):
    """Which signals a stream reports per window."""

    SAFETY = "safety"  # safety.* tags of final transcript segments
    TOPICS = "topics"  # the other text tags of final transcript segments
    VISUAL = "visual"  # visual.* signals of frames


class DropReason(enum.Enum):
    FRAME_BEHIND = "frame_behind"
    FRAME_RATE = "frame_rate"
    FRAME_UNDECODABLE = "frame_undecodable"
    FRAME_OUT_OF_ORDER = "frame_out_of_order"
    AUDIO_BEHIND = "audio_behind"
    AUDIO_UNDECODABLE = "audio_undecodable"


class EndReason(enum.Enum):
    CLIENT = "client"  # the client sent `end`
    IDLE_TIMEOUT = "idle_timeout"
    MAX_DURATION = "max_duration"
    SERVER_SHUTDOWN = "server_shutdown"
    CLIENT_GONE = "client_gone"  # cancelled, disconnected or stopped reading: nobody gets the summary


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """A validated `LiveConfig` message. `language` None: detect from the first utterance."""

    media_id: str
    audio_format: AudioFormat
    language: str | None = None
    signals: frozenset[SignalKind] = frozenset(SignalKind)
    policy: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    partials: bool = True
    index: bool = True


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class LivePartial:
    segment_index: int
    text: str
    stable_text: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class LiveFinal:
    segment: Segment
    language: Language
    # The speaker's label when the server labels live finals and its speaker model could tell
    # ("" when not known; None when it does not label them). Also on `segment.speaker`.
    # See pipelines/live/speakers.py.
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class LiveSignals:
    """Signals of one window: a final transcript segment or one frame, with its evidence."""

    source: str  # "transcript" or "frame"
    start_s: float
    end_s: float
    tags: tuple[Tag, ...]
    models: tuple[ModelRef, ...]
    frame_s: float | None = None
    segment_index: int | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class LiveModeration:
    """The moderation core's verdict (REVIEW or BLOCK) on one window of a stream, with its evidence.

    `moderation` is what `pipelines.moderation.decide` made of the window's signals under the
    stream's policy: the same type, and the same rules, as a whole media's verdict.
    """

    source: str  # "transcript" (frames join with the visual Trust & Safety models)
    start_s: float
    end_s: float
    moderation: Moderation
    segment_index: int | None = None
    frame_s: float | None = None


@dataclass(frozen=True, slots=True)
class LiveStatus:
    received_s: float
    transcribed_s: float
    behind_s: float
    ahead_s: float
    paced: bool
    frames_received: int
    frames_analyzed: int
    dropped_frames: Mapping[DropReason, int] = field(default_factory=dict)
    dropped_audio_s: Mapping[DropReason, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LiveSummary:
    reason: EndReason
    analysis: Analysis
    points: int
    indexed: bool
    status: LiveStatus


LiveEvent = LivePartial | LiveFinal | LiveSignals | LiveModeration | LiveStatus | LiveSummary
