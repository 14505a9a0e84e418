"""Errors: one class per gRPC status the service documents, carrying data.

Retry code asks `error.retriable` rather than walking isinstance chains; the
status code, the server's message and the server's back-off hint
(`retry_after_s`, from the `retry-after-ms` trailer) travel with the error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import grpc


class UnderstandingError(Exception):
    """Base of every error the SDK raises for a failed call."""

    #: gRPC status code name, e.g. "NOT_FOUND".
    code: str = "UNKNOWN"
    #: Whether calling again later may succeed (drives the SDK's retries).
    retriable: bool = False
    #: What to do about it, shown after the message.
    hint: str = ""

    def __init__(
        self,
        details: str,
        *,
        code: str | None = None,
        retry_after_s: float | None = None,
        trailing_metadata: Sequence[tuple[str, Any]] = (),
        method: str = "",
    ) -> None:
        self.details = details
        if code is not None:
            self.code = code
        self.retry_after_s = retry_after_s
        self.trailing_metadata = tuple(trailing_metadata)
        self.method = method
        super().__init__(details)

    def __str__(self) -> str:
        where = f"{self.method}: " if self.method else ""
        text = f"{where}{self.code}: {self.details}"
        if self.retry_after_s is not None:
            text += f" (retry after {self.retry_after_s:g} s)"
        if self.hint:
            text += f" - {self.hint}"
        return text


class InvalidArgument(UnderstandingError):
    code = "INVALID_ARGUMENT"
    hint = "the message names the field to fix"


class NotFound(UnderstandingError):
    code = "NOT_FOUND"


class AlreadyExists(UnderstandingError):
    code = "ALREADY_EXISTS"
    hint = "the idempotency key was used before with a different request; pick a new key"


class FailedPrecondition(UnderstandingError):
    code = "FAILED_PRECONDITION"


class Unauthenticated(UnderstandingError):
    code = "UNAUTHENTICATED"
    hint = "pass api_key= (x-api-key) with a key the server knows"


class PermissionDenied(UnderstandingError):
    code = "PERMISSION_DENIED"


class ResourceExhausted(UnderstandingError):
    """A size/count limit (permanent) or a rate/queue limit (carries `retry_after_s`)."""

    code = "RESOURCE_EXHAUSTED"

    def __init__(self, details: str, **kwargs: Any) -> None:
        super().__init__(details, **kwargs)
        # Worth retrying only when the server said when to come back.
        self.retriable = self.retry_after_s is not None


class Unavailable(UnderstandingError):
    code = "UNAVAILABLE"
    retriable = True
    hint = "the server is down, warming up or draining; retry (the SDK does, for idempotent calls)"


class DeadlineExceeded(UnderstandingError):
    code = "DEADLINE_EXCEEDED"
    hint = "raise timeout= for this call"


class Cancelled(UnderstandingError):
    code = "CANCELLED"


class Unimplemented(UnderstandingError):
    code = "UNIMPLEMENTED"
    hint = "this server does not offer the RPC yet; upgrade the server"


class InternalError(UnderstandingError):
    """INTERNAL, UNKNOWN, DATA_LOSS and anything else unexpected."""

    code = "INTERNAL"


class UploadSourceError(UnderstandingError):
    """The upload source cannot be (re)read, e.g. a non-seekable stream on retry."""

    code = "CLIENT"


_BY_CODE: dict[grpc.StatusCode, type[UnderstandingError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def _trailers(error: Any) -> tuple[tuple[str, Any], ...]:
    try:
        return tuple(error.trailing_metadata() or ())
    except Exception:  # noqa: BLE001 - some RpcErrors (e.g. channel-level) carry none
        return ()


def from_rpc_error(error: grpc.RpcError, method: str = "") -> UnderstandingError:
    """Translate a grpc.RpcError (sync or aio) into the SDK's error tree."""
    # grpc.RpcError itself declares neither: the call objects raised as errors add them.
    code_of, details_of = getattr(error, "code", None), getattr(error, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details = (details_of() if callable(details_of) else "") or str(error)
    trailers = _trailers(error)
    retry_after_s = None
    for key, value in trailers:
        if key == "retry-after-ms":
            with contextlib.suppress(TypeError, ValueError):  # a malformed hint is no hint
                retry_after_s = int(value) / 1000.0
    cls = _BY_CODE.get(code, InternalError)
    name = code.name if isinstance(code, grpc.StatusCode) else str(code)
    return cls(details, code=name, retry_after_s=retry_after_s, trailing_metadata=trailers, method=method)
