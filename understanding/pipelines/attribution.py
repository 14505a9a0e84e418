"""Speakers onto a transcript: label words and segments, split segments where the speaker changes.

Plain functions, no I/O. Diarization (pipelines/diarization.py) says who spoke
when; Whisper says what was said. Whisper's segments follow its 30 s decoding
windows and punctuation, not turn-taking, so a segment often holds the end of
one speaker's turn and the start of the next one's: with word timestamps such
a segment is cut where its words change speaker, so every segment (and every
indexed window built from segments) has exactly one speaker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from understanding.domain import Segment, Speaker, Transcript, Word
from understanding.pipelines.diarization import Diarization, assign_speakers

__all__ = ["attribute", "merge_channels", "speakers_between"]

# Languages written without spaces between words: split segments join their words without one.
_NO_SPACE = frozenset({"zh", "yue", "ja", "th", "lo", "my", "km", "bo"})


def attribute(
    transcript: Transcript,
    diarization: Diarization,
    *,
    channels: Mapping[str, int] | None = None,
    split: bool = True,
) -> Transcript:
    """`transcript` with speakers on words and segments and the speaker list.

    A word takes the speaker whose turn overlaps it most; a segment with words
    is split into runs of one speaker (a word with no turn near stays with the
    run around it); a segment without words takes the speaker talking most
    during it. `channels` maps labels to their 1-based channel (per-channel
    participants). `split=False` keeps the segments as they are (a live
    stream's events refer to them by index): a segment then takes the speaker
    of most of its words.
    """
    joiner = "" if transcript.language.code in _NO_SPACE else " "
    assigned = assign_speakers(transcript.segments, diarization.turns)
    segments: list[Segment] = []
    for segment, who in zip(transcript.segments, assigned, strict=True):
        words = tuple(dataclasses.replace(w, speaker=s) for w, s in zip(segment.words, who.words, strict=True))
        if split:
            segments.extend(_split(segment, words, who.speaker, joiner))
        else:
            segments.append(dataclasses.replace(segment, words=words, speaker=who.speaker))
    if split:
        segments = [dataclasses.replace(s, index=i) for i, s in enumerate(segments)]
    by_channel = channels or {}
    return dataclasses.replace(
        transcript,
        segments=tuple(segments),
        speakers=tuple(
            Speaker(s.label, s.speaking_s, s.turns, by_channel.get(s.label, 0)) for s in diarization.speakers
        ),
        speaker_model=diarization.model if diarization.method == "clustering" else None,
        speaker_method=diarization.method,
    )


def _split(segment: Segment, words: tuple[Word, ...], speaker: str, joiner: str) -> list[Segment]:
    runs = _runs(words)
    if len(runs) <= 1:
        return [dataclasses.replace(segment, words=words, speaker=runs[0][0] if runs else speaker)]
    pieces = []
    for label, run in runs:
        pieces.append(
            dataclasses.replace(
                segment,
                start_s=run[0].start_s,
                end_s=max(run[-1].end_s, run[0].start_s),
                text=joiner.join(w.text for w in run if w.text),
                words=run,
                speaker=label,
            )
        )
    return pieces


def _runs(words: Sequence[Word]) -> list[tuple[str, tuple[Word, ...]]]:
    """Consecutive words of one speaker; unlabelled words join the run they are in (or the next one)."""
    runs: list[tuple[str, list[Word]]] = []
    pending: list[Word] = []  # unlabelled words before the first labelled one
    for word in words:
        if not word.speaker:
            (runs[-1][1] if runs else pending).append(word)
        elif runs and runs[-1][0] == word.speaker:
            runs[-1][1].append(word)
        else:
            runs.append((word.speaker, [*pending, word]))
            pending = []
    if pending:  # no word has a speaker
        return []
    return [(label, tuple(run)) for label, run in runs]


def merge_channels(
    parts: Sequence[tuple[str, Transcript]], diarization: Diarization, channels: Mapping[str, int]
) -> Transcript:
    """One transcript from per-channel transcripts: every segment and word of a channel is its participant's.

    Segments are ordered by start time (ties by channel) and renumbered. The
    language is the one of the channel with the most speech (each channel was
    detected on its own unless forced).
    """
    if not parts:
        raise ValueError("merge_channels needs at least one channel's transcript")
    segments = sorted(
        (
            dataclasses.replace(s, speaker=label, words=tuple(dataclasses.replace(w, speaker=label) for w in s.words))
            for label, transcript in parts
            for s in transcript.segments
        ),
        key=lambda s: (s.start_s, channels.get(s.speaker, 0), s.index),
    )
    talk = {s.label: s.speaking_s for s in diarization.speakers}
    leading = max(parts, key=lambda p: (bool(p[1].segments), talk.get(p[0], 0.0)))[1]
    return Transcript(
        segments=tuple(dataclasses.replace(s, index=i) for i, s in enumerate(segments)),
        language=leading.language,
        duration_s=max(t.duration_s for _, t in parts),
        task=leading.task,
        model=leading.model,
        speakers=tuple(Speaker(s.label, s.speaking_s, s.turns, channels.get(s.label, 0)) for s in diarization.speakers),
        speaker_model=None,
        speaker_method=diarization.method,
    )


def speakers_between(transcript: Transcript | None, start_s: float, end_s: float) -> tuple[str, ...]:
    """Speakers talking in [start_s, end_s), most talkative there first (by words when present)."""
    if transcript is None:
        return ()
    talk: dict[str, float] = {}
    for segment in transcript.segments:
        if segment.end_s <= start_s or segment.start_s >= end_s:
            continue
        spans = [(w.start_s, w.end_s, w.speaker) for w in segment.words] or [
            (segment.start_s, segment.end_s, segment.speaker)
        ]
        for a, b, label in spans:
            overlap = min(b, end_s) - max(a, start_s)
            if label and (overlap > 0 or (a == b and start_s <= a < end_s)):
                talk[label] = talk.get(label, 0.0) + max(overlap, 0.01)
    return tuple(label for label, _ in sorted(talk.items(), key=lambda kv: (-kv[1], kv[0])))
