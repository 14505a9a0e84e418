"""The text and speech pipelines on small fakes: chunking into windows, one binding per
call, language, overall tags, transcript windows and the speech -> text hand-off."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from understanding.domain import Language, Modality, ModelRef, Segment, SpeechOptions, Transcript
from understanding.models.language import LanguageDetector
from understanding.pipelines.speech import SpeechPipeline, segment_windows
from understanding.pipelines.tagging import Label, Tagger, Taxonomy
from understanding.pipelines.text import TextInput, TextPipeline, Window

DIM = 8
MODEL = ModelRef("fake", "1")


def vector(text: str) -> np.ndarray:
    """A unit vector that depends on the words: texts sharing words are close."""
    v = np.zeros(DIM, dtype=np.float32)
    for word in text.lower().split():
        v[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
    norm = float(np.linalg.norm(v))
    return v / norm if norm else v


def encode(texts: Sequence[str]) -> list[np.ndarray]:
    return [vector(t) for t in texts]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        self.calls.append(list(texts))
        return encode(texts)


def pipeline(embed: Recorder, *, max_words: int = 5, overlap: int = 1) -> TextPipeline:
    taxonomy = Taxonomy(version="1", labels=(Label("topic.sports", "topic", 0.6, ("football goal match",)),))
    return TextPipeline(
        embed=embed, tagger=Tagger(taxonomy, encode), language=LanguageDetector(), model=MODEL,
        chunk_max_words=max_words, chunk_overlap_words=overlap,
    )  # fmt: skip


async def test_text_is_chunked_embedded_in_one_call_and_tagged() -> None:
    embed = Recorder()
    text = "football goal match tonight and then a long walk home through the rainy city streets"
    analysis = await pipeline(embed).analyze("t", TextInput("m1", text, {"k": "v"}))
    assert len(embed.calls) == 1 and len(embed.calls[0]) == len(analysis.chunks) > 1
    assert [c.index for c in analysis.chunks] == list(range(len(analysis.chunks)))
    assert all(len(c.text.split()) <= 5 for c in analysis.chunks)
    first = analysis.chunks[0]
    assert [t.label for t in first.tags] == ["topic.sports"] and first.tags[0].score >= 0.6
    assert np.allclose(first.embedding, vector(first.text))
    assert analysis.modality is Modality.TEXT and analysis.embedding_model == MODEL
    assert analysis.language is not None and analysis.language.code == "en"
    assert analysis.metadata == {"k": "v"} and analysis.version > 0


async def test_windows_keep_their_time_range_and_empty_input_embeds_nothing() -> None:
    embed = Recorder()
    text = pipeline(embed, max_words=3, overlap=0)
    chunks = await text.embed_windows([Window("one two three four five", 10.0, 14.0), Window("six", 20.0, 21.0)])
    assert [(c.start_s, c.end_s) for c in chunks] == [(10.0, 14.0), (10.0, 14.0), (20.0, 21.0)]
    assert await text.embed_windows([Window("   ")]) == []
    assert text.overall_tags([]) == ()


def _segment(i: int, start: float, end: float, text: str) -> Segment:
    return Segment(index=i, start_s=start, end_s=end, text=text, avg_logprob=-0.1, no_speech_prob=0.0)


def test_segment_windows_are_bounded_in_time_and_words() -> None:
    segments = [_segment(i, i * 4.0, i * 4.0 + 3.5, f"w{i} " * 6) for i in range(6)]
    windows = segment_windows(segments, max_s=10.0, max_words=20)
    assert [(w.start_s, w.end_s) for w in windows] == [(0.0, 7.5), (8.0, 15.5), (16.0, 23.5)]
    assert all(len(w.text.split()) <= 20 for w in windows)
    assert segment_windows([_segment(0, 0, 1, "  ")], max_s=10, max_words=5) == []
    # A single segment longer than the bounds is a window of its own, never dropped.
    long = segment_windows([_segment(0, 0.0, 30.0, "x " * 100)], max_s=10.0, max_words=20)
    assert len(long) == 1 and long[0].end_s == 30.0


class FakeTranscriber:
    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript
        self.options: SpeechOptions | None = None

    def transcribe(self, audio: np.ndarray, options: SpeechOptions, on_segment: object = None) -> Transcript:
        self.options = options
        return self.transcript


async def test_speech_goes_through_the_text_path_in_windows() -> None:
    transcript = Transcript(
        segments=(_segment(0, 0.0, 2.0, "football goal match"), _segment(1, 30.0, 32.0, "walk home")),
        language=Language("en", 0.9), duration_s=40.0, task="transcribe", model=ModelRef("whisper", "base"),
    )  # fmt: skip
    embed = Recorder()
    speech = SpeechPipeline(transcriber=FakeTranscriber(transcript), text=pipeline(embed), max_duration_s=60.0)  # type: ignore[arg-type]
    analysis = await speech.analyze_transcript("t", "aud-1", transcript, {"k": "v"})
    assert analysis.modality is Modality.SPEECH and analysis.transcript == transcript
    assert [(c.text, c.start_s, c.end_s) for c in analysis.chunks] == [
        ("football goal match", 0.0, 2.0), ("walk home", 30.0, 32.0)
    ]  # fmt: skip
    assert analysis.language == Language("en", 0.9)
    assert analysis.chunks[0].tags[0].start_s == 0.0 and analysis.chunks[0].tags[0].end_s == 2.0


async def test_silence_has_no_language_and_no_chunks() -> None:
    silent = Transcript(segments=(), language=Language("en", 0.3), duration_s=5.0, task="transcribe", model=MODEL)
    speech = SpeechPipeline(transcriber=FakeTranscriber(silent), text=pipeline(Recorder()), max_duration_s=60.0)  # type: ignore[arg-type]
    analysis = await speech.analyze_transcript("t", "aud-2", silent, {})
    assert analysis.chunks == () and analysis.language is None and analysis.tags == ()


@pytest.mark.parametrize("bad", [{"language": "xx"}, {"beam_size": 0}, {"task": "summarize"}])
def test_speech_options_validate_once(bad: dict[str, object]) -> None:
    from understanding.domain import InvalidInput

    with pytest.raises(InvalidInput) as error:
        SpeechOptions(**bad)  # type: ignore[arg-type]
    assert error.value.field is not None and error.value.field.startswith("speech.")


async def test_code_switching_call_gets_a_language_per_segment_and_chunk() -> None:
    """Whisper says one language per call; each segment and window says its own when its text is clear."""
    transcript = Transcript(
        segments=(
            _segment(0, 0.0, 4.0, "Thanks for calling, let me check your booking for next week."),
            _segment(1, 20.0, 24.0, "Einen Moment bitte, ich verbinde Sie mit meiner Kollegin."),
            _segment(2, 40.0, 41.0, "Okay."),
        ),
        language=Language("en", 0.8), duration_s=45.0, task="transcribe", model=ModelRef("whisper", "base"),
    )  # fmt: skip
    speech = SpeechPipeline(
        transcriber=FakeTranscriber(transcript), text=pipeline(Recorder(), max_words=50), max_duration_s=60.0
    )  # type: ignore[arg-type]
    labelled = await speech.transcribe(np.zeros(16000, dtype=np.float32), SpeechOptions())
    assert [s.language.code if s.language else None for s in labelled.segments] == ["en", "de", "en"]
    analysis = await speech.analyze_transcript("t", "call-1", labelled, {})
    assert [c.language.code if c.language else None for c in analysis.chunks] == ["en", "de", "en"]
    assert analysis.language == Language("en", 0.8)


async def test_a_text_in_two_languages_gets_a_language_per_chunk() -> None:
    english = "The match was fantastic and the home team won three to nothing in the final minutes. " * 3
    german = "Das Spiel war fantastisch und die Mannschaft hat in den letzten Minuten drei zu null gewonnen. " * 3
    analysis = await pipeline(Recorder(), max_words=45, overlap=0).analyze("t", TextInput("m2", english + german))
    codes = [c.language.code if c.language else None for c in analysis.chunks]
    assert codes[0] == "en" and codes[-1] == "de", codes
