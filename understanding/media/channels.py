"""Decode audio keeping its channels apart: (channels, samples) float32 at 16 kHz.

For recordings with one participant per channel (call recorders write each
side to its own channel), diarization reads each channel on its own
(`pipelines.diarization.channel_layout`). `decode_audio` in media/audio.py
mixes down to mono and stays the path for everything else.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import av
import numpy as np
import numpy.typing as npt

from understanding.domain import MAX_SPEAKERS, InvalidInput
from understanding.media.audio import _DECODE_ERRORS, _audio_stream, _bomb, _open, _reason, _too_long

__all__ = ["MAX_CHANNELS", "decode_channels", "iter_channel_blocks"]

MAX_CHANNELS = MAX_SPEAKERS  # one participant per channel


def decode_channels(
    path: pathlib.Path,
    *,
    sample_rate: int = 16000,
    max_channels: int = MAX_CHANNELS,
    max_duration_s: float | None = None,
    max_expansion: float | None = None,
    expansion_floor_bytes: int = 0,
) -> npt.NDArray[np.float32]:
    """Every channel of the best audio stream of `path`, resampled, as float32 in [-1, 1].

    More channels than `max_channels` is `InvalidInput` (field
    "speech.channels") before anything is decoded. A stream whose channel
    count changes midway is `InvalidInput` too (which channel is whom would
    be ambiguous). Limits as in `decode_audio`:
    `LimitExceeded` past `max_duration_s` or past `max_expansion` times the
    file size (all channels counted).
    """
    parts = list(
        iter_channel_blocks(
            path,
            sample_rate=sample_rate,
            max_channels=max_channels,
            max_duration_s=max_duration_s,
            max_expansion=max_expansion,
            expansion_floor_bytes=expansion_floor_bytes,
        )
    )
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False)


def iter_channel_blocks(
    path: pathlib.Path,
    *,
    sample_rate: int = 16000,
    max_channels: int = MAX_CHANNELS,
    max_duration_s: float | None = None,
    max_expansion: float | None = None,
    expansion_floor_bytes: int = 0,
) -> Iterator[npt.NDArray[np.float32]]:
    """`decode_channels` as (channels, samples) blocks in order, clipped to [-1, 1], with the same checks.

    Lets a caller write the audio out as it decodes (the decoder sandbox hands
    it back through a file), holding one block instead of the whole recording.
    Every block has the same number of channels; at least one sample comes out
    or `InvalidInput` is raised.
    """
    max_samples = None if max_duration_s is None else int(max_duration_s * sample_rate)
    max_bytes: int | None = None
    if max_expansion is not None:
        max_bytes = max(expansion_floor_bytes, int(max_expansion * path.stat().st_size)) if path.is_file() else None
    container = _open(path)
    total = 0
    with container:
        stream = _audio_stream(container)
        declared = stream.codec_context.layout.nb_channels if stream.codec_context.layout is not None else 0
        if declared > max_channels:
            raise InvalidInput(
                f"audio has {declared} channels; at most {max_channels} are supported", field="speech.channels"
            )
        resampler: av.AudioResampler | None = None
        source: tuple[str, str, int] | None = None
        channels = 0

        def emit(block: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            nonlocal total
            total += block.shape[1]
            if max_samples is not None and total > max_samples:
                raise _too_long(max_duration_s)
            if max_bytes is not None and total * channels * 4 > max_bytes:
                raise _bomb(max_expansion, max_bytes)
            np.clip(block, -1.0, 1.0, out=block)
            return block

        try:
            for frame in container.decode(stream):
                shape = (frame.format.name, frame.layout.name, frame.sample_rate)
                if shape != source:
                    if resampler is not None:
                        for f in resampler.resample(None):
                            yield emit(_planes(f, channels))
                    if channels and frame.layout.nb_channels != channels:
                        raise InvalidInput(
                            f"the channel count changes from {channels} to {frame.layout.nb_channels} mid-stream",
                            field="speech.channels",
                        )
                    channels = frame.layout.nb_channels
                    if channels > max_channels:
                        raise InvalidInput(
                            f"audio has {channels} channels; at most {max_channels} are supported",
                            field="speech.channels",
                        )
                    # Packed samples: PyAV 18's to_ndarray() of planar audio with 8+ channels crashes.
                    resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=sample_rate)
                    source = shape
                assert resampler is not None
                for out in resampler.resample(frame):
                    block = _planes(out, channels)
                    if block.shape[1]:
                        yield emit(block)
            if resampler is not None:
                for f in resampler.resample(None):
                    yield emit(_planes(f, channels))
        except _DECODE_ERRORS as exc:
            if total == 0:
                raise InvalidInput(f"media is not decodable audio: {_reason(exc)}", field="chunk") from exc
            # Damage after some audio (a cut upload): keep what decoded cleanly.
    if total == 0:
        raise InvalidInput("media contains no audio samples", field="chunk")


def _planes(frame: av.AudioFrame, channels: int) -> npt.NDArray[np.float32]:
    """(channels, samples) from a packed float frame."""
    packed = np.asarray(frame.to_ndarray(), dtype=np.float32)
    return packed.reshape(-1, channels).T
