"""Retry policy: exponential back-off with jitter, for retriable errors only.

Which calls are retried is decided by the client (idempotent calls only);
which errors are retried is decided here from the error's data: UNAVAILABLE
always, RESOURCE_EXHAUSTED when the server said when to come back
(`retry-after-ms`), DEADLINE_EXCEEDED only when asked for, since a deadline
that passed once is likely to pass again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from understanding_client.errors import DeadlineExceeded, UnderstandingError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry an idempotent call.

    `max_attempts` counts the first try (1 disables retries). Attempt n waits
    `min(max_backoff_s, initial_backoff_s * multiplier ** (n - 1))` scaled by a
    random factor in `[1 - jitter, 1]`, or the server's `retry_after_s` when it
    gave one (capped by `max_retry_after_s`). Each attempt gets the call's own
    timeout.
    """

    max_attempts: int = 4
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_retry_after_s: float = 60.0
    retry_deadline_exceeded: bool = False

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be in [0, 1]")

    def should_retry(self, error: UnderstandingError, attempt: int) -> bool:
        """Whether to try again after `error` ended attempt number `attempt` (1-based)."""
        if attempt >= self.max_attempts:
            return False
        if isinstance(error, DeadlineExceeded):
            return self.retry_deadline_exceeded
        return bool(error.retriable)

    def delay_s(self, error: UnderstandingError, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1`."""
        if error.retry_after_s is not None:
            return min(error.retry_after_s, self.max_retry_after_s)
        backoff = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        factor = 1.0 - self.jitter * (rng or random).random()
        return backoff * factor


#: No retries at all.
NO_RETRY = RetryPolicy(max_attempts=1)
