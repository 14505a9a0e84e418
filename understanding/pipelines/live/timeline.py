"""The stream's clock: capture timestamps of the client -> seconds since the stream started.

The first message that carries a capture time anchors the client's clock
(microseconds, any origin) to the stream's; audio otherwise advances by its
own samples. A chunk that starts later than the audio so far leaves a gap
(lost packets, a muted microphone, Opus DTX) that is filled with silence, so
audio and frames stay on one clock; one that starts earlier overlaps audio
already heard and is refused, beyond a small jitter allowance.
"""

from __future__ import annotations

from understanding.domain import InvalidInput

__all__ = ["Timeline"]

JITTER_S = 0.1  # clock jitter tolerated in either direction
MAX_GAP_S = 60.0  # a longer gap is filled only up to this (the idle timeout ends real silences)


class Timeline:
    def __init__(self) -> None:
        self._origin_us: int | None = None
        self.audio_end_s = 0.0  # stream time after the last audio sample placed
        self.last_frame_s: float | None = None

    def _anchor(self, capture_time_us: int, position_s: float) -> None:
        if self._origin_us is None:
            self._origin_us = capture_time_us - round(position_s * 1e6)

    def audio(self, capture_time_us: int, duration_s: float) -> float:
        """Place an audio chunk; returns the seconds of silence to insert before it."""
        gap = 0.0
        if capture_time_us:
            self._anchor(capture_time_us, self.audio_end_s)
            assert self._origin_us is not None
            start_s = (capture_time_us - self._origin_us) / 1e6
            if start_s < self.audio_end_s - JITTER_S:
                raise InvalidInput(
                    f"capture time went backwards by {(self.audio_end_s - start_s) * 1000:.0f} ms "
                    "(audio overlaps audio already received)",
                    field="audio.capture_time_us",
                )
            if start_s > self.audio_end_s + JITTER_S:
                gap = min(start_s - self.audio_end_s, MAX_GAP_S)
        self.audio_end_s += gap + duration_s
        return gap

    def frame(self, capture_time_us: int) -> float:
        """Stream time of a frame: from its capture time, or "now" (the end of the audio) without one."""
        if not capture_time_us:
            return self.audio_end_s
        self._anchor(capture_time_us, self.audio_end_s)
        assert self._origin_us is not None
        return max(0.0, (capture_time_us - self._origin_us) / 1e6)
