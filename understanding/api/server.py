"""gRPC server assembly: handlers built from the service descriptor.

Building handlers ourselves (instead of the generated add_*_to_server) lets one
wrapper do for every RPC what each would otherwise repeat: reject requests that
do not parse (e.g. invalid UTF-8) with INVALID_ARGUMENT instead of INTERNAL,
resolve the caller's tenant, apply the per-tenant limits, bind the request's
ids to every log line, map domain errors to status codes, log one access line
and report to the metrics observer. Methods the servicer does not define
answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from understanding import logs
from understanding.api.errors import status_for
from understanding.api.identity import Caller, Identity
from understanding.api.limits import TenantRateLimiter, TenantStreams
from understanding.domain import LimitExceeded, UnderstandingError
from understanding.tracing import RpcSpan, RpcTracing
from understanding.v1 import understanding_pb2

log = logging.getLogger(__name__)

SERVICE_NAME = "understanding.v1.Understanding"
SERVICE = understanding_pb2.DESCRIPTOR.services_by_name["Understanding"]


@dataclass(frozen=True, slots=True)
class MalformedRequest:
    """Stand-in for a request message that failed to parse."""

    type_name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Call:
    """Per-call context handed to servicer methods."""

    caller: Caller
    request_id: str
    trace_id: str
    grpc: grpc.aio.ServicerContext

    @property
    def tenant(self) -> str:
        return self.caller.tenant


def _lenient(cls: type[Message]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as error:
            return MalformedRequest(cls.DESCRIPTOR.full_name, str(error))

    return deserialize


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, trailers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.trailers = code, message, trailers


def check(request: Any) -> Any:
    """Raise INVALID_ARGUMENT for a request (or stream item) that did not parse."""
    if isinstance(request, MalformedRequest):
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"request is not a valid {request.type_name}: {request.reason}")
    return request


async def checked_stream(iterator: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for item in iterator:
        yield check(item)


class Observer:
    """Hook for metrics: `rpc_started` and `rpc_done` once per RPC, `rpc_refused` per limit hit."""

    def rpc_started(self, method: str) -> None:  # pragma: no cover - default
        return None

    def rpc_done(self, method: str, code: grpc.StatusCode, seconds: float) -> None:  # pragma: no cover - default
        return None

    def rpc_refused(self, method: str, limit: str) -> None:  # pragma: no cover - default
        return None


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-tenant admission limits applied before a servicer method runs (None: off)."""

    rate: TenantRateLimiter | None = None
    upload_streams: TenantStreams | None = None


_DEADLINE_SLACK_S = 0.25
_TRACE_ID_RE = re.compile(r"^[0-9A-Za-z_-]{8,64}$")


def trace_id_from(metadata: dict[str, str]) -> str:
    """The caller's trace id (`x-trace-id`, or the trace id of a W3C `traceparent`), else a new one."""
    candidate = metadata.get("x-trace-id", "")
    if not candidate and metadata.get("traceparent"):
        parts = metadata["traceparent"].split("-")
        candidate = parts[1] if len(parts) == 4 else ""
    return candidate if _TRACE_ID_RE.match(candidate) else uuid.uuid4().hex


def build_handler(
    servicer: Any,
    identity: Identity,
    observer: Observer,
    limits: Limits | None = None,
    *,
    service: Any = SERVICE,
    tracing: RpcTracing | None = None,
) -> grpc.GenericRpcHandler:
    """Handlers for every method of `service` (a service descriptor; the tenant API by default)."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        handlers[method.name] = _method_handler(
            servicer, method, identity, observer, limits or Limits(), tracing, service.full_name
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _method_handler(
    servicer: Any,
    method: Any,
    identity: Identity,
    observer: Observer,
    limits: Limits,
    tracing: RpcTracing | None,
    service_name: str,
) -> grpc.RpcMethodHandler:
    request_cls = understanding_pb2_message(method.input_type)
    response_cls = understanding_pb2_message(method.output_type)
    impl = getattr(servicer, method.name, None)
    name = method.name
    is_upload = method.client_streaming

    def begin(context: grpc.aio.ServicerContext) -> tuple[dict[str, str], RpcSpan | None]:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        return metadata, tracing.start(service_name, name, metadata) if tracing is not None else None

    def prepare(
        context: grpc.aio.ServicerContext, metadata: dict[str, str], request_id: str, span: RpcSpan | None
    ) -> Call:
        trace_id = span.trace_id if span is not None else trace_id_from(metadata)
        logs.bind(trace_id=trace_id)
        caller = identity.resolve(metadata)
        logs.bind(tenant=caller.tenant)
        if span is not None:
            span.set_attribute("understanding.tenant", caller.tenant)
            span.set_attribute("understanding.request_id", request_id)
        if limits.rate is not None:
            try:
                limits.rate.check(caller.tenant)
            except LimitExceeded:
                observer.rpc_refused(name, "rate")
                raise
        return Call(caller=caller, request_id=request_id, trace_id=trace_id, grpc=context)

    @contextlib.contextmanager
    def upload_slot(call: Call) -> Iterator[None]:
        streams = limits.upload_streams if is_upload else None
        if streams is not None:
            try:
                streams.acquire(call.tenant)
            except LimitExceeded:
                observer.rpc_refused(name, "upload_streams")
                raise
        try:
            yield
        finally:
            if streams is not None:
                streams.release(call.tenant)

    def status_of(error: BaseException) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
        if isinstance(error, _Abort):
            return error.code, error.message, error.trailers
        if isinstance(error, UnderstandingError):
            return status_for(error)
        log.exception("unexpected error in %s", name)
        return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__})", ()

    def stopped_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
        """Why the RPC task was cancelled: its deadline passed, or the client went away.

        The client's own timer usually fires first and resets the stream a little
        before the server's copy of the deadline (which started when the request
        arrived), so a cancellation that close to the deadline counts as the deadline.
        """
        remaining = context.time_remaining()
        near_deadline = remaining is not None and remaining <= _DEADLINE_SLACK_S
        return grpc.StatusCode.DEADLINE_EXCEEDED if near_deadline else grpc.StatusCode.CANCELLED

    def finish(code: grpc.StatusCode, started: float, message: str, span: RpcSpan | None) -> None:
        seconds = time.perf_counter() - started
        if span is not None:
            span.finish(code, message)
        observer.rpc_done(name, code, seconds)
        extra: dict[str, Any] = {"method": name, "code": code.name, "ms": round(seconds * 1000, 1)}
        if message:
            extra["error"] = message
        log.log(logging.INFO if code in _EXPECTED else logging.WARNING, "rpc", extra=extra)

    if impl is None:

        async def unimplemented(request: Any, context: grpc.aio.ServicerContext) -> Any:
            observer.rpc_started(name)
            observer.rpc_done(name, grpc.StatusCode.UNIMPLEMENTED, 0.0)
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{service_name}/{name} is not implemented yet")

        async def unimplemented_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            observer.rpc_started(name)
            observer.rpc_done(name, grpc.StatusCode.UNIMPLEMENTED, 0.0)
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{service_name}/{name} is not implemented yet")
            yield  # pragma: no cover

        fn: Any = unimplemented_stream if method.server_streaming else unimplemented
    elif method.client_streaming and method.server_streaming:

        async def bidi(request: Any, context: grpc.aio.ServicerContext) -> None:
            """Bidirectional: the servicer reads `source` and writes with `call.grpc.write` itself,
            so it can bound how long a write may wait (a client that stops reading). Live streams
            have their own admission (per process, not the per-tenant upload slots)."""
            started = time.perf_counter()
            request_id = uuid.uuid4().hex[:16]
            token = logs.bind(request_id=request_id, method=name)
            observer.rpc_started(name)
            metadata, span = begin(context)
            code, message = grpc.StatusCode.OK, ""
            trailers: tuple[tuple[str, str], ...] = ()
            try:
                call = prepare(context, metadata, request_id, span)
                await impl(checked_stream(request), call)
            except asyncio.CancelledError:  # the client left, or its deadline passed
                code = stopped_code(context)
                raise
            except Exception as error:  # noqa: BLE001 - mapped to a status
                code, message, trailers = status_of(error)
            finally:
                finish(code, started, message, span)
                _unbind(token)
            context.set_trailing_metadata((("x-request-id", request_id), *trailers))
            if code is not grpc.StatusCode.OK:
                await context.abort(code, message)

        fn = bidi
    elif method.server_streaming:

        async def stream_out(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            request_id = uuid.uuid4().hex[:16]
            token = logs.bind(request_id=request_id, method=name)
            observer.rpc_started(name)
            metadata, span = begin(context)
            code, message = grpc.StatusCode.OK, ""
            trailers: tuple[tuple[str, str], ...] = ()
            try:
                call = prepare(context, metadata, request_id, span)
                source = checked_stream(request) if method.client_streaming else check(request)
                with upload_slot(call):
                    async for item in impl(source, call):
                        yield item
            except (asyncio.CancelledError, GeneratorExit):  # the client left, or its deadline passed
                code = stopped_code(context)
                raise
            except Exception as error:  # noqa: BLE001 - mapped to a status
                code, message, trailers = status_of(error)
            finally:
                finish(code, started, message, span)
                _unbind(token)
            context.set_trailing_metadata((("x-request-id", request_id), *trailers))
            if code is not grpc.StatusCode.OK:
                await context.abort(code, message)

        fn = stream_out
    else:

        async def unary_out(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            request_id = uuid.uuid4().hex[:16]
            token = logs.bind(request_id=request_id, method=name)
            observer.rpc_started(name)
            metadata, span = begin(context)
            code, message = grpc.StatusCode.OK, ""
            trailers: tuple[tuple[str, str], ...] = ()
            response = None
            try:
                call = prepare(context, metadata, request_id, span)
                source = checked_stream(request) if method.client_streaming else check(request)
                with upload_slot(call):
                    response = await impl(source, call)
            except asyncio.CancelledError:
                code = stopped_code(context)
                raise
            except Exception as error:  # noqa: BLE001 - mapped to a status
                code, message, trailers = status_of(error)
            finally:
                finish(code, started, message, span)
                _unbind(token)
            context.set_trailing_metadata((("x-request-id", request_id), *trailers))
            if code is not grpc.StatusCode.OK:
                await context.abort(code, message)
            return response

        fn = unary_out

    kwargs = {"request_deserializer": _lenient(request_cls), "response_serializer": response_cls.SerializeToString}
    if method.client_streaming and method.server_streaming:
        return grpc.stream_stream_rpc_method_handler(fn, **kwargs)
    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(fn, **kwargs)
    if method.server_streaming:
        return grpc.unary_stream_rpc_method_handler(fn, **kwargs)
    return grpc.unary_unary_rpc_method_handler(fn, **kwargs)


# Codes that are the caller's business, logged at INFO; the rest (INTERNAL, UNAVAILABLE...) at WARNING.
_EXPECTED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def _unbind(token: Any) -> None:
    # A streaming handler may be finalised in another context than it started in.
    with contextlib.suppress(ValueError):
        logs.unbind(token)


def understanding_pb2_message(descriptor: Any) -> type[Message]:
    from google.protobuf import message_factory

    cls: type[Message] = message_factory.GetMessageClass(descriptor)
    return cls
