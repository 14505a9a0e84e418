"""Moderation signals of text and speech: every text chunk and transcript window, three detectors.

- **offensive**: `alt-profanity-check`'s trained model (English vocabulary) on the chunk's
  sentence windows; the evidence is the worst window, with the words that weighed most.
- **contact details**: `pipelines/contacts.py` (phones through libphonenumber, e-mails and
  URLs through urlextract, handles, payment handles); one signal per finding, its span exact.
- **zero-shot categories**: the similarity of the chunk's embedding to the descriptions of the
  taxonomy's `safety.<category>` labels. With a multilingual embedder (USE-m3: 16 languages in
  one space) English descriptions match the other languages too. A similarity is no
  probability, so it is mapped to a score around the label's own tagging threshold (0.5 at the
  threshold, +0.25 per +0.1 of similarity) and marked `zero_shot` (a policy caps what it may
  call for).

Video shots: the spoken part of a shot's chunk is a transcript window; the text read on screen
is a unit of its own (offensive model; zero-shot when nothing was said), its contact details
left to the picture pipeline, which reports them with their boxes.

Spans are character ranges of the chunk text (`Evidence.chunk_index`); for transcript windows
the evidence is narrowed to the segment(s) the span lies in: their time range and speaker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from understanding.domain import (
    CATEGORIES,
    Analysis,
    Chunk,
    Evidence,
    Modality,
    ModelRef,
    Segment,
    Shot,
    Signal,
    Vector,
)
from understanding.models.offensive import OffensiveScore, OffensiveTextModel
from understanding.pipelines.contacts import Contact, ContactKind, find_contacts
from understanding.pipelines.tagging import Tagger

__all__ = [
    "CONTACT_MODEL",
    "EVIDENCE_FLOOR",
    "TextSignals",
    "TextUnit",
    "text_units",
    "zero_shot_score",
]

# Signals scoring below this are not reported: every chunk has some similarity to every
# description and some offensive probability; a moderator needs the near misses, not all.
EVIDENCE_FLOOR = 0.3
# 0.5 at the label's threshold; +0.1 of cosine similarity = +0.25 of score.
ZERO_SHOT_SLOPE = 2.5
CONTACT_MODEL = ModelRef(name="understanding-contacts", version="1")
_SAFETY_PREFIX = "safety."
# A bare "@name" (no platform word, no platform URL) is often a mention, not a contact.
_BARE_MENTION_SCORE = 0.4


def zero_shot_score(similarity: float, threshold: float) -> float:
    """A label similarity as a score in [0, 1]: 0.5 exactly at the label's threshold."""
    return float(min(1.0, max(0.0, 0.5 + (similarity - threshold) * ZERO_SHOT_SLOPE)))


@dataclass(frozen=True, slots=True)
class TextUnit:
    """A piece of text to look at: a text chunk, or a transcript window with its segments."""

    chunk_index: int
    text: str
    modality: Modality
    start_s: float = 0.0
    end_s: float = 0.0
    language: str | None = None
    embedding: Vector | None = None
    segments: tuple[Segment, ...] = ()  # the window's segments, when its text is their join
    # False where the picture pipelines already report the contact details of this text
    # (OCR lines, with their boxes): the text detectors then add only the other signals.
    contacts: bool = True
    offset: int = 0  # where `text` starts in the chunk's text (evidence spans are the chunk's)


def _segments_of(text: str, start_s: float, end_s: float, segments: Sequence[Segment]) -> tuple[Segment, ...]:
    """The transcript segments a window was made of (`speech.segment_windows` joins their
    stripped texts with one space), or () when the chunk is not exactly that join."""
    inside = tuple(s for s in segments if s.text.strip() and s.start_s >= start_s - 1e-6 and s.end_s <= end_s + 1e-6)
    return inside if inside and " ".join(s.text.strip() for s in inside) == text else ()


def text_units(analysis: Analysis) -> list[TextUnit]:
    """What to look at in an analysis: its text chunks, transcript windows, and the spoken and
    on-screen text of video shots (a shot's chunk without either describes its pictures: skipped)."""
    default_language = analysis.language.code if analysis.language is not None else None
    segments = analysis.transcript.segments if analysis.transcript is not None else ()
    shots = {s.index: s for s in analysis.shots}
    units = []
    for chunk in analysis.chunks:
        language = chunk.language.code if chunk.language is not None else default_language
        embedding = chunk.embedding if len(chunk.embedding) else None
        if analysis.modality is Modality.VIDEO:
            units.extend(_shot_units(chunk, shots.get(chunk.index), language, embedding, segments))
            continue
        text, contacts = chunk.text, True
        if analysis.modality is Modality.IMAGE:
            if chunk.index == 0:  # a description of the picture, not text the picture shows
                continue
            contacts = False
        if not text.strip():
            continue
        modality = {Modality.TEXT: Modality.TEXT, Modality.IMAGE: Modality.IMAGE}.get(
            analysis.modality, Modality.SPEECH
        )
        units.append(
            TextUnit(
                chunk_index=chunk.index,
                text=text,
                modality=modality,
                contacts=contacts,
                start_s=chunk.start_s,
                end_s=chunk.end_s,
                language=language,
                embedding=embedding,
                segments=_segments_of(text, chunk.start_s, chunk.end_s, segments) if segments else (),
            )
        )
    return units


def _shot_units(
    chunk: Chunk, shot: Shot | None, language: str | None, embedding: Vector | None, segments: Sequence[Segment]
) -> list[TextUnit]:
    """A shot's chunk text is what is said, then (after a newline) the text read on screen.

    The spoken part is looked at like a transcript window. The on-screen part gets the
    offensive model and, when nothing was said, the zero-shot categories (the chunk's
    embedding is of both); its contact details come from the picture pipeline, with boxes.
    """
    if shot is None:
        return []
    index, text = chunk.index, chunk.text
    said = shot.transcript_text if shot.transcript_text.strip() and text.startswith(shot.transcript_text) else ""
    units = []
    if said:
        window = _segments_of(said, chunk.start_s, chunk.end_s, segments) if segments else ()
        units.append(
            TextUnit(
                index,
                said,
                Modality.SPEECH,
                chunk.start_s,
                chunk.end_s,
                language=language,
                embedding=embedding,
                segments=window,
            )
        )
    shown = shot.ocr_text
    offset = len(said) + 1 if said else 0
    if shown.strip() and text[offset : offset + len(shown)] == shown:
        units.append(
            TextUnit(
                index,
                shown,
                Modality.VIDEO,
                chunk.start_s,
                chunk.end_s,
                language=language,
                embedding=None if said else embedding,
                contacts=False,
                offset=offset,
            )
        )
    return units


def _locate(unit: TextUnit, start: int, end: int) -> tuple[float, float, str]:
    """Time range and speaker of the span [start, end) of a unit's text."""
    if not unit.segments:
        return unit.start_s, unit.end_s, ""
    position = 0
    hit: list[Segment] = []
    for segment in unit.segments:
        length = len(segment.text.strip())
        if position < end and start < position + length:
            hit.append(segment)
        position += length + 1
    if not hit:
        return unit.start_s, unit.end_s, ""
    # Diarization (issue 17) adds `Segment.speaker`; read it without requiring it.
    speakers = [str(getattr(s, "speaker", "") or "") for s in hit]
    return hit[0].start_s, hit[-1].end_s, speakers[0] if len(set(speakers)) == 1 else ""


class TextSignals:
    """The text detectors, applied to many units at once (one offensive-model call)."""

    def __init__(self, *, offensive: OffensiveTextModel) -> None:
        self._offensive = offensive

    @property
    def models(self) -> tuple[ModelRef, ...]:
        return (self._offensive.model, CONTACT_MODEL)

    def detect(
        self, units: Sequence[TextUnit], *, tagger: Tagger | None, embedding_model: ModelRef | None
    ) -> list[Signal]:
        """Every signal of `units` (CPU-bound: call it off the event loop)."""
        if not units:
            return []
        signals: list[Signal] = []
        scores = self._offensive.score_texts([u.text for u in units], evidence_min=EVIDENCE_FLOOR)
        for unit, offensive in zip(units, scores, strict=True):
            signals.extend(self._offensive_signal(unit, offensive))
            if unit.contacts:
                signals.extend(self._contact_signals(unit, find_contacts(unit.text, language=unit.language)))
        if tagger is not None and embedding_model is not None:
            signals.extend(self._zero_shot(units, tagger, embedding_model))
        return signals

    def _evidence(self, unit: TextUnit, start: int, end: int, model: ModelRef, detail: str) -> Evidence:
        start_s, end_s, speaker = _locate(unit, start, end)
        return Evidence(
            modality=unit.modality,
            model=model,
            start_s=start_s,
            end_s=end_s,
            text=unit.text[start:end],
            span=(start + unit.offset, end + unit.offset),
            chunk_index=unit.chunk_index,
            speaker=speaker,
            detail=detail,
        )

    def _offensive_signal(self, unit: TextUnit, result: OffensiveScore) -> list[Signal]:
        if result.score < EVIDENCE_FLOOR:
            return []
        words = ", ".join(w.text for w in result.words)
        detail = "offensive language" + (f": {words}" if words else "")
        evidence = self._evidence(unit, result.start, result.end, result.model, detail)
        return [Signal("offensive", float(result.score), evidence)]

    def _contact_signals(self, unit: TextUnit, contacts: Sequence[Contact]) -> list[Signal]:
        signals = []
        for contact in contacts:
            bare_mention = contact.kind is ContactKind.HANDLE and not contact.platform and contact.value.startswith("@")
            detail = contact.kind.value + (f" ({contact.platform})" if contact.platform else "")
            evidence = self._evidence(unit, contact.start, contact.end, CONTACT_MODEL, detail)
            score = _BARE_MENTION_SCORE if bare_mention else 1.0
            signals.append(Signal(f"contact.{contact.kind.value}", score, evidence))
        return signals

    def _zero_shot(self, units: Sequence[TextUnit], tagger: Tagger, model: ModelRef) -> list[Signal]:
        labels = [
            (i, label, label.id[len(_SAFETY_PREFIX) :])
            for i, label in enumerate(tagger.taxonomy.labels)
            if label.id.startswith(_SAFETY_PREFIX) and label.id[len(_SAFETY_PREFIX) :] in CATEGORIES
        ]
        scored = [u for u in units if u.embedding is not None and len(u.embedding) == tagger.dimension]
        if not labels or not scored:
            return []
        matrix = tagger.scores(np.stack([np.asarray(u.embedding, dtype=np.float32) for u in scored]))
        signals = []
        for unit, row in zip(scored, matrix, strict=True):
            for column, label, category in labels:
                similarity = float(row[column])
                threshold = label.threshold_for(model.name)
                score = zero_shot_score(similarity, threshold)
                if score < EVIDENCE_FLOOR:
                    continue
                kind = "relative score" if tagger.relative else "similarity"
                detail = f"zero-shot {label.id}: {kind} {similarity:.3f} (label threshold {threshold:.3f})"
                evidence = self._evidence(unit, 0, len(unit.text), model, detail)
                signals.append(Signal(category, round(score, 4), evidence, zero_shot=True))
        return signals
