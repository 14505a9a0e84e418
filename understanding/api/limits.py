"""Per-tenant admission limits: a request rate (token bucket) and concurrent uploads.

Both answer with `LimitExceeded` carrying `retry_after_s`, which the API turns
into RESOURCE_EXHAUSTED with a `retry-after-ms` trailer. State is per process:
with N replicas behind a load balancer a tenant gets up to N times the rate.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from understanding.domain import LimitExceeded


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved up; starts full."""

    def __init__(self, rate_per_s: float, burst: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()

    def take(self, tokens: float = 1.0) -> float:
        """Take tokens if there are enough: 0.0; else seconds until there will be (nothing taken)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        if self._tokens >= tokens:
            self._tokens -= tokens
            return 0.0
        return (tokens - self._tokens) / self.rate_per_s

    @property
    def full(self) -> bool:
        elapsed = self._clock() - self._updated
        return self._tokens + elapsed * self.rate_per_s >= self.burst


class TenantRateLimiter:
    """One token bucket per tenant; each RPC costs one token.

    Without API keys the tenant comes from client metadata, so the number of
    buckets is capped: past `max_tenants` the least recently used bucket is
    forgotten (a forgotten tenant starts again with a full bucket).
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int = 0,
        *,
        max_tenants: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst or max(1.0, rate_per_s))
        self._max_tenants = max_tenants
        self._clock = clock
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()
        self._lock = threading.Lock()

    def check(self, tenant: str) -> None:
        """Raise LimitExceeded (with the wait) when the tenant is over its rate."""
        with self._lock:
            bucket = self._buckets.get(tenant)
            if bucket is None:
                bucket = self._buckets[tenant] = TokenBucket(self.rate_per_s, self.burst, clock=self._clock)
                if len(self._buckets) > self._max_tenants:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(tenant)
            wait = bucket.take()
        if wait > 0:
            raise LimitExceeded(
                f"tenant {tenant!r} exceeds its rate limit of {self.rate_per_s:g} requests/s",
                retry_after_s=max(wait, 0.001),
            )


class TenantStreams:
    """Counts a tenant's concurrent upload streams; refuses past `limit`."""

    def __init__(self, limit: int, *, retry_after_s: float = 1.0) -> None:
        self.limit = limit
        self._retry_after_s = retry_after_s
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, tenant: str) -> None:
        """Take a slot for the tenant, or raise LimitExceeded; pair with `release`."""
        with self._lock:
            current = self._open.get(tenant, 0)
            if current >= self.limit:
                raise LimitExceeded(
                    f"tenant {tenant!r} already has {current} uploads in progress (limit {self.limit})",
                    retry_after_s=self._retry_after_s,
                )
            self._open[tenant] = current + 1

    def release(self, tenant: str) -> None:
        with self._lock:
            left = self._open.get(tenant, 0) - 1
            if left > 0:
                self._open[tenant] = left
            else:
                self._open.pop(tenant, None)

    @contextlib.contextmanager
    def hold(self, tenant: str) -> Iterator[None]:
        self.acquire(tenant)
        try:
            yield
        finally:
            self.release(tenant)

    def open_streams(self, tenant: str) -> int:
        with self._lock:
            return self._open.get(tenant, 0)
