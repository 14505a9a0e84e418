"""Optional OpenTelemetry tracing: one server span per RPC, exported over OTLP/gRPC.

Off unless `otel_endpoint` is set. The OpenTelemetry packages are not part of
the default install, so setting the endpoint without them fails at start-up
and names what to install, instead of silently tracing nothing. A span
continues the caller's W3C `traceparent`; its trace id becomes the request's
`trace_id`, so the span, the log lines and the Kafka event headers of one
request share one id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import grpc

PACKAGES = (
    "opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2 "
    "opentelemetry-proto==1.45.2 opentelemetry-exporter-otlp-proto-common==1.45.2 "
    "opentelemetry-exporter-otlp-common==0.66b2 opentelemetry-exporter-otlp-proto-grpc==1.45.2 "
    "googleapis-common-protos==1.76.0"
)

# Server-side codes that mean the server failed (the rest are the caller's doing).
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class RpcSpan:
    """One RPC's span; `finish` ends it with the RPC's status code."""

    def __init__(self, span: Any, token: object) -> None:
        self._span = span
        self._token = token

    @property
    def trace_id(self) -> str:
        return format(self._span.get_span_context().trace_id, "032x")

    def set_attribute(self, key: str, value: str) -> None:
        self._span.set_attribute(key, value)

    def finish(self, code: grpc.StatusCode, message: str = "") -> None:
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in _SERVER_ERRORS:
            self._span.set_status(Status(StatusCode.ERROR, message or code.name))
        self._span.end()
        with contextlib.suppress(ValueError):  # a streaming handler may finish in another context
            context.detach(self._token)  # type: ignore[arg-type]


class RpcTracing:
    """Starts server spans for RPCs and exports them in batches to an OTLP collector."""

    def __init__(self, *, endpoint: str, service_name: str = "understanding", exporter: Any = None) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as error:
            raise RuntimeError(
                f"UNDERSTANDING_OTEL_ENDPOINT is set but OpenTelemetry is not installed ({error.name} is missing): "
                f"pip install {PACKAGES}"
            ) from None
        if exporter is None:
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            except ImportError as error:
                raise RuntimeError(
                    f"UNDERSTANDING_OTEL_ENDPOINT is set but the OTLP exporter is not installed ({error.name} is missing): "
                    f"pip install {PACKAGES}"
                ) from None
            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
        self._provider: TracerProvider | None = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("understanding.api")

    def start(self, service: str, method: str, metadata: Mapping[str, str]) -> RpcSpan:
        """A SERVER span for `service/method`, child of the caller's `traceparent` if any."""
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent = TraceContextTextMapPropagator().extract(carrier=dict(metadata))
        span = self._tracer.start_span(
            f"{service}/{method}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        return RpcSpan(span, token)

    def shutdown(self) -> None:
        """Flush pending spans and stop exporting; safe to call twice."""
        provider, self._provider = self._provider, None
        if provider is not None:
            provider.shutdown()


def from_settings(endpoint: str, service_name: str) -> RpcTracing | None:
    """Tracing for a configured endpoint, None when tracing is off."""
    return RpcTracing(endpoint=endpoint, service_name=service_name) if endpoint else None
