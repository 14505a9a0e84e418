"""Domain errors: raised deep, mapped to a gRPC status in exactly one place (api/errors.py)."""

from __future__ import annotations


class UnderstandingError(Exception):
    """Base of domain errors; api/ maps each subclass to one gRPC status.

    `retriable` drives the job retry policy without isinstance chains.
    """

    retriable = False
    status = "INTERNAL"  # gRPC status code name, used by api/ and in job errors

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(UnderstandingError):
    """The request or media is malformed (INVALID_ARGUMENT)."""

    status = "INVALID_ARGUMENT"


class LimitExceeded(UnderstandingError):
    """A configured size/count/rate limit was hit (RESOURCE_EXHAUSTED)."""

    status = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, field: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s


class NotFound(UnderstandingError):
    """An id does not exist for the caller's tenant (NOT_FOUND)."""

    status = "NOT_FOUND"


class Conflict(UnderstandingError):
    """The request contradicts existing state (ALREADY_EXISTS)."""

    status = "ALREADY_EXISTS"


class PreconditionFailed(UnderstandingError):
    """The object is in a state that forbids the operation (FAILED_PRECONDITION)."""

    status = "FAILED_PRECONDITION"


class Unavailable(UnderstandingError):
    """A dependency is down or the server is not ready (UNAVAILABLE)."""

    status = "UNAVAILABLE"

    retriable = True


class Cancelled(UnderstandingError):
    """The work was cancelled by its owner (CANCELLED)."""

    status = "CANCELLED"


class Unauthenticated(UnderstandingError):
    """Missing or unknown credentials (UNAUTHENTICATED)."""

    status = "UNAUTHENTICATED"


class PermissionDenied(UnderstandingError):
    """Known or absent credentials that do not allow the operation (PERMISSION_DENIED)."""

    status = "PERMISSION_DENIED"
