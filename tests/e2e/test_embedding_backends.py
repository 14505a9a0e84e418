"""Embedding backends end to end: an ONNX server answers like torch, and they share a collection.

Pinned to `minilm`: torch backs only the sentence-transformers models (the
multilingual default's backends, onnx and numpy, are compared in
tests/unit/models/test_use_embedder.py)."""

from __future__ import annotations

import asyncio
import pathlib

import grpc
import numpy as np
import pytest

from tests.support.server import ServerProcess
from understanding.models.embedder import Embedder, resolve_embedding_model
from understanding.v1 import understanding_pb2 as pb
from understanding.v1 import understanding_pb2_grpc

SPORTS = (
    "What a game last night! Messi scored twice in the second half and Barcelona beat Madrid 3-1 to win the league."
)
MD = [("x-tenant-id", "backends")]


@pytest.fixture(scope="module")
def torch_embedder() -> Embedder:
    return Embedder(resolve_embedding_model("packaged"))


def run_server(data_dir: pathlib.Path, backend: str) -> ServerProcess:
    env = {"UNDERSTANDING_EMBEDDING_BACKEND": backend, "UNDERSTANDING_EMBEDDING_MODEL": "minilm"}
    proc = ServerProcess(data_dir, env=env).start()
    proc.wait_serving()
    return proc


async def analyze_concurrently(target: str, texts: list[str]) -> list[pb.AnalyzeTextResponse]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = understanding_pb2_grpc.UnderstandingStub(channel)
        return list(
            await asyncio.gather(
                *(
                    stub.AnalyzeText(
                        pb.AnalyzeTextRequest(
                            items=[pb.TextItem(media_id=f"post-{i}", text=t)],
                            options=pb.TextOptions(return_embeddings=True),
                        ),
                        metadata=MD,
                        timeout=60,
                    )
                    for i, t in enumerate(texts)
                )
            )
        )


def test_onnx_server_answers_like_torch_and_shares_its_collection(
    tmp_path: pathlib.Path, torch_embedder: Embedder
) -> None:
    texts = [SPORTS] + [f"Message number {i}: the meeting moved to room {200 + i}." for i in range(23)]
    onnx_server = run_server(tmp_path, "onnx")
    try:
        # 24 concurrent single-text calls share batches and each gets its own vector.
        responses = asyncio.run(analyze_concurrently(onnx_server.target, texts))
        got = np.stack([np.asarray(r.results[0].chunks[0].embedding, dtype=np.float32) for r in responses])
        want = np.stack(torch_embedder.encode(texts))
        assert ((got * want).sum(axis=1) > 0.999).all()
        first = responses[0].results[0]
        assert first.media_id == "post-0" and "topic.sports" in {t.label for t in first.tags}
        # Same vectors, same version: torch and fp32 ONNX write one collection.
        assert first.embedding_model.version == torch_embedder.model_ref.version
        found = onnx_server.stub.Search(
            pb.SearchRequest(text="football match result", top_k=3), metadata=MD, timeout=30
        )
        assert found.hits and found.hits[0].media_id == "post-0"
    finally:
        assert onnx_server.stop() == 0, onnx_server.log()

    # Switching the backend needs no reindex: the torch server serves what ONNX wrote.
    torch_server = run_server(tmp_path, "torch")
    try:
        found = torch_server.stub.Search(
            pb.SearchRequest(text="football match result", top_k=3), metadata=MD, timeout=30
        )
        assert found.hits and found.hits[0].media_id == "post-0"
    finally:
        assert torch_server.stop() == 0, torch_server.log()
