"""Decoders of a live stream's media: JPEG frames and Opus packets.

Plain functions and one small stateful decoder; `sandbox.StreamDecoder`
runs them in a child process, since the bytes come straight from a caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np
import numpy.typing as npt

from understanding.domain import InvalidInput

__all__ = ["DecodedFrame", "FrameLimits", "OpusDecoder", "decode_image"]

SAMPLE_RATE = 16000


@dataclass(frozen=True, slots=True)
class FrameLimits:
    max_pixels: int = 3840 * 2160  # width*height of the encoded image
    analysis_width: int = 320  # downscaled to this width for analysis
    # Also a copy at up to this long side for the picture moderation models (0: none);
    # on-screen text is unreadable at the analysis width.
    detail_max_side: int = 0


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A frame as BGR at the analysis width, its encoded size, and the detail copy if asked for."""

    image: npt.NDArray[np.uint8]
    width: int
    height: int
    detail: npt.NDArray[np.uint8] | None = None


def decode_image(data: bytes, limits: FrameLimits) -> DecodedFrame:
    """A JPEG/PNG as BGR downscaled to the analysis width (and the detail copy), with the encoded
    width and height; InvalidInput when it is not an image (or too large)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    # The header tells the size before any pixel is decoded (a 60000x60000 "image" is refused here).
    ok, width, height = _dimensions(data)
    if ok and width * height > limits.max_pixels:
        raise InvalidInput(f"frame of {width}x{height} exceeds {limits.max_pixels} pixels", field="frame.jpeg")
    # JPEG decodes straight to 1/2, 1/4 or 1/8 size (DCT scaling): far cheaper than full size + resize.
    flag = cv2.IMREAD_COLOR
    if ok and data[:2] == b"\xff\xd8":
        for factor, reduced in (
            (8, cv2.IMREAD_REDUCED_COLOR_8),
            (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2),
        ):
            detail_ok = not limits.detail_max_side or max(width, height) // factor >= limits.detail_max_side
            if width // factor >= limits.analysis_width and detail_ok:
                flag = reduced
                break
    image = cv2.imdecode(buffer, flag)
    if image is None or image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInput("not a decodable JPEG or PNG image", field="frame.jpeg")
    h, w = image.shape[:2]
    if not ok:
        width, height = w, h
        if h * w > limits.max_pixels:
            raise InvalidInput(f"frame of {w}x{h} exceeds {limits.max_pixels} pixels", field="frame.jpeg")
    detail: npt.NDArray[np.uint8] | None = None
    if limits.detail_max_side:
        large = image
        if max(w, h) > limits.detail_max_side:
            ratio = limits.detail_max_side / max(w, h)
            large = cv2.resize(
                image, (max(2, round(w * ratio)), max(2, round(h * ratio))), interpolation=cv2.INTER_AREA
            )
        detail = np.ascontiguousarray(large, dtype=np.uint8)
    if w > limits.analysis_width:
        size = (limits.analysis_width, max(2, round(h * limits.analysis_width / w)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return DecodedFrame(np.ascontiguousarray(image, dtype=np.uint8), width, height, detail)


def _dimensions(data: bytes) -> tuple[bool, int, int]:
    """(known, width, height) from a PNG IHDR or a JPEG SOF marker, without decoding."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return True, int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return False, 0, 0
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return False, 0, 0
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return True, int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + length
    return False, 0, 0


class OpusDecoder:
    """One stream's Opus packets -> 16 kHz mono float32 (libopus through PyAV).

    Opus is stateful across packets (prediction, packet loss concealment),
    so one decoder lives as long as its stream.
    """

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("libopus", "r")
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def decode(self, packet: bytes) -> npt.NDArray[np.float32]:
        """The packet's audio; InvalidInput when libopus rejects it."""
        try:
            frames = self._codec.decode(av.Packet(packet))
            pieces = [r.to_ndarray().reshape(-1) for f in frames for r in self._resampler.resample(f)]
        except (av.error.FFmpegError, ValueError) as exc:
            raise InvalidInput(f"not a decodable Opus packet ({exc})", field="audio.data") from None
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(pieces), dtype=np.float32)
