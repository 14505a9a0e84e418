"""Wait for the event a test needs instead of sleeping and hoping it happened.

A fixed sleep is right on an idle laptop and wrong on a busy CI machine. These
poll a condition until it holds and fail loudly after a deadline chosen to be
generous: a passing test never waits for it, so it costs nothing to make it
long enough for two loaded cores (see tests/README.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

PATIENCE_S = 120.0  # default deadline: far beyond what any condition here needs on an idle machine


def wait_until(
    condition: Callable[[], T], *, timeout_s: float = PATIENCE_S, interval_s: float = 0.05, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy, and return that; TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or 'condition'} did not hold within {timeout_s:g} s (last value: {value!r})")
        time.sleep(interval_s)


async def wait_until_async(
    condition: Callable[[], T], *, timeout_s: float = PATIENCE_S, interval_s: float = 0.005, what: str = ""
) -> T:
    """`wait_until` for asyncio tests: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or 'condition'} did not hold within {timeout_s:g} s (last value: {value!r})")
        await asyncio.sleep(interval_s)
