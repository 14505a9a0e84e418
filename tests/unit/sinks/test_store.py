"""Every store backend behaves the same (congruence).

Each test runs the same operations on the embedded store (Qdrant Edge),
qdrant-client's local mode and a real Qdrant server over gRPC and over REST
(tests/support/qdrant.py: the binary beside the checkout, or
UNDERSTANDING_TEST_QDRANT_URL), and checks them against an exact answer
computed in numpy, or against each other.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient

from tests.support.qdrant import QdrantEndpoint
from understanding.config import Settings
from understanding.core.embedding import StoreOpener
from understanding.domain import Modality, ModelRef, point_id
from understanding.sinks import qdrant_remote
from understanding.sinks.edge_store import EdgeVectorStore, read_alias
from understanding.sinks.lexical import encoder
from understanding.sinks.qdrant_remote import QdrantClientStore, UnsupportedServer, version_verdict
from understanding.sinks.store import (
    Handover,
    PointFilter,
    PointRecord,
    SharedCollection,
    StoredPoint,
    VectorStore,
    collection_name,
    hybrid_window,
    newest_versions,
    published_version,
    reembed_into,
    storage_point_id,
)

DIM = 16
WORDS = "river mountain harbour violin engine garden lantern meadow copper falcon".split()
SERVER = pytest.mark.qdrant_server
# The backends every congruence test runs on; "grpc" and "rest" are a real server.
BACKENDS = ["edge", "local", pytest.param("grpc", marks=SERVER), pytest.param("rest", marks=SERVER)]
CLIENTS = ["local", pytest.param("grpc", marks=SERVER), pytest.param("rest", marks=SERVER)]


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def make_points(n: int, seed: int = 0) -> list[PointRecord]:
    rng = np.random.default_rng(seed)
    points = []
    for i in range(n):
        tenant = "a" if i % 3 else "b"
        media = f"m{i // 4}"
        tags = [{"label": "topic.sports", "score": round(0.3 + (i % 7) / 10, 2)}] if i % 2 == 0 else []
        if i % 5 == 0:
            tags.append({"label": "topic.music", "score": 0.45})
        text = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7)) + f" item{i}"
        if i in (7, 41, 88):
            text += " zyxwvut"  # a rare word in three chunks
        points.append(
            PointRecord(
                id=point_id(tenant, media, Modality.TEXT, i % 4),
                vector=unit(rng),
                payload={
                    "tenant": tenant,
                    "media_id": media,
                    "modality": "text" if i % 2 else "speech",
                    "chunk_index": i % 4,
                    "language": "en" if i % 5 else "es",
                    "tags": [t["label"] for t in tags],
                    "tag_items": tags,
                    "start_s": float(i),
                    "end_s": float(i + 1),
                    "created_at": 1000.0 + i,
                    "version": 1,
                    "text": text,
                    "metadata": {"source": "feed" if i % 2 else "dm"},
                    "speakers": [[], ["S1"], ["S2"], ["S2", "S1"]][i % 4],
                },
            )
        )
    return points


def _edge(path: pathlib.Path, name: str = "c") -> EdgeVectorStore:
    return EdgeVectorStore(path, dimension=DIM, collection=name)


def server_client(endpoint: QdrantEndpoint, transport: str) -> QdrantClient:
    return qdrant_remote.connect(endpoint.url, prefer_grpc=transport == "grpc", grpc_port=endpoint.grpc_port)


StoreFactory = Callable[..., VectorStore]


@pytest.fixture
def make_store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[StoreFactory]:
    """`make_store(backend, name)`: a fresh, empty store; server collections are dropped afterwards."""
    made: list[VectorStore] = []
    dropped: list[tuple[QdrantClient, str]] = []

    def make(backend: str, name: str = "c", *, client: QdrantClient | None = None) -> VectorStore:
        store: VectorStore
        if backend == "edge":
            store = _edge(tmp_path, name)
        elif backend == "local":
            # `client`: share one local-mode instance (as one server is shared).
            store = QdrantClientStore(dimension=DIM, collection=name, client=client or QdrantClient(":memory:"))
        else:
            endpoint: QdrantEndpoint = request.getfixturevalue("qdrant_server")
            client = client or server_client(endpoint, backend)
            name = f"test-{name}-{uuid.uuid4().hex[:8]}"
            store = QdrantClientStore(dimension=DIM, collection=name, client=client)
            dropped.append((client, name))
        made.append(store)
        return store

    yield make
    for client, name in dropped:
        client.delete_collection(name)
    for store in made:
        store.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, make_store: StoreFactory) -> VectorStore:
    return make_store(request.param)


@pytest.fixture(params=CLIENTS)
def both(request: pytest.FixtureRequest, make_store: StoreFactory) -> tuple[VectorStore, VectorStore]:
    """The embedded store and one qdrant-client backend, to compare results."""
    return make_store("edge"), make_store(request.param)


FILTERS = [
    PointFilter(tenant="a"),
    PointFilter(tenant="b"),
    PointFilter(tenant="a", modalities=("speech",)),
    PointFilter(tenant="a", languages=("es",)),
    PointFilter(tenant="a", tags_any=("topic.sports",)),
    PointFilter(tenant="a", tags_all=("topic.sports", "topic.music")),
    PointFilter(tenant="a", tags_any=("topic.sports",), tags_min_score=0.6),
    PointFilter(tenant="a", tags_any=("topic.sports", "topic.music"), tags_min_score=0.45),
    PointFilter(tenant="a", tags_all=("topic.sports", "topic.music"), tags_min_score=0.4),
    PointFilter(tenant="a", tags_min_score=0.8),
    PointFilter(tenant="a", media_ids=("m1", "m2")),
    PointFilter(tenant="a", exclude_media_ids=("m1", "m2", "m4")),
    PointFilter(tenant="a", created_after=1020.0, created_before=1040.0),
    PointFilter(tenant="a", overlaps_start_s=10.0, overlaps_end_s=12.0),
    PointFilter(tenant="a", metadata={"source": "dm"}),
    PointFilter(tenant="a", speakers=("S2",)),
    PointFilter(tenant="a", speakers=("S1", "CH9")),
    PointFilter(tenant="nobody"),
]


def matches(p: PointRecord, flt: PointFilter) -> bool:
    pl = p.payload
    scores: dict[str, float] = {t["label"]: t["score"] for t in pl["tag_items"]}

    def has(label: str) -> bool:
        return label in scores and (flt.tags_min_score is None or scores[label] >= flt.tags_min_score)

    tags_ok = (not flt.tags_any or any(has(t) for t in flt.tags_any)) and all(has(t) for t in flt.tags_all)
    if flt.tags_min_score is not None and not flt.tags_any and not flt.tags_all:
        tags_ok = any(s >= flt.tags_min_score for s in scores.values())
    return bool(
        pl["tenant"] == flt.tenant
        and (not flt.modalities or pl["modality"] in flt.modalities)
        and (not flt.languages or pl["language"] in flt.languages)
        and tags_ok
        and (not flt.media_ids or pl["media_id"] in flt.media_ids)
        and pl["media_id"] not in flt.exclude_media_ids
        and (flt.created_after is None or pl["created_at"] >= flt.created_after)
        and (flt.created_before is None or pl["created_at"] <= flt.created_before)
        and (flt.overlaps_end_s is None or pl["start_s"] <= flt.overlaps_end_s)
        and (flt.overlaps_start_s is None or pl["end_s"] >= flt.overlaps_start_s)
        and all(pl["metadata"].get(k2) == v for k2, v in flt.metadata.items())
        and (not flt.speakers or any(x in pl["speakers"] for x in flt.speakers))
    )


def exact(points: list[PointRecord], query: np.ndarray, flt: PointFilter, k: int) -> list[str]:
    scored = sorted((float(np.dot(p.vector, query)), p.id) for p in points if matches(p, flt))
    return [pid for _, pid in reversed(scored)][:k]


def test_search_matches_exact_filtered_search(store: VectorStore) -> None:
    points = make_points(120)
    store.upsert(points)
    query = points[5].vector
    for i, flt in enumerate(FILTERS):
        got = [p.id for p in store.search(query, flt, limit=10)]
        assert got == exact(points, query, flt, 10), f"filter {i}: {flt}"


def test_min_tag_score_is_a_real_range(store: VectorStore) -> None:
    points = make_points(120)
    store.upsert(points)
    q = points[0].vector
    loose = store.search(q, PointFilter(tenant="a", tags_any=("topic.sports",), tags_min_score=0.3), limit=100)
    strict = store.search(q, PointFilter(tenant="a", tags_any=("topic.sports",), tags_min_score=0.85), limit=100)
    assert strict and len(strict) < len(loose)
    for p in strict:
        assert {t["label"]: t["score"] for t in p.payload["tag_items"]}["topic.sports"] >= 0.85


def test_hybrid_is_congruent_and_finds_the_rare_word(both: tuple[VectorStore, VectorStore]) -> None:
    points = make_points(120)
    rng = np.random.default_rng(7)
    query = unit(rng)
    terms = encoder().query("zyxwvut")
    results = []
    for s in both:
        s.upsert(points)
        hybrid = s.search(query, PointFilter(tenant="a"), limit=10, lexical=terms)
        dense = s.search(query, PointFilter(tenant="a"), limit=10)
        results.append(hybrid)
        rare = {p.id for p in points if "zyxwvut" in p.payload["text"] and p.payload["tenant"] == "a"}
        assert rare and rare <= {p.id for p in hybrid}, "the lexical ranking brings every rare-word chunk in"
        assert not rare <= {p.id for p in dense}
    edge, client = results
    assert [p.id for p in edge] == [p.id for p in client]
    assert [round(p.score, 5) for p in edge] == [round(p.score, 5) for p in client]


def test_lexical_idf_is_per_tenant(both: tuple[VectorStore, VectorStore]) -> None:
    """Another tenant's documents never change this tenant's hybrid ranking or scores."""
    rng = np.random.default_rng(3)
    mine = [
        PointRecord(str(uuid.uuid4()), unit(rng), {"tenant": "a", "media_id": f"a{i}", "text": text, "version": 1})
        for i, text in enumerate(["alpha report", "beta notes", "beta summary", "gamma"])
    ]
    theirs = [
        PointRecord(
            str(uuid.uuid4()), unit(rng), {"tenant": "b", "media_id": f"b{i}", "text": "alpha alpha", "version": 1}
        )
        for i in range(40)
    ]
    query, terms = unit(rng), encoder().query("alpha beta")
    for s in both:
        s.upsert(mine)
        before = [(p.id, round(p.score, 6)) for p in s.search(query, PointFilter(tenant="a"), limit=4, lexical=terms)]
        s.upsert(theirs)
        after = [(p.id, round(p.score, 6)) for p in s.search(query, PointFilter(tenant="a"), limit=4, lexical=terms)]
        assert before == after


@pytest.mark.parametrize("hybrid", [False, True], ids=["dense", "hybrid"])
def test_offset_pages_tile_the_full_ranking(store: VectorStore, hybrid: bool) -> None:
    points = make_points(120)
    store.upsert(points)
    query = points[9].vector
    terms = encoder().query("river violin zyxwvut") if hybrid else None
    full = [p.id for p in store.search(query, PointFilter(tenant="a"), limit=40, lexical=terms)]
    paged = [
        p.id
        for off in range(0, 40, 7)
        for p in store.search(query, PointFilter(tenant="a"), limit=7, offset=off, lexical=terms)
    ]
    assert paged[:40] == full and len(set(full)) == 40


def test_hybrid_window_doubles() -> None:
    assert hybrid_window(10) == 128 and hybrid_window(128) == 128 and hybrid_window(129) == 256


def test_score_threshold(store: VectorStore) -> None:
    points = make_points(60)
    store.upsert(points)
    got = store.search(points[1].vector, PointFilter(tenant="a"), limit=50, score_threshold=0.3)
    want = [
        p for p in points if matches(p, PointFilter(tenant="a")) and float(np.dot(p.vector, points[1].vector)) >= 0.3
    ]
    assert {p.id for p in got} == {p.id for p in want} and all(p.score >= 0.3 for p in got)


def test_tenant_is_always_applied(store: VectorStore) -> None:
    points = make_points(60)
    store.upsert(points)
    for p in store.search(points[0].vector, PointFilter(tenant="b"), limit=100):
        assert p.payload["tenant"] == "b"
    for p in store.search(points[0].vector, PointFilter(tenant="b"), limit=100, lexical=encoder().query("river item1")):
        assert p.payload["tenant"] == "b"
    assert store.media_points("a", "m0") != [] or store.media_points("b", "m0") != []
    assert store.count("a") + store.count("b") == store.count() == 60


def test_delete_media_is_per_tenant(store: VectorStore) -> None:
    points = make_points(24)
    store.upsert(points)
    a_m1 = len([p for p in points if p.payload["tenant"] == "a" and p.payload["media_id"] == "m1"])
    b_m1 = len([p for p in points if p.payload["tenant"] == "b" and p.payload["media_id"] == "m1"])
    assert a_m1 and b_m1
    assert store.delete_media("a", "m1") == a_m1
    assert store.media_points("a", "m1") == [] and len(store.media_points("b", "m1")) == b_m1
    assert all(
        p.payload["media_id"] != "m1" for p in store.search(points[4].vector, PointFilter(tenant="a"), limit=100)
    )
    assert store.delete_media("a", "m1") == 0


def versioned(media: str, version: int, texts: list[str], seed: int) -> list[PointRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i, text in enumerate(texts):
        public = point_id("a", media, Modality.TEXT, i)
        payload = {
            "tenant": "a",
            "media_id": media,
            "chunk_index": i,
            "point_id": public,
            "version": version,
            "text": text,
        }
        out.append(PointRecord(storage_point_id(public, version), unit(rng), payload))
    return out


def test_staged_points_are_invisible_until_committed(store: VectorStore) -> None:
    old = versioned("doc", 1, ["old one", "old two", "old three"], seed=1)
    store.replace_media("a", "doc", old, version=1)
    new = versioned("doc", 2, ["new one"], seed=2)
    store.stage(new)
    # Staged: every read still sees exactly the old version.
    assert [p.payload["text"] for p in store.media_points("a", "doc")] == ["old one", "old two", "old three"]
    assert store.count("a") == 3
    seen = store.search(new[0].vector, PointFilter(tenant="a"), limit=10, lexical=encoder().query("new one"))
    assert {p.payload["version"] for p in seen} == {1}
    assert store.commit_media("a", "doc", 2)
    assert [p.payload["text"] for p in store.media_points("a", "doc")] == ["new one"]
    assert store.count("a") == 1
    seen = store.search(old[0].vector, PointFilter(tenant="a"), limit=10)
    assert [p.payload["version"] for p in seen] == [2]
    # The public id is the chunk's, whatever the version.
    assert store.media_points("a", "doc")[0].payload["point_id"] == old[0].payload["point_id"]


def test_a_slow_older_writer_loses(store: VectorStore) -> None:
    store.replace_media("a", "doc", versioned("doc", 5, ["five"], seed=1), version=5)
    store.stage(versioned("doc", 3, ["three", "three b"], seed=2))
    assert store.commit_media("a", "doc", 3) is False
    assert [p.payload["text"] for p in store.media_points("a", "doc")] == ["five"]
    assert store.count() == 1


def test_readers_never_mix_versions_mid_publication(store: VectorStore) -> None:
    """Between the flip and the stale delete both versions are published: reads keep the newest."""
    old = versioned("doc", 1, ["old a", "old b", "old c"], seed=1)
    new = versioned("doc", 2, ["new a", "new b"], seed=2)
    store.upsert(old + new[:1])  # as if the flip reached only one new point so far
    store.stage(new[1:])
    assert [p.payload["text"] for p in store.media_points("a", "doc")] == ["new a", "new b"]
    hits = store.search(old[1].vector, PointFilter(tenant="a"), limit=10)
    assert {p.payload["version"] for p in hits} == {1, 2}
    assert {p.payload["version"] for p in newest_versions(hits)} == {2}


def test_version_helpers() -> None:
    def sp(version: int, chunk: int, pending: int = 0, media: str = "m") -> StoredPoint:
        return StoredPoint(
            str(uuid.uuid4()),
            0.0,
            {"tenant": "a", "media_id": media, "version": version, "chunk_index": chunk, "pending": pending},
        )

    pts = [sp(1, 0), sp(1, 1), sp(2, 1, pending=1), sp(2, 0, pending=1)]
    assert [p.payload["version"] for p in published_version(pts)] == [1, 1]
    pts[2] = sp(2, 1, pending=0)  # the flip has begun: version 2 is the published one, whole
    assert [(p.payload["version"], p.payload["chunk_index"]) for p in published_version(pts)] == [(2, 0), (2, 1)]
    mixed = [sp(1, 0), sp(2, 0), sp(1, 0, media="other")]
    assert [(p.payload["media_id"], p.payload["version"]) for p in newest_versions(mixed)] == [("m", 2), ("other", 1)]


def test_example_vectors_come_back(store: VectorStore) -> None:
    points = make_points(8)
    store.upsert(points)
    got = store.media_points("a", "m0", with_vectors=True)
    assert got and all(p.vector is not None and len(p.vector) == DIM for p in got)
    hits = store.search(points[1].vector, PointFilter(tenant="a"), limit=3, with_vectors=True)
    assert np.allclose(hits[0].vector, points[1].vector, atol=1e-5)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_scan_and_reembed_into_a_new_collection(make_store: StoreFactory, backend: str) -> None:
    model = ModelRef("fake-model", "v2")

    def encode(texts: list[str]) -> list[np.ndarray]:
        return [unit(np.random.default_rng(abs(hash(t)) % 2**32)) for t in texts]

    source, target = make_store(backend, "src"), make_store(backend, "dst")
    points = make_points(50)
    points[3] = dataclasses.replace(points[3], payload={**points[3].payload, "text": ""})
    source.upsert(points)
    source.stage(versioned("staged", 9, ["not yet published"], seed=3))
    stats = reembed_into(source, target, encode, model, batch_size=16)
    assert (stats.embedded, stats.without_text, stats.removed) == (49, 1, 0)
    assert target.count() == 49
    copied = target.media_points("a", "m1")
    assert copied and all(p.payload["embedding_model"] == "fake-model" for p in copied)
    # Incremental: nothing new, nothing embedded; a deleted source media disappears.
    source.delete_media("a", "m1")
    again = reembed_into(source, target, encode, model)
    assert again.embedded == 0 and again.removed == len(copied) and target.media_points("a", "m1") == []


def test_edge_store_survives_reopen_and_knows_its_size(tmp_path: pathlib.Path) -> None:
    points = make_points(30)
    s = _edge(tmp_path)
    s.upsert(points)
    s.close()
    s = EdgeVectorStore(tmp_path, dimension=None, collection="c")
    try:
        assert s.dimension == DIM and s.count() == 30
        assert (
            s.search(points[3].vector, PointFilter(tenant=points[3].payload["tenant"]), limit=1)[0].id == points[3].id
        )
    finally:
        s.close()
    with pytest.raises(ValueError):
        EdgeVectorStore(tmp_path, dimension=DIM + 1, collection="c")


def test_edge_aliases(tmp_path: pathlib.Path) -> None:
    first, second = _edge(tmp_path, "one"), _edge(tmp_path, "two")
    assert read_alias(tmp_path, "live") is None
    first.promote("live")
    assert read_alias(tmp_path, "live").collection == "one"  # type: ignore[union-attr]
    second.promote("live")
    assert read_alias(tmp_path, "live").collection == "two"  # type: ignore[union-attr]
    assert not list(tmp_path.glob(".*tmp"))
    first.close()
    second.close()


@pytest.mark.parametrize("backend", CLIENTS)
def test_qdrant_aliases_switch_atomically(make_store: StoreFactory, backend: str) -> None:
    a = make_store(backend, "one")
    client: QdrantClient = a._client  # type: ignore[attr-defined]
    b = make_store(backend, "two", client=client)
    alias = f"live-{uuid.uuid4().hex[:8]}"
    assert QdrantClientStore.alias_target(client, alias) is None
    a.upsert(make_points(6))
    a.promote(alias)
    assert QdrantClientStore.alias_target(client, alias) == a.collection
    b.promote(alias)
    assert QdrantClientStore.alias_target(client, alias) == b.collection
    # Readers of the alias see the collection it names.
    assert client.count(alias, exact=True).count == 0
    a.promote(alias)
    assert client.count(alias, exact=True).count == 6


def index_schema(client: QdrantClient, collection: str) -> dict[str, object]:
    """Each payload index's type and parameters (not its point count)."""
    schema = client.get_collection(collection).payload_schema or {}
    return {name: (info.data_type, info.params) for name, info in schema.items()}


class _SawNoCollection:
    """A client that missed the collection once: what a process saw that checked just before
    another process (a replica or worker starting at the same time) created it."""

    def __init__(self, real: QdrantClient) -> None:
        self._real = real
        self._missed = False

    def collection_exists(self, name: str) -> bool:
        if not self._missed:
            self._missed = True
            return False
        return self._real.collection_exists(name)

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


@pytest.mark.parametrize("backend", CLIENTS)
def test_a_process_that_loses_the_race_to_create_the_collection_opens_the_winners(
    make_store: StoreFactory, backend: str
) -> None:
    winner = make_store(backend, "race")
    assert isinstance(winner, QdrantClientStore)
    client: QdrantClient = winner._client
    winner.upsert(make_points(5))  # a write waits for every index the creation asked for
    schema_before = index_schema(client, winner.collection)
    late = QdrantClientStore(
        dimension=DIM,
        collection=winner.collection,
        client=_SawNoCollection(client),  # type: ignore[arg-type]
    )
    assert late._client._missed  # type: ignore[attr-defined]  # it did try to create the collection
    late.upsert(make_points(8))
    assert winner.count() == 8 == late.count()
    # The loser asked for no index the winner had not made, and changed none.
    assert index_schema(client, winner.collection) == schema_before


def test_open_store_serves_the_alias_of_the_configured_model(tmp_path: pathlib.Path) -> None:
    settings = Settings.from_env({}, data_dir=str(tmp_path), qdrant_url="")
    v1, v2 = ModelRef("mini", "aaa"), ModelRef("mini", "bbb")
    store = StoreOpener(settings).serving(v1, DIM, model_path="")
    assert store.collection == collection_name("understanding", v1) == "understanding__mini__aaa"
    store.upsert(make_points(8))
    store.close()
    # Reindex target: the new model's collection, alias untouched until promoted.
    target = StoreOpener(settings).target(v2, DIM)
    assert read_alias(tmp_path / "qdrant-edge", "understanding").collection == "understanding__mini__aaa"  # type: ignore[union-attr]
    current = StoreOpener(settings).current()
    assert current.collection == "understanding__mini__aaa" and current.dimension == DIM and current.count() == 8
    current.close()
    target.promote("understanding")
    target.close()
    # The alias now names v2's collection: a server still configured with v1 refuses to start.
    with pytest.raises(RuntimeError, match="reindex"):
        StoreOpener(settings).serving(v1, DIM, model_path="")
    served = StoreOpener(settings).serving(v2, DIM, model_path="")
    assert served.collection == "understanding__mini__bbb"
    served.close()


def test_restaging_a_published_version_keeps_it_visible(store: VectorStore) -> None:
    """A retried write of the same version (same ids) must not hide the published points."""
    points = versioned("doc", 4, ["four a", "four b"], seed=1)
    store.replace_media("a", "doc", points, version=4)
    store.stage(points)
    assert [p.payload["text"] for p in store.media_points("a", "doc")] == ["four a", "four b"]
    assert store.count("a") == 2
    assert store.commit_media("a", "doc", 4)
    assert store.count("a") == 2


@pytest.mark.qdrant_server
@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_open_store_on_a_server_serves_the_alias_of_the_configured_model(
    qdrant_server: QdrantEndpoint, transport: str
) -> None:
    """The same alias life cycle as the embedded store, through the settings a user sets."""
    alias = f"understanding-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env(
        {
            "UNDERSTANDING_QDRANT_URL": qdrant_server.url,
            "UNDERSTANDING_QDRANT_PREFER_GRPC": str(transport == "grpc").lower(),
            "UNDERSTANDING_QDRANT_GRPC_PORT": str(qdrant_server.grpc_port),
            "UNDERSTANDING_QDRANT_COLLECTION": alias,
        }
    )
    v1, v2 = ModelRef("mini", "aaa"), ModelRef("mini", "bbb")
    admin = server_client(qdrant_server, transport)
    try:
        store = StoreOpener(settings).serving(v1, DIM, model_path="")
        assert store.collection == collection_name(alias, v1)
        assert QdrantClientStore.alias_target(admin, alias) == store.collection
        store.upsert(make_points(8))
        store.close()
        target = StoreOpener(settings).target(v2, DIM)
        assert QdrantClientStore.alias_target(admin, alias) == collection_name(alias, v1)
        current = StoreOpener(settings).current()
        assert current.collection == collection_name(alias, v1) and current.dimension == DIM and current.count() == 8
        current.close()
        target.promote(alias)
        target.close()
        with pytest.raises(RuntimeError, match="reindex"):
            StoreOpener(settings).serving(v1, DIM, model_path="")
        served = StoreOpener(settings).serving(v2, DIM, model_path="")
        assert served.collection == collection_name(alias, v2) and served.count() == 0
        served.close()
    finally:
        for model in (v1, v2):
            admin.delete_collection(collection_name(alias, model))
        admin.close()


@pytest.mark.qdrant_server
@pytest.mark.parametrize("missed", [1, 2], ids=["read-before-the-alias", "promote-before-the-alias"])
def test_processes_starting_at_once_on_a_server_share_the_first_collection(
    qdrant_server: QdrantEndpoint, missed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that read no alias just before another one made it starts on the same collection.

    Seen in CI: a worker starting with another one took the alias the other had
    just made for a collection from before per-model collections, and exited.
    `missed` alias reads answer "no alias" as they did for that process: its
    start-up read (1), and also its promote's (2: it then asks to create an
    alias that exists).
    """
    alias = f"understanding-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env(
        {
            "UNDERSTANDING_QDRANT_URL": qdrant_server.url,
            "UNDERSTANDING_QDRANT_GRPC_PORT": str(qdrant_server.grpc_port),
            "UNDERSTANDING_QDRANT_COLLECTION": alias,
        }
    )
    v1 = ModelRef("mini", "aaa")
    admin = server_client(qdrant_server, "grpc")
    real = QdrantClientStore.alias_target
    try:
        winner = StoreOpener(settings).serving(v1, DIM, model_path="minilm")
        stale = [None] * missed

        def racing(client: QdrantClient, name: str) -> str | None:
            return stale.pop() if stale else real(client, name)

        monkeypatch.setattr(QdrantClientStore, "alias_target", staticmethod(racing))
        loser = StoreOpener(settings).serving(v1, DIM, model_path="minilm")
        assert not stale  # every stale read was made
        assert loser.collection == winner.collection == real(admin, alias)
        winner.upsert(make_points(4))
        assert loser.count() == 4
        assert StoreOpener.recorded_model(loser) == "minilm"
        winner.close()
        loser.close()
    finally:
        admin.delete_collection(collection_name(alias, v1))
        admin.close()


def test_version_verdict_names_the_supported_range() -> None:
    level, message = version_verdict("1.16.3", "http://q:6333")
    assert level == logging.INFO and "1.16.3" in message and "supported" in message
    level, message = version_verdict("1.18.0", "http://q:6333")
    assert level == logging.INFO
    level, message = version_verdict("1.21.2", "http://q:6333")
    assert level == logging.WARNING and "newer" in message and "1.16 to 1.18" in message
    level, message = version_verdict("dev", "http://q:6333")
    assert level == logging.WARNING
    with pytest.raises(UnsupportedServer, match="1.15.2.*upgrade"):
        version_verdict("1.15.2", "http://q:6333")


@pytest.mark.qdrant_server
def test_connect_says_the_server_version_once(
    qdrant_server: QdrantEndpoint,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    recwarn: pytest.WarningsRecorder,
) -> None:
    monkeypatch.setattr(qdrant_remote, "_reported", set())
    with caplog.at_level(logging.INFO, logger=qdrant_remote.__name__):
        for transport in ("grpc", "rest", "grpc"):
            server_client(qdrant_server, transport).close()
    said = [r for r in caplog.records if r.name == qdrant_remote.__name__ and "version" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert said[0].levelno == logging.INFO and "supported" in said[0].getMessage()
    # qdrant-client's own warning (minor versions apart) is not shown: ours replaces it.
    assert not [w for w in recwarn if "incompatible" in str(w.message)]


@pytest.mark.parametrize("backend", CLIENTS)
def test_a_handover_mark_and_the_recorded_model_live_with_the_collection(
    make_store: StoreFactory, backend: str
) -> None:
    old = make_store(backend, "handover-old")
    assert isinstance(old, QdrantClientStore)
    new = QdrantClientStore(dimension=DIM, collection=f"{old.collection}-new", client=old._client)
    assert isinstance(old, SharedCollection) and isinstance(new, SharedCollection)
    alias = f"alias-{uuid.uuid4().hex[:6]}"
    old.promote(alias, model_path="minilm")
    assert old.alias_points_at(alias) == old.collection
    assert old.recorded_model_path() == "minilm" and old.handover() is None
    # A reindex marks the old collection before its final pass; a writer reads the mark.
    old.begin_handover(new.collection, 1234.5)
    assert old.handover() == Handover(new.collection, 1234.5)
    new.promote(alias, model_path="/models/other")
    assert new.alias_points_at(alias) == new.collection == old.alias_points_at(alias)
    assert new.recorded_model_path() == "/models/other"
    assert old.handover() == Handover(new.collection, 1234.5)  # kept: a late writer there must follow
    # A failed reindex clears its mark; a rollback (promote back) clears the stale one too.
    new.begin_handover(old.collection, 99.0)
    new.end_handover()
    assert new.handover() is None
    old.promote(alias, model_path="minilm")
    assert old.handover() is None and old.recorded_model_path() == "minilm"
