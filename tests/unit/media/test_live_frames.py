"""Live frame decoding: the analysis copy, the detail copy for the picture models, the limits."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from understanding.domain import InvalidInput
from understanding.media.live import FrameLimits, decode_image


def jpeg(width: int, height: int) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    cv2.putText(image, "CALL 415 555 0132", (width // 10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255,) * 3, 3)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def test_without_detail_only_the_analysis_copy_is_made() -> None:
    frame = decode_image(jpeg(1920, 1080), FrameLimits())
    assert (frame.width, frame.height) == (1920, 1080)
    assert frame.image.shape == (180, 320, 3) and frame.image.dtype == np.uint8
    assert frame.detail is None


@pytest.mark.parametrize(
    ("size", "detail_shape"),
    [((1920, 1080), (720, 1280, 3)), ((3840, 2160), (720, 1280, 3)), ((640, 360), (360, 640, 3))],
)
def test_the_detail_copy_is_at_most_detail_max_side_and_never_upscaled(
    size: tuple[int, int], detail_shape: tuple[int, ...]
) -> None:
    frame = decode_image(jpeg(*size), FrameLimits(detail_max_side=1280))
    assert frame.image.shape == (180, 320, 3)
    assert frame.detail is not None and frame.detail.shape == detail_shape
    assert frame.detail.flags["C_CONTIGUOUS"]
    # the same picture: the detail copy brought down to the analysis size is the analysis copy
    small = cv2.resize(frame.detail, (320, 180), interpolation=cv2.INTER_AREA)
    assert float(np.abs(small.astype(np.int16) - frame.image.astype(np.int16)).mean()) < 3.0


def test_png_frames_get_a_detail_copy_too_and_garbage_is_refused() -> None:
    ok, data = cv2.imencode(".png", np.full((1440, 2560, 3), 90, np.uint8))
    assert ok
    frame = decode_image(data.tobytes(), FrameLimits(detail_max_side=1280))
    assert frame.detail is not None and frame.detail.shape == (720, 1280, 3)
    with pytest.raises(InvalidInput, match="not a decodable JPEG or PNG"):
        decode_image(b"\x00" * 100, FrameLimits(detail_max_side=1280))
    with pytest.raises(InvalidInput, match="exceeds"):
        decode_image(data.tobytes(), FrameLimits(max_pixels=1000, detail_max_side=1280))
