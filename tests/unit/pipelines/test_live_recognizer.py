"""The live recogniser's guard against Whisper's two ways of inventing words: loops and invented tails.

The transcriber is a small fake that answers per prompt; what each answer looks
like is what Whisper base did on the pyannote call's segments played with pauses
(benchmarks/live_bench.py --pauses 1.5).
"""

from __future__ import annotations

import numpy as np

from understanding.domain import Language, ModelRef, Segment, SpeechOptions, Transcript, Word
from understanding.pipelines.live.asr import DecodeJob
from understanding.pipelines.live.recognizer import WhisperRecognizer

MODEL = ModelRef("whisper-fake", "1")
PROMPT = "I'm Sheila in Texas, originally from Chicago."
LOOP = " ".join(["I'm not sure."] * 40)


def transcript(*words: tuple[str, float]) -> Transcript:
    timed = tuple(Word(text, 0.3 * i, 0.3 * i + 0.25, p) for i, (text, p) in enumerate(words))
    text = " ".join(text for text, _ in words)
    segment = Segment(0, 0.0, 0.3 * len(words), text, -0.2, 0.1, timed)
    return Transcript((segment,) if words else (), Language("en", 1.0), 2.0, "transcribe", MODEL)


def looping() -> Transcript:
    return transcript(*[(word, 0.9) for word in LOOP.split()])


class FakeTranscriber:
    def __init__(self, answers: dict[str | None, Transcript]) -> None:
        self.answers = answers
        self.prompts: list[str | None] = []
        self.beams: list[int] = []
        self.model_ref = MODEL

    def transcribe(self, audio: np.ndarray, options: SpeechOptions) -> Transcript:
        assert options.word_timestamps and not options.vad and not options.fallback
        self.prompts.append(options.initial_prompt)
        self.beams.append(options.beam_size)
        return self.answers[options.initial_prompt]


def job(prompt: str | None = PROMPT, *, final: bool = False, closing: bool = False) -> DecodeJob:
    return DecodeJob(1, np.zeros(32000, np.float32), 10.0, "en", prompt, final=final, closing=closing)


def texts(result: Transcript) -> list[str]:
    return [w.text for s in result.segments for w in s.words]


def test_a_good_decode_is_returned_as_it_is_after_one_call() -> None:
    good = transcript(("also", 0.9), ("from", 0.95), ("Chicago.", 0.99))
    fake = FakeTranscriber({PROMPT: good})
    assert WhisperRecognizer(fake)(job()) is good  # type: ignore[arg-type]
    assert fake.prompts == [PROMPT]


def test_a_decode_that_loops_is_retried_without_the_prompt() -> None:
    fake = FakeTranscriber({PROMPT: looping(), None: transcript(("Neither", 0.6), ("did", 0.8), ("I.", 0.7))})
    result = WhisperRecognizer(fake)(job())  # type: ignore[arg-type]
    assert texts(result) == ["Neither", "did", "I."]
    assert fake.prompts == [PROMPT, None]


def test_a_decode_that_loops_with_and_without_the_prompt_gives_no_words() -> None:
    fake = FakeTranscriber({PROMPT: looping(), None: looping()})
    result = WhisperRecognizer(fake)(job())  # type: ignore[arg-type]
    assert result.segments == () and result.language.code == "en"
    assert fake.prompts == [PROMPT, None]


def test_a_loop_without_a_prompt_is_not_decoded_twice() -> None:
    fake = FakeTranscriber({None: looping()})
    assert WhisperRecognizer(fake)(job(prompt=None)).segments == ()  # type: ignore[arg-type]
    assert fake.prompts == [None]


def test_the_invented_tail_of_a_hypothesis_is_dropped() -> None:
    heard = transcript(("in", 0.9), ("New", 0.95), ("Jersey.", 0.99), ("I'm", 0.11), ("sorry.", 0.12))
    fake = FakeTranscriber({PROMPT: heard})
    result = WhisperRecognizer(fake)(job())  # type: ignore[arg-type]
    assert texts(result) == ["in", "New", "Jersey."]
    assert result.segments[0].text == "in New Jersey."
    assert fake.prompts == [PROMPT]


def test_an_unsure_word_before_a_sure_one_stays() -> None:
    heard = transcript(("Lisa", 0.07), ("said", 0.9))
    assert texts(WhisperRecognizer(FakeTranscriber({PROMPT: heard}))(job())) == ["Lisa", "said"]  # type: ignore[arg-type]


def test_a_prompted_decode_that_keeps_no_word_is_retried_without_the_prompt() -> None:
    # With the other speaker's "originally from Chicago" in the prompt, Whisper skipped it.
    fake = FakeTranscriber(
        {
            PROMPT: transcript(("Also.", 0.0), ("I'm.", 0.07)),
            None: transcript(("I'm", 0.29), ("originally", 0.99), ("from", 1.0), ("Chicago", 1.0), ("also.", 0.82)),
        }
    )
    result = WhisperRecognizer(fake)(job())  # type: ignore[arg-type]
    assert texts(result) == ["I'm", "originally", "from", "Chicago", "also."]
    assert fake.prompts == [PROMPT, None]


def test_a_decode_that_may_be_the_final_gets_the_beam_and_a_partial_is_greedy() -> None:
    good = transcript(("also", 0.9), ("from", 0.95), ("Chicago.", 0.99))
    fake = FakeTranscriber({None: good})
    recognize = WhisperRecognizer(fake, beam_size=5, partial_beam_size=1)  # type: ignore[arg-type]
    for decode in (job(None), job(None, closing=True), job(None, final=True, closing=True)):
        recognize(decode)
    assert fake.beams == [1, 5, 5]
