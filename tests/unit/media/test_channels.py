"""Decoding with channels kept apart, on a stereo call built from a real two-speaker recording."""

from __future__ import annotations

import pathlib
import subprocess
import wave

import numpy as np
import pytest

from benchmarks.der import diarization_error, read_rttm
from understanding.domain import InvalidInput
from understanding.media.channels import MAX_CHANNELS, decode_channels
from understanding.pipelines.diarization import channel_layout, diarize_channels

ROOT = pathlib.Path(__file__).resolve().parents[3]
SR = 16000


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch_spk_eval_data.sh")], check=True, capture_output=True, text=True
    )
    folder = pathlib.Path(out.stdout.strip().splitlines()[-1])
    with wave.open(str(folder / "sample.wav")) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return audio, read_rttm(folder / "sample.rttm")


def _write(path: pathlib.Path, interleaved: np.ndarray, channels: int, rate: int = SR) -> pathlib.Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(interleaved, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def _stereo_call(audio: np.ndarray, ref: list[tuple[float, float, str]]) -> np.ndarray:
    sides = []
    for name in ("speaker90", "speaker91"):
        mask = np.zeros(audio.size, dtype=bool)
        for s, e, k in ref:
            if k == name:
                mask[int(s * SR) : int(e * SR)] = True
        sides.append(np.where(mask, audio, 0.0))
    leak = 10 ** (-30 / 20)
    return np.stack([sides[0] + leak * sides[1], sides[1] + leak * sides[0]])


def test_stereo_call_file_gives_one_speaker_per_channel(reference, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    audio, ref = reference
    call = _stereo_call(audio, ref)
    path = _write(tmp_path / "call.wav", call.T.ravel(), 2)
    decoded = decode_channels(path)
    assert decoded.shape == call.shape and decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, call, atol=2e-4)
    layout = channel_layout(decoded)
    assert layout.distinct, layout.reason
    d = diarize_channels(layout)
    turns = [(t.start_s, t.end_s, t.speaker) for t in d.turns]
    assert diarization_error(ref, turns, collar_s=0.25, end_s=audio.size / SR).der <= 0.05


def test_resampled_channels_stay_apart(reference, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    audio, ref = reference
    call = _stereo_call(audio, ref)[:, : 10 * SR]
    up = np.stack([np.interp(np.arange(0, call.shape[1], SR / 48000), np.arange(call.shape[1]), c) for c in call])
    decoded = decode_channels(_write(tmp_path / "call48k.wav", up.T.ravel(), 2, 48000))
    assert decoded.shape[0] == 2 and abs(decoded.shape[1] - call.shape[1]) <= 64
    corr = np.corrcoef(decoded[:, : call.shape[1] - 64], call[:, : call.shape[1] - 64])
    assert corr[0, 2] > 0.99 and corr[1, 3] > 0.99


def test_mono_declared_as_eight_channels_is_one_mixed_channel(reference, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    audio, _ = reference
    samples = audio[: audio.size // 8 * 8]
    decoded = decode_channels(_write(tmp_path / "mono-as-8.wav", samples, 8))
    assert decoded.shape == (8, samples.size // 8)
    layout = channel_layout(decoded)
    assert not layout.distinct, layout.reason


def test_more_channels_than_supported_is_invalid(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "wide.wav", np.zeros((MAX_CHANNELS + 1) * 1600), MAX_CHANNELS + 1)
    with pytest.raises(InvalidInput) as err:
        decode_channels(path)
    assert err.value.field == "speech.channels" and str(MAX_CHANNELS) in err.value.message


def test_not_audio_is_invalid(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "junk.wav"
    path.write_bytes(b"RIFF0000WAVEjunk" * 10)
    with pytest.raises(InvalidInput):
        decode_channels(path)
