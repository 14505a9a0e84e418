"""Reading a Prometheus scrape in tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.support.waiting import PATIENCE_S


class Scrape:
    """One /metrics text: samples by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples named `name` whose labels include `labels` (0 if none)."""
        return sum(v for n, ls, v in self.samples if n == name and all(ls.get(k) == x for k, x in labels.items()))

    def labels(self, name: str) -> list[dict[str, str]]:
        """The label sets of the samples named `name`."""
        return [ls for n, ls, _ in self.samples if n == name]

    def has(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.samples)


def wait_for_metric(
    scrape: Callable[[], str], predicate: Callable[[Scrape], bool], timeout_s: float = PATIENCE_S
) -> Scrape:
    deadline = time.monotonic() + timeout_s
    while True:
        current = Scrape(scrape())
        if predicate(current):
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"metrics never matched within {timeout_s}s:\n{current.text}")
        time.sleep(0.2)
