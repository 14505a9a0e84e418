"""What a caller asks for, validated once where it is built (api or job decoding).

These travel typed from the api to the pipelines and inside a `JobSpec`; an
invalid value raises `InvalidInput` naming the request field.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from understanding.domain.errors import InvalidInput
from understanding.domain.media import Modality
from understanding.domain.moderation import ModerationOptions
from understanding.domain.speakers import CHANNEL_MODES, ChannelMode, validate_num_speakers
from understanding.domain.visual import ImageOptions

# ISO 639-1 codes (plus haw, yue) that Whisper transcribes; tests check this
# list against faster-whisper's own so it cannot drift.
SPEECH_LANGUAGES: frozenset[str] = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr ht hu hy "
    "id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa pl ps pt ro ru sa "
    "sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo zh yue".split()
)

SpeechTask = Literal["transcribe", "translate"]
MAX_PROMPT_CHARS = 2000
MAX_SAMPLE_FPS = 30.0


def language_code(raw: str) -> str | None:
    """`en-US`, `EN_us`, ` en ` -> `en`; empty -> None (detect)."""
    return raw.strip().lower().replace("_", "-").split("-")[0] or None


@dataclass(frozen=True, slots=True)
class SpeechOptions:
    """How to transcribe. `language` None means detect from the first 30 s; `vad`
    drops non-speech (Silero) before decoding: faster, far fewer hallucinations.

    Speakers: `diarize` labels segments and words with who spoke (on by default:
    moderation evidence and "what did the host say" need it; measured cost in
    benchmarks/diarization_bench.py); `num_speakers` is a hint (None: detect the
    count); `channels` says whether each audio channel is one participant.
    `fallback`: re-decode at higher temperatures when a decode looks wrong
    (Whisper's default); the live path turns it off, a re-decode would multiply
    its latency while the next decode corrects the hypothesis anyway.
    """

    language: str | None = None
    task: SpeechTask = "transcribe"
    word_timestamps: bool = False
    vad: bool = True
    initial_prompt: str | None = None
    hotwords: str | None = None
    beam_size: int = 5
    diarize: bool = True
    num_speakers: int | None = None
    channels: ChannelMode = "auto"
    fallback: bool = True

    def __post_init__(self) -> None:
        if self.language is not None and self.language not in SPEECH_LANGUAGES:
            raise InvalidInput(
                f"unsupported language code {self.language!r} (Whisper knows "
                f"{len(SPEECH_LANGUAGES)} ISO 639-1 codes such as 'en', 'es', 'de')",
                field="speech.language",
            )
        if self.task not in ("transcribe", "translate"):
            raise InvalidInput(f"task must be 'transcribe' or 'translate', not {self.task!r}", field="speech.task")
        if not 1 <= self.beam_size <= 16:
            raise InvalidInput(f"beam_size must be within 1..16, not {self.beam_size}", field="speech.beam_size")
        for name in ("initial_prompt", "hotwords"):
            value = getattr(self, name)
            if value is not None and len(value) > MAX_PROMPT_CHARS:
                raise InvalidInput(f"at most {MAX_PROMPT_CHARS} characters", field=f"speech.{name}")
        if self.num_speakers is not None:
            validate_num_speakers(self.num_speakers)
            if not self.diarize:
                raise InvalidInput(
                    "a speaker-count hint needs diarization (it is disabled)", field="speech.num_speakers"
                )
        if self.channels not in CHANNEL_MODES:
            raise InvalidInput(
                f"channels must be one of {', '.join(CHANNEL_MODES)}, not {self.channels!r}", field="speech.channels"
            )
        if self.channels == "separate" and not self.diarize:
            raise InvalidInput(
                "one participant per channel is speaker attribution: it needs diarization (it is disabled)",
                field="speech.channels",
            )


@dataclass(frozen=True, slots=True)
class VideoOptions:
    """How to look at a video. `sample_fps` None means the server default."""

    sample_fps: float | None = None
    return_keyframes: bool = False
    skip_audio: bool = False

    def __post_init__(self) -> None:
        fps = self.sample_fps
        if fps is not None and not (math.isfinite(fps) and 0 < fps <= MAX_SAMPLE_FPS):
            raise InvalidInput(f"must be between 0 and {MAX_SAMPLE_FPS:g}", field="video.sample_fps")


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    """Every option of one analysis; each modality reads its part."""

    speech: SpeechOptions = field(default_factory=SpeechOptions)
    video: VideoOptions = field(default_factory=VideoOptions)
    moderation: ModerationOptions = field(default_factory=ModerationOptions)
    image: ImageOptions = field(default_factory=ImageOptions)  # images, and a video's frames


@dataclass(frozen=True, slots=True)
class MediaRequest:
    """One media to analyse, as the inline RPCs and the job runner both describe it:
    text inline, or a file already on local disk (spooled upload or job blob)."""

    modality: Modality
    media_id: str
    text: str = ""
    path: pathlib.Path | None = None
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    metadata: Mapping[str, str] = field(default_factory=dict)
