"""Deliberate failures for chaos and fault-injection tests (off unless configured).

`UNDERSTANDING_FAULTS="store_write=3,transcribe=1"` makes the first 3 vector
store writes and the first transcription fail with a transient error. Used by
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

    @classmethod
    def from_spec(cls, spec: str) -> FaultInjector | None:
        return cls(spec) if spec.strip() else None
