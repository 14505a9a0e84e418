"""Which channels are read apart, and the options that ask for speakers."""

from __future__ import annotations

import numpy as np
import pytest

from understanding.domain import InvalidInput, LimitExceeded, SpeechOptions
from understanding.pipelines.speakers import SpeakerSettings, channel_budget_s, mask_to_speech

AUTO, MIX, SEPARATE = SpeechOptions(), SpeechOptions(channels="mix"), SpeechOptions(channels="separate")
SETTINGS = SpeakerSettings(max_channel_audio_s=3600.0)


def test_auto_reads_calls_apart_and_mixes_what_cannot_be() -> None:
    assert channel_budget_s(2, 600.0, AUTO, SETTINGS) == 1800.0
    assert channel_budget_s(2, None, AUTO, SETTINGS) == 1800.0  # duration unknown: the decode enforces it
    assert channel_budget_s(1, 600.0, AUTO, SETTINGS) is None  # mono
    assert channel_budget_s(33, 10.0, AUTO, SETTINGS) is None  # more channels than participants: mixed
    assert channel_budget_s(8, 600.0, AUTO, SETTINGS) is None  # 8 x 600 s over the budget: mixed
    assert channel_budget_s(2, 600.0, MIX, SETTINGS) is None
    assert channel_budget_s(2, 600.0, SpeechOptions(diarize=False), SETTINGS) is None


def test_separate_refuses_what_auto_would_mix() -> None:
    assert channel_budget_s(1, 600.0, SEPARATE, SETTINGS) == 3600.0  # one channel, one participant
    assert channel_budget_s(32, 60.0, SEPARATE, SETTINGS) == pytest.approx(112.5)
    with pytest.raises(InvalidInput) as too_many:
        channel_budget_s(33, 10.0, SEPARATE, SETTINGS)
    assert too_many.value.field == "speech.channels" and "33 channels" in too_many.value.message
    with pytest.raises(LimitExceeded) as too_long:
        channel_budget_s(8, 600.0, SEPARATE, SETTINGS)
    assert too_long.value.field == "duration" and "450 s" in too_long.value.message


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"num_speakers": 0}, "speech.num_speakers"),
        ({"num_speakers": 1000}, "speech.num_speakers"),
        ({"num_speakers": 33}, "speech.num_speakers"),
        ({"num_speakers": 2, "diarize": False}, "speech.num_speakers"),
        ({"channels": "stereo"}, "speech.channels"),
        ({"channels": "separate", "diarize": False}, "speech.channels"),
    ],
)
def test_speaker_options_are_validated_naming_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as error:
        SpeechOptions(**options)  # type: ignore[arg-type]
    assert error.value.field == field


def test_a_participant_channel_is_silenced_outside_their_speech() -> None:
    channel = np.ones(16000 * 4, dtype=np.float32)
    masked = mask_to_speech(channel, ((1.0, 2.0),))
    kept = np.flatnonzero(masked)
    assert kept[0] == int(0.8 * 16000) and kept[-1] == int(2.2 * 16000) - 1  # 0.2 s of margin each side
    assert mask_to_speech(channel, ()).max() == 0.0
