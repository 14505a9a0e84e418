"""On-screen and printed text: PP-OCRv4 detection + recognition ONNX models, engineered for cost.

The weights come from `rapidocr-onnxruntime` 1.4.4 (Apache-2.0; PaddleOCR's PP-OCRv4 mobile
det/rec, Chinese + English character set). Only its model files are used: the package's code
and its `opencv-python` dependency are not needed (the lock installs it with --no-deps next
to opencv-python-headless).

Why not RapidOCR's own pipeline: tried as shipped on a page of small print it returns garbage
(it recognises crops cut from the detector-sized image), after a 2x upscale it reads straight
text but not a page rotated ~5 degrees, and it recognises every region at whatever size it was
found, ~12 s a page. Here:

1. **Gate**: detection runs first on a copy scaled to at most `det_max_side`; a frame with no
   text region costs one detector pass and no recognition at all (most video frames).
2. **Scale per region**: each line is cut from the ORIGINAL image (full resolution) and
   resized once to the recogniser's 48 px height: small print is upscaled (cubic) from the
   real pixels rather than from a downscaled copy, large titles are downscaled (area).
3. **Deskew**: the detector's rotated rectangle for each line (minimum-area quadrilateral) is
   warped to an upright strip, so lines of a page rotated a few degrees read like straight ones.
4. **Cap the work**: at most `max_lines` lines per image (the most confident, largest first)
   and `max_line_width` px per line, so a frame full of text cannot stall a video; how many
   were skipped is reported.
5. **Batch**: line strips are sorted by width and recognised in batches of similar widths.

Results are lines (text, confidence, quadrilateral in the input's pixels) in reading order.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import math
import pathlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from understanding.domain import ModelRef
from understanding.models._onnx import cpu_session

__all__ = ["OcrModelError", "OcrOptions", "OcrResult", "PaddleOcr", "TextLine", "TextReader"]

Image = npt.NDArray[np.uint8]
Quad = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]


class OcrModelError(RuntimeError):
    """The packaged OCR models cannot be found or loaded (a startup error)."""


@dataclass(frozen=True, slots=True)
class OcrOptions:
    """Knobs with measured defaults (benchmarks/moderation_direct.py)."""

    det_max_side: int = 1600  # detector input long side; larger pages are scaled down for detection only
    det_min_side: int = 640  # small images are scaled up to this so ~10 px text is still found
    det_threshold: float = 0.3  # DB probability map binarisation
    box_threshold: float = 0.5  # mean probability inside a region to keep it
    unclip_ratio: float = 1.6  # DB region growth (the model predicts shrunk text kernels)
    min_region_px: float = 4.0  # regions thinner than this (in input pixels) are noise
    min_line_score: float = 0.5  # mean character confidence to keep a line
    # Letters/digits a line needs to be kept: a lone glyph is mostly a shape read as text (a
    # disc or ring as "O", dots as "."; ~0.5-0.7 confidence), and cannot be searched anyway.
    min_line_chars: int = 2
    max_lines: int = 64  # per image (a page of print has ~40-60); the rest are counted in `skipped`
    max_line_width: int = 2400  # recogniser strip width cap (px at 48 px height, ~100 characters)
    rec_batch_size: int = 8
    flat_std: float = 3.0  # grey-level standard deviation under which an image has no text to find


@dataclass(frozen=True, slots=True)
class TextLine:
    text: str
    score: float  # mean character confidence
    quad: Quad  # top-left, top-right, bottom-right, bottom-left in the input image's pixels
    angle_deg: float  # rotation of the line (positive: clockwise), as deskewed

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Axis-aligned (x, y, w, h) around the quadrilateral."""
        xs = [p[0] for p in self.quad]
        ys = [p[1] for p in self.quad]
        return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


@dataclass(frozen=True, slots=True)
class OcrResult:
    lines: tuple[TextLine, ...]  # reading order: top to bottom, left to right (on the deskewed page)
    regions: int  # text regions the detector found
    skipped: int  # regions not recognised because of `max_lines`
    model: ModelRef
    rows: tuple[int, ...] = ()  # visual row of each line

    @property
    def text(self) -> str:
        """Lines joined: one output line per visual row."""
        rows: dict[int, list[str]] = {}
        for index, line in enumerate(self.lines):
            rows.setdefault(self.rows[index] if index < len(self.rows) else index, []).append(line.text)
        return "\n".join(" ".join(items) for items in rows.values())


class TextReader(Protocol):
    model: ModelRef

    def warm_up(self) -> None: ...

    def predict(self, images: Sequence[Image]) -> list[OcrResult]: ...


def _models_dir() -> pathlib.Path:
    # Located, not imported: importing rapidocr_onnxruntime needs pyclipper and shapely.
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise OcrModelError("rapidocr-onnxruntime is not installed (pip install --no-deps rapidocr-onnxruntime)")
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "models"


class PaddleOcr:
    """PP-OCRv4 mobile detection + recognition on onnxruntime; one image or a batch per call.

    Calls are serialised (one session pair); run it behind a batcher in a worker thread.
    """

    DET_FILE = "ch_PP-OCRv4_det_infer.onnx"
    REC_FILE = "ch_PP-OCRv4_rec_infer.onnx"
    REC_HEIGHT = 48

    def __init__(self, options: OcrOptions | None = None, *, threads: int = 0, models_dir: pathlib.Path | None = None):
        self.options = options or OcrOptions()
        folder = models_dir or _models_dir()
        det_path, rec_path = folder / self.DET_FILE, folder / self.REC_FILE
        for path in (det_path, rec_path):
            if not path.is_file():
                raise OcrModelError(f"OCR model missing at {path}")
        self._det: Any = cpu_session(det_path, threads)
        self._rec: Any = cpu_session(rec_path, threads)
        characters = self._rec.get_modelmeta().custom_metadata_map.get("character")
        if not characters:
            raise OcrModelError(f"{rec_path} carries no character list")
        # CTC classes: 0 is the blank, then the dictionary, then the space.
        self._alphabet = ["", *characters.splitlines(), " "]
        self.model = ModelRef(name="pp-ocrv4-mobile", version=_version(det_path, rec_path))
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public
    def warm_up(self) -> None:
        canvas = np.full((120, 400, 3), 255, np.uint8)
        cv2.putText(canvas, "warm up 123", (10, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
        self.predict([canvas])

    def predict(self, images: Sequence[Image]) -> list[OcrResult]:
        with self._lock:
            return [self._read(image) for image in images]

    def detect(self, image: Image) -> list[tuple[npt.NDArray[np.float32], float]]:
        """Text regions (quadrilateral in input pixels, score), without recognition."""
        with self._lock:
            return self._detect(image)

    # ------------------------------------------------------------------ pipeline
    def _read(self, image: Image) -> OcrResult:
        image = _as_bgr(image)
        if image.size == 0 or float(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).std()) < self.options.flat_std:
            return OcrResult((), 0, 0, self.model)
        regions = self._detect(image)
        if not regions:
            return OcrResult((), 0, 0, self.model)
        # The cap keeps the most confident, largest regions; reading order is restored after.
        ranked = sorted(regions, key=lambda r: -r[1] * _quad_size(r[0])[0] * _quad_size(r[0])[1])
        kept = ranked[: self.options.max_lines]
        strips = [self._strip(image, quad) for quad, _ in kept]
        texts = self._recognize([s for s, _ in strips])
        lines = []
        for (quad, _), (_, angle), (text, score) in zip(kept, strips, texts, strict=True):
            text = text.strip()
            chars = sum(1 for ch in text if ch.isalnum())
            if chars >= self.options.min_line_chars and score >= self.options.min_line_score:
                points = tuple((float(x), float(y)) for x, y in quad)
                lines.append(TextLine(text, score, points, angle))  # type: ignore[arg-type]
        ordered, rows = _reading_order(lines)
        return OcrResult(tuple(ordered), len(regions), len(regions) - len(kept), self.model, tuple(rows))

    def _detect(self, image: Image) -> list[tuple[npt.NDArray[np.float32], float]]:
        opts = self.options
        image = _as_bgr(image)
        h, w = image.shape[:2]
        long_side = max(h, w)
        target = min(max(long_side, opts.det_min_side), opts.det_max_side)
        scale = target / long_side
        dh, dw = max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)
        resized = cv2.resize(image, (dw, dh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        blob = ((resized.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
        (probability,) = self._det.run(None, {self._det.get_inputs()[0].name: blob})
        prob = probability[0, 0]
        mask = cv2.dilate((prob > opts.det_threshold).astype(np.uint8), np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        sx, sy = w / dw, h / dh
        regions = []
        for contour in contours[:2000]:
            rect = cv2.minAreaRect(contour)
            if min(rect[1]) < 3:
                continue
            score = _mean_inside(prob, np.asarray(cv2.boxPoints(rect), np.float32))
            if score < opts.box_threshold:
                continue
            (cx, cy), (rw, rh), angle = rect
            # DB predicts shrunk kernels: grow by area * ratio / perimeter on every side.
            grow = rw * rh * opts.unclip_ratio / (2 * (rw + rh))
            quad = np.asarray(cv2.boxPoints(((cx, cy), (rw + 2 * grow, rh + 2 * grow), angle)), np.float32)
            quad[:, 0] = np.clip(quad[:, 0] * sx, 0, w - 1)
            quad[:, 1] = np.clip(quad[:, 1] * sy, 0, h - 1)
            quad = _order_quad(quad)
            if min(_quad_size(quad)) < opts.min_region_px:
                continue
            regions.append((quad, score))
        return regions

    def _strip(self, image: Image, quad: npt.NDArray[np.float32]) -> tuple[Image, float]:
        """The line, deskewed, from the original pixels, at the recogniser's height.

        The warp goes straight to at most twice the final size (a huge title on a huge image
        never allocates its full-resolution strip), then one resize to 48 px: cubic when the
        text is small (upscaling real pixels), area when it is large.
        """
        width, height = _quad_size(quad)
        width, height = max(1.0, width), max(1.0, height)
        top = quad[1] - quad[0]
        angle = math.degrees(math.atan2(float(top[1]), float(top[0])))
        vertical = height >= 1.5 * width  # a vertical line of text: read it turned
        text_height = width if vertical else height
        warp_scale = min(1.0, 2 * self.REC_HEIGHT / text_height)
        ww, wh = max(1, round(width * warp_scale)), max(1, round(height * warp_scale))
        target = np.array([[0, 0], [ww, 0], [ww, wh], [0, wh]], np.float32)
        matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
        strip = cv2.warpPerspective(image, matrix, (ww, wh), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        if vertical:
            strip = np.ascontiguousarray(np.rot90(strip))
            ww, wh = wh, ww
        scale = self.REC_HEIGHT / wh
        out_w = min(self.options.max_line_width, max(8, round(ww * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        return np.asarray(cv2.resize(strip, (out_w, self.REC_HEIGHT), interpolation=interpolation), np.uint8), angle

    def _recognize(self, strips: Sequence[Image]) -> list[tuple[str, float]]:
        results: list[tuple[str, float]] = [("", 0.0)] * len(strips)
        order = sorted(range(len(strips)), key=lambda i: strips[i].shape[1])
        name = self._rec.get_inputs()[0].name
        for begin in range(0, len(order), self.options.rec_batch_size):
            chunk = order[begin : begin + self.options.rec_batch_size]
            width = max(320, max(strips[i].shape[1] for i in chunk))
            batch = np.zeros((len(chunk), 3, self.REC_HEIGHT, width), np.float32)
            for row, index in enumerate(chunk):
                strip = strips[index]
                batch[row, :, :, : strip.shape[1]] = ((strip.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
            (probabilities,) = self._rec.run(None, {name: batch})
            for row, index in enumerate(chunk):
                results[index] = self._decode(probabilities[row])
        return results

    def _decode(self, probabilities: npt.NDArray[np.float32]) -> tuple[str, float]:
        """Greedy CTC: best class per step, repeats merged, blanks dropped."""
        best = probabilities.argmax(axis=1)
        confidence = probabilities.max(axis=1)
        keep = best != 0
        keep[1:] &= best[1:] != best[:-1]
        if not keep.any():
            return "", 0.0
        alphabet = self._alphabet
        text = "".join(alphabet[i] if i < len(alphabet) else "" for i in best[keep])
        return text, float(confidence[keep].mean())


# ---------------------------------------------------------------------- geometry helpers


def _as_bgr(image: Image) -> Image:
    if image.ndim == 2:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), np.uint8)
    if image.shape[2] == 4:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), np.uint8)
    return image


def _order_quad(points: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Top-left, top-right, bottom-right, bottom-left (by x, then y within each side)."""
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    top_left, bottom_left = left[np.argsort(left[:, 1], kind="stable")]
    top_right, bottom_right = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([top_left, top_right, bottom_right, bottom_left], np.float32)


def _quad_size(quad: npt.NDArray[np.float32]) -> tuple[float, float]:
    width = max(float(np.linalg.norm(quad[0] - quad[1])), float(np.linalg.norm(quad[3] - quad[2])))
    height = max(float(np.linalg.norm(quad[0] - quad[3])), float(np.linalg.norm(quad[1] - quad[2])))
    return width, height


def _mean_inside(prob: npt.NDArray[np.float32], box: npt.NDArray[np.float32]) -> float:
    h, w = prob.shape
    x0, y0 = np.clip(np.floor(box.min(axis=0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(box.max(axis=0)).astype(int), 0, [w - 1, h - 1])
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(mask, [np.round(box - [x0, y0]).astype(np.int32)], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def _reading_order(lines: list[TextLine]) -> tuple[list[TextLine], list[int]]:
    """Lines in reading order and their row numbers, on the page turned upright first.

    Centres are rotated by the lines' median angle, so on a page photographed a few degrees
    off, the pieces of one line (the detector may split it at wide gaps) share a row instead
    of interleaving with the next line. Within half a line height of the row's first line,
    a line joins that row; rows top to bottom, lines left to right.
    """
    if not lines:
        return [], []
    theta = math.radians(float(np.median([line.angle_deg for line in lines])))
    cos, sin = math.cos(theta), math.sin(theta)
    upright = []
    for line in lines:
        cx = sum(p[0] for p in line.quad) / 4
        cy = sum(p[1] for p in line.quad) / 4
        q = line.quad
        height = max(math.dist(q[0], q[3]), math.dist(q[1], q[2]))
        upright.append((cx * cos + cy * sin, -cx * sin + cy * cos, height, line))
    upright.sort(key=lambda item: item[1])
    ordered: list[TextLine] = []
    rows: list[int] = []
    row: list[tuple[float, float, float, TextLine]] = []
    for item in upright:
        if row and abs(item[1] - row[0][1]) >= 0.5 * min(item[2], row[0][2]):
            ordered += [entry[3] for entry in sorted(row, key=lambda entry: entry[0])]
            rows += [rows[-1] + 1 if rows else 0] * len(row)
            row = []
        row.append(item)
    ordered += [entry[3] for entry in sorted(row, key=lambda entry: entry[0])]
    rows += [rows[-1] + 1 if rows else 0] * len(row)
    return ordered, rows


def _version(*paths: pathlib.Path) -> str:
    try:
        release = importlib.metadata.version("rapidocr-onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        release = "unknown"
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            digest.update(fh.read(1 << 20))
    return f"{release}+{digest.hexdigest()[:8]}"
