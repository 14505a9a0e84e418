"""gRPC server assembly: handlers built from the service descriptor.

Building handlers ourselves (instead of the generated add_*_to_server) lets one
wrapper do for every RPC what each would otherwise repeat: reject requests that
do not parse (e.g. invalid UTF-8) with INVALID_ARGUMENT instead of INTERNAL,
resolve the caller's tenant, map domain errors to status codes, and record
metrics. Methods the servicer does not define answer UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import grpc
from google.protobuf.message import DecodeError, Message

from understanding.api.errors import status_for
from understanding.api.identity import Caller, Identity
from understanding.domain import UnderstandingError
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
    """Hook for metrics: called once per finished RPC."""

    def rpc_done(self, method: str, code: grpc.StatusCode, seconds: float) -> None:  # pragma: no cover - default
        return None


def build_handler(servicer: Any, identity: Identity, observer: Observer) -> grpc.GenericRpcHandler:
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in SERVICE.methods:
        handlers[method.name] = _method_handler(servicer, method, identity, observer)
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def _method_handler(servicer: Any, method: Any, identity: Identity, observer: Observer) -> grpc.RpcMethodHandler:
    request_cls = understanding_pb2_message(method.input_type)
    response_cls = understanding_pb2_message(method.output_type)
    impl = getattr(servicer, method.name, None)
    name = method.name

    async def prepare(request: Any, context: grpc.aio.ServicerContext) -> Call:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        caller = identity.resolve(metadata)
        return Call(
            caller=caller,
            request_id=uuid.uuid4().hex[:16],
            trace_id=metadata.get("x-trace-id", "") or uuid.uuid4().hex,
            grpc=context,
        )

    async def fail(context: grpc.aio.ServicerContext, error: BaseException, started: float) -> None:
        if isinstance(error, _Abort):
            code, message, trailers = error.code, error.message, error.trailers
        elif isinstance(error, UnderstandingError):
            code, message, trailers = status_for(error)
        else:
            log.exception("unexpected error in %s", name)
            code, message, trailers = grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__})", ()
        observer.rpc_done(name, code, time.perf_counter() - started)
        if trailers:
            context.set_trailing_metadata(trailers)
        await context.abort(code, message)

    if impl is None:

        async def unimplemented(request: Any, context: grpc.aio.ServicerContext) -> Any:
            observer.rpc_done(name, grpc.StatusCode.UNIMPLEMENTED, 0.0)
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{SERVICE_NAME}/{name} is not implemented yet")

        async def unimplemented_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            observer.rpc_done(name, grpc.StatusCode.UNIMPLEMENTED, 0.0)
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{SERVICE_NAME}/{name} is not implemented yet")
            yield  # pragma: no cover

        fn: Any = unimplemented_stream if method.server_streaming else unimplemented
    elif method.server_streaming:

        async def stream_out(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                call = await prepare(request, context)
                source = checked_stream(request) if method.client_streaming else check(request)
                async for item in impl(source, call):
                    yield item
            except Exception as error:  # noqa: BLE001 - mapped to a status
                await fail(context, error, started)
                return
            observer.rpc_done(name, grpc.StatusCode.OK, time.perf_counter() - started)

        fn = stream_out
    else:

        async def unary_out(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                call = await prepare(request, context)
                source = checked_stream(request) if method.client_streaming else check(request)
                response = await impl(source, call)
            except Exception as error:  # noqa: BLE001 - mapped to a status
                await fail(context, error, started)
                return None
            observer.rpc_done(name, grpc.StatusCode.OK, time.perf_counter() - started)
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


def understanding_pb2_message(descriptor: Any) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)
