"""Image understanding: the frame analysis of video on one picture, without shots.

The image is decoded in the sandbox (media/image.py: header checks before any pixel),
then looked at like a video's sampled frame: faces and the visual signals on a 320 px
copy (pipelines/visual.py, so tags and descriptions mean the same for both), nudity and
OCR on the decoded pixels through the shared batchers (pipelines/screening.py).

Chunks: chunk 0 embeds a one-line description of the picture ("a bright scene with one
face (people), mostly white"), so a photo is found by what it shows; the text read in
it follows as chunks 1.. (split into word windows like any text), so a search for a
phrase printed in the image finds it. Contact details in that text and the nudity
score become the analysis's signals, with the line's box as evidence.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from understanding.domain import Analysis, Chunk, ImageInfo, ImageOptions, Modality, Signal, Tag
from understanding.media.image import DecodedImage, ImageLimits
from understanding.media.sandbox import MediaDecoder
from understanding.pipelines.chunking import TextSpan, chunk_text
from understanding.pipelines.screening import (
    FrameFindings,
    ScreeningSettings,
    VisualModels,
    contact_signals,
    look,
    nudity_signals,
)
from understanding.pipelines.speech import Progress
from understanding.pipelines.text import TextPipeline, Window, new_version
from understanding.pipelines.visual import FaceDetector, SignalTotals, describe, frame_signals, visual_tags

__all__ = ["ImageInput", "ImagePipeline", "ImageSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImageSettings:
    max_pixels: int = 50_000_000  # width*height in the header above this -> LimitExceeded(field="image.resolution")
    max_side: int = 4096  # decoded long side handed to the models (boxes are scaled back)
    analysis_width: int = 320  # faces and visual signals, as for video frames
    chunk_max_words: int = 96
    chunk_overlap_words: int = 16

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.max_side < 64:
            raise ValueError("image limits must allow at least a 64 px image")


@dataclass(frozen=True, slots=True)
class ImageInput:
    media_id: str
    path: pathlib.Path
    options: ImageOptions = field(default_factory=ImageOptions)
    metadata: Mapping[str, str] = field(default_factory=dict)


class ImagePipeline:
    """Analyses one image file into an `Analysis` (modality IMAGE)."""

    def __init__(
        self,
        *,
        decoder: MediaDecoder,
        text: TextPipeline,
        faces: FaceDetector,
        models: VisualModels,
        settings: ImageSettings | None = None,
        screening: ScreeningSettings | None = None,
    ) -> None:
        self._decoder = decoder
        self._text = text
        self._faces = faces
        self._models = models
        self._settings = settings or ImageSettings()
        self._screening = screening or ScreeningSettings()

    @property
    def settings(self) -> ImageSettings:
        return self._settings

    async def analyze(
        self,
        tenant: str,
        item: ImageInput,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
    ) -> Analysis:
        started = time.perf_counter()
        s = self._settings
        if progress:
            progress("decode", 0.0)
        decoded: DecodedImage = await asyncio.to_thread(
            self._decoder.decode_image, item.path, ImageLimits(s.max_pixels, s.max_side), cancelled=cancelled
        )
        if progress:
            progress("analyze", 0.2)
        nudity, ocr = self._models.wanted(item.options)
        looked, (tags, description, faces) = await asyncio.gather(
            look(self._models, decoded.image, t_s=0.0, scale=decoded.scale, nudity=nudity, ocr=ocr),
            asyncio.to_thread(self._frame_analysis, decoded),
        )
        if progress:
            progress("embed", 0.8)
        info = replace(
            decoded.info,
            face_count=faces,
            nudity_score=looked.nudity or 0.0,
            nudity_parts=looked.parts,
            ocr_text=looked.text,
            text_lines=looked.lines or (),
        )
        analysis = await self._assemble(tenant, item, info, tags, description, looked)
        log.info(
            "image analysed",
            extra={
                "media_id": item.media_id,
                "seconds": round(time.perf_counter() - started, 2),
                "format": info.format,
                "size": f"{info.width}x{info.height}",
                "lines": len(info.text_lines),
            },
        )
        return analysis

    def _frame_analysis(self, decoded: DecodedImage) -> tuple[tuple[Tag, ...], str, int]:
        """Faces and visual signals on the analysis-size copy, as for a video frame."""
        image = decoded.image
        h, w = image.shape[:2]
        width = self._settings.analysis_width
        if w > width:
            size = (width, max(2, round(h * width / w)))
            image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        faces = self._faces.detect(image)
        totals = SignalTotals()
        totals.add(frame_signals(image, t_s=0.0, faces=faces, motion=None))
        summary = totals.summary()
        return visual_tags(summary, start_s=0.0, end_s=0.0), describe(summary), summary.face_count

    async def _assemble(
        self,
        tenant: str,
        item: ImageInput,
        info: ImageInfo,
        visual: tuple[Tag, ...],
        description: str,
        looked: FrameFindings,
    ) -> Analysis:
        s = self._settings
        text = info.ocr_text
        spans = chunk_text(text, max_words=s.chunk_max_words, overlap_words=s.chunk_overlap_words) if text else []
        windows = [Window(description)] + [Window(span.text) for span in spans]
        pieces = await asyncio.gather(*(self._text.embed_windows([w]) for w in windows))
        chunks: list[Chunk] = []
        for index, (window, embedded) in enumerate(zip(windows, pieces, strict=True)):
            if not embedded:
                raise RuntimeError(f"no embedding for image chunk {index}")
            extra: dict[str, object] = {}
            if looked.nudity is not None:
                extra["nudity_score"] = float(info.nudity_score)
            if index > 0:
                extra["ocr_text"] = window.text
            chunks.append(
                Chunk(
                    index=index,
                    text=window.text,
                    embedding=embedded[0].embedding,
                    tags=visual if index == 0 else embedded[0].tags,  # a description is not tagged as text
                    extra=extra,
                )
            )
        language = self._text.detect_language(text) if len(text) >= 20 else None
        text_tags = self._text.overall_tags(chunks[1:]) if len(chunks) > 1 else ()
        signals = self._signals(info, looked, text, spans, chunks, language.code if language is not None else None)
        return Analysis(
            tenant=tenant,
            media_id=item.media_id,
            modality=Modality.IMAGE,
            language=language,
            tags=visual + tuple(text_tags),
            chunks=tuple(chunks),
            embedding_model=self._text.model,
            created_at=time.time(),
            version=new_version(),
            metadata=dict(item.metadata),
            image=info,
            signals=tuple(signals),
            visual_models=self._models.refs(item.options),
        )

    def _signals(
        self,
        info: ImageInfo,
        looked: FrameFindings,
        text: str,
        spans: list[TextSpan],
        chunks: list[Chunk],
        language: str | None,
    ) -> list[Signal]:
        models = self._models
        signals: list[Signal] = []
        if looked.nudity is not None and models.nudity_model is not None:
            signals += nudity_signals(
                info.nudity_score,
                info.nudity_parts,
                frame_s=0.0,
                modality=Modality.IMAGE,
                model=models.nudity_model,
                min_score=self._screening.nudity_min_score,
                chunk_index=0,
            )
        if text and models.ocr_model is not None:
            # Chunk i+1 is the slice of `text` starting at span i's first character.
            where = [(i + 1, -span.start_char, chunks[i + 1].text) for i, span in enumerate(spans)]
            signals += contact_signals(
                info.text_lines,
                text,
                modality=Modality.IMAGE,
                model=models.ocr_model,
                chunks=where,
                language=language if language != "und" else None,
            )
        return signals
