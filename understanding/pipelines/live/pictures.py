"""The picture moderation models on a live stream's frames: nudity and on-screen contact details.

A stream's frames go through the same models, on the same schedule, as a video's
sampled frames (`screening.CheckSchedule`: a shot's first frame, then one every
`nudity_interval_s` / `ocr_interval_s`, a frame nearly identical to the last one read
not read again), at the detail size the decoder made for them. What a check finds
(nudity, contact details in the text read, and what the text detectors make of
that text: `shown_text`, the offensive model) becomes moderation signals at once (the session decides and publishes them while the
call goes on) and is kept as `FrameFindings`, so the stream's final analysis carries
each shot's nudity and on-screen text like an uploaded video's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from understanding.domain import ImageOptions, Modality, ModelRef, Signal
from understanding.media.video import SampledFrame
from understanding.pipelines.screening import (
    CheckSchedule,
    FrameFindings,
    ScreeningSettings,
    VisualModels,
    contact_signals,
    look,
    nudity_signals,
)

__all__ = ["FrameCheck", "LivePictures", "ShownText"]

# The text detectors on text read from a frame at a time (the offensive model): core's Moderator.
ShownText = Callable[[str, float, "str | None"], Awaitable[Sequence[Signal]]]


@dataclass(frozen=True, slots=True)
class FrameCheck:
    """What the picture models found on one frame, and the moderation signals it makes."""

    findings: FrameFindings
    signals: tuple[Signal, ...]
    models: tuple[ModelRef, ...] = ()  # the models that ran on it


class LivePictures:
    """One stream's picture checks (stateful: the schedule follows the stream's shots)."""

    def __init__(
        self,
        models: VisualModels,
        settings: ScreeningSettings,
        *,
        detect_language: Callable[[str], str] | None = None,
        shown_text: ShownText | None = None,
    ) -> None:
        self._models = models
        self._settings = settings
        nudity, ocr = models.wanted(ImageOptions())
        self._schedule = CheckSchedule(settings, nudity=nudity, ocr=ocr)
        self._detect_language = detect_language
        self._shown_text = shown_text
        self.checked = 0

    @property
    def enabled(self) -> bool:
        return self._schedule.enabled

    @property
    def models(self) -> tuple[ModelRef, ...]:
        return self._models.refs(ImageOptions())

    async def __call__(self, frame: SampledFrame, *, new_shot: bool, width: int, height: int) -> FrameCheck | None:
        """Check `frame` (its `detail` copy; `width` x `height` = the encoded frame) if it is due."""
        detail = frame.detail
        if detail is None or not self.enabled:
            return None
        nudity, ocr = self._schedule.due(frame.t_s, detail, new_shot=new_shot)
        if not (nudity or ocr):
            return None
        longest = max(width, height)
        scale = max(detail.shape[:2]) / longest if longest else 1.0
        findings = await look(self._models, detail, t_s=frame.t_s, scale=scale, nudity=nudity, ocr=ocr)
        self.checked += 1
        ran = (self._models.nudity_model if nudity else None, self._models.ocr_model if ocr else None)
        signals = self._signals(findings, language := self._language(findings.text))
        if findings.text.strip() and self._shown_text is not None:
            signals += await self._shown_text(findings.text, frame.t_s, language)
        return FrameCheck(findings, tuple(signals), tuple(m for m in ran if m is not None))

    def _language(self, text: str) -> str | None:
        if not text.strip() or self._detect_language is None:
            return None
        code = self._detect_language(text)
        return code if code not in ("", "und") else None

    def _signals(self, found: FrameFindings, language: str | None) -> list[Signal]:
        t_s = found.t_s
        models = self._models
        signals: list[Signal] = []
        if found.nudity is not None and models.nudity_model is not None:
            signals += nudity_signals(
                found.nudity,
                found.parts,
                frame_s=t_s,
                modality=Modality.VIDEO,
                model=models.nudity_model,
                min_score=self._settings.nudity_min_score,
                start_s=t_s,
                end_s=t_s,
            )
        if found.text.strip() and models.ocr_model is not None:
            signals += contact_signals(
                found.lines or (),
                found.text,
                modality=Modality.VIDEO,
                model=models.ocr_model,
                chunks=(),
                language=language,
                start_s=t_s,
                end_s=t_s,
            )
        return signals
