"""Decode any audio (or the audio track of a video) to 16 kHz mono float32.

PyAV (FFmpeg) reads the container packet by packet and resamples each decoded
frame, so memory holds only the decoded samples, never the compressed file.
Every decoder failure becomes `InvalidInput`: bad media is the caller's error,
not a crash of ours.
"""

from __future__ import annotations

import collections
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import av
import av.error
import numpy as np
import numpy.typing as npt

from understanding.domain import InvalidInput, LimitExceeded

__all__ = ["AudioInfo", "decode_audio", "probe_audio"]

# Demuxers and decoders fed damaged input raise FFmpegError subclasses, but some
# paths in PyAV surface plain Python errors for the same cause.
_DECODE_ERRORS = (av.error.FFmpegError, ValueError, IndexError, EOFError, OverflowError)


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What the container says about its best audio stream; nothing is decoded.

    `duration_s` is None when the container does not state one.
    """

    duration_s: float | None
    codec: str
    sample_rate: int
    channels: int
    container: str


def probe_audio(path: pathlib.Path) -> AudioInfo:
    """Read container metadata only (fast; durations of VBR files are estimates)."""
    container = _open(path)
    with container:
        stream = _audio_stream(container)
        ctx = stream.codec_context
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        return AudioInfo(
            duration_s=duration,
            codec=ctx.codec.canonical_name,  # the format (mp3), not the decoder (mp3float)
            sample_rate=int(ctx.sample_rate or 0),
            channels=int(ctx.layout.nb_channels if ctx.layout is not None else 0),
            container=container.format.name,
        )


def decode_audio(
    path: pathlib.Path,
    *,
    sample_rate: int = 16000,
    max_duration_s: float | None = None,
    max_expansion: float | None = None,
    expansion_floor_bytes: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> npt.NDArray[np.float32]:
    """Decode the best audio stream of `path` to mono float32 in [-1, 1].

    Raises `LimitExceeded` (field "duration") as soon as more than
    `max_duration_s` has been decoded, without decoding the rest. A truncated
    file yields the audio before the damage, or `InvalidInput` when none is left.

    `max_expansion` bounds the decoded bytes (4 per sample) to that many times
    the file's size once they pass `expansion_floor_bytes`: a few kilobytes of
    FLAC can state an hour of silence (a decompression bomb), which no real
    recording does. `on_progress(samples)` is called after every 30 s decoded.
    """
    max_samples = None if max_duration_s is None else int(max_duration_s * sample_rate)
    max_bytes: int | None = None
    if max_expansion is not None:
        max_bytes = max(expansion_floor_bytes, int(max_expansion * path.stat().st_size)) if path.is_file() else None
    samples = _Samples()
    container = _open(path)
    with container:
        stream = _audio_stream(container)
        resampler: av.AudioResampler | None = None
        source: tuple[str, str, int] | None = None
        mix = 1  # channels averaged here (1: FFmpeg downmixes)
        try:
            for frame in container.decode(stream):
                shape = (frame.format.name, frame.layout.name, frame.sample_rate)
                if shape != source:
                    # Some streams (AAC, MP3 joint stereo) change layout midway; a
                    # resampler accepts one input shape only, so start a new one.
                    if resampler is not None:
                        samples.extend(resampler.resample(None), mix)
                    # FFmpeg has no downmix for channels without an order ("9 channels",
                    # e.g. a 32-channel WAV): keep them and average them here.
                    mix = frame.layout.nb_channels if frame.layout.name.endswith(" channels") else 1
                    layout = "mono" if mix == 1 else frame.layout
                    resampler = av.AudioResampler(format="flt", layout=layout, rate=sample_rate)
                    source = shape
                assert resampler is not None
                blocks = len(samples)
                samples.extend(resampler.resample(frame), mix)
                if max_samples is not None and samples.total > max_samples:
                    raise _too_long(max_duration_s)
                if max_bytes is not None and samples.total * 4 > max_bytes:
                    raise _bomb(max_expansion, max_bytes)
                if on_progress is not None and len(samples) != blocks:
                    on_progress(samples.total)
            if resampler is not None:
                samples.extend(resampler.resample(None), mix)
        except _DECODE_ERRORS as exc:
            if samples.total == 0:
                raise InvalidInput(f"media is not decodable audio: {_reason(exc)}", field="chunk") from exc
            # Damage after some audio (a cut upload): keep what decoded cleanly.
    if max_samples is not None and samples.total > max_samples:
        raise _too_long(max_duration_s)
    if max_bytes is not None and samples.total * 4 > max_bytes:
        raise _bomb(max_expansion, max_bytes)
    if samples.total == 0:
        raise InvalidInput("media contains no audio samples", field="chunk")
    return samples.join()


def _open(path: pathlib.Path) -> av.container.InputContainer:
    if not path.is_file():
        # Our own storage lost it: not the caller's fault, so not InvalidInput.
        raise FileNotFoundError(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except _DECODE_ERRORS as exc:
        raise InvalidInput(f"media is not decodable audio: {_reason(exc)}", field="chunk") from exc


def _audio_stream(container: av.container.InputContainer) -> av.AudioStream:
    stream = container.streams.best("audio")
    if not isinstance(stream, av.AudioStream):
        raise InvalidInput("media has no audio stream", field="chunk")
    return stream


class _Samples:
    """Decoded samples gathered in fixed blocks (30 s at 16 kHz), then joined.

    A list of per-frame arrays (~1k samples each) would live in the malloc
    heap, which keeps its pages after `join` frees them: peak RSS twice the
    audio (506 MB for an hour). Blocks this large are mmapped, so each one
    returns to the OS as soon as it is copied out: peak one audio plus a block.
    """

    block = 30 * 16000

    def __init__(self) -> None:
        self._blocks: collections.deque[npt.NDArray[np.float32]] = collections.deque()
        self._fill = self.block  # no open block yet
        self.total = 0

    def __len__(self) -> int:
        """Blocks started so far."""
        return len(self._blocks)

    def extend(self, frames: list[av.AudioFrame], channels: int = 1) -> None:
        """Append packed float frames; `channels` > 1 are averaged to mono."""
        for frame in frames:
            data = frame.to_ndarray().reshape(-1)
            if channels > 1:
                data = data.reshape(-1, channels).mean(axis=1, dtype=np.float32)
            at = 0
            while at < data.size:
                if self._fill == self.block:
                    self._blocks.append(np.empty(self.block, dtype=np.float32))
                    self._fill = 0
                n = min(self.block - self._fill, data.size - at)
                self._blocks[-1][self._fill : self._fill + n] = data[at : at + n]
                self._fill += n
                at += n
            self.total += data.size

    def join(self) -> npt.NDArray[np.float32]:
        out = np.empty(self.total, dtype=np.float32)
        at = 0
        while self._blocks:
            block = self._blocks.popleft()
            n = min(block.size, self.total - at)
            out[at : at + n] = block[:n]
            at += n
        # The resampler's filter can overshoot full scale slightly.
        np.clip(out, -1.0, 1.0, out=out)
        return out


def _too_long(max_duration_s: float | None) -> LimitExceeded:
    return LimitExceeded(f"media is longer than the {max_duration_s:g} s limit", field="duration")


def _bomb(max_expansion: float | None, max_bytes: int) -> LimitExceeded:
    return LimitExceeded(
        f"media decodes to more than {max_expansion:g} times its size ({max_bytes} bytes of audio): "
        "rejected as a decompression bomb",
        field="decompression_ratio",
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__
