"""Speakers onto transcripts: words and segments labelled, segments cut where the speaker changes."""

from __future__ import annotations

from understanding.domain import Language, ModelRef, Segment, Speaker, Transcript, Word
from understanding.pipelines.attribution import attribute, merge_channels, speakers_between
from understanding.pipelines.diarization import Diarization, SpeakerSummary, SpeakerTurn
from understanding.pipelines.speech import segment_windows

WHISPER = ModelRef("whisper-base", "sha256:x")
SPK = ModelRef("campplus", "sha256:y")


def _words(*items: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(text, start, end, 0.9) for text, start, end in items)


def _transcript(*segments: Segment, language: str = "en") -> Transcript:
    return Transcript(segments, Language(language, 0.9), 20.0, "transcribe", WHISPER)


def _diarization(*turns: tuple[float, float, str], method: str = "clustering") -> Diarization:
    totals: dict[str, list[float]] = {}
    for s, e, k in turns:
        totals.setdefault(k, [0.0, 0])
        totals[k][0] += e - s
        totals[k][1] += 1
    summaries = tuple(SpeakerSummary(k, round(v[0], 3), int(v[1])) for k, v in totals.items())
    return Diarization(
        tuple(SpeakerTurn(*t) for t in turns), summaries, method, SPK if method == "clustering" else None
    )


def test_a_segment_across_a_turn_change_is_cut_between_the_words() -> None:
    words = _words(("How", 0.0, 0.3), ("are", 0.3, 0.5), ("you?", 0.5, 0.9), ("Fine,", 1.2, 1.6), ("thanks.", 1.6, 2.0))
    segment = Segment(0, 0.0, 2.0, "How are you? Fine, thanks.", -0.2, 0.01, words)
    out = attribute(_transcript(segment), _diarization((0.0, 1.0, "S1"), (1.1, 2.2, "S2")))
    assert [(s.index, s.speaker, s.text, s.start_s, s.end_s) for s in out.segments] == [
        (0, "S1", "How are you?", 0.0, 0.9),
        (1, "S2", "Fine, thanks.", 1.2, 2.0),
    ]
    assert [w.speaker for s in out.segments for w in s.words] == ["S1", "S1", "S1", "S2", "S2"]
    assert out.segments[1].avg_logprob == -0.2  # the cut pieces keep what Whisper said of the whole
    assert out.speakers == (Speaker("S1", 1.0, 1, 0), Speaker("S2", 1.1, 1, 0))  # the diarization's totals
    assert out.speaker_model == SPK and out.speaker_method == "clustering"
    assert out.text == "How are you? Fine, thanks."


def test_one_speaker_keeps_whisper_text_and_unlabelled_words_stay_in_their_run() -> None:
    words = _words(("Hello", 0.0, 0.4), ("there", 0.4, 0.8), ("friend", 5.0, 5.4))  # the last far from any turn
    segment = Segment(0, 0.0, 5.4, " Hello there friend ", -0.1, 0.0, words)
    out = attribute(_transcript(segment), _diarization((0.0, 1.0, "S1")))
    assert len(out.segments) == 1 and out.segments[0].text == " Hello there friend "
    assert out.segments[0].speaker == "S1" and [w.speaker for w in out.segments[0].words] == ["S1", "S1", ""]


def test_segments_without_words_take_the_main_speaker_and_no_turns_leave_them_unlabelled() -> None:
    segments = (Segment(0, 0.0, 3.0, "first", -0.1, 0.0), Segment(1, 10.0, 11.0, "far away", -0.1, 0.0))
    out = attribute(_transcript(*segments), _diarization((0.0, 0.5, "S2"), (0.5, 3.0, "S1")))
    assert [s.speaker for s in out.segments] == ["S1", ""]
    empty = attribute(_transcript(*segments), _diarization(method="none"))
    assert [s.speaker for s in empty.segments] == ["", ""] and empty.speakers == () and empty.speaker_method == "none"
    assert empty.speaker_model is None


def test_languages_without_spaces_join_cut_words_without_one() -> None:
    words = _words(("你好", 0.0, 0.5), ("吗", 0.5, 0.8), ("很好", 1.5, 2.0))
    segment = Segment(0, 0.0, 2.0, "你好吗很好", -0.1, 0.0, words)
    out = attribute(_transcript(segment, language="zh"), _diarization((0.0, 1.0, "S1"), (1.2, 2.0, "S2")))
    assert [s.text for s in out.segments] == ["你好吗", "很好"]


def test_channels_merge_in_time_order_with_each_channel_its_speaker() -> None:
    left = _transcript(
        Segment(0, 0.0, 2.0, "hello", -0.1, 0.0, _words(("hello", 0.0, 2.0))), Segment(1, 6.0, 7.0, "bye", -0.1, 0.0)
    )
    right = Transcript((Segment(0, 3.0, 5.0, "hi there", -0.1, 0.0),), Language("en", 0.6), 19.0, "transcribe", WHISPER)
    diarization = _diarization((0.0, 2.0, "CH1"), (3.0, 5.0, "CH2"), (6.0, 7.0, "CH1"), method="channels")
    out = merge_channels([("CH1", left), ("CH2", right)], diarization, {"CH1": 1, "CH2": 2})
    assert [(s.index, s.speaker, s.text) for s in out.segments] == [
        (0, "CH1", "hello"),
        (1, "CH2", "hi there"),
        (2, "CH1", "bye"),
    ]
    assert out.segments[0].words[0].speaker == "CH1"
    assert {s.label: s.channel for s in out.speakers} == {"CH1": 1, "CH2": 2}
    assert out.speaker_method == "channels" and out.speaker_model is None
    assert out.duration_s == 20.0 and out.language.code == "en" and out.language.probability == 0.9


def test_speakers_between_a_shot_by_words_then_segments() -> None:
    t = attribute(
        _transcript(
            Segment(0, 0.0, 4.0, "a b", -0.1, 0.0, _words(("a", 0.0, 1.0), ("b", 3.0, 4.0))),
            Segment(1, 5.0, 9.0, "c", -0.1, 0.0),
        ),
        _diarization((0.0, 1.5, "S1"), (2.5, 4.0, "S2"), (5.0, 9.0, "S1")),
    )
    assert speakers_between(t, 0.0, 4.5) == ("S1", "S2")
    assert speakers_between(t, 2.0, 10.0) == ("S1", "S2")  # S1 talks 4 s there, S2 1 s
    assert speakers_between(t, 9.5, 12.0) == () and speakers_between(None, 0.0, 1.0) == ()


def test_windows_never_span_two_speakers() -> None:
    segments = [
        Segment(0, 0.0, 2.0, "one two", -0.1, 0.0, speaker="S1"),
        Segment(1, 2.0, 4.0, "three four", -0.1, 0.0, speaker="S1"),
        Segment(2, 4.0, 6.0, "five six", -0.1, 0.0, speaker="S2"),
        Segment(3, 6.0, 8.0, "seven", -0.1, 0.0, speaker=""),
    ]
    windows = segment_windows(segments, max_s=30.0, max_words=50)
    assert [(w.text, w.speakers) for w in windows] == [
        ("one two three four", ("S1",)),
        ("five six", ("S2",)),
        ("seven", ()),
    ]
