"""The generic handler: unimplemented methods say so, unparsable requests are INVALID_ARGUMENT."""

from __future__ import annotations

import grpc
import pytest

from understanding.api.identity import Identity
from understanding.api.server import Observer, build_handler
from understanding.domain import NotFound
from understanding.v1 import understanding_pb2 as pb
from understanding.v1 import understanding_pb2_grpc


class OnlyGetJob:
    async def GetJob(self, request, call):  # type: ignore[no-untyped-def]
        raise NotFound(f"no job {request.job_id!r}", field="job_id")


@pytest.fixture
async def stub():  # type: ignore[no-untyped-def]
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((build_handler(OnlyGetJob(), Identity({}), Observer()),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield understanding_pb2_grpc.UnderstandingStub(channel), channel
    await channel.close()
    await server.stop(0)


async def test_unimplemented_and_domain_errors(stub) -> None:  # type: ignore[no-untyped-def]
    client, channel = stub
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.Search(pb.SearchRequest(text="x"))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED and "Search" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.GetJob(pb.GetJobRequest(job_id="j"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and err.value.details() == "job_id: no job 'j'"
    raw = channel.unary_unary(
        "/understanding.v1.Understanding/GetJob", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw(b"\x0a\x02\xff\xfe")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "GetJobRequest" in err.value.details()
