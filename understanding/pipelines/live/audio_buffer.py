"""The stream's untranscribed audio: appended in small pieces, cut at the front, sliced by time.

Pieces are kept as they came and joined only when a decode needs them (a
couple of times a second), not on every 20 ms packet.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["AudioBuffer"]

Samples = npt.NDArray[np.float32]


class AudioBuffer:
    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self._pieces: list[Samples] = []
        self._start = 0  # stream sample index of the first kept sample
        self._end = 0  # stream sample index after the last received sample

    @property
    def start_s(self) -> float:
        return self._start / self.sample_rate

    @property
    def end_s(self) -> float:
        return self._end / self.sample_rate

    @property
    def duration_s(self) -> float:
        return (self._end - self._start) / self.sample_rate

    def append(self, samples: Samples) -> None:
        if samples.size:
            self._pieces.append(np.asarray(samples, dtype=np.float32))
            self._end += samples.size

    def drop_before(self, t_s: float) -> float:
        """Forget the audio before stream time `t_s`; returns the seconds forgotten."""
        target = min(max(int(round(t_s * self.sample_rate)), self._start), self._end)
        drop = target - self._start
        while drop > 0 and self._pieces:
            head = self._pieces[0]
            if head.size <= drop:
                self._pieces.pop(0)
                drop -= head.size
            else:
                self._pieces[0] = head[drop:]
                drop = 0
        forgotten = target - self._start
        self._start = target
        return forgotten / self.sample_rate

    def slice(self, start_s: float, end_s: float) -> Samples:
        """A copy of the kept audio between two stream times (clipped to what is kept)."""
        lo = min(max(int(round(start_s * self.sample_rate)), self._start), self._end)
        hi = min(max(int(round(end_s * self.sample_rate)), lo), self._end)
        if hi <= lo:
            return np.zeros(0, dtype=np.float32)
        if len(self._pieces) > 1:
            self._pieces = [np.concatenate(self._pieces)]
        whole = self._pieces[0]
        return whole[lo - self._start : hi - self._start].copy()
