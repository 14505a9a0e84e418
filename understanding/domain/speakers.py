"""Who spoke: speakers of a transcript and how the caller wants them found.

Labels are stable within one media only: `S1`, `S2`, ... in order of first
speech when a speaker model clustered mixed audio; `CH1`, `CH2`, ... by
channel when each channel of the recording is one participant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from understanding.domain.errors import InvalidInput

__all__ = ["CHANNEL_MODES", "MAX_SPEAKERS", "ChannelMode", "Speaker", "SpeakerMethod", "validate_num_speakers"]

# A speaker-count hint above this is refused; it is also the most channels read
# one participant per channel (call recorders write at most a few).
MAX_SPEAKERS = 32

# "auto": one participant per channel when the channels say so (each side of a
# call much louder on its own channel), else one mixed signal; "mix": always one
# mixed signal; "separate": every channel that carries sound is one participant.
ChannelMode = Literal["auto", "mix", "separate"]
CHANNEL_MODES: tuple[ChannelMode, ...] = ("auto", "mix", "separate")

# How the speakers of a transcript were found: "clustering" (a speaker model on
# mixed audio), "channels" (one participant per channel), "single" (a hint of one
# speaker), "none" (diarization ran, no speech), "" (diarization was not run).
SpeakerMethod = Literal["", "clustering", "channels", "single", "none"]


@dataclass(frozen=True, slots=True)
class Speaker:
    """One speaker of a media: total speaking time and number of turns.

    `channel` is the 1-based audio channel when the speaker is a channel's
    participant, 0 when the speaker was found by clustering mixed audio.
    """

    label: str
    speaking_s: float
    turns: int
    channel: int = 0


def validate_num_speakers(value: int, field: str = "speech.num_speakers") -> int:
    """A speaker-count hint must be 1..MAX_SPEAKERS (leave it out to detect the count)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SPEAKERS:
        raise InvalidInput(
            f"num_speakers must be within 1..{MAX_SPEAKERS} (omit it to detect the count), not {value!r}",
            field=field,
        )
    return value
