"""The per-window "signals" step of a live stream, and the ports moderation plugs into.

`SignalStep` is what a stream asks about every final transcript segment and
every analysed frame. Today `TaggerSignals` answers with the zero-shot text
tags (the `safety.*` labels and the topics) and the frame's `visual.*`
signals; they are reported to the client, not judged.

Moderation (`StreamModeration`) judges every final transcript segment: the
moderation core's text signals of the segment (`TranscriptSignals`, which
core builds on `Moderator.window_signals`: offensive model, contact details,
zero-shot categories), then `pipelines.moderation.decide` with the stream's
resolved policy. A REVIEW or BLOCK goes to the client and, through the
`DecisionPublisher`, onto the moderation topic at once, not at the end of
the stream. Frames are judged the same way when the picture models are
loaded (`PictureChecks`, see pictures.py: nudity, contact details in
on-screen text), on the batch video schedule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from understanding.domain import LiveFinal, LiveModeration, LiveSignals, Modality, ModelRef, Signal, SignalKind, Tag
from understanding.media.video import SampledFrame
from understanding.pipelines.live.pictures import FrameCheck
from understanding.pipelines.policy import Policy
from understanding.pipelines.text import TextPipeline, Window
from understanding.pipelines.visual import FrameSignals, frame_tags

__all__ = [
    "DecisionPublisher",
    "PictureChecks",
    "SignalStep",
    "StreamModeration",
    "TaggerSignals",
    "TranscriptSignals",
]

VISUAL_SIGNALS = ModelRef("visual-signals", "1")


class SignalStep(Protocol):
    async def transcript(self, final: LiveFinal) -> LiveSignals | None:
        """Signals of one final segment (None: this step does not look at text)."""
        ...

    async def frame(self, image: npt.NDArray[np.uint8], signals: FrameSignals) -> LiveSignals | None:
        """Signals of one frame (BGR at the analysis size) whose visual signals are `signals`."""
        ...


class TranscriptSignals(Protocol):
    async def __call__(self, final: LiveFinal) -> Sequence[Signal]:
        """The moderation core's signals of one final segment (evidence spans within its text)."""
        ...


class PictureChecks(Protocol):
    @property
    def models(self) -> tuple[ModelRef, ...]:
        """The picture models that run (for the final analysis's `visual_models`)."""
        ...

    async def __call__(self, frame: SampledFrame, *, new_shot: bool, width: int, height: int) -> FrameCheck | None:
        """The picture models' findings and signals of one frame, or None when it is not due."""
        ...


class DecisionPublisher(Protocol):
    async def publish(
        self,
        tenant: str,
        media_id: str,
        verdict: LiveModeration,
        *,
        modality: Modality,
        version: int,
        metadata: Mapping[str, str],
        trace_id: str,
    ) -> None:
        """Send a window's verdict out durably (the moderation topic); it must not wait for the end of the stream."""
        ...


@dataclass(frozen=True, slots=True)
class StreamModeration:
    """How a stream is moderated: its resolved policy, the segment and frame signals, where verdicts go."""

    policy: Policy
    signals: TranscriptSignals
    publisher: DecisionPublisher
    pictures: PictureChecks | None = None  # None: no picture model loaded (frames keep their visual signals)


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
