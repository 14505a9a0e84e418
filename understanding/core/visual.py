"""The picture models (nudity, OCR): loaded once at start-up, warmed up, behind micro-batchers.

Nudity batches well (a ResNet-50 / YOLOv8n forward pass over 8 pictures costs less than
8 passes), so concurrent images and frames share passes. OCR runs one picture at a time
inside (detection sizes differ per picture) but sits behind a batcher too: one worker
thread owns the sessions, the queue is bounded and its depth is a metric. The pipelines
only see `VisualModels`, a pair of async callables and their model refs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from understanding.batching import BatchObserver, MicroBatcher
from understanding.config import Settings
from understanding.models.nudity import BACKENDS, NudityModel, NudityModelUnavailable, NudityResult, load_nudity_model
from understanding.models.ocr import OcrOptions, OcrResult, PaddleOcr
from understanding.pipelines.screening import Image, ScreeningSettings, VisualModels

__all__ = ["VisualModelUnit", "screening_settings"]

log = logging.getLogger(__name__)

_OCR_MODELS = ("pp-ocrv4",)


def screening_settings(settings: Settings) -> ScreeningSettings:
    return ScreeningSettings(
        nudity_interval_s=settings.frame_nudity_interval_s,
        ocr_interval_s=settings.frame_ocr_interval_s,
        ocr_reuse_max_change=settings.frame_ocr_reuse_max_change,
        detail_max_side=settings.frame_detail_max_side,
        nudity_min_score=settings.nudity_signal_min_score,
    )


class VisualModelUnit:
    """Loads the configured picture models (blocking: call from a worker thread) and owns their batchers."""

    def __init__(self, settings: Settings, *, on_batch: Callable[[str], BatchObserver] | None = None) -> None:
        started = time.perf_counter()
        self._nudity: NudityModel | None = None
        self._ocr: PaddleOcr | None = None
        threads = settings.visual_model_threads
        choice = settings.nudity_model.strip().lower()
        if choice not in (*BACKENDS, "off"):
            raise ValueError(f"UNDERSTANDING_NUDITY_MODEL={settings.nudity_model!r}: use {', '.join(BACKENDS)} or off")
        if choice != "off":
            try:
                self._nudity = load_nudity_model(choice, threads=threads)
            except NudityModelUnavailable as error:
                raise ValueError(f"UNDERSTANDING_NUDITY_MODEL={choice}: {error}") from None
            self._nudity.warm_up()
        ocr_choice = settings.ocr_model.strip().lower()
        if ocr_choice not in (*_OCR_MODELS, "off"):
            raise ValueError(f"UNDERSTANDING_OCR_MODEL={settings.ocr_model!r}: use {', '.join(_OCR_MODELS)} or off")
        if ocr_choice != "off":
            options = OcrOptions(
                box_threshold=settings.ocr_box_threshold,
                min_line_score=settings.ocr_min_line_score,
                max_lines=settings.ocr_max_lines,
            )
            self._ocr = PaddleOcr(options, threads=threads)
            self._ocr.warm_up()
        self.nudity_batcher: MicroBatcher[Image, NudityResult] | None = None
        self.ocr_batcher: MicroBatcher[Image, OcrResult] | None = None
        if self._nudity is not None:
            self.nudity_batcher = MicroBatcher(
                self._nudity.predict,
                name="nudity",
                max_batch_size=settings.nudity_max_batch,
                max_wait_ms=5.0,
                max_queue=256,
                on_batch=on_batch("nudity") if on_batch is not None else None,
            )
        if self._ocr is not None:
            self.ocr_batcher = MicroBatcher(
                self._ocr.predict,
                name="ocr",
                max_batch_size=2,
                max_wait_ms=2.0,
                max_queue=256,
                on_batch=on_batch("ocr") if on_batch is not None else None,
            )
        self.models = VisualModels(
            nudity=self.nudity_batcher.submit if self.nudity_batcher is not None else None,
            ocr=self.ocr_batcher.submit if self.ocr_batcher is not None else None,
            nudity_model=self._nudity.model if self._nudity is not None else None,
            ocr_model=self._ocr.model if self._ocr is not None else None,
        )
        log.info(
            "picture models ready",
            extra={
                "nudity": self._nudity.model.name if self._nudity is not None else "off",
                "ocr": self._ocr.model.name if self._ocr is not None else "off",
                "seconds": round(time.perf_counter() - started, 2),
            },
        )

    @property
    def batchers(self) -> Sequence[MicroBatcher[Image, NudityResult] | MicroBatcher[Image, OcrResult]]:
        return [b for b in (self.nudity_batcher, self.ocr_batcher) if b is not None]

    async def start(self) -> None:
        for batcher in self.batchers:
            await batcher.start()

    async def stop(self) -> None:
        for batcher in self.batchers:
            await batcher.stop()
