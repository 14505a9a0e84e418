"""The GE2E speaker encoder from resemblyzer's packaged weights, on real speech.

Real speech: pyannote.audio 4.0.7's two-speaker telephone sample (fetched from
PyPI by scripts/fetch_spk_eval_data.sh). Reference vectors were made by
resemblyzer 0.1.4 itself (with librosa 0.11) on four 1.6 s windows of it, see
tests/fixtures/speaker/resemblyzer_sample_windows.json.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import wave

import numpy as np
import pytest

from understanding.models.speaker import (
    GE2EEncoder,
    SpeakerModelError,
    load_speaker_encoder,
    mel_filters_slaney,
    resolve_speaker_model,
)

ROOT = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "speaker"
SR = 16000


@pytest.fixture(scope="module")
def reference_dir() -> pathlib.Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch_spk_eval_data.sh")], check=True, capture_output=True, text=True
    )
    return pathlib.Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sample(reference_dir: pathlib.Path) -> np.ndarray:
    with wave.open(str(reference_dir / "sample.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def encoder() -> GE2EEncoder:
    model = load_speaker_encoder()
    model.warm_up()
    return model


def test_vectors_equal_resemblyzers_own_on_real_speech(encoder: GE2EEncoder, sample: np.ndarray) -> None:
    meta = json.loads((FIXTURES / "resemblyzer_sample_windows.json").read_text())
    expected = np.load(FIXTURES / "resemblyzer_sample_windows.npy")
    n = meta["window_samples"]
    windows = np.stack([sample[int(s * SR) : int(s * SR) + n] for s in meta["window_starts_s"]])
    ours = encoder.embed(windows)
    cosine = (ours * expected).sum(axis=1)
    assert cosine.min() > 0.9999, cosine
    np.testing.assert_allclose(ours, expected, atol=2e-4)


def test_embeddings_are_unit_vectors_and_deterministic(encoder: GE2EEncoder, sample: np.ndarray) -> None:
    windows = np.stack([sample[i : i + 25600] for i in range(7 * SR, 27 * SR, SR)])
    first = encoder.embed(windows)
    assert first.shape == (len(windows), encoder.dimension) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, encoder.embed(windows))
    # Batching does not change a window's vector.
    np.testing.assert_allclose(encoder.embed(windows[3:4])[0], first[3], atol=1e-5)


def test_same_speaker_is_closer_than_the_other_speaker(encoder: GE2EEncoder, sample: np.ndarray) -> None:
    # From the reference RTTM: speaker90 speaks 10.57-14.70 s, speaker91 21.78-27.80 s (no overlap there).
    a = np.stack([sample[int(t * SR) : int(t * SR) + 25600] for t in (10.7, 11.5, 12.3, 13.0)])
    b = np.stack([sample[int(t * SR) : int(t * SR) + 25600] for t in (22.0, 23.5, 25.0, 26.0)])
    ea, eb = encoder.embed(a), encoder.embed(b)
    within = np.mean([(ea @ ea.T)[np.triu_indices(4, 1)].mean(), (eb @ eb.T)[np.triu_indices(4, 1)].mean()])
    across = (ea @ eb.T).mean()
    assert within > across + 0.05, (within, across)


def test_silence_and_bad_shapes(encoder: GE2EEncoder) -> None:
    out = encoder.embed(np.zeros((2, 25600), dtype=np.float32))
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match="2-D"):
        encoder.embed(np.zeros(25600, dtype=np.float32))
    with pytest.raises(ValueError, match="at least"):
        encoder.embed(np.zeros((1, 100), dtype=np.float32))
    assert encoder.embed(np.zeros((0, 25600), dtype=np.float32)).shape == (0, encoder.dimension)


def test_model_ref_names_the_packaged_weights() -> None:
    path = resolve_speaker_model("packaged")
    assert path.name == "pretrained.pt"
    model = GE2EEncoder(path)
    assert model.model_ref.name == "ge2e-resemblyzer"
    assert model.model_ref.version == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_unknown_or_broken_weights_are_a_startup_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SpeakerModelError, match="neither"):
        resolve_speaker_model(str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SpeakerModelError, match="not a GE2E"):
        GE2EEncoder(junk)


def test_mel_filters_match_the_slaney_definition() -> None:
    filters = mel_filters_slaney(SR, 400, 40)
    assert filters.shape == (40, 201)
    assert (filters >= 0).all()
    # Slaney normalisation: each triangle has area 1 in Hz-scaled units, so peaks shrink as bands widen.
    peaks = filters.max(axis=1)
    assert peaks[0] > peaks[-1]
    # Every band has support, and the bands cover 0..8 kHz in order.
    centres = (filters * np.arange(201)).sum(axis=1) / filters.sum(axis=1)
    assert np.all(np.diff(centres) > 0)
