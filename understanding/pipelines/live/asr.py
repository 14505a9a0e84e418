"""Streaming speech recognition as a state machine: audio in, decode jobs out, events back.

No model is called here. The driver (`session.py`) pushes audio with its
VAD probabilities, asks `next_job` what to decode, runs it through Whisper
and hands the transcript back to `on_result`, which returns the events.
That keeps every decision testable with a fake recogniser:

- Endpointing (`Endpointer`) opens an utterance when speech starts and
  closes it after a short silence. Only an utterance's own audio is ever
  decoded, never the whole history.
- While the utterance is open, it is re-decoded every `step_s` of new audio;
  LocalAgreement-2 commits the words two consecutive hypotheses agree on and
  each decode yields a `LivePartial` (stable prefix + tentative rest).
- When it closes, one last decode over the whole utterance becomes the
  `LiveFinal` (the committed words plus the rest of that last hypothesis).
  That decode starts when the speaker pauses, not when the pause has lasted
  long enough to end the utterance: it covers the audio up to where the
  utterance would end (`Endpointer.pending_end_s`), so if the pause is the
  end, its result is the final (`on_result`, or `settle` when it came back
  before the endpoint) and the final follows the speaker by one decode, not
  by the end silence plus one; if the speaker goes on, it was a partial. No
  other decode starts during a pause (nothing new was said). A partial that
  started after the last word, while the VAD still hesitated, heard every
  word: it stands for that decode (`_pause_covered_by`).
- The buffer is bounded: an utterance longer than `trim_s` is cut after its
  last committed sentence (or, past `max_buffer_s`, after its last committed
  word), the words before the cut become a final segment and their audio is
  dropped. Past `max_buffer_s` with nothing committed (no two hypotheses
  agree), the latest hypothesis is taken as final. If decoding falls so far
  behind that the buffer still exceeds `overflow_s`, the oldest audio is
  dropped and counted (`dropped_audio_s`).
- Finals have priority over partials; one decode runs at a time per stream.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from understanding.domain import Language, LiveFinal, LivePartial, Segment, Transcript, Word
from understanding.pipelines.live.agreement import LocalAgreement
from understanding.pipelines.live.audio_buffer import AudioBuffer
from understanding.pipelines.live.endpointing import Endpointer, EndpointSettings

__all__ = ["AsrSettings", "DecodeJob", "StreamingAsr"]

_SENTENCE_END = (".", "?", "!", "。", "？", "！")
_EPS_S = 1e-6
_COVER_TOLERANCE_S = 0.1  # a decode ending this much before a pause's silence still heard all its words


@dataclass(frozen=True, slots=True)
class AsrSettings:
    sample_rate: int = 16000
    step_s: float = 0.5  # new audio between two decodes of an open utterance
    first_decode_s: float = 1.0  # an utterance's first decode waits for this much audio (less is guesswork)
    trim_s: float = 12.0  # a longer utterance is cut after its last committed sentence
    max_buffer_s: float = 20.0  # ... or after its last committed word; finalized as is when nothing is
    overflow_s: float = 30.0  # untranscribed audio beyond this is dropped (decoding far behind)
    preroll_s: float = 1.0  # audio kept while nobody speaks, for the padded start of the next utterance
    prompt_chars: int = 0  # recent final text given to Whisper as context (0: none; see recognizer.py)
    endpoint: EndpointSettings = field(default_factory=EndpointSettings)


@dataclass(frozen=True, slots=True)
class DecodeJob:
    """Decode `audio` (starting at stream time `offset_s`) with this language and prompt.

    `final`: the utterance has ended and this decode is its final. `closing`:
    the decode reaches where the utterance ends or, if the current pause
    lasts, will end, so its result may be the final (the final decode and the
    decode started at a pause); a partial decode is neither.
    """

    utterance: int
    audio: npt.NDArray[np.float32]
    offset_s: float
    language: str | None
    prompt: str | None
    final: bool
    closing: bool = False

    @property
    def end_s(self) -> float:
        return self.offset_s + self.audio.size / 16000


@dataclass(slots=True)
class _Utterance:
    number: int
    start_s: float
    end_s: float | None = None  # set when endpointing closes it
    decoded_to_s: float = 0.0  # end of the audio of its last decode
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    segment_ends: set[float] = field(default_factory=set)  # end times of the last hypothesis's segment-final words
    last: Transcript | None = None  # its latest decode

    def decoded_through(self, t_s: float) -> bool:
        return self.decoded_to_s >= t_s - _EPS_S

    def final_decode(self) -> Transcript | None:
        """Its latest decode if it is closed and that decode reached its end (the decode is its final)."""
        if self.end_s is None or not self.decoded_through(self.end_s):
            return None
        return self.last


class StreamingAsr:
    def __init__(self, settings: AsrSettings | None = None, *, language: str | None = None) -> None:
        self.settings = s = settings or AsrSettings()
        self.language = language
        self._language_probability = 1.0 if language else 0.0
        self._locked_language = language is not None
        self._endpointer = Endpointer(s.endpoint)
        self._buffer = AudioBuffer(s.sample_rate)
        self._utterances: collections.deque[_Utterance] = collections.deque()  # oldest first; last may be open
        self._count = 0
        self._segments = 0
        self._history = ""
        self._transcribed_s = 0.0
        self.dropped_audio_s = 0.0

    # ------------------------------------------------------------ progress
    @property
    def received_s(self) -> float:
        return self._buffer.end_s

    @property
    def transcribed_s(self) -> float:
        """Stream time up to which the audio has been recognised (or found silent)."""
        if not self._utterances:
            return min(self._endpointer.position_s, self.received_s)
        return max(self._transcribed_s, self._utterances[0].start_s)

    @property
    def behind_s(self) -> float:
        return max(0.0, self.received_s - self.transcribed_s)

    @property
    def speaking(self) -> bool:
        return self._open is not None

    @property
    def segments(self) -> int:
        return self._segments

    @property
    def _open(self) -> _Utterance | None:
        last = self._utterances[-1] if self._utterances else None
        return last if last is not None and last.end_s is None else None

    # ------------------------------------------------------------ input
    def push(self, samples: npt.NDArray[np.float32], probabilities: npt.NDArray[np.float32]) -> None:
        """Audio that follows the previous push, with the VAD's probability per window it completed."""
        self._buffer.append(samples)
        for boundary in self._endpointer.push([float(p) for p in probabilities]):
            if boundary.kind == "start":
                start = max(boundary.t_s, self._buffer.start_s)
                if self._utterances and (previous_end := self._utterances[-1].end_s) is not None:
                    start = max(start, previous_end)  # the reach back for its onset stops at the last one's end
                self._count += 1
                self._utterances.append(_Utterance(self._count, start, decoded_to_s=start))
            elif (open_ := self._open) is not None:
                open_.end_s = max(boundary.t_s, open_.start_s)
        if not self._utterances:
            self._buffer.drop_before(self.received_s - self.settings.preroll_s)
        elif self._buffer.duration_s > self.settings.overflow_s:
            self._overflow()

    def finish(self) -> None:
        """The stream ended: close the open utterance at the end of the audio."""
        if (open_ := self._open) is not None:
            open_.end_s = self.received_s

    # ------------------------------------------------------------ decoding
    def next_job(self) -> DecodeJob | None:
        """What to decode now, if anything: a closed utterance first, else the open one
        once it has `step_s` of new audio."""
        if not self._utterances:
            return None
        first = self._utterances[0]
        if first.end_s is not None:
            if first.final_decode() is not None:
                return None  # already decoded to its end: `settle` finalizes it
            return self._job(first, first.end_s, final=True, closing=True)
        pending = self._endpointer.pending_end_s
        # A pause: decode up to where it would end the utterance, once. (Audio the VAD finds neither
        # speech nor silence can hold a pause open without ending it: after `end_silence_s` more,
        # partials resume.)
        if pending is not None and self.received_s - pending <= self.settings.endpoint.end_silence_s:
            if self.received_s >= pending and not first.decoded_through(pending):
                return self._job(first, pending, final=False, closing=True)
            return None
        enough = first.decoded_to_s > first.start_s or self.received_s - first.start_s >= self.settings.first_decode_s
        if enough and self.received_s - first.decoded_to_s >= self.settings.step_s:
            return self._job(first, self.received_s, final=False, closing=False)
        return None

    def on_result(self, job: DecodeJob, transcript: Transcript) -> list[LivePartial | LiveFinal]:
        """Apply a finished decode; returns the events it produces."""
        utterance = next((u for u in self._utterances if u.number == job.utterance), None)
        self._transcribed_s = max(self._transcribed_s, job.end_s)
        if utterance is None:  # dropped meanwhile (overflow)
            return []
        utterance.decoded_to_s = max(job.end_s, self._pause_covered_by(utterance, job.end_s))
        utterance.last = transcript
        self._learn_language(transcript)
        words = self._words(transcript, job.offset_s, utterance)
        if job.final or utterance.final_decode() is not None:
            # The final decode, or the decode started at the pause that then ended the utterance.
            utterance.agreement.commit_all(words)
            return list(self._close(utterance, transcript))
        utterance.agreement.insert(words)
        events: list[LivePartial | LiveFinal] = []
        trimmed = self._trim(utterance, transcript)
        if trimmed is not None:
            events.append(trimmed)
        events.append(self._partial(utterance))
        return events

    def settle(self) -> list[LiveFinal]:
        """Finals that need no decode: closed utterances whose last decode, started at
        the pause, covered them (it came back before the pause ended them)."""
        finals: list[LiveFinal] = []
        while self._utterances:
            first = self._utterances[0]
            if (last := first.final_decode()) is None:
                break
            first.agreement.commit_all(first.agreement.tentative)
            finals.extend(self._close(first, last))
        return finals

    # ------------------------------------------------------------ internals
    def _pause_covered_by(self, utterance: _Utterance, decoded_to_s: float) -> float:
        """Where the utterance ends (or will, if its current pause lasts) when a decode up to
        `decoded_to_s` heard all of its speech, else 0.

        A partial often starts just after the speaker stopped, while the VAD still
        hesitates (it scores the last word's tail between its two thresholds for a
        few windows). That decode has all the words: it stands for the decode of
        the pause, so the final need not wait for one more. Up to
        `_COVER_TOLERANCE_S` short of where the VAD put the pause: its silence
        starts after the last word has ended (Silero lags the voice).
        """
        end = utterance.end_s
        if end is None and utterance is self._open:
            end = self._endpointer.pending_end_s  # the pause the endpointer is in is the open utterance's
        if end is None:
            return 0.0
        silence_start = end - self.settings.endpoint.pad_s
        return end if decoded_to_s >= silence_start - _COVER_TOLERANCE_S else 0.0

    def _close(self, utterance: _Utterance, transcript: Transcript) -> list[LiveFinal]:
        """The first utterance is over: its committed words become its final segment."""
        final = self._final(utterance, utterance.agreement.take_committed(), transcript)
        self._utterances.popleft()
        self._buffer.drop_before(self._utterances[0].start_s if self._utterances else utterance.decoded_to_s)
        if not self._utterances:
            self._buffer.drop_before(self.received_s - self.settings.preroll_s)
        return [final] if final is not None else []

    def _job(self, utterance: _Utterance, end_s: float, *, final: bool, closing: bool) -> DecodeJob:
        audio = self._buffer.slice(utterance.start_s, end_s)
        recent = self._history[-self.settings.prompt_chars :] if self.settings.prompt_chars > 0 else ""
        prompt = recent.strip() or None
        return DecodeJob(utterance.number, audio, utterance.start_s, self.language, prompt, final, closing)

    def _learn_language(self, transcript: Transcript) -> None:
        if not self._locked_language and transcript.language.code:
            self.language = transcript.language.code
            self._language_probability = transcript.language.probability

    def _words(self, transcript: Transcript, offset_s: float, utterance: _Utterance) -> list[Word]:
        words: list[Word] = []
        utterance.segment_ends = set()  # the latest hypothesis's segment boundaries only
        for segment in transcript.segments:
            shifted = [Word(w.text, w.start_s + offset_s, w.end_s + offset_s, w.probability) for w in segment.words]
            if shifted:
                utterance.segment_ends.add(round(shifted[-1].end_s, 3))
            words.extend(shifted)
        return words

    def _trim(self, utterance: _Utterance, transcript: Transcript) -> LiveFinal | None:
        """Bound the buffer of a long utterance (see the module docstring)."""
        s = self.settings
        length = utterance.decoded_to_s - utterance.start_s  # what the last decode saw, not what arrived since
        if length <= s.trim_s:
            return None
        committed = utterance.agreement.committed
        cut = next(
            (
                i
                for i in range(len(committed) - 1, -1, -1)
                if committed[i].text.endswith(_SENTENCE_END) or round(committed[i].end_s, 3) in utterance.segment_ends
            ),
            None,
        )
        if cut is None and length > s.max_buffer_s:
            cut = len(committed) - 1 if committed else None
            if cut is None:  # nothing stable in max_buffer_s of audio: take the latest hypothesis as it is
                utterance.agreement.commit_all(utterance.agreement.tentative)
                committed = utterance.agreement.committed
                cut = len(committed) - 1 if committed else None
        if cut is None:
            if length > s.max_buffer_s:  # not a single word: drop the audio, keep listening
                utterance.start_s = utterance.decoded_to_s
                self._buffer.drop_before(utterance.start_s)
            return None
        until = committed[cut].end_s
        final = self._final(utterance, utterance.agreement.take_committed(until), transcript)
        utterance.start_s = max(utterance.start_s, until)
        utterance.segment_ends = {t for t in utterance.segment_ends if t > until}
        self._buffer.drop_before(utterance.start_s)
        return final

    def _final(self, utterance: _Utterance, words: list[Word], transcript: Transcript) -> LiveFinal | None:
        if not words:
            return None
        text = " ".join(w.text for w in words)
        pieces = transcript.segments
        segment = Segment(
            index=self._segments,
            start_s=words[0].start_s,
            end_s=max(words[-1].end_s, words[0].start_s),
            text=text,
            avg_logprob=float(np.mean([p.avg_logprob for p in pieces])) if pieces else 0.0,
            no_speech_prob=float(max((p.no_speech_prob for p in pieces), default=0.0)),
            words=tuple(words),
        )
        self._segments += 1
        self._history = (self._history + " " + text).strip()[-4 * self.settings.prompt_chars :]
        if self.language is not None:
            self._locked_language = True  # one language per stream once it has been heard
        return LiveFinal(segment, Language(self.language or "", self._language_probability))

    def _partial(self, utterance: _Utterance) -> LivePartial:
        stable = utterance.agreement.committed
        rest = utterance.agreement.tentative
        words = stable + rest
        return LivePartial(
            segment_index=self._segments,
            text=" ".join(w.text for w in words),
            stable_text=" ".join(w.text for w in stable),
            start_s=words[0].start_s if words else utterance.start_s,
            end_s=words[-1].end_s if words else utterance.decoded_to_s,
        )

    def _overflow(self) -> None:
        """Decoding is so far behind that the buffer outgrew `overflow_s`: drop its oldest audio."""
        keep_from = self.received_s - self.settings.overflow_s
        self.dropped_audio_s += self._buffer.drop_before(keep_from)
        for utterance in list(self._utterances):
            if utterance.end_s is not None and utterance.end_s <= keep_from:
                self._utterances.remove(utterance)
            else:
                utterance.start_s = max(utterance.start_s, keep_from)
                utterance.decoded_to_s = max(utterance.decoded_to_s, utterance.start_s)
