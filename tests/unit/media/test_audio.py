"""decode_audio / probe_audio on real encodings of real (espeak) speech."""

from __future__ import annotations

import pathlib
import subprocess
import wave

import numpy as np
import pytest

from tests.fixtures.speech import convert, make_speech_wav, make_video, wav_duration
from understanding.domain import InvalidInput, LimitExceeded
from understanding.media.audio import AudioInfo, decode_audio, probe_audio

SENTENCE = "Please send the quarterly report to the finance team before the meeting on Monday."
FORMATS = ("wav", "flac", "mp3", "ogg", "m4a")


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def speech(media_dir: pathlib.Path) -> pathlib.Path:
    return make_speech_wav(SENTENCE, media_dir / "speech.wav")


@pytest.fixture(scope="module")
def encoded(speech: pathlib.Path, media_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    return {fmt: convert(speech, fmt, media_dir / f"speech.{fmt}") for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_codec_decodes_to_the_same_duration(
    fmt: str, speech: pathlib.Path, encoded: dict[str, pathlib.Path]
) -> None:
    audio = decode_audio(encoded[fmt])

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / 16000 - wav_duration(speech)) <= 0.1
    assert float(np.abs(audio).max()) <= 1.0
    assert float(np.sqrt(np.mean(audio**2))) > 0.01  # speech, not silence


def test_resamples_stereo_44k_to_16k_mono(speech: pathlib.Path, media_dir: pathlib.Path) -> None:
    stereo = media_dir / "stereo44k.wav"
    subprocess.run(["sox", str(speech), "-r", "44100", "-c", "2", str(stereo)], check=True)

    audio = decode_audio(stereo, sample_rate=16000)

    assert abs(audio.size / 16000 - wav_duration(speech)) <= 0.05
    assert probe_audio(stereo).channels == 2


@pytest.mark.parametrize("channels", [9, 32, 33])
def test_channels_without_an_order_are_averaged_to_mono(
    speech: pathlib.Path, tmp_path: pathlib.Path, channels: int
) -> None:
    """FFmpeg cannot downmix a layout without channel order ("9 channels"); the decoder averages them instead."""
    mono = decode_audio(speech)
    wide = tmp_path / f"{channels}ch.wav"
    with wave.open(str(wide), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.repeat((mono * 32767).astype("<i2"), channels).tobytes())
    assert probe_audio(wide).channels == channels
    audio = decode_audio(wide)
    assert audio.shape == mono.shape and np.abs(audio - mono).max() < 1e-3


@pytest.mark.parametrize(
    ("fmt", "codec", "container"),
    [("wav", "pcm_s16le", "wav"), ("flac", "flac", "flac"), ("mp3", "mp3", "mp3"),
     ("ogg", "vorbis", "ogg"), ("m4a", "aac", "mov,mp4,m4a,3gp,3g2,mj2")],
)  # fmt: skip
def test_probe_reads_container_metadata(
    fmt: str, codec: str, container: str, speech: pathlib.Path, encoded: dict[str, pathlib.Path]
) -> None:
    info = probe_audio(encoded[fmt])

    assert isinstance(info, AudioInfo)
    assert (info.codec, info.container, info.channels) == (codec, container, 1)
    assert info.sample_rate in (16000, 44100, 48000)
    assert info.duration_s is not None and abs(info.duration_s - wav_duration(speech)) <= 0.2


def test_text_renamed_to_mp3_is_invalid(tmp_path: pathlib.Path) -> None:
    fake = tmp_path / "notes.mp3"
    fake.write_text("these are meeting notes, not audio\n" * 50)

    with pytest.raises(InvalidInput) as err:
        decode_audio(fake)
    assert err.value.field == "chunk"
    with pytest.raises(InvalidInput):
        probe_audio(fake)


def test_random_bytes_are_invalid(tmp_path: pathlib.Path) -> None:
    noise = tmp_path / "noise.ogg"
    noise.write_bytes(np.random.default_rng(7).bytes(20000))

    with pytest.raises(InvalidInput):
        decode_audio(noise)


def test_zero_length_file_is_invalid(tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.touch()

    with pytest.raises(InvalidInput):
        decode_audio(empty)


def test_missing_file_is_not_the_callers_fault(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        decode_audio(tmp_path / "gone.wav")


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_file_decodes_a_prefix_or_is_invalid(
    fmt: str, speech: pathlib.Path, encoded: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    data = encoded[fmt].read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: int(len(data) * 0.3)])

    try:
        audio = decode_audio(cut)
    except InvalidInput:
        return  # e.g. m4a: the index (moov) is at the end
    assert 0 < audio.size / 16000 < wav_duration(speech)


def test_limit_stops_decoding(encoded: dict[str, pathlib.Path], speech: pathlib.Path) -> None:
    with pytest.raises(LimitExceeded) as err:
        decode_audio(encoded["mp3"], max_duration_s=1.5)
    assert err.value.field == "duration"

    within = decode_audio(encoded["mp3"], max_duration_s=wav_duration(speech) + 1.0)
    assert within.size > 0


def test_audio_track_of_a_video_decodes(speech: pathlib.Path, media_dir: pathlib.Path) -> None:
    video = make_video(media_dir / "clip.mp4", audio=speech)

    audio = decode_audio(video)

    assert abs(audio.size / 16000 - wav_duration(speech)) <= 0.1
    assert probe_audio(video).codec == "aac"


def test_video_without_audio_is_invalid(media_dir: pathlib.Path) -> None:
    video = make_video(media_dir / "mute.mp4", seconds=1.0)

    with pytest.raises(InvalidInput, match="no audio stream"):
        decode_audio(video)
