"""The live path's state machine with a scripted recogniser: LocalAgreement, endpointing,
buffer trimming, and that history is never decoded again."""

from __future__ import annotations

import numpy as np
import pytest

from understanding.domain import (
    InvalidInput,
    Language,
    LiveFinal,
    LivePartial,
    LiveStatus,
    ModelRef,
    Segment,
    Transcript,
    Word,
)
from understanding.pipelines.live.agreement import LocalAgreement
from understanding.pipelines.live.asr import AsrSettings, DecodeJob, StreamingAsr
from understanding.pipelines.live.channel import EventChannel
from understanding.pipelines.live.endpointing import Endpointer, EndpointSettings
from understanding.pipelines.live.timeline import Timeline

SR = 16000
WINDOW_S = 512 / SR
MODEL = ModelRef("fake", "1")


def w(text: str, start: float, end: float) -> Word:
    return Word(text, start, end, 0.9)


# ---------------------------------------------------------------- LocalAgreement


def test_local_agreement_commits_only_what_two_hypotheses_share() -> None:
    la = LocalAgreement()
    assert la.insert([w("the", 0.0, 0.2), w("cat", 0.3, 0.5)]) == []
    assert [x.text for x in la.tentative] == ["the", "cat"]
    committed = la.insert([w("the", 0.0, 0.2), w("cats", 0.3, 0.5), w("sat", 0.6, 0.8)])
    assert [x.text for x in committed] == ["the"]
    committed = la.insert([w("The", 0.0, 0.2), w("cats.", 0.3, 0.5), w("sat", 0.6, 0.8), w("on", 0.9, 1.0)])
    # "The" is already committed (it ends before the committed end); "cats." agrees with "cats" ignoring punctuation
    assert [x.text for x in committed] == ["cats.", "sat"]
    assert [x.text for x in la.committed] == ["the", "cats.", "sat"]
    assert [x.text for x in la.tentative] == ["on"]


def test_local_agreement_drops_a_restated_ngram_of_the_committed_tail() -> None:
    la = LocalAgreement()
    la.insert([w("hello", 0.0, 0.4), w("there", 0.5, 0.9)])
    la.insert([w("hello", 0.0, 0.4), w("there", 0.5, 0.9)])
    # a later hypothesis restates "there" with a slightly later start
    committed = la.insert([w("there", 0.85, 1.0), w("friend", 1.1, 1.4)])
    assert committed == [] and [x.text for x in la.tentative] == ["friend"]
    assert [x.text for x in la.commit_all([w("there", 0.85, 1.0), w("friend", 1.1, 1.4)])] == ["friend"]


# ---------------------------------------------------------------- endpointing


def probabilities(speech: list[tuple[float, float]], until_s: float) -> list[float]:
    n = int(until_s / WINDOW_S)
    return [0.9 if any(a <= i * WINDOW_S < b for a, b in speech) else 0.05 for i in range(n)]


def test_endpointer_opens_after_min_speech_and_closes_after_end_silence() -> None:
    ep = Endpointer(EndpointSettings(min_speech_s=0.2, end_silence_s=0.5, pad_s=0.2))
    bounds = ep.push(probabilities([(1.0, 3.0), (3.2, 4.0), (6.0, 6.1)], 8.0))
    kinds = [(b.kind, round(b.t_s, 2)) for b in bounds]
    # the 0.2 s pause at 3.0 does not end it; the 0.1 s blip at 6.0 never opens one
    assert [k for k, _ in kinds] == ["start", "end"]
    assert kinds[0][1] == pytest.approx(0.8, abs=WINDOW_S)
    assert kinds[1][1] == pytest.approx(4.2, abs=WINDOW_S)
    assert not ep.speaking


def windows(*runs: tuple[float, float]) -> list[float]:
    """(seconds, probability) runs, as the VAD's per-window scores."""
    return [p for seconds, p in runs for _ in range(int(round(seconds / WINDOW_S)))]


def test_endpointer_starts_where_a_soft_onset_began_not_where_the_vad_became_sure() -> None:
    # A phone line's "oh, I'm ...": 0.6 s scored 0.2-0.3 before the voice gets loud.
    ep = Endpointer(EndpointSettings(min_speech_s=0.15, pad_s=0.2, onset_floor=0.1, lookback_s=1.0))
    bounds = ep.push(windows((2.0, 0.02), (0.6, 0.25), (1.0, 0.9)))
    assert [b.kind for b in bounds] == ["start"]
    assert bounds[0].t_s == pytest.approx(2.0 - 0.2, abs=WINDOW_S)
    # ... but never further back than lookback_s
    ep = Endpointer(EndpointSettings(min_speech_s=0.15, pad_s=0.2, onset_floor=0.1, lookback_s=1.0))
    bounds = ep.push(windows((2.0, 0.02), (3.0, 0.25), (1.0, 0.9)))
    assert bounds[0].t_s == pytest.approx(5.0 - 1.0 - 0.2, abs=2 * WINDOW_S)


def test_endpointer_counts_the_hysteresis_band_towards_the_opening_run() -> None:
    # A short "Hello?": 0.13 s sure, then 0.06 s between the thresholds, then silence. Silero's own
    # splitter counts the band as speech once it has started; so does the run that opens an utterance.
    settings = EndpointSettings(min_speech_s=0.15, end_silence_s=0.5, pad_s=0.2)
    bounds = Endpointer(settings).push(windows((1.0, 0.02), (0.128, 0.7), (0.064, 0.4), (1.0, 0.02)))
    assert [b.kind for b in bounds] == ["start", "end"]
    # Band alone opens nothing; nor does a blip under min_speech_s.
    assert Endpointer(settings).push(windows((1.0, 0.02), (1.0, 0.4), (1.0, 0.02))) == []
    assert Endpointer(settings).push(windows((1.0, 0.02), (0.096, 0.9), (1.0, 0.02))) == []


def test_an_utterance_never_starts_inside_the_previous_one() -> None:
    # With pads over half the end silence, the second utterance's padded start would reach into
    # the first one's padded end: it starts where the first ended.
    asr = StreamingAsr(AsrSettings(endpoint=EndpointSettings(end_silence_s=0.5, pad_s=0.4)))
    probs = windows((1.0, 0.02), (1.0, 0.9), (0.6, 0.02), (1.0, 0.9), (1.0, 0.02))
    asr.push(np.zeros(int(len(probs) * 512), np.float32), np.asarray(probs, np.float32))
    first, second = list(asr._utterances)  # noqa: SLF001
    assert first.end_s is not None and second.start_s == pytest.approx(first.end_s)


# ---------------------------------------------------------------- the state machine


class ScriptedRecognizer:
    """Knows the words said and when; the last word still being spoken comes out wrong,
    like Whisper's unstable tail. Records every job it saw."""

    def __init__(self, words: list[Word], unstable_s: float = 0.15) -> None:
        self.words = words
        self.unstable_s = unstable_s
        self.jobs: list[DecodeJob] = []

    def __call__(self, job: DecodeJob) -> Transcript:
        self.jobs.append(job)
        end = job.end_s
        out = []
        for word in self.words:
            if word.start_s >= job.offset_s - 0.05 and word.end_s <= end:
                text = word.text
                if not job.final and end - word.end_s < self.unstable_s:
                    text = text + "x"  # unstable tail: changes in the next hypothesis
                out.append(Word(text, word.start_s - job.offset_s, word.end_s - job.offset_s, 0.9))
        segment = Segment(0, 0.0, end - job.offset_s, " ".join(x.text for x in out), -0.2, 0.01, tuple(out))
        return Transcript((segment,) if out else (), Language("en", 0.99), end - job.offset_s, "transcribe", MODEL)


def speech_words(start: float, end: float, prefix: str, every_s: float = 0.4) -> list[Word]:
    words, t, i = [], start, 0
    while t + 0.3 <= end:
        text = f"{prefix}{i}" + ("." if (i + 1) % 8 == 0 else "")
        words.append(w(text, t, t + 0.3))
        t += every_s
        i += 1
    return words


def drain(asr: StreamingAsr, recognizer: ScriptedRecognizer, events: list[LivePartial | LiveFinal]) -> None:
    """What the session's decode loop does: finals that need no decode, then each decode asked for."""
    events.extend(asr.settle())
    while (job := asr.next_job()) is not None:
        events.extend(asr.on_result(job, recognizer(job)))
        events.extend(asr.settle())


def run(asr: StreamingAsr, recognizer: ScriptedRecognizer, speech: list[tuple[float, float]], until_s: float):
    """Feed 100 ms of audio at a time; decode whatever the machine asks for, at once."""
    probs = probabilities(speech, until_s + 1)
    events: list[LivePartial | LiveFinal] = []
    buffered: list[float] = []
    step, taken, t = 1600, 0, 0.0
    while t < until_s:
        t += 0.1
        n_windows = int(t / WINDOW_S) - taken
        asr.push(np.zeros(step, np.float32), np.asarray(probs[taken : taken + n_windows], np.float32))
        taken += n_windows
        buffered.append(asr._buffer.duration_s)
        drain(asr, recognizer, events)
    asr.finish()
    drain(asr, recognizer, events)
    return events, buffered


def test_partials_grow_a_stable_prefix_and_the_final_holds_every_word() -> None:
    words = speech_words(1.0, 4.0, "a")
    recognizer = ScriptedRecognizer(words)
    events, _ = run(StreamingAsr(AsrSettings(step_s=0.5)), recognizer, [(1.0, 4.0)], 6.0)
    partials = [e for e in events if isinstance(e, LivePartial)]
    finals = [e for e in events if isinstance(e, LiveFinal)]
    assert len(partials) >= 3
    assert len(finals) == 1
    final_text = finals[0].segment.text
    assert final_text.split() == [x.text for x in words]
    for p in partials:  # what was called stable never changes
        assert final_text.startswith(p.stable_text)
        assert all(not t.endswith("x") for t in p.stable_text.split())  # never an unstable tail
    assert partials[-1].stable_text  # agreement reached before the end
    assert finals[0].segment.start_s == pytest.approx(1.0) and finals[0].segment.words[-1].end_s <= 4.0


def test_the_decode_started_at_the_pause_is_the_final_when_the_pause_ends_the_utterance() -> None:
    words = speech_words(1.0, 4.0, "a")
    recognizer = ScriptedRecognizer(words)
    events, _ = run(StreamingAsr(), recognizer, [(1.0, 4.0)], 6.0)
    finals = [e for e in events if isinstance(e, LiveFinal)]
    assert [x.text for f in finals for x in f.segment.words] == [x.text for x in words]
    # Speech stops at ~4.0 (last word 3.4-3.7, its window rounded): one decode up to the would-be end
    # (silence start + 0.2 s pad), none while the silence lasts, no second decode once it ends the utterance.
    after_speech = [j for j in recognizer.jobs if j.end_s > 4.0 + WINDOW_S]
    assert len(after_speech) == 1 and not after_speech[0].final
    assert after_speech[0].end_s == pytest.approx(4.2, abs=2 * WINDOW_S)
    assert not any(j.final for j in recognizer.jobs)
    # It may be the final (so the recogniser gives it the final's beam); the partials before it may not.
    assert after_speech[0].closing and not any(j.closing for j in recognizer.jobs if j is not after_speech[0])


def test_a_pause_decode_that_returns_after_the_utterance_ended_is_its_final() -> None:
    words = speech_words(1.0, 3.0, "a")
    recognizer = ScriptedRecognizer(words)
    asr = StreamingAsr()
    probs = probabilities([(1.0, 3.0)], 6.0)
    pending: DecodeJob | None = None
    events: list[LivePartial | LiveFinal] = []
    taken = 0
    for tenth in range(1, 50):  # 100 ms pushes; every decode but the pause's returns at once
        n = int(tenth * 0.1 / WINDOW_S) - taken
        asr.push(np.zeros(1600, np.float32), np.asarray(probs[taken : taken + n], np.float32))
        taken += n
        events.extend(asr.settle())
        while pending is None and (job := asr.next_job()) is not None:
            if job.end_s > 3.0 + WINDOW_S:
                pending = job  # the pause's decode: still running while the silence goes on
            else:
                events.extend(asr.on_result(job, recognizer(job)))
    assert pending is not None and not asr.speaking  # the utterance ended while it ran
    finals = asr.on_result(pending, recognizer(pending))
    assert [type(e) for e in finals] == [LiveFinal]
    assert [x.text for x in finals[0].segment.words] == [x.text for x in words]  # type: ignore[union-attr]
    assert asr.next_job() is None and asr.settle() == []


@pytest.mark.parametrize(("decoded_past_silence_s", "one_more_decode"), [(-0.05, False), (-0.35, True)])
def test_a_partial_that_heard_the_whole_utterance_is_its_final(
    decoded_past_silence_s: float, one_more_decode: bool
) -> None:
    """A partial started just after the speaker stopped, while the VAD still hesitated, has all
    the words: the final follows it without one more decode (up to 0.1 s short of the silence)."""
    words = speech_words(1.0, 3.0, "a")
    recognizer = ScriptedRecognizer(words, unstable_s=0.0)  # a word is right as soon as it is heard
    asr = StreamingAsr()
    # speech, 0.3 s between the thresholds (the last word's tail), then silence from 3.3 s
    probs = windows((1.0, 0.02), (2.0, 0.9), (0.3, 0.45), (2.0, 0.02))
    silence_start = 3.3
    fed = 0
    events: list[LivePartial | LiveFinal] = []

    def feed(until_s: float) -> None:
        nonlocal fed
        n = int(round(until_s / WINDOW_S)) - fed
        asr.push(np.zeros(n * 512, np.float32), np.asarray(probs[fed : fed + n], np.float32))
        fed += n

    t = 0.0
    while t < silence_start + decoded_past_silence_s - 0.1:  # partials while speaking, each returning at once
        t += 0.1
        feed(t)
        while (job := asr.next_job()) is not None:
            events.extend(asr.on_result(job, recognizer(job)))
    feed(silence_start + decoded_past_silence_s)
    late = asr._job(asr._utterances[0], asr.received_s, final=False, closing=False)  # noqa: SLF001
    recognizer.jobs.clear()
    feed(silence_start + 1.0)  # the silence ends the utterance while that partial runs
    assert not asr.speaking
    events = asr.on_result(late, recognizer(late)) + asr.settle()
    while (job := asr.next_job()) is not None:
        events.extend(asr.on_result(job, recognizer(job)))
    finals = [e for e in events if isinstance(e, LiveFinal)]
    assert len(finals) == 1
    assert [x.text for x in finals[0].segment.words] == [x.text for x in words]
    assert len(recognizer.jobs) == (2 if one_more_decode else 1)
    assert finals[0].segment.words[-1].end_s == pytest.approx(2.9)


def test_a_pause_that_does_not_end_the_utterance_is_decoded_as_a_partial() -> None:
    words = speech_words(1.0, 2.5, "a") + speech_words(2.8, 4.5, "b")
    recognizer = ScriptedRecognizer(words)
    events, _ = run(StreamingAsr(), recognizer, [(1.0, 2.5), (2.8, 4.5)], 7.0)
    finals = [e for e in events if isinstance(e, LiveFinal)]
    assert len(finals) == 1  # a 0.3 s pause does not end the utterance
    assert [x.text for x in finals[0].segment.words] == [x.text for x in words]
    # decoded at the pause, as a possible final
    assert any(2.5 < j.end_s <= 2.8 + WINDOW_S and j.closing and not j.final for j in recognizer.jobs)


def test_a_pause_the_vad_cannot_call_silence_does_not_stop_partials() -> None:
    asr = StreamingAsr()
    recognizer = ScriptedRecognizer(speech_words(1.0, 3.0, "a"))
    speech = [0.9] * int(3.0 / WINDOW_S) + [0.2] * 3 + [0.4] * int(5.0 / WINDOW_S)  # then 5 s of "maybe"
    for i in range(0, len(speech), 3):
        asr.push(np.zeros(3 * 512, np.float32), np.asarray(speech[i : i + 3], np.float32))
        drain(asr, recognizer, [])
    assert asr.speaking  # never called silence long enough to end it
    late = [j for j in recognizer.jobs if j.end_s > 3.2 + WINDOW_S + 0.5 + 0.1]
    assert late and all(not j.final for j in late)  # partials went on through the ambiguous audio


def test_two_utterances_give_two_finals_and_history_is_never_decoded_again() -> None:
    words = speech_words(0.5, 2.5, "a") + speech_words(4.0, 6.0, "b")
    recognizer = ScriptedRecognizer(words)
    events, _ = run(StreamingAsr(), recognizer, [(0.5, 2.5), (4.0, 6.0)], 8.0)
    finals = [e for e in events if isinstance(e, LiveFinal)]
    assert [f.segment.index for f in finals] == [0, 1]
    assert all(t.startswith("a") for t in finals[0].segment.text.split())
    assert all(t.startswith("b") for t in finals[1].segment.text.split())
    second = [j for j in recognizer.jobs if j.utterance == 2]
    assert second and all(j.offset_s >= 3.5 for j in second)  # the first utterance's audio is gone


def test_a_long_monologue_is_cut_at_committed_sentences_and_the_buffer_stays_bounded() -> None:
    words = speech_words(0.5, 60.0, "m")
    recognizer = ScriptedRecognizer(words)
    settings = AsrSettings(trim_s=12.0, max_buffer_s=20.0)
    events, buffered = run(StreamingAsr(settings), recognizer, [(0.5, 60.0)], 62.0)
    finals = [e for e in events if isinstance(e, LiveFinal)]
    assert len(finals) >= 4
    said = [x.text for f in finals for x in f.segment.words]
    assert said == [x.text for x in words]  # nothing lost, nothing twice
    assert max(buffered) <= settings.max_buffer_s + 1.0
    assert max(j.audio.size for j in recognizer.jobs) / SR <= settings.max_buffer_s + 1.0
    assert all(f.segment.text.endswith(".") for f in finals[:-1])  # cut after sentences


def test_a_recogniser_that_falls_far_behind_loses_the_oldest_audio_and_says_so() -> None:
    asr = StreamingAsr(AsrSettings(overflow_s=10.0))
    probs = np.full(int(1.0 / WINDOW_S), 0.9, np.float32)
    for _ in range(25):  # 25 s of speech, no decode ever finishes
        asr.push(np.zeros(SR, np.float32), probs)
    assert asr.dropped_audio_s == pytest.approx(15.0, abs=0.1)
    assert asr._buffer.duration_s <= 10.0 + 1e-6
    assert asr.behind_s >= 10.0


# ---------------------------------------------------------------- clock and channel


def test_timeline_anchors_fills_gaps_and_refuses_audio_going_backwards() -> None:
    tl = Timeline()
    assert tl.audio(5_000_000, 0.5) == 0.0  # anchors: stream 0.0 = client 5.0 s
    assert tl.audio(0, 0.5) == 0.0  # 0: right after
    assert tl.audio(7_000_000, 0.5) == pytest.approx(1.0)  # 1 s of lost packets
    assert tl.audio_end_s == pytest.approx(2.5)
    assert tl.frame(6_000_000) == pytest.approx(1.0)
    assert tl.frame(0) == pytest.approx(2.5)
    with pytest.raises(InvalidInput) as error:
        tl.audio(6_000_000, 0.5)
    assert error.value.field == "audio.capture_time_us" and "backwards by 1500 ms" in error.value.message


async def test_channel_supersedes_partials_and_statuses_and_flags_a_reader_that_stopped() -> None:
    channel = EventChannel(capacity=3)
    status = LiveStatus(0, 0, 0, 0, False, 0, 0)
    channel.put(LivePartial(0, "a", "", 0, 1))
    channel.put(status)
    channel.put(LivePartial(0, "a b", "a", 0, 1))
    assert len(channel) == 2 and channel.superseded == 1
    seg = Segment(0, 0, 1, "a b", 0, 0, ())
    for _ in range(3):
        channel.put(LiveFinal(seg, Language("en", 1)))
    assert channel.overflowed
    first = await channel.get()
    assert isinstance(first, LiveStatus)
    second = await channel.get()
    assert isinstance(second, LivePartial) and second.text == "a b"
