"""Per-tenant limits: the token bucket's arithmetic and the stream counter."""

from __future__ import annotations

import pytest

from understanding.api.limits import TenantRateLimiter, TenantStreams, TokenBucket
from understanding.domain import LimitExceeded


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_then_refills_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, 3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)  # one token at 2/s
    clock.now += 0.25
    assert bucket.take() == pytest.approx(0.25)  # half a token saved, nothing taken
    clock.now += 0.25
    assert bucket.take() == 0.0
    clock.now += 60
    assert bucket.full
    assert [bucket.take() for _ in range(4)][-1] > 0  # never more than the burst


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1)
    with pytest.raises(ValueError):
        TokenBucket(1, 0)


def test_rate_limiter_is_per_tenant_with_a_retry_hint() -> None:
    clock = Clock()
    limiter = TenantRateLimiter(1.0, 2, clock=clock)
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(LimitExceeded) as err:
        limiter.check("a")
    assert err.value.retry_after_s == pytest.approx(1.0) and "'a'" in err.value.message
    limiter.check("b")  # another tenant has its own bucket
    clock.now += 1.0
    limiter.check("a")


def test_rate_limiter_default_burst_and_bounded_tenants() -> None:
    clock = Clock()
    limiter = TenantRateLimiter(0.5, 0, max_tenants=2, clock=clock)
    assert limiter.burst == 1.0
    limiter.check("a")
    limiter.check("b")
    limiter.check("c")  # evicts "a", the least recently used
    limiter.check("a")  # a fresh (full) bucket
    with pytest.raises(LimitExceeded):
        limiter.check("c")


def test_streams_count_per_tenant_and_release() -> None:
    streams = TenantStreams(2, retry_after_s=0.5)
    with streams.hold("a"), streams.hold("a"):
        with pytest.raises(LimitExceeded) as err:
            streams.acquire("a")
        assert err.value.retry_after_s == 0.5
        with streams.hold("b"):
            assert streams.open_streams("b") == 1
        assert streams.open_streams("a") == 2
    assert streams.open_streams("a") == 0
    with pytest.raises(RuntimeError):
        with streams.hold("a"):
            raise RuntimeError("the RPC failed")
    assert streams.open_streams("a") == 0
