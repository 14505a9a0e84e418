"""Calls to a Qdrant server that ride out a restart and never hang.

Every call of the remote store goes through `RetryingCaller`: a transient
failure (connection refused or reset while the server restarts, gRPC
UNAVAILABLE, HTTP 502/503/504/429, a call that hit its deadline) is retried
with exponential back-off within a time budget; past it the caller gets
`StoreUnavailable` (or `StoreTimeout` when the server accepted connections but
did not answer in time, e.g. paused or overloaded), which the API answers
UNAVAILABLE with a `retry-after-ms` trailer and the job runner retries later.

Retrying is safe because every store operation is idempotent: point ids are
deterministic (an upsert overwrites), staging only overwrites staged points,
publishing and deletions are filtered updates that converge.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
import httpx
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from understanding.domain import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRIABLE_GRPC = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
_RETRIABLE_HTTP = {429, 502, 503, 504}


class StoreUnavailable(Unavailable):
    """The Qdrant server could not be reached within the retry budget (retriable)."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreTimeout(StoreUnavailable):
    """The Qdrant server took connections but did not answer before the deadline."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Back-off for transient failures: `first_backoff_s`, doubling up to
    `max_backoff_s` (with jitter), at most `attempts` tries and `budget_s`
    seconds in all before giving up with `StoreUnavailable`."""

    attempts: int = 8
    first_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    budget_s: float = 20.0


DEFAULT_RETRY = RetryPolicy()


def transient(error: BaseException) -> str | None:
    """The kind of a transient failure ("timeout" or "unavailable"), or None when
    retrying cannot help (a bad request, a missing collection)."""
    if isinstance(error, grpc.RpcError):
        code = error.code() if callable(getattr(error, "code", None)) else None
        # Qdrant ends a call that outlived the deadline it was sent with as
        # CANCELLED "Timeout expired" (our calls are never cancelled otherwise).
        if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            return "timeout"
        return "unavailable" if code in _RETRIABLE_GRPC else None
    if isinstance(error, ResourceExhaustedResponse):
        return "unavailable"
    if isinstance(error, ResponseHandlingException):
        return transient(error.source) if isinstance(error.source, BaseException) else None
    if isinstance(error, UnexpectedResponse):
        return "unavailable" if error.status_code in _RETRIABLE_HTTP else None
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    if isinstance(error, (httpx.TransportError, ConnectionError)):
        return "unavailable"
    return None


class RetryingCaller:
    """Runs store calls against one server (`where` names it in errors and logs)."""

    def __init__(self, where: str, policy: RetryPolicy, *, timeout_s: float) -> None:
        self.where = where
        self.policy = policy
        self.timeout_s = timeout_s

    def __call__(self, what: str, call: Callable[[], T]) -> T:
        policy = self.policy
        started = time.monotonic()
        delay = policy.first_backoff_s
        attempt = 0
        while True:
            attempt += 1
            try:
                result = call()
            except Exception as error:
                kind = transient(error)
                if kind is None:
                    raise
                elapsed = time.monotonic() - started
                if attempt >= policy.attempts or elapsed + delay > policy.budget_s:
                    raise self._give_up(what, kind, attempt, elapsed, error) from error
                if attempt == 1:
                    log.warning(
                        "Qdrant call failed, retrying with back-off",
                        extra={"qdrant": self.where, "call": what, "reason": kind, "error": _short(error)},
                    )
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, policy.max_backoff_s)
                continue
            if attempt > 1:
                log.info(
                    "Qdrant call succeeded after retries",
                    extra={"qdrant": self.where, "call": what, "attempts": attempt},
                )
            return result

    def _give_up(self, what: str, kind: str, attempts: int, elapsed: float, error: BaseException) -> StoreUnavailable:
        retry_after_s = max(1.0, self.policy.max_backoff_s)
        if kind == "timeout":
            return StoreTimeout(
                f"the vector store (Qdrant at {self.where}) did not answer {what} within its "
                f"{self.timeout_s:g} s deadline ({attempts} attempts over {elapsed:.1f} s): "
                "the server is overloaded or stalled; retry later",
                retry_after_s=retry_after_s,
            )
        return StoreUnavailable(
            f"the vector store (Qdrant at {self.where}) is unavailable for {what} "
            f"({attempts} attempts over {elapsed:.1f} s: {_short(error)}); retry later",
            retry_after_s=retry_after_s,
        )


def _short(error: BaseException) -> str:
    if isinstance(error, grpc.RpcError) and callable(getattr(error, "code", None)):
        details = error.details() if callable(getattr(error, "details", None)) else ""
        return f"gRPC {error.code().name}: {details}"[:200]
    if isinstance(error, ResponseHandlingException) and isinstance(error.source, BaseException):
        return f"{type(error.source).__name__}: {error.source}"[:200]
    if isinstance(error, UnexpectedResponse):
        return f"HTTP {error.status_code}"
    return f"{type(error).__name__}: {error}"[:200]
