"""Bad input gets a precise status naming the field, and the server keeps serving."""

from __future__ import annotations

import grpc
import pytest

from tests.support.server import ServerProcess
from understanding.v1 import understanding_pb2 as pb


def call_error(fn, request, **kw) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        fn(request, timeout=30, **kw)
    return err.value


@pytest.mark.parametrize(
    ("request_", "code", "needle"),
    [
        (pb.AnalyzeTextRequest(), grpc.StatusCode.INVALID_ARGUMENT, "items"),
        (pb.AnalyzeTextRequest(items=[pb.TextItem(text="")]), grpc.StatusCode.INVALID_ARGUMENT, "items[0].text"),
        (
            pb.AnalyzeTextRequest(items=[pb.TextItem(text="ok"), pb.TextItem(text="   \n")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "items[1].text",
        ),
        (
            pb.AnalyzeTextRequest(items=[pb.TextItem(text="x" * 20001)]),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "items[0].text",
        ),
        (pb.AnalyzeTextRequest(items=[pb.TextItem(text="t")] * 17), grpc.StatusCode.RESOURCE_EXHAUSTED, "items"),
        (
            pb.AnalyzeTextRequest(items=[pb.TextItem(text="ok", media_id="bad id/../x")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "items[0].media_id",
        ),
        (
            pb.AnalyzeTextRequest(items=[pb.TextItem(text="ok", metadata={"bad key!": "v"})]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "items[0].metadata",
        ),
    ],
    ids=[
        "no-items",
        "empty-text",
        "blank-text",
        "oversized-text",
        "too-many-items",
        "bad-media-id",
        "bad-metadata-key",
    ],
)
def test_analyze_text_rejects(
    server: ServerProcess, request_: pb.AnalyzeTextRequest, code: grpc.StatusCode, needle: str
) -> None:
    error = call_error(server.stub.AnalyzeText, request_)
    assert error.code() == code
    assert needle in error.details()
    assert server.health_status() == 1  # still SERVING


def test_invalid_utf8_is_invalid_argument(server: ServerProcess) -> None:
    raw = pb.AnalyzeTextRequest(items=[pb.TextItem(text="abc")]).SerializeToString().replace(b"abc", b"a\xffc")
    method = server.channel.unary_unary(
        "/understanding.v1.Understanding/AnalyzeText",
        request_serializer=lambda b: b,
        response_deserializer=pb.AnalyzeTextResponse.FromString,
    )
    error = call_error(method, raw)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in error.details() and "AnalyzeTextRequest" in error.details()
    # Garbage bytes that are not a protobuf message at all.
    error = call_error(method, b"\xff\xff\xff\xff")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_oversized_message_is_resource_exhausted(server: ServerProcess) -> None:
    # The server's message limit is 8 MiB by default.
    error = call_error(
        server.stub.AnalyzeText, pb.AnalyzeTextRequest(items=[pb.TextItem(text="y" * (9 * 1024 * 1024))])
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("request_", "code", "needle"),
    [
        (pb.SearchRequest(), grpc.StatusCode.INVALID_ARGUMENT, "query"),
        (pb.SearchRequest(text="  "), grpc.StatusCode.INVALID_ARGUMENT, "text"),
        (pb.SearchRequest(text="ok", top_k=1000), grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
        (pb.SearchRequest(vector=pb.Vector(values=[0.1, 0.2])), grpc.StatusCode.INVALID_ARGUMENT, "vector"),
        (pb.SearchRequest(vector=pb.Vector(values=[float("nan")] * 384)), grpc.StatusCode.INVALID_ARGUMENT, "vector"),
        (pb.SearchRequest(example=pb.Example(media_id="does-not-exist")), grpc.StatusCode.NOT_FOUND, "example"),
        (pb.SearchRequest(text="ok", cursor="not-a-cursor"), grpc.StatusCode.INVALID_ARGUMENT, "cursor"),
    ],
    ids=["empty", "blank-text", "top-k", "vector-dim", "vector-nan", "unknown-example", "bad-cursor"],
)
def test_search_rejects(server: ServerProcess, request_: pb.SearchRequest, code: grpc.StatusCode, needle: str) -> None:
    error = call_error(server.stub.Search, request_)
    assert error.code() == code
    assert needle in error.details()


def test_unknown_media_ids(server: ServerProcess) -> None:
    for fn, req in (
        (server.stub.GetMedia, pb.GetMediaRequest(media_id="never-analyzed")),
        (server.stub.DeleteMedia, pb.DeleteMediaRequest(media_id="never-analyzed")),
    ):
        error = call_error(fn, req)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "media_id" in error.details()
    error = call_error(server.stub.GetMedia, pb.GetMediaRequest(media_id=""))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_bad_tenant_header(server: ServerProcess) -> None:
    error = call_error(
        server.stub.AnalyzeText,
        pb.AnalyzeTextRequest(items=[pb.TextItem(text="x")]),
        metadata=[("x-tenant-id", "../../etc")],
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x-tenant-id" in error.details()
