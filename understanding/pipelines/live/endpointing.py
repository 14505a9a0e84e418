"""Endpointing: where an utterance starts and ends, from per-window speech probabilities.

An utterance starts once `min_speech_s` of speech has been heard (so a click
or a cough does not wake the recogniser) and ends after `end_silence_s` of
silence: short enough that the final segment follows the speaker closely,
long enough not to cut at the pause between two words. Hysteresis as in
Silero's own splitter: speech at `threshold`, silence only below
`neg_threshold`, both for the run that opens an utterance and for the pause
that ends it.

Its start is where the speech began, not where the VAD became sure of it: on
a phone line a soft onset ("oh, I'm ...") scores well under `threshold` for
most of a second before the voice gets louder. The start reaches back over
the windows just before the run that score at least `onset_floor` (at most
`lookback_s`), then `pad_s`. The recogniser's cost does not grow with a
longer utterance (Whisper encodes a 30 s window either way), and words cut
off at the start are lost for good.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

__all__ = ["Boundary", "Endpointer", "EndpointSettings"]

_EPS_S = 1e-9


@dataclass(frozen=True, slots=True)
class EndpointSettings:
    window_s: float = 512 / 16000
    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_speech_s: float = 0.15
    end_silence_s: float = 0.5
    pad_s: float = 0.2  # kept before the first and after the last speech window
    onset_floor: float = 0.1  # windows just before the opening run that score this much are speech too
    lookback_s: float = 1.0  # ... at most this far back


@dataclass(frozen=True, slots=True)
class Boundary:
    kind: str  # "start" or "end"
    t_s: float  # stream time, padded outwards


class Endpointer:
    """Feed probabilities in order (one per window); get utterance boundaries."""

    def __init__(self, settings: EndpointSettings | None = None) -> None:
        self.settings = settings or EndpointSettings()
        self._t = 0.0  # start time of the next window
        self.speaking = False
        self._speech_start: float | None = None  # first speech window of a candidate start
        self._speech_run = 0.0
        self._onset = 0.0
        self._silence_start: float | None = None
        self._recent: collections.deque[float] = collections.deque(
            maxlen=int(self.settings.lookback_s / self.settings.window_s) + 1
        )

    @property
    def position_s(self) -> float:
        """Stream time up to which audio has been classified."""
        return self._t

    @property
    def pending_end_s(self) -> float | None:
        """Where the utterance will end if the silence heard since it paused lasts
        `end_silence_s` (the "end" boundary's time then), or None while speech goes on."""
        if not self.speaking or self._silence_start is None:
            return None
        return self._silence_start + self.settings.pad_s

    def push(self, probabilities: list[float] | tuple[float, ...]) -> list[Boundary]:
        s = self.settings
        out: list[Boundary] = []
        for p in probabilities:
            t, self._t = self._t, self._t + s.window_s
            if not self.speaking:
                if self._speech_start is None and p >= s.threshold:
                    self._speech_start = t
                    self._onset = self._onset_before(t)
                if self._speech_start is not None and p >= s.neg_threshold:
                    self._speech_run += s.window_s
                    if self._speech_run >= s.min_speech_s - _EPS_S:
                        self.speaking = True
                        self._silence_start = None
                        self._recent.clear()
                        out.append(Boundary("start", max(0.0, self._onset - s.pad_s)))
                        continue
                elif p < s.neg_threshold:
                    self._speech_start, self._speech_run = None, 0.0
                self._recent.append(p)
                continue
            if p >= s.threshold:
                self._silence_start = None
            elif p < s.neg_threshold:
                if self._silence_start is None:
                    self._silence_start = t
                if self._t - self._silence_start >= s.end_silence_s:
                    out.append(Boundary("end", self._silence_start + s.pad_s))
                    self.speaking = False
                    self._speech_start, self._speech_run, self._silence_start = None, 0.0, None
        return out

    def _onset_before(self, t_s: float) -> float:
        """Where speech began before a run that opens at `t_s`: back over the windows that score `onset_floor`."""
        onset = t_s
        for p in reversed(self._recent):
            if p < self.settings.onset_floor:
                break
            onset -= self.settings.window_s
        return onset
