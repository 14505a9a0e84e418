"""Domain errors -> gRPC status, in exactly one place."""

from __future__ import annotations

import grpc

from understanding.domain import (
    Conflict,
    InvalidInput,
    LimitExceeded,
    NotFound,
    PreconditionFailed,
    Unauthenticated,
    Unavailable,
    UnderstandingError,
)

_CODES: list[tuple[type[UnderstandingError], grpc.StatusCode]] = [
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.ALREADY_EXISTS),
    (PreconditionFailed, grpc.StatusCode.FAILED_PRECONDITION),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
]


def status_for(error: UnderstandingError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """(code, message, trailing metadata) for a domain error."""
    code = grpc.StatusCode.INTERNAL
    for kind, mapped in _CODES:
        if isinstance(error, kind):
            code = mapped
            break
    message = f"{error.field}: {error.message}" if error.field else error.message
    trailers: tuple[tuple[str, str], ...] = ()
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        trailers = (("retry-after-ms", str(int(retry_after * 1000))),)
    return code, message, trailers
