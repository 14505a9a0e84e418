"""The per-window "signals" step of a live stream, and the ports moderation plugs into.

`SignalStep` is what a stream asks about every final transcript segment and
every analysed frame. Today `TaggerSignals` answers with the zero-shot text
tags (the `safety.*` labels and the topics) and the frame's `visual.*`
signals. The Trust & Safety models (nudity, OCR, offensive text, contact
details) become another `SignalStep` (or join this one); they receive the
frame's pixels for that reason.

A `Policy` turns a window's signals into a `LiveDecision`; a
`DecisionPublisher` sends REVIEW and BLOCK decisions out at once (the
moderation topic), not at the end of the stream. No policy ships yet, so
a stream that names one is refused; the session already calls both ports.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from understanding.domain import LiveDecision, LiveFinal, LiveSignals, ModelRef, SignalKind, Tag
from understanding.pipelines.text import TextPipeline, Window
from understanding.pipelines.visual import FrameSignals, frame_tags

__all__ = ["DecisionPublisher", "Policy", "SignalStep", "TaggerSignals"]

VISUAL_SIGNALS = ModelRef("visual-signals", "1")


class SignalStep(Protocol):
    async def transcript(self, final: LiveFinal) -> LiveSignals | None:
        """Signals of one final segment (None: this step does not look at text)."""
        ...

    async def frame(self, image: npt.NDArray[np.uint8], signals: FrameSignals) -> LiveSignals | None:
        """Signals of one frame (BGR at the analysis size) whose visual signals are `signals`."""
        ...


class Policy(Protocol):
    """A versioned moderation policy: a window's signals -> a decision, or None when it has no opinion."""

    name: str
    version: str

    def decide(self, signals: LiveSignals) -> LiveDecision | None: ...


class DecisionPublisher(Protocol):
    async def publish(self, tenant: str, media_id: str, decision: LiveDecision, *, trace_id: str) -> None:
        """Send a decision out durably (it must not wait for the end of the stream)."""
        ...


class TaggerSignals:
    """Today's signals: text tags of final segments, visual signals of frames, filtered by the config's kinds."""

    def __init__(self, text: TextPipeline, kinds: frozenset[SignalKind], face_model: ModelRef) -> None:
        self._text = text
        self._kinds = kinds
        self._face_model = face_model

    async def transcript(self, final: LiveFinal) -> LiveSignals | None:
        if not self._kinds & {SignalKind.SAFETY, SignalKind.TOPICS}:
            return None
        segment = final.segment
        chunks = await self._text.embed_windows([Window(segment.text, segment.start_s, segment.end_s)])
        best: dict[str, Tag] = {}
        for chunk in chunks:  # a long segment is embedded in pieces: best score per label
            for tag in chunk.tags:
                kind = SignalKind.SAFETY if tag.group == "safety" else SignalKind.TOPICS
                held = best.get(tag.label)
                if kind in self._kinds and (held is None or tag.score > held.score):
                    best[tag.label] = tag
        tags = tuple(sorted(best.values(), key=lambda t: -t.score))
        return LiveSignals(
            source="transcript",
            start_s=segment.start_s,
            end_s=segment.end_s,
            tags=tags,
            models=(self._text.model,),
            segment_index=segment.index,
            text=segment.text,
        )

    async def frame(self, image: npt.NDArray[np.uint8], signals: FrameSignals) -> LiveSignals | None:
        if SignalKind.VISUAL not in self._kinds:
            return None
        return LiveSignals(
            source="frame",
            start_s=signals.t_s,
            end_s=signals.t_s,
            tags=frame_tags(signals),
            models=(self._face_model, VISUAL_SIGNALS),
            frame_s=signals.t_s,
        )
