"""How the speakers of a speech media are found: one participant per channel, or a speaker model on the mix.

Decisions only, no I/O: `channel_budget_s` says whether a recording's
channels are read apart (from what its container states), `channel_speakers`
whether they really are one participant each, `find_speakers` runs the speaker
model on mixed audio. The speech pipeline does the decoding and transcribing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from understanding.domain import MAX_SPEAKERS, InvalidInput, LimitExceeded, SpeechOptions
from understanding.models.speaker import SpeakerEncoder
from understanding.pipelines.diarization import (
    SAMPLE_RATE,
    ChannelLayout,
    Diarization,
    DiarizationOptions,
    channel_layout,
    diarize,
    separate_channels,
)

__all__ = ["SpeakerSettings", "channel_budget_s", "channel_speakers", "find_speakers", "mask_to_speech"]

# Speech regions of a per-channel participant are widened by this much before
# the rest of the channel is silenced: VAD edges must not clip a word.
_REGION_PAD_S = 0.2


@dataclass(frozen=True, slots=True)
class SpeakerSettings:
    """The speaker side of the speech pipeline.

    `encoder` None: no speaker model (per-channel participants are still
    labelled, mixed audio is not). `max_speakers` bounds a detected count.
    `max_channel_audio_s` bounds channels x duration read apart: per-channel
    audio is held decoded at once, so the bound is the memory of the longest
    mono media (a stereo call may be half as long, an 8-channel one an eighth).
    """

    encoder: SpeakerEncoder | None = None
    max_speakers: int = 8
    max_channel_audio_s: float = 4 * 3600.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_speakers <= MAX_SPEAKERS:
            raise ValueError(f"max_speakers must be within 1..{MAX_SPEAKERS}, not {self.max_speakers}")
        if self.max_channel_audio_s <= 0:
            raise ValueError("max_channel_audio_s must be positive")


def channel_budget_s(
    channels: int, duration_s: float | None, options: SpeechOptions, settings: SpeakerSettings
) -> float | None:
    """Seconds per channel to decode for per-channel participants, or None to mix the channels.

    From the container's statement (a file can lie: the decode enforces the
    returned bound). "auto" mixes what cannot be read apart (one channel, more
    than MAX_SPEAKERS, over the budget); "separate" refuses it instead, except
    one channel, which is then one participant.
    """
    if not options.diarize or options.channels == "mix":
        return None
    separate = options.channels == "separate"
    if channels < 1 or (channels == 1 and not separate):
        return None
    if channels > MAX_SPEAKERS:
        if separate:
            raise InvalidInput(
                f"audio has {channels} channels; at most {MAX_SPEAKERS} can be one participant each",
                field="speech.channels",
            )
        return None
    per_channel = settings.max_channel_audio_s / channels
    if duration_s is not None and duration_s > per_channel:
        if separate:
            raise channel_budget_exceeded(channels, settings)
        return None
    return per_channel


def channel_budget_exceeded(channels: int, settings: SpeakerSettings) -> LimitExceeded:
    return LimitExceeded(
        f"{channels} channels read apart may last at most {settings.max_channel_audio_s / channels:g} s "
        f"({settings.max_channel_audio_s:g} s of audio in all); mix them (channels=CHANNEL_MODE_MIX) instead",
        field="duration",
    )


def channel_speakers(audio: npt.NDArray[np.float32], options: SpeechOptions) -> ChannelLayout:
    """Per-channel participants of (channels, samples) audio: trusted ("separate") or detected ("auto")."""
    if options.channels == "separate":
        return separate_channels(audio)
    return channel_layout(audio)


def find_speakers(
    audio: npt.NDArray[np.float32],
    options: SpeechOptions,
    settings: SpeakerSettings,
    cancelled: threading.Event | None = None,
) -> Diarization | None:
    """Speaker turns of mixed 16 kHz audio by the speaker model; None when the server has none."""
    if settings.encoder is None:
        return None
    should_stop: Callable[[], bool] | None = cancelled.is_set if cancelled is not None else None
    return diarize(
        audio,
        settings.encoder,
        DiarizationOptions(num_speakers=options.num_speakers, max_speakers=settings.max_speakers),
        should_stop=should_stop,
    )


def mask_to_speech(
    channel: npt.NDArray[np.float32], speech: tuple[tuple[float, float], ...]
) -> npt.NDArray[np.float32]:
    """The channel with everything outside its participant's speech silenced.

    What remains of the other side (crosstalk between this participant's
    turns) would otherwise be transcribed twice: once on its own channel and
    once, faintly, on this one.
    """
    out = np.zeros_like(channel)
    pad = int(_REGION_PAD_S * SAMPLE_RATE)
    for start_s, end_s in speech:
        a, b = max(0, int(start_s * SAMPLE_RATE) - pad), min(channel.size, int(end_s * SAMPLE_RATE) + pad)
        out[a:b] = channel[a:b]
    return out
