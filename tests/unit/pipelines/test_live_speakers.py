"""Live speaker labels with a fake speaker model (a window's voice is the sign of its samples)
and the real clustering, re-segmentation and attribution."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from understanding.domain import Language, ModelRef, Segment, Transcript, Word
from understanding.pipelines.live import LiveSpeakers

SR = 16000
MODEL = ModelRef("fake-voices", "1")


class VoiceBySign:
    """Positive samples are one voice, negative another; each window varies (seeded by its start)."""

    model_ref = MODEL
    dimension = 16
    window_s = 1.5
    same_speaker_cosine = 0.8

    def __init__(self) -> None:
        self.embedded = 0

    def warm_up(self) -> None:
        return None

    def embed(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        raise AssertionError("not used")

    def embed_spans(
        self, audio: npt.NDArray[np.float32], spans: list[tuple[int, int]], window: int, *, gain: float = 1.0
    ) -> npt.NDArray[np.float32]:
        out = []
        for a, b in spans:
            self.embedded += 1
            voice = np.zeros(self.dimension)
            voice[0 if float(np.mean(audio[a:b])) > 0 else 1] = 1.0
            v = voice + np.random.default_rng(a).normal(0.0, 0.12, self.dimension)  # within-voice cosine ~0.8
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, np.float32)


def loud(audio: npt.NDArray[np.float32]) -> list[tuple[float, float]]:
    """Stands in for the VAD: runs of non-zero samples are speech."""
    voiced = np.concatenate([[0], (audio != 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(voiced))
    return [(a / SR, b / SR) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class Stream:
    """A stream's audio (+0.1 for voice A, -0.1 for B) and its finals, labelled as they come."""

    def __init__(self, speakers: LiveSpeakers) -> None:
        self.speakers = speakers
        self.audio = np.zeros(0, np.float32)
        self.segments: list[Segment] = []
        self.labels: list[str] = []

    def say(self, voice: str, seconds: float, pause_s: float = 0.6) -> str:
        start = self.audio.size / SR
        level = 0.1 if voice == "A" else -0.1
        self.audio = np.concatenate(
            [self.audio, np.full(int(seconds * SR), level, np.float32), np.zeros(int(pause_s * SR), np.float32)]
        )
        words = tuple(Word(f"w{i}", start + i * 0.3, start + i * 0.3 + 0.25, 0.9) for i in range(int(seconds / 0.3)))
        segment = Segment(len(self.segments), start, start + seconds, " ".join(w.text for w in words), -0.2, 0.0, words)
        lo, hi = self.speakers.span(segment)
        assert lo == pytest.approx(self.segments[-1].end_s + 0.2 if self.segments else 0.0, abs=1e-3)
        a, b = int(round(lo * SR)), int(round(min(hi, self.audio.size / SR) * SR))
        self.speakers.hear(self.audio[a:b], a / SR)
        label = self.speakers.label(segment) if self.speakers.online else ""
        self.segments.append(segment)
        self.labels.append(label)
        return label

    def transcript(self) -> Transcript:
        return Transcript(tuple(self.segments), Language("en", 1.0), self.audio.size / SR, "transcribe", MODEL)


def test_each_final_asks_for_the_audio_since_the_previous_one_so_all_speech_is_heard_once() -> None:
    speakers = LiveSpeakers(VoiceBySign(), detect=loud)  # type: ignore[arg-type]
    stream = Stream(speakers)
    for voice in "ABA":
        stream.say(voice, 3.0)  # Stream checks each span starts where the previous one ended
    assert speakers.windows == 3 * 3  # three windows (1.5 s, hop 0.75 s) per 3 s: none twice
    assert not speakers.online  # labels only at the end unless asked for


def test_two_voices_get_two_stable_labels_in_order_of_appearance() -> None:
    stream = Stream(LiveSpeakers(VoiceBySign(), online=True, detect=loud))  # type: ignore[arg-type]
    for voice, seconds in [("A", 6.0), ("B", 6.0), ("A", 3.0), ("B", 3.0), ("B", 2.0), ("A", 3.0)]:
        stream.say(voice, seconds)
    assert stream.labels == ["S1", "S2", "S1", "S2", "S2", "S1"]


def test_a_segment_too_short_for_the_speaker_model_has_no_label() -> None:
    speakers = LiveSpeakers(VoiceBySign(), online=True, detect=loud)  # type: ignore[arg-type]
    stream = Stream(speakers)
    stream.say("A", 3.0)
    assert stream.say("A", 0.5) == ""  # under half the 1.5 s window
    assert speakers.windows == 4  # its window is kept: it takes the nearest voice at the end


def test_no_speech_means_no_label_no_window_and_no_speakers_at_the_end() -> None:
    speakers = LiveSpeakers(VoiceBySign(), online=True, detect=lambda audio: [])  # type: ignore[arg-type]
    stream = Stream(speakers)
    assert stream.say("A", 3.0) == ""
    assert speakers.windows == 0
    transcript = stream.transcript()
    assert speakers.attribute(transcript) is transcript


def test_a_voice_back_after_the_recent_windows_takes_its_old_label() -> None:
    speakers = LiveSpeakers(VoiceBySign(), online=True, detect=loud, recent_windows=24)  # type: ignore[arg-type]
    stream = Stream(speakers)
    stream.say("A", 6.0)
    stream.say("B", 6.0)
    for _ in range(4):  # B goes on until A's windows have left the recent ones
        stream.say("B", 6.0)
    assert speakers.windows - 24 > 8  # A's 8 windows are out of the re-clustering
    assert stream.say("A", 6.0) == "S1"
    assert stream.labels == ["S1", "S2", "S2", "S2", "S2", "S2", "S1"]


def test_at_the_end_every_segment_and_word_is_labelled_from_the_whole_stream_keeping_the_segments() -> None:
    speakers = LiveSpeakers(VoiceBySign(), detect=loud)  # type: ignore[arg-type]
    stream = Stream(speakers)
    for voice, seconds in [("A", 6.0), ("B", 1.2), ("B", 6.0), ("A", 3.0)]:
        stream.say(voice, seconds)
    done = speakers.attribute(stream.transcript())
    assert [s.index for s in done.segments] == [0, 1, 2, 3]
    assert [s.text for s in done.segments] == [s.text for s in stream.segments]
    assert [s.speaker for s in done.segments] == ["S1", "S2", "S2", "S1"]
    assert all(w.speaker == s.speaker for s in done.segments for w in s.words)
    assert done.speaker_method == "clustering" and done.speaker_model == MODEL
    by_label = {s.label: s.speaking_s for s in done.speakers}
    assert by_label == {"S1": pytest.approx(9.0, abs=0.1), "S2": pytest.approx(7.2, abs=0.1)}
