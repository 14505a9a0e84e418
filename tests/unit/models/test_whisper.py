"""Whisper base from the packaged parts, on real espeak-ng speech.

WER bounds: espeak is robotic, yet base int8 transcribes these sentences
exactly (measured WER 0.00 for en-us and es at 150 wpm; 0.06 for es at 130
wpm). Other sentences are harder ("quick brown fox" is heard as "quick round
fox": WER 0.31), so the bound is 0.25: a few word errors in ~17 words pass,
a broken model or wrong language (WER near 1) does not.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pathlib
import re

import jiwer
import numpy as np
import pytest
from faster_whisper.feature_extractor import FeatureExtractor

from tests.fixtures.speech import concat_with_silence, make_silence_wav, make_speech_wav
from understanding.domain import InvalidInput, Segment, SpeechOptions
from understanding.media.audio import decode_audio
from understanding.models import whisper
from understanding.models.whisper import (
    PACKAGED,
    Transcriber,
    WhisperModelError,
    _BlockwiseLogMel,
    resolve_whisper_model,
)

MAX_WER = 0.25
ENGLISH = "The weather today is sunny and warm, so we are going to the park for a picnic with our friends."
SPANISH = "Hoy hace buen tiempo, así que vamos al parque a comer con nuestros amigos y nuestra familia."
REPORT = "Please send the quarterly report to the finance team before the meeting on Monday morning."
LIBRARY = "The library will be closed for renovation during the first two weeks of September."


def words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(words(reference), words(hypothesis)))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return resolve_whisper_model(PACKAGED, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def transcriber(model_path: str) -> Transcriber:
    model = Transcriber(model_path=model_path, cpu_threads=2)
    model.warm_up()
    return model


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("clips")


def speech(text: str, clips: pathlib.Path, voice: str = "en-us") -> np.ndarray:
    name = hashlib.sha256(f"{voice}{text}".encode()).hexdigest()[:12]
    return decode_audio(make_speech_wav(text, clips / f"{name}.wav", voice=voice))


# --- assembly ----------------------------------------------------------------


def test_packaged_model_is_assembled_once(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pathlib.Path(resolve_whisper_model(PACKAGED, tmp_path))
    model_bin = path / "model.bin"
    stamp = json.loads((path / ".assembled").read_text())
    before = model_bin.stat()

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a valid cache was copied, hashed, locked or rewritten")

    with monkeypatch.context() as m:  # stats and a small json read, no copying or hashing
        for name in ("_concatenate", "_atomic_copy", "_atomic_write", "_exclusive", "_published_sha256"):
            m.setattr(whisper, name, never)
        again = resolve_whisper_model(PACKAGED, tmp_path)

    assert again == str(path)
    after = model_bin.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert stamp["size"] == before.st_size == sum(p["size"] for p in stamp["parts"])
    with open(model_bin, "rb") as handle:
        assert hashlib.file_digest(handle, "sha256").hexdigest() == stamp["sha256"]
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert (path / name).is_file()


@pytest.mark.parametrize("damage", ["truncate", "overwrite", "drop_tokenizer"])
def test_damaged_cache_is_rebuilt(tmp_path: pathlib.Path, damage: str) -> None:
    path = pathlib.Path(resolve_whisper_model(PACKAGED, tmp_path))
    model_bin = path / "model.bin"
    stamp = json.loads((path / ".assembled").read_text())
    if damage == "truncate":
        os.truncate(model_bin, stamp["size"] // 3)
    elif damage == "overwrite":  # same size, new bytes: caught by the mtime check
        with open(model_bin, "r+b") as handle:
            handle.seek(1000)
            handle.write(b"\0" * 64)
    else:
        (path / "tokenizer.json").unlink()

    resolve_whisper_model(PACKAGED, tmp_path)

    assert model_bin.stat().st_size == stamp["size"]
    assert (path / "tokenizer.json").is_file()
    with open(model_bin, "rb") as handle:
        assert hashlib.file_digest(handle, "sha256").hexdigest() == stamp["sha256"]


def test_published_hash_mismatch_is_refused(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(whisper, "_published_sha256", lambda parts: "0" * 64)

    with pytest.raises(WhisperModelError, match="sha256"):
        resolve_whisper_model(PACKAGED, tmp_path)
    assert not (tmp_path / "whisper-base" / "model.bin").exists()
    assert not (tmp_path / "whisper-base" / ".assembled").exists()


def test_published_hash_is_found_next_to_model_bin() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    text = f"Files\n- model.bin (145 MB), sha256: {digest}\n- other: {'1' * 64}\n"
    match = whisper._SHA256_NEAR_MODEL_BIN.search(text)
    assert match is not None and match.group(1) == digest


def test_concurrent_resolves_assemble_one_consistent_model(tmp_path: pathlib.Path) -> None:
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: resolve_whisper_model(PACKAGED, tmp_path), range(3)))

    assert len(set(paths)) == 1
    stamp = json.loads((pathlib.Path(paths[0]) / ".assembled").read_text())
    with open(pathlib.Path(paths[0]) / "model.bin", "rb") as handle:
        assert hashlib.file_digest(handle, "sha256").hexdigest() == stamp["sha256"]
    assert not [p for p in pathlib.Path(paths[0]).iterdir() if p.name.startswith(".model.bin")]


def test_model_directory_is_used_as_is(model_path: str, tmp_path: pathlib.Path) -> None:
    assert resolve_whisper_model(model_path, tmp_path) == model_path
    with pytest.raises(WhisperModelError, match="no model.bin"):
        resolve_whisper_model(str(tmp_path), tmp_path)
    with pytest.raises(WhisperModelError):
        resolve_whisper_model("no-such-model", tmp_path)
    assert resolve_whisper_model("tiny", tmp_path) == "tiny"


# --- transcription -------------------------------------------------------------


def test_model_ref_names_the_assembled_weights(transcriber: Transcriber) -> None:
    ref = transcriber.model_ref
    assert ref.name == "whisper-base"
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", ref.version)


def test_english_speech(transcriber: Transcriber, clips: pathlib.Path) -> None:
    audio = speech(ENGLISH, clips)

    result = transcriber.transcribe(audio, SpeechOptions(word_timestamps=True))

    assert result.language.code == "en" and result.language.probability > 0.5
    assert wer(ENGLISH, result.text) <= MAX_WER
    assert result.duration_s == pytest.approx(audio.size / 16000)
    assert result.task == "transcribe" and result.model == transcriber.model_ref
    assert [s.index for s in result.segments] == list(range(len(result.segments)))
    times = [t for s in result.segments for w in s.words for t in (w.start_s, w.end_s)]
    assert len(times) >= 2 * len(words(ENGLISH).split()) - 4
    assert times == sorted(times)
    assert 0.0 <= times[0] and times[-1] <= result.duration_s
    assert all(0.0 <= w.probability <= 1.0 for s in result.segments for w in s.words)


def test_spanish_speech(transcriber: Transcriber, clips: pathlib.Path) -> None:
    result = transcriber.transcribe(speech(SPANISH, clips, voice="es"), SpeechOptions())

    assert result.language.code == "es"
    assert wer(SPANISH, result.text) <= MAX_WER
    assert all(not s.words for s in result.segments)  # not requested


def test_forced_language(transcriber: Transcriber, clips: pathlib.Path) -> None:
    options = SpeechOptions(language="es", beam_size=1)

    result = transcriber.transcribe(speech(SPANISH, clips, voice="es"), options)

    assert (result.language.code, result.language.probability) == ("es", 1.0)
    assert wer(SPANISH, result.text) <= MAX_WER


def test_silence_has_no_segments_with_vad(transcriber: Transcriber, clips: pathlib.Path) -> None:
    silence = decode_audio(make_silence_wav(clips / "silence5.wav", 5.0))

    result = transcriber.transcribe(silence, SpeechOptions(vad=True))

    assert result.segments == ()
    assert result.text == ""
    assert result.language.code == "" and result.language.probability == 0.0
    assert result.duration_s == pytest.approx(5.0)


@pytest.mark.parametrize("code", ["xx", "english", "EN", "en-US", ""])
def test_unsupported_language_is_invalid(code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        SpeechOptions(language=code)
    assert err.value.field == "speech.language"


def test_language_missing_from_the_model_vocabulary_is_invalid(transcriber: Transcriber) -> None:
    assert len(transcriber.supported_languages) == 99 and "yue" not in transcriber.supported_languages
    with pytest.raises(InvalidInput) as err:
        transcriber.transcribe(np.zeros(16000, dtype=np.float32), SpeechOptions(language="yue"))
    assert err.value.field == "speech.language"


def test_other_invalid_options() -> None:
    with pytest.raises(InvalidInput):
        SpeechOptions(task="summarize")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        SpeechOptions(beam_size=0)


def test_empty_or_stereo_audio(transcriber: Transcriber) -> None:
    with pytest.raises(InvalidInput):
        transcriber.transcribe(np.zeros(0, dtype=np.float32), SpeechOptions())
    with pytest.raises(ValueError):
        transcriber.transcribe(np.zeros((2, 16000), dtype=np.float32), SpeechOptions())


def test_progress_and_timing_of_placed_phrases(transcriber: Transcriber, clips: pathlib.Path) -> None:
    first = make_speech_wav(REPORT, clips / "report.wav")
    second = make_speech_wav(LIBRARY, clips / "library.wav")
    offsets = concat_with_silence([2.0, first, 40.0, second, 1.0], clips / "placed.wav")
    calls: list[tuple[Segment, float]] = []

    result = transcriber.transcribe(
        decode_audio(clips / "placed.wav"),
        SpeechOptions(language="en"),
        on_segment=lambda s, f: calls.append((s, f)),
    )

    assert [s for s, _ in calls] == list(result.segments)
    fractions = [f for _, f in calls]
    assert fractions == sorted(fractions) and 0.0 < fractions[0] and fractions[-1] <= 1.0
    assert fractions[-1] > 0.8  # of the speech; the last chunk's trailing pad is not decoded
    library = next(s for s in result.segments if "library" in s.text.lower())
    report = next(s for s in result.segments if "quarterly" in s.text.lower())
    assert report.start_s == pytest.approx(offsets[1], abs=1.0)
    # Not stretched over the 40 s gap (faster-whisper's own vad_filter mapping does that).
    assert report.end_s == pytest.approx(offsets[2], abs=1.0)
    assert library.start_s == pytest.approx(offsets[3], abs=1.0)
    assert wer(f"{REPORT} {LIBRARY}", result.text) <= MAX_WER


def test_raising_from_on_segment_cancels(transcriber: Transcriber, clips: pathlib.Path) -> None:
    class Cancelled(Exception):
        pass

    def cancel(segment: Segment, fraction: float) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        transcriber.transcribe(speech(ENGLISH, clips), SpeechOptions(), on_segment=cancel)


def test_concurrent_calls_with_two_workers(model_path: str, clips: pathlib.Path) -> None:
    model = Transcriber(model_path=model_path, cpu_threads=1, num_workers=2)
    english, spanish = speech(ENGLISH, clips), speech(SPANISH, clips, voice="es")
    options = SpeechOptions(beam_size=1)
    alone = [model.transcribe(a, options).text for a in (english, spanish)]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda a: model.transcribe(a, options).text, [english, spanish]))

    assert together == alone


def test_blockwise_features_match_faster_whisper(clips: pathlib.Path) -> None:
    rng = np.random.default_rng(3)
    noise = (rng.standard_normal(70 * 16000 + 37) * 0.1).astype(np.float32)
    talk = np.concatenate([speech(ENGLISH, clips)] * 12)  # > 60 s, so blockwise
    for audio in (noise, talk):
        ours, upstream = _BlockwiseLogMel()(audio), FeatureExtractor()(audio)
        assert ours.shape == upstream.shape
        np.testing.assert_allclose(ours, upstream, atol=1e-5)
