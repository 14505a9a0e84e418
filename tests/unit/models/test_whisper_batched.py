"""Whisper with batched inference (whisper_batch_size > 0): same answers, right times."""

from __future__ import annotations

import pathlib

import pytest

from tests.fixtures.speech import concat_with_silence, make_speech_wav
from tests.unit.models.test_whisper import ENGLISH, LIBRARY, MAX_WER, REPORT, SPANISH, speech, wer
from understanding.domain import SpeechOptions
from understanding.media.audio import decode_audio
from understanding.models.whisper import PACKAGED, Transcriber, _windows, resolve_whisper_model


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Transcriber:
    model = Transcriber(
        model_path=resolve_whisper_model(PACKAGED, tmp_path_factory.mktemp("models")), cpu_threads=2, batch_size=4
    )
    model.warm_up()
    return model


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("clips")


def test_windows_end_at_pauses_and_stay_under_30_s() -> None:
    sr = 16000
    assert _windows([10 * sr, 25 * sr, 5 * sr]) == [{"start": 0.0, "end": 10.0}, {"start": 10.0, "end": 40.0}]
    assert _windows([70 * sr]) == [
        {"start": 0.0, "end": 30.0},
        {"start": 30.0, "end": 60.0},
        {"start": 60.0, "end": 70.0},
    ]
    assert _windows([]) == []


def test_batched_english_and_spanish(batched: Transcriber, clips: pathlib.Path) -> None:
    english = batched.transcribe(speech(ENGLISH, clips), SpeechOptions(word_timestamps=True))
    assert english.language.code == "en" and wer(ENGLISH, english.text) <= MAX_WER
    times = [t for s in english.segments for w in s.words for t in (w.start_s, w.end_s)]
    assert times and times == sorted(times) and times[-1] <= english.duration_s
    spanish = batched.transcribe(speech(SPANISH, clips, voice="es"), SpeechOptions())
    assert spanish.language.code == "es" and wer(SPANISH, spanish.text) <= MAX_WER


def test_batched_times_map_back_over_silence(batched: Transcriber, clips: pathlib.Path) -> None:
    first = make_speech_wav(REPORT, clips / "report.wav")
    second = make_speech_wav(LIBRARY, clips / "library.wav")
    offsets = concat_with_silence([2.0, first, 40.0, second, 1.0], clips / "placed.wav")
    fractions: list[float] = []
    result = batched.transcribe(
        decode_audio(clips / "placed.wav"), SpeechOptions(language="en"), on_segment=lambda s, f: fractions.append(f)
    )
    assert fractions == sorted(fractions) and fractions[-1] > 0.8
    report = next(s for s in result.segments if "quarterly" in s.text.lower())
    library = next(s for s in result.segments if "library" in s.text.lower())
    assert report.start_s == pytest.approx(offsets[1], abs=1.0)
    assert library.start_s == pytest.approx(offsets[3], abs=1.0)
    assert wer(f"{REPORT} {LIBRARY}", result.text) <= MAX_WER
