"""PII redaction: contact details masked in every text of an analysis, evidence kept.

Masking keeps the length (each character of a finding becomes `MASK`), so every span,
chunk offset and word position computed on the original text still points at the same
place in the redacted one, and the evidence can say "a phone number, characters 12-27 of
chunk 0" without the number. Pure functions; `find_contacts` does the finding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from understanding.domain import Analysis, Chunk, Moderation, Segment, Shot, Signal, Transcript, Word
from understanding.pipelines.contacts import find_contacts

__all__ = ["MASK", "mask", "redact_analysis", "redact_moderation", "redact_text"]

MASK = "*"
_CONTACT_PREFIX = "contact."


def mask(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """`text` with the characters of every span replaced by `MASK` (whitespace kept)."""
    chars = list(text)
    for start, end in spans:
        for i in range(max(0, start), min(len(chars), end)):
            if not chars[i].isspace():
                chars[i] = MASK
    return "".join(chars)


def redact_text(text: str, *, language: str | None = None) -> str:
    """`text` with every contact detail masked."""
    contacts = find_contacts(text, language=language) if text else ()
    return mask(text, ((c.start, c.end) for c in contacts)) if contacts else text


def _transcript(transcript: Transcript, language: str | None) -> Transcript:
    """Mask findings of the whole transcript (a number may be split between two segments)
    and of each segment, then every word overlapping a masked character."""
    pieces = [s.text.strip() for s in transcript.segments]
    joined = " ".join(pieces)
    ranges = [(c.start, c.end) for c in find_contacts(joined, language=language)]
    segments: list[Segment] = []
    position = 0
    for segment, piece in zip(transcript.segments, pieces, strict=True):
        lead = len(segment.text) - len(segment.text.lstrip())
        local = [
            (s - position + lead, e - position + lead) for s, e in ranges if s < position + len(piece) and e > position
        ]
        if piece:
            position += len(piece) + 1
        text = redact_text(mask(segment.text, local), language=language)
        segments.append(dataclasses.replace(segment, text=text, words=_words(segment.words, text, segment.text)))
    return dataclasses.replace(transcript, segments=tuple(segments))


def _words(words: Sequence[Word], masked: str, original: str) -> tuple[Word, ...]:
    """Words masked where they overlap masked characters of their segment's text; a word not
    found in the segment text is checked on its own."""
    if masked == original:
        return tuple(words)
    out = []
    position = 0
    for word in words:
        token = word.text.strip()
        found = original.find(token, position) if token else -1
        if found >= 0:
            position = found + len(token)
            redacted = masked[found : found + len(token)]
            text = word.text.replace(token, redacted) if redacted != token else word.text
        else:
            text = redact_text(word.text)
        out.append(dataclasses.replace(word, text=text) if text != word.text else word)
    return tuple(out)


def redact_moderation(moderation: Moderation) -> Moderation:
    """Contact evidence without its text; other evidence with contact details masked."""
    categories = []
    for result in moderation.categories:
        if result.category.startswith(_CONTACT_PREFIX):
            evidence = tuple(dataclasses.replace(e, text="", redacted=True) for e in result.evidence)
        else:
            evidence = tuple(dataclasses.replace(e, text=redact_text(e.text)) if e.text else e for e in result.evidence)
        categories.append(dataclasses.replace(result, evidence=evidence))
    return dataclasses.replace(moderation, categories=tuple(categories))


def _signal(signal: Signal) -> Signal:
    evidence = signal.evidence
    if signal.category.startswith(_CONTACT_PREFIX):
        evidence = dataclasses.replace(evidence, text="", redacted=True)
    elif evidence.text:
        evidence = dataclasses.replace(evidence, text=redact_text(evidence.text))
    return dataclasses.replace(signal, evidence=evidence)


def redact_analysis(analysis: Analysis) -> Analysis:
    """Every text of `analysis` with contact details masked: chunks (what is stored and
    embedded for lexical search), transcript segments and words, shots' spoken text, and the
    evidence (contact evidence keeps its span and kind, loses its text)."""
    language = analysis.language.code if analysis.language is not None else None
    chunks = tuple(_chunk(c, language) for c in analysis.chunks)
    shots = tuple(_shot(s, language) for s in analysis.shots)
    transcript = _transcript(analysis.transcript, language) if analysis.transcript is not None else None
    moderation = redact_moderation(analysis.moderation) if analysis.moderation is not None else None
    return dataclasses.replace(
        analysis,
        chunks=chunks,
        shots=shots,
        transcript=transcript,
        signals=tuple(_signal(s) for s in analysis.signals),
        moderation=moderation,
    )


def _chunk(chunk: Chunk, language: str | None) -> Chunk:
    code = chunk.language.code if chunk.language is not None else language
    text = redact_text(chunk.text, language=code)
    return chunk if text == chunk.text else dataclasses.replace(chunk, text=text)


def _shot(shot: Shot, language: str | None) -> Shot:
    text = redact_text(shot.transcript_text, language=language)
    return shot if text == shot.transcript_text else dataclasses.replace(shot, transcript_text=text)
