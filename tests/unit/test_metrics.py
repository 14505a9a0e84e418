"""The RPC wrapper with metrics, limits and log context, on an in-process gRPC server."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tests.support.waiting import PATIENCE_S, wait_until_async
from understanding import logs
from understanding.api.identity import Identity
from understanding.api.limits import TenantRateLimiter, TenantStreams
from understanding.api.server import Limits, build_handler, trace_id_from
from understanding.domain import NotFound
from understanding.metrics import Metrics
from understanding.v1 import jobs_pb2, understanding_pb2_grpc
from understanding.v1 import understanding_pb2 as pb


class FakeServicer:
    def __init__(self) -> None:
        self.seen_context: dict[str, str] = {}
        self.searches = 0
        self.cancelled_searches = 0
        self.release = asyncio.Event()
        self.uploading = 0

    async def GetJob(self, request: pb.GetJobRequest, call: Any) -> jobs_pb2.Job:
        if request.job_id == "j1":
            self.seen_context = dict(logs.current())
        logging.getLogger("fake").info("inside the rpc")
        if request.job_id == "missing":
            raise NotFound("no job 'missing'", field="job_id")
        return jobs_pb2.Job(job_id=request.job_id)

    async def Search(self, request: pb.SearchRequest, call: Any) -> pb.SearchResponse:
        self.searches += 1
        try:
            await asyncio.Event().wait()  # never answers: only a cancellation ends it
        except asyncio.CancelledError:
            self.cancelled_searches += 1
            raise
        return pb.SearchResponse()

    async def UploadMedia(self, requests: AsyncIterator[pb.UploadRequest], call: Any) -> pb.UploadMediaResponse:
        self.uploading += 1
        async for _ in requests:
            pass
        await self.release.wait()
        return pb.UploadMediaResponse(upload_id="upl-1")


async def serve(limits: Limits) -> tuple[Any, FakeServicer, Metrics, grpc.aio.Server]:
    servicer, metrics = FakeServicer(), Metrics()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((build_handler(servicer, Identity({}), metrics, limits),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return understanding_pb2_grpc.UnderstandingStub(channel), servicer, metrics, server


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_counts_latency_in_flight_and_log_context(caplog: pytest.LogCaptureFixture) -> None:
    stub, servicer, metrics, server = await serve(Limits())
    caplog.set_level(logging.INFO)
    handler_filter = logs.ContextFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        call = stub.GetJob(
            pb.GetJobRequest(job_id="j1"), metadata=[("x-tenant-id", "t1"), ("x-trace-id", "abcdef0123456789")]
        )
        assert (await call).job_id == "j1"
        trailers = dict(await call.trailing_metadata())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetJob(pb.GetJobRequest(job_id="missing"), metadata=[("x-tenant-id", "t1")])
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        caplog.handler.removeFilter(handler_filter)
        await server.stop(0)
    assert servicer.seen_context["tenant"] == "t1" and servicer.seen_context["trace_id"] == "abcdef0123456789"
    assert trailers["x-request-id"] == servicer.seen_context["request_id"]
    assert sample(metrics, "understanding_rpc_total", method="GetJob", code="OK") == 1
    assert sample(metrics, "understanding_rpc_total", method="GetJob", code="NOT_FOUND") == 1
    assert sample(metrics, "understanding_rpc_seconds_count", method="GetJob", code="OK") == 1
    assert sample(metrics, "understanding_rpc_in_flight", method="GetJob") == 0
    inside = [r for r in caplog.records if r.getMessage() == "inside the rpc"]
    assert inside and inside[0].request_id == trailers["x-request-id"]
    access = [r for r in caplog.records if r.getMessage() == "rpc"]
    assert [r.code for r in access] == ["OK", "NOT_FOUND"]
    assert all(r.tenant == "t1" and r.method == "GetJob" for r in access)


async def test_rate_limit_answers_resource_exhausted_with_retry_hint() -> None:
    # A stopped clock: however slowly the calls run, no token comes back meanwhile.
    stub, _, metrics, server = await serve(Limits(rate=TenantRateLimiter(0.5, 2, clock=lambda: 1000.0)))
    try:
        for _ in range(2):
            await stub.GetJob(pb.GetJobRequest(job_id="j"), metadata=[("x-tenant-id", "busy")])
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetJob(pb.GetJobRequest(job_id="j"), metadata=[("x-tenant-id", "busy")])
        await stub.GetJob(pb.GetJobRequest(job_id="j"), metadata=[("x-tenant-id", "calm")])
    finally:
        await server.stop(0)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in err.value.details()
    retry_ms = int(dict(err.value.trailing_metadata())["retry-after-ms"])
    assert retry_ms == 2000  # one token at 0.5/s
    assert sample(metrics, "understanding_rate_limited_total", method="GetJob", limit="rate") == 1


async def test_deadline_cancels_the_handler_and_is_recorded() -> None:
    stub, servicer, metrics, server = await serve(Limits())
    try:
        # The deadline has to pass while the handler runs. On a busy machine a short one can
        # pass before the request is even dispatched, which proves nothing: try a longer one.
        timeout_s = 0.3
        while True:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Search(pb.SearchRequest(text="x"), timeout=timeout_s)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            if servicer.searches:
                break
            timeout_s *= 2
            assert timeout_s < PATIENCE_S, "no Search ever reached its handler"
        # The handler's finally runs just after the cancellation.
        await wait_until_async(
            lambda: (
                servicer.cancelled_searches
                and sample(metrics, "understanding_rpc_total", method="Search", code="DEADLINE_EXCEEDED")
            ),
            what="the handler cancelled and recorded",
        )
    finally:
        await server.stop(0)
    # Every handler that ran (one, unless an abandoned attempt was dispatched late) was
    # cancelled and recorded as DEADLINE_EXCEEDED, and none is left in flight.
    assert servicer.cancelled_searches == servicer.searches >= 1
    assert sample(metrics, "understanding_rpc_total", method="Search", code="DEADLINE_EXCEEDED") == servicer.searches
    assert sample(metrics, "understanding_rpc_total", method="Search", code="CANCELLED") == 0
    assert sample(metrics, "understanding_rpc_in_flight", method="Search") == 0


async def test_concurrent_upload_streams_per_tenant() -> None:
    stub, servicer, metrics, server = await serve(Limits(upload_streams=TenantStreams(1)))

    async def upload() -> Any:
        async def messages() -> AsyncIterator[pb.UploadRequest]:
            yield pb.UploadRequest(header=pb.UploadHeader(filename="a.wav"))
            yield pb.UploadRequest(chunk=b"x")

        return await stub.UploadMedia(messages(), metadata=[("x-tenant-id", "up")])

    try:
        first = asyncio.ensure_future(upload())
        await wait_until_async(lambda: servicer.uploading, what="the first upload in its handler")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await upload()
        servicer.release.set()
        assert (await first).upload_id == "upl-1"
        assert (await upload()).upload_id == "upl-1"  # the slot was given back
    finally:
        await server.stop(0)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "uploads in progress" in err.value.details()
    assert int(dict(err.value.trailing_metadata())["retry-after-ms"]) == 1000
    assert sample(metrics, "understanding_rate_limited_total", method="UploadMedia", limit="upload_streams") == 1


def test_metrics_http_server_on_a_free_port() -> None:
    metrics = Metrics()
    metrics.rpc_started("GetJob")
    metrics.rpc_done("GetJob", grpc.StatusCode.OK, 0.01)
    metrics.watch(lambda: None)
    port = metrics.serve("127.0.0.1", 0)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        metrics.stop()
        metrics.stop()
    assert 'understanding_rpc_total{code="OK",method="GetJob"} 1.0' in body
    assert "understanding_ready 0.0" in body


def test_a_taken_metrics_port_fails_start_up_clearly() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(RuntimeError, match="cannot serve metrics on 127.0.0.1"):
            Metrics().serve("127.0.0.1", holder.getsockname()[1])


def test_trace_ids_come_from_the_caller_when_well_formed() -> None:
    assert trace_id_from({"x-trace-id": "abc-123_DEF"}) == "abc-123_DEF"
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_id_from({"traceparent": parent}) == "4bf92f3577b34da6a3ce929d0e0e4736"
    for hostile in ({"x-trace-id": 'x"\n{"level": "error"}'}, {"x-trace-id": "a" * 65}, {"traceparent": "garbage"}, {}):
        generated = trace_id_from(hostile)
        assert len(generated) == 32 and int(generated, 16) >= 0
