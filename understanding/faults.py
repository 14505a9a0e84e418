"""Deliberate failures for chaos and fault-injection tests (off unless configured).

`UNDERSTANDING_FAULTS="store_write=3,transcribe=1"` makes the first 3 vector
store writes and the first transcription fail with a transient error;
`decode_crash=1`, `decode_hang=1` and `decode_oom=1` make the next media
decoder child crash, hang or allocate without bound (media/sandbox.py). Used by
the test suite to prove that retries and the outbox lose nothing; never set it
in production.
"""

from __future__ import annotations

import threading

from understanding.domain import Unavailable


class InjectedFault(Unavailable):
    """A transient failure injected on purpose."""


class FaultInjector:
    def __init__(self, spec: str) -> None:
        self._remaining: dict[str, int] = {}
        for entry in filter(None, (e.strip() for e in spec.split(","))):
            name, _, count = entry.partition("=")
            self._remaining[name.strip()] = int(count or 1)
        self._lock = threading.Lock()

    def check(self, point: str) -> None:
        with self._lock:
            left = self._remaining.get(point, 0)
            if left <= 0:
                return
            self._remaining[point] = left - 1
        raise InjectedFault(f"injected fault at {point} ({left - 1} more to come)")

    def take(self, point: str) -> bool:
        """Use up one fault at `point` without raising (for faults that are not
        exceptions: a decoder child that hangs or crashes)."""
        with self._lock:
            left = self._remaining.get(point, 0)
            if left <= 0:
                return False
            self._remaining[point] = left - 1
            return True

    @classmethod
    def from_spec(cls, spec: str) -> FaultInjector | None:
        return cls(spec) if spec.strip() else None
