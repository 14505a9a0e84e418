"""Domain errors -> gRPC status, in exactly one place (each error names its status)."""

from __future__ import annotations

import grpc

from understanding.domain import UnderstandingError


def status_for(error: UnderstandingError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """(code, message, trailing metadata) for a domain error."""
    code = getattr(grpc.StatusCode, error.status, grpc.StatusCode.INTERNAL)
    message = f"{error.field}: {error.message}" if error.field else error.message
    trailers: tuple[tuple[str, str], ...] = ()
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        trailers = (("retry-after-ms", str(int(retry_after * 1000))),)
    return code, message, trailers
