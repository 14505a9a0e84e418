"""Bounds for the property-based fuzz tests: short in CI, long in `make soak`.

`UNDERSTANDING_FUZZ_SCALE` multiplies every test's example count (default 1:
about a minute for all fuzz tests on two cores; `make soak` sets 50).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = max(0.01, float(os.environ.get("UNDERSTANDING_FUZZ_SCALE", "1")))


def fuzz_settings(examples: int) -> settings:
    """`examples` at scale 1; no per-example deadline (shared CI cores are noisy)."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=SCALE <= 1,  # CI: the same inputs every run; soak: new ones each time
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
        database=None,
    )
