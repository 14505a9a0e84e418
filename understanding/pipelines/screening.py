"""The moderation models on pictures: which frames they look at, and what they found.

Images and video frames go through the same two models (nudity, OCR), called through
their micro-batchers (`VisualModels`, built by core/runtime.py). For a video:

- **Which frames** (`FrameScreener`): the first sampled frame of every shot, then one
  every `nudity_interval_s` / `ocr_interval_s` within the shot, so a one-hour video
  chat (one long shot) is covered throughout and a two-second shot is never skipped.
- **Gate**: OCR detects text regions first and recognises only inside them
  (models/ocr.py), so a frame without text costs one detector pass.
- **Cache per shot**: a frame nearly identical to the last one read in its shot (a
  64x36 grey thumbnail differing by less than `ocr_reuse_max_change`) is not read
  again: slides, captions over a still picture and talking heads cost one read.
- **Scale**: the models see the frame at up to `detail_max_side` px (`SampledFrame.
  detail`), not the 320 px analysis copy, where on-screen text is unreadable; OCR then
  cuts each line from those pixels at the recogniser's height.
- **Overlap**: checks run on the event loop's batchers while the frame pass decodes on;
  at most `max_pending` frames wait for the models (bounded memory, back-pressure on
  the decoder).

Boxes are scaled to the media's own pixels. `shot_findings` folds a video's frames into
per-shot text and nudity; `nudity_signals` and `contact_signals` turn findings into the
moderation `Signal`s the policy decides on (contact details in OCR text are found by
pipelines/contacts.py, with the line's box and frame time as evidence).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import difflib
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from understanding.domain import BodyPart, Box, Evidence, ImageOptions, Modality, ModelRef, Signal, TextLine
from understanding.media.video import SampledFrame
from understanding.models.nudity import EXPOSED_SEXUAL, NudityResult
from understanding.models.ocr import OcrResult
from understanding.pipelines.contacts import ContactKind, find_contacts

__all__ = [
    "CheckSchedule",
    "FrameFindings",
    "FrameScreener",
    "ScreeningSettings",
    "ShotFindings",
    "VisualModels",
    "contact_signals",
    "look",
    "nudity_signals",
    "shot_findings",
]

Image = npt.NDArray[np.uint8]
NudityFn = Callable[[Image], Awaitable[NudityResult]]
OcrFn = Callable[[Image], Awaitable[OcrResult]]

_THUMB = (64, 36)
_SAME_LINE = 0.85  # difflib ratio above which two readings in a shot are the same line
CONTACT_CATEGORIES = {
    ContactKind.PHONE: "contact.phone",
    ContactKind.EMAIL: "contact.email",
    ContactKind.URL: "contact.url",
    ContactKind.HANDLE: "contact.handle",
    ContactKind.PAYMENT: "contact.payment",
}


@dataclass(frozen=True, slots=True)
class VisualModels:
    """The picture models as the pipelines call them (through their batchers); None = not loaded."""

    nudity: NudityFn | None = None
    ocr: OcrFn | None = None
    nudity_model: ModelRef | None = None
    ocr_model: ModelRef | None = None

    def wanted(self, options: ImageOptions) -> tuple[bool, bool]:
        """(nudity, ocr): which models run for a request."""
        return self.nudity is not None and not options.skip_nudity, self.ocr is not None and not options.skip_ocr

    def refs(self, options: ImageOptions) -> tuple[ModelRef, ...]:
        nudity, ocr = self.wanted(options)
        chosen = ((self.nudity_model, nudity), (self.ocr_model, ocr))
        return tuple(ref for ref, on in chosen if on and ref is not None)


@dataclass(frozen=True, slots=True)
class ScreeningSettings:
    nudity_interval_s: float = 1.0
    ocr_interval_s: float = 2.0
    ocr_reuse_max_change: float = 0.03  # mean absolute grey change (0..1) of the 64x36 thumbnail
    detail_max_side: int = 1280
    max_pending: int = 4  # frames waiting for the models
    max_lines_per_shot: int = 256
    nudity_min_score: float = 0.1  # below it, a score is no signal (it stays in the analysis)

    def __post_init__(self) -> None:
        if self.nudity_interval_s <= 0 or self.ocr_interval_s <= 0:
            raise ValueError("frame check intervals must be positive")
        if self.detail_max_side < 64:
            raise ValueError("detail_max_side must be at least 64 pixels")


@dataclass(frozen=True, slots=True)
class FrameFindings:
    """What the models saw on one picture, boxes in the media's pixels. None: not checked."""

    t_s: float
    nudity: float | None = None
    parts: tuple[BodyPart, ...] = ()
    lines: tuple[TextLine, ...] | None = None
    text: str = ""  # the lines as rows (one output line per visual row)


async def look(
    models: VisualModels, image: Image, *, t_s: float, scale: float, nudity: bool, ocr: bool
) -> FrameFindings:
    """Run the chosen models on one picture at once; `scale` = image pixels per media pixel."""
    back = 1.0 / scale if scale > 0 else 1.0

    def box(x: float, y: float, w: float, h: float) -> Box:
        return Box(round(x * back, 1), round(y * back, 1), round(w * back, 1), round(h * back, 1))

    async def nothing() -> None:
        return None

    nudity_call = models.nudity(image) if nudity and models.nudity is not None else nothing()
    ocr_call = models.ocr(image) if ocr and models.ocr is not None else nothing()
    seen, read = await asyncio.gather(nudity_call, ocr_call)
    findings = FrameFindings(t_s=t_s)
    if seen is not None:
        parts = tuple(BodyPart(p.label, round(p.score, 4), box(p.x, p.y, p.w, p.h), t_s) for p in seen.parts)
        findings = FrameFindings(t_s=t_s, nudity=round(seen.score, 4), parts=parts)
    if read is not None:
        lines = tuple(TextLine(line.text, round(line.score, 4), box(*line.box), t_s) for line in read.lines)
        findings = FrameFindings(findings.t_s, findings.nudity, findings.parts, lines, read.text)
    return findings


def _thumbnail(image: Image) -> npt.NDArray[np.float32]:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, _THUMB, interpolation=cv2.INTER_AREA)
    return np.asarray(small, np.float32) / 255.0


class CheckSchedule:
    """Which of a stream of sampled frames each picture model looks at (batch video and live).

    A shot's first frame, then one every `nudity_interval_s` / `ocr_interval_s`; a frame
    nearly identical to the last one read in its shot is not read again (`reused`).
    """

    def __init__(self, settings: ScreeningSettings, *, nudity: bool, ocr: bool) -> None:
        self._settings = settings
        self._nudity = nudity
        self._ocr = ocr
        self._last_nudity_s = -1e9
        self._last_ocr_s = -1e9
        self._last_read: npt.NDArray[np.float32] | None = None
        self.reused = 0  # frames not read again (near-identical to the last read in the shot)

    @property
    def enabled(self) -> bool:
        return self._nudity or self._ocr

    def due(self, t_s: float, detail: Image, *, new_shot: bool) -> tuple[bool, bool]:
        """(nudity, ocr) for the frame at `t_s` (frames in time order); records what it chose."""
        s = self._settings
        if new_shot:
            self._last_nudity_s = self._last_ocr_s = -1e9
            self._last_read = None
        nudity = self._nudity and t_s - self._last_nudity_s >= s.nudity_interval_s - 1e-6
        ocr = self._ocr and t_s - self._last_ocr_s >= s.ocr_interval_s - 1e-6
        if ocr:
            self._last_ocr_s = t_s
            thumb = _thumbnail(detail)
            previous, self._last_read = self._last_read, thumb
            if previous is not None and float(np.mean(np.abs(thumb - previous))) < s.ocr_reuse_max_change:
                ocr = False
                self._last_read = previous  # compare with what was read, not with the skipped frame
                self.reused += 1
        if nudity:
            self._last_nudity_s = t_s
        return nudity, ocr


class FrameScreener:
    """Chooses a video's frames for the models and runs them on the event loop.

    `offer` is called from the frame-pass thread for every sample (blocking while
    `max_pending` checks are in flight); `results` is awaited on the loop afterwards.
    """

    def __init__(
        self,
        models: VisualModels,
        settings: ScreeningSettings,
        options: ImageOptions,
        loop: asyncio.AbstractEventLoop,
        *,
        scale: Callable[[Image], float],
        stop: threading.Event | None = None,
    ) -> None:
        self._models = models
        nudity, ocr = models.wanted(options)
        self._schedule = CheckSchedule(settings, nudity=nudity, ocr=ocr)
        self._loop = loop
        self._scale = scale
        self._stop = stop
        self._slots = threading.BoundedSemaphore(settings.max_pending)
        self._pending: list[concurrent.futures.Future[FrameFindings]] = []

    @property
    def enabled(self) -> bool:
        return self._schedule.enabled

    @property
    def reused(self) -> int:
        return self._schedule.reused

    def offer(self, frame: SampledFrame, new_shot: bool) -> None:
        """Decide and submit the checks for one sampled frame (thread side)."""
        detail = frame.detail
        if detail is None or not self.enabled:
            return
        nudity, ocr = self._schedule.due(frame.t_s, detail, new_shot=new_shot)
        if not (nudity or ocr):
            return
        while not self._slots.acquire(timeout=0.2):
            if self._stop is not None and self._stop.is_set():
                return
        call = look(self._models, detail, t_s=frame.t_s, scale=self._scale(detail), nudity=nudity, ocr=ocr)
        future = asyncio.run_coroutine_threadsafe(call, self._loop)
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)

    async def results(self) -> list[FrameFindings]:
        """Every submitted check, in frame order (raises the first model failure)."""
        return [await asyncio.wrap_future(f) for f in self._pending]

    def cancel(self) -> None:
        for future in self._pending:
            future.cancel()


@dataclass(frozen=True, slots=True)
class ShotFindings:
    ocr_text: str = ""
    text_lines: tuple[TextLine, ...] = ()
    nudity_score: float = 0.0
    nudity_frame_s: float = 0.0
    nudity_parts: tuple[BodyPart, ...] = ()
    frames_checked: int = 0


def _same_line(a: str, b: str) -> bool:
    a, b = " ".join(a.lower().split()), " ".join(b.lower().split())
    return a == b or difflib.SequenceMatcher(None, a, b).ratio() >= _SAME_LINE


def shot_findings(
    findings: Sequence[FrameFindings], shots: Sequence[tuple[float, float]], *, max_lines: int = 256
) -> list[ShotFindings]:
    """Fold frame findings into their shots: the distinct lines read (first reading kept, in
    the order first seen) and the frame with the best nudity score."""
    per_shot: list[list[FrameFindings]] = [[] for _ in shots]
    starts = [start for start, _ in shots]
    for found in findings:
        index = int(np.searchsorted(starts, found.t_s, side="right")) - 1
        if shots:
            per_shot[min(max(index, 0), len(shots) - 1)].append(found)
    out = []
    for frames in per_shot:
        lines: list[TextLine] = []
        for found in frames:
            for line in found.lines or ():
                if len(lines) < max_lines and not any(_same_line(line.text, kept.text) for kept in lines):
                    lines.append(line)
        scored = [f for f in frames if f.nudity is not None]
        best = max(scored, key=lambda f: f.nudity or 0.0) if scored else None
        out.append(
            ShotFindings(
                ocr_text="\n".join(line.text for line in lines),
                text_lines=tuple(lines),
                nudity_score=(best.nudity or 0.0) if best is not None else 0.0,
                nudity_frame_s=best.t_s if best is not None else 0.0,
                nudity_parts=best.parts if best is not None else (),
                frames_checked=len(frames),
            )
        )
    return out


def nudity_signals(
    score: float,
    parts: Sequence[BodyPart],
    *,
    frame_s: float,
    modality: Modality,
    model: ModelRef,
    min_score: float,
    start_s: float = 0.0,
    end_s: float = 0.0,
    chunk_index: int | None = None,
) -> list[Signal]:
    """`nudity` signals of one picture: one per exposed sexual part (detector, with its box),
    or one for the whole picture (classifier), when the score reaches `min_score`."""
    if score < min_score:
        return []

    def evidence(box: Box | None, detail: str) -> Evidence:
        return Evidence(
            modality=modality,
            model=model,
            start_s=start_s,
            end_s=end_s,
            frame_s=frame_s,
            box=box.as_tuple() if box is not None else None,
            chunk_index=chunk_index,
            detail=detail,
        )

    exposed = [p for p in parts if p.label in EXPOSED_SEXUAL and p.score >= min_score]
    if exposed:
        return [Signal("nudity", p.score, evidence(p.box, p.label)) for p in exposed]
    return [Signal("nudity", score, evidence(None, "nsfw"))]


def contact_signals(
    lines: Sequence[TextLine],
    text: str,
    *,
    modality: Modality,
    model: ModelRef,
    chunks: Sequence[tuple[int, int, str]],
    language: str | None = None,
    start_s: float = 0.0,
    end_s: float = 0.0,
) -> list[Signal]:
    """`contact.*` signals for contact details in OCR `text` (the `lines` joined by newlines).

    Each finding's evidence: the line's box and frame time, the matched text, and its span
    in the chunk that carries it: `chunks` are (chunk index, offset of `text` in that
    chunk's text, the chunk's text); a span counts for the first chunk holding it whole.
    Its score is the line's OCR confidence (a misread digit makes a wrong number).
    """
    if not text.strip():
        return []
    starts: list[int] = []
    cursor = 0
    for line in lines:  # where each line sits in `text`
        at = text.find(line.text, cursor)
        starts.append(at if at >= 0 else cursor)
        cursor = (at if at >= 0 else cursor) + len(line.text)
    signals = []
    for contact in find_contacts(text, language=language):
        touched = [
            line
            for line, begin in zip(lines, starts, strict=True)
            if begin < contact.end and contact.start < begin + len(line.text)
        ]
        first = touched[0] if touched else None
        box = _union([line.box for line in touched]) if touched else None
        score = min(line.score for line in touched) if touched else 0.5
        chunk_index, span = None, None
        for index, offset, chunk_text in chunks:
            begin, end = contact.start + offset, contact.end + offset
            if 0 <= begin and end <= len(chunk_text) and chunk_text[begin:end] == contact.text:
                chunk_index, span = index, (begin, end)
                break
        detail = contact.kind.value + (f":{contact.platform}" if contact.platform else "")
        evidence = Evidence(
            modality=modality,
            model=model,
            start_s=start_s,
            end_s=end_s,
            frame_s=first.frame_s if first is not None else None,
            box=box.as_tuple() if box is not None else None,
            text=contact.text,
            span=span,
            chunk_index=chunk_index,
            detail=detail,
        )
        signals.append(Signal(CONTACT_CATEGORIES[contact.kind], round(score, 4), evidence))
    return signals


def _union(boxes: Sequence[Box]) -> Box:
    x0 = min(b.x for b in boxes)
    y0 = min(b.y for b in boxes)
    x1 = max(b.x + b.width for b in boxes)
    y1 = max(b.y + b.height for b in boxes)
    return Box(x0, y0, round(x1 - x0, 1), round(y1 - y0, 1))
