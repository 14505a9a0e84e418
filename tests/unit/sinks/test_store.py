"""The embedded store (Qdrant Edge) and qdrant-client behave the same (congruence)."""

from __future__ import annotations

import pathlib
from typing import Iterator

import numpy as np
import pytest

from understanding.domain import Modality, point_id
from understanding.sinks.edge_store import EdgeVectorStore
from understanding.sinks.qdrant_remote import QdrantClientStore
from understanding.sinks.store import PointFilter, PointRecord, VectorStore

DIM = 16


def make_points(n: int, seed: int = 0) -> list[PointRecord]:
    rng = np.random.default_rng(seed)
    points = []
    for i in range(n):
        v = rng.normal(size=DIM).astype(np.float32)
        v /= np.linalg.norm(v)
        tenant = "a" if i % 3 else "b"
        media = f"m{i // 4}"
        points.append(
            PointRecord(
                id=point_id(tenant, media, Modality.TEXT, i % 4),
                vector=v,
                payload={
                    "tenant": tenant,
                    "media_id": media,
                    "modality": "text" if i % 2 else "speech",
                    "chunk_index": i % 4,
                    "language": "en" if i % 5 else "es",
                    "tags": ["topic.sports"] if i % 7 == 0 else [],
                    "start_s": float(i),
                    "end_s": float(i + 1),
                    "created_at": 1000.0 + i,
                    "version": 1,
                    "text": f"text {i}",
                    "metadata": {"source": "feed" if i % 2 else "dm"},
                },
            )
        )
    return points


@pytest.fixture(params=["edge", "qdrant-client-local"])
def store(request, tmp_path: pathlib.Path) -> Iterator[VectorStore]:  # type: ignore[no-untyped-def]
    if request.param == "edge":
        s: VectorStore = EdgeVectorStore(tmp_path, dimension=DIM, collection="c")
    else:
        s = QdrantClientStore(dimension=DIM, collection="c", location=":memory:")
    yield s
    s.close()


FILTERS = [
    PointFilter(tenant="a"),
    PointFilter(tenant="b"),
    PointFilter(tenant="a", modalities=("speech",)),
    PointFilter(tenant="a", languages=("es",)),
    PointFilter(tenant="a", tags_any=("topic.sports",)),
    PointFilter(tenant="a", media_ids=("m1", "m2")),
    PointFilter(tenant="a", created_after=1020.0, created_before=1040.0),
    PointFilter(tenant="a", overlaps_start_s=10.0, overlaps_end_s=12.0),
    PointFilter(tenant="a", metadata={"source": "dm"}),
    PointFilter(tenant="nobody"),
]


def exact(points: list[PointRecord], query: np.ndarray, flt: PointFilter, k: int) -> list[str]:
    def ok(p: PointRecord) -> bool:
        pl = p.payload
        return (
            pl["tenant"] == flt.tenant
            and (not flt.modalities or pl["modality"] in flt.modalities)
            and (not flt.languages or pl["language"] in flt.languages)
            and (not flt.tags_any or set(pl["tags"]) & set(flt.tags_any))
            and (not flt.media_ids or pl["media_id"] in flt.media_ids)
            and (flt.created_after is None or pl["created_at"] >= flt.created_after)
            and (flt.created_before is None or pl["created_at"] <= flt.created_before)
            and (flt.overlaps_end_s is None or pl["start_s"] <= flt.overlaps_end_s)
            and (flt.overlaps_start_s is None or pl["end_s"] >= flt.overlaps_start_s)
            and all(pl["metadata"].get(k2) == v for k2, v in flt.metadata.items())
        )

    scored = sorted((float(np.dot(p.vector, query)), p.id) for p in points if ok(p))
    return [pid for _, pid in reversed(scored)][:k]


@pytest.mark.parametrize("flt", FILTERS, ids=range(len(FILTERS)))
def test_search_matches_exact_filtered_search(store: VectorStore, flt: PointFilter) -> None:
    points = make_points(120)
    store.upsert(points)
    query = points[5].vector
    got = [p.id for p in store.search(query, flt, limit=10)]
    assert got == exact(points, query, flt, 10)


def test_tenant_is_always_applied(store: VectorStore) -> None:
    points = make_points(60)
    store.upsert(points)
    for p in store.search(points[0].vector, PointFilter(tenant="b"), limit=100):
        assert p.payload["tenant"] == "b"
    assert store.media_points("a", "m0") != [] or store.media_points("b", "m0") != []
    assert store.count("a") + store.count("b") == store.count() == 60


def test_upsert_same_ids_overwrites_and_replace_drops_stale(store: VectorStore) -> None:
    points = make_points(8)
    store.upsert(points)
    store.upsert(points)
    assert store.count() == 8
    tenant, media = points[1].payload["tenant"], points[1].payload["media_id"]
    before = len(store.media_points(tenant, media))
    newer = [PointRecord(points[1].id, points[1].vector, {**points[1].payload, "version": 2})]
    store.replace_media(tenant, media, newer, version=2)
    after = store.media_points(tenant, media, with_vectors=True)
    assert before > 1 and len(after) == 1 and after[0].payload["version"] == 2
    assert after[0].vector is not None and len(after[0].vector) == DIM
    assert store.delete_media(tenant, media) == 1
    assert store.delete_media(tenant, media) == 0


def test_edge_store_survives_reopen(tmp_path: pathlib.Path) -> None:
    points = make_points(30)
    s = EdgeVectorStore(tmp_path, dimension=DIM, collection="c")
    s.upsert(points)
    s.close()
    s = EdgeVectorStore(tmp_path, dimension=DIM, collection="c")
    try:
        assert s.count() == 30
        assert s.search(points[3].vector, PointFilter(tenant=points[3].payload["tenant"]), limit=1)[0].id == points[3].id
    finally:
        s.close()
