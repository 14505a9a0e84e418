"""Optional OpenTelemetry tracing: a clear start-up error without the packages; spans to an OTLP collector with them.

The second test needs the packages named in `understanding.tracing.PACKAGES`
(pinned in requirements.lock); the first hides them to see the error.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from typing import Any

import grpc
import pytest

from understanding import logs, tracing
from understanding.api.identity import Identity
from understanding.api.server import Observer, build_handler
from understanding.config import Settings
from understanding.domain import NotFound
from understanding.v1 import jobs_pb2, understanding_pb2_grpc
from understanding.v1 import understanding_pb2 as pb

INSTALLED = (
    importlib.util.find_spec("opentelemetry") is not None and importlib.util.find_spec("opentelemetry.sdk") is not None
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


def test_endpoint_without_the_packages_fails_at_start_up_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from understanding.app import Service

    # A deployment without the optional packages: make every import of them fail.
    for name in list(sys.modules):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)

    assert tracing.from_settings("", "understanding") is None
    with pytest.raises(
        RuntimeError,
        match=r"UNDERSTANDING_OTEL_ENDPOINT is set but OpenTelemetry is not installed.*pip install opentelemetry-api==1\.45\.2",
    ):
        Service(Settings(otel_endpoint="http://127.0.0.1:4317"))


class Traced:
    def __init__(self) -> None:
        self.trace_ids: list[str] = []

    async def GetJob(self, request: pb.GetJobRequest, call: Any) -> jobs_pb2.Job:
        self.trace_ids.append(logs.current()["trace_id"])
        if request.job_id == "missing":
            raise NotFound("no such job", field="job_id")
        if request.job_id == "boom":
            raise RuntimeError("a bug")
        return jobs_pb2.Job(job_id=request.job_id)


@pytest.mark.skipif(not INSTALLED, reason=f"needs: pip install {tracing.PACKAGES}")
async def test_spans_reach_an_otlp_collector_and_share_the_log_trace_id() -> None:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[Any] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        async def Export(self, request: Any, context: Any) -> Any:
            received.extend(s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans)
            return trace_service_pb2.ExportTraceServiceResponse()

    collector = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), collector)
    collector_port = collector.add_insecure_port("127.0.0.1:0")
    await collector.start()
    rpc_tracing = tracing.RpcTracing(endpoint=f"http://127.0.0.1:{collector_port}", service_name="understanding-test")
    servicer = Traced()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((build_handler(servicer, Identity({}), Observer(), tracing=rpc_tracing),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = understanding_pb2_grpc.UnderstandingStub(channel)
            traceparent = ("traceparent", f"00-{TRACE_ID}-{PARENT_SPAN}-01")
            await stub.GetJob(pb.GetJobRequest(job_id="j"), metadata=[traceparent, ("x-tenant-id", "traced")])
            for job_id, code in (("missing", grpc.StatusCode.NOT_FOUND), ("boom", grpc.StatusCode.INTERNAL)):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.GetJob(pb.GetJobRequest(job_id=job_id))
                assert err.value.code() == code
        await asyncio.to_thread(rpc_tracing.shutdown)  # flushes the batch to the collector
        rpc_tracing.shutdown()
    finally:
        await server.stop(0)
        await collector.stop(0)
    assert len(received) == 3
    by_trace = {span.trace_id.hex(): span for span in received}
    first = by_trace[TRACE_ID]  # continues the caller's trace
    assert first.parent_span_id.hex() == PARENT_SPAN and first.name == "understanding.v1.Understanding/GetJob"
    attributes = {a.key: a.value for a in first.attributes}
    assert (
        attributes["rpc.method"].string_value == "GetJob"
        and attributes["understanding.tenant"].string_value == "traced"
    )
    assert attributes["rpc.grpc.status_code"].int_value == 0
    assert servicer.trace_ids[0] == TRACE_ID  # the log lines' trace_id is the span's
    assert sorted(servicer.trace_ids[1:]) == sorted(t for t in by_trace if t != TRACE_ID)
    status = {span.trace_id.hex(): span.status.code for span in received}
    assert sorted(status.values()) == [0, 0, 2]  # only INTERNAL marks the span as an error
