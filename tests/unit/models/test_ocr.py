"""PP-OCRv4 through our pipeline on text rendered with Pillow: small print straight and rotated,
a phone number over a photo, the no-text gate and the per-frame cap."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw, ImageFont

from tests.fixtures import video as vfx
from understanding.models.ocr import OcrOptions, PaddleOcr

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
LINES = [
    "Shipping address changes must reach us before noon.",
    "Orders placed after that time leave the next morning.",
    "Returns are accepted within thirty days of delivery.",
    "Keep the receipt and the original packaging intact.",
]


def page(lines: list[str], size: int = 15) -> np.ndarray:
    """Small print: ~15 px glyphs, black on white, like a phone photo of a leaflet."""
    font = ImageFont.truetype(FONT, size)
    canvas = Image.new("RGB", (560, 40 + len(lines) * size * 2), "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((20, 20 + i * size * 2), line, font=font, fill="black")
    return cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderValue=(255, 255, 255), flags=cv2.INTER_LINEAR)


def word_accuracy(expected: list[str], text: str) -> float:
    truth = " ".join(expected).lower().replace(".", "").split()
    read = text.lower().replace(".", "").split()
    return sum(1 for w in truth if w in read) / len(truth)


@pytest.fixture(scope="module")
def ocr() -> PaddleOcr:
    model = PaddleOcr(threads=1)
    model.warm_up()
    return model


def test_small_print_reads_line_by_line_in_order(ocr: PaddleOcr) -> None:
    (result,) = ocr.predict([page(LINES)])
    assert result.regions >= len(LINES) and result.skipped == 0
    assert word_accuracy(LINES, result.text) >= 0.95, result.text
    rows = result.text.splitlines()
    assert len(rows) == len(LINES) and "noon" in rows[0] and "packaging" in rows[-1]
    assert result.model.name == "pp-ocrv4-mobile" and result.model.version.startswith("1.4.4+")


def test_rotated_page_is_deskewed_per_line(ocr: PaddleOcr) -> None:
    (result,) = ocr.predict([rotate(page(LINES), 5)])
    assert word_accuracy(LINES, result.text) >= 0.9, result.text
    angles = [line.angle_deg for line in result.lines]
    assert all(-8 < a < -2 for a in angles), angles  # counter-clockwise page: lines rise to the right


def test_phone_number_over_a_photo_with_its_box(ocr: PaddleOcr) -> None:
    frame = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)  # 400x600 real photo
    cv2.rectangle(frame, (40, 300), (420, 350), (20, 20, 20), -1)
    cv2.putText(frame, "Call 415 555 2671", (50, 337), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    (result,) = ocr.predict([frame])
    line = next(line for line in result.lines if "2671" in line.text)
    assert "".join(ch for ch in line.text if ch.isdigit()) == "4155552671"
    x, y, _, h = line.box
    assert 30 < x < 80 and 290 < y < 330 and y + h < 360


def test_frames_without_text_skip_recognition(ocr: PaddleOcr) -> None:
    flat = np.full((360, 640, 3), 90, np.uint8)
    (result,) = ocr.predict([flat])
    assert result.lines == () and result.regions == 0
    assert ocr.predict([]) == []


def test_shapes_read_as_a_lone_glyph_are_not_text(ocr: PaddleOcr) -> None:
    """The faint discs of the video fixture's night shot read as "O" with ~0.6 confidence (a silent
    shot would be embedded as "O" instead of its description); a line needs two letters or digits."""
    frame = np.ascontiguousarray(vfx._frame(5.0))
    (result,) = ocr.predict([frame])
    assert result.lines == () and result.regions >= 1
    (loose,) = PaddleOcr(OcrOptions(min_line_chars=1), threads=1).predict([frame])
    assert loose.lines and all(len(line.text) == 1 for line in loose.lines), loose.lines


def test_work_per_frame_is_capped() -> None:
    capped = PaddleOcr(OcrOptions(max_lines=2), threads=1)
    (result,) = capped.predict([page(LINES)])
    assert len(result.lines) == 2 and result.skipped == result.regions - 2 >= 2


def test_grey_and_bgra_images() -> None:
    reader = PaddleOcr(threads=1)
    grey = cv2.cvtColor(page(LINES[:1], size=20), cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(page(LINES[:1], size=20), cv2.COLOR_BGR2BGRA)
    for image in (grey, bgra):
        (result,) = reader.predict([image])
        assert word_accuracy(LINES[:1], result.text) >= 0.9, result.text


def test_a_huge_title_is_read_without_a_full_resolution_strip(ocr: PaddleOcr) -> None:
    canvas = Image.new("RGB", (4000, 700), "white")
    ImageDraw.Draw(canvas).text((100, 150), "SALE 50%", font=ImageFont.truetype(FONT, 380), fill="black")
    (result,) = ocr.predict([cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)])
    assert "SALE" in result.text and "50" in result.text, result.text
