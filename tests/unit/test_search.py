"""Searcher: modes, example queries, cursors, validation, grouping, version consistency.

A real embedded store (Qdrant Edge) and the real lexical encoder; the
embedder is a deterministic bag-of-words projection so tests need no model.
"""

from __future__ import annotations

import hashlib
import pathlib
import time
from collections.abc import Iterator

import numpy as np
import pytest

from understanding.core.search import (
    MAX_OFFSET,
    Searcher,
    SearchMode,
    SearchQuery,
    decode_cursor,
    encode_cursor,
)
from understanding.domain import Analysis, Chunk, InvalidInput, LimitExceeded, Modality, ModelRef, NotFound, Tag
from understanding.sinks.edge_store import EdgeVectorStore
from understanding.sinks.store import PointFilter, analysis_points

DIM = 32
MODEL = ModelRef("bag-of-words", "1")


def embed(text: str) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    for word in text.lower().split():
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        v += np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    if not v.any():
        v[0] = 1.0
    return v / np.linalg.norm(v)


async def embed_query(text: str) -> np.ndarray:
    return embed(text)


def analysis(
    tenant: str, media: str, texts: list[str], *, version: int = 1, tags: dict[int, float] | None = None
) -> Analysis:
    chunks = tuple(
        Chunk(
            index=i,
            text=t,
            embedding=embed(t),
            tags=(Tag("topic.sports", "topic", (tags or {}).get(i, 0.0)),) if i in (tags or {}) else (),
            start_s=float(i * 10),
            end_s=float(i * 10 + 10),
        )
        for i, t in enumerate(texts)
    )
    return Analysis(tenant, media, Modality.TEXT, None, (), chunks, MODEL, time.time(), version)


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[EdgeVectorStore]:
    s = EdgeVectorStore(tmp_path, dimension=DIM, collection="c")
    corpus = {
        "guide": ["how to tune a violin before a concert", "cleaning the violin strings", "storing instruments safely"],
        "orders": ["order QZX-7781 was delayed at customs", "order status for the spring catalogue"],
        "match": ["the football match ended two to one", "the crowd cheered the late goal"],
        "weather": ["heavy rain expected over the harbour tonight"],
    }
    for media, texts in corpus.items():
        a = analysis("acme", media, texts, tags={0: 0.9, 1: 0.4} if media == "match" else None)
        s.replace_media("acme", media, analysis_points(a), a.version)
    other = analysis("rival", "secret", ["the rival roadmap for order QZX-7781 and the violin launch"])
    s.replace_media("rival", "secret", analysis_points(other), other.version)
    yield s
    s.close()


@pytest.fixture
def searcher(store: EdgeVectorStore) -> Searcher:
    return Searcher(store, embed_query)


ACME = PointFilter(tenant="acme")


async def test_text_defaults_to_hybrid_and_reports_matched_terms(searcher: Searcher) -> None:
    page = await searcher.search(SearchQuery(text="QZX-7781", top_k=3), ACME)
    assert page.mode is SearchMode.HYBRID
    top = page.hits[0]
    assert top.point.payload["media_id"] == "orders" and top.point.payload["chunk_index"] == 0
    assert top.matched_terms == ("7781", "qzx")
    dense = await searcher.search(SearchQuery(text="QZX-7781", top_k=3, mode=SearchMode.DENSE), ACME)
    assert dense.mode is SearchMode.DENSE


async def test_matched_terms_follow_stems(searcher: Searcher) -> None:
    page = await searcher.search(SearchQuery(text="tuning violins", top_k=3), ACME)
    matched = {h.point.payload["text"]: h.matched_terms for h in page.hits}
    assert matched["how to tune a violin before a concert"] == ("tuning", "violins")
    assert matched["cleaning the violin strings"] == ("violins",)


async def test_vector_queries_are_dense_and_hybrid_needs_terms(searcher: Searcher) -> None:
    page = await searcher.search(SearchQuery(vector=embed("cleaning the violin strings").tolist(), top_k=1), ACME)
    assert page.mode is SearchMode.DENSE and page.hits[0].point.payload["text"] == "cleaning the violin strings"
    with pytest.raises(InvalidInput) as err:
        await searcher.search(SearchQuery(vector=embed("x").tolist(), mode=SearchMode.HYBRID), ACME)
    assert err.value.field == "mode"


@pytest.mark.parametrize("mode", [SearchMode.AUTO, SearchMode.HYBRID])
async def test_more_like_this_excludes_the_example_media(searcher: Searcher, mode: SearchMode) -> None:
    page = await searcher.search(
        SearchQuery(example_media_id="guide", example_chunk_index=1, top_k=10, mode=mode), ACME
    )
    media = [h.point.payload["media_id"] for h in page.hits]
    assert media and "guide" not in media and "secret" not in media


async def test_example_of_another_tenant_is_not_found(searcher: Searcher) -> None:
    with pytest.raises(NotFound) as err:
        await searcher.search(SearchQuery(example_media_id="secret"), ACME)
    assert err.value.field == "example.media_id"
    with pytest.raises(NotFound) as err:
        await searcher.search(SearchQuery(example_media_id="guide", example_chunk_index=7), ACME)
    assert err.value.field == "example.chunk_index"


async def test_tenant_never_leaks_whatever_the_filter(searcher: Searcher) -> None:
    for flt in (ACME, PointFilter(tenant="acme", media_ids=("secret",)), PointFilter(tenant="acme", metadata={})):
        for query in (
            SearchQuery(text="rival roadmap QZX-7781 violin launch", top_k=100),
            SearchQuery(vector=embed("the rival roadmap for order QZX-7781 and the violin launch").tolist(), top_k=100),
        ):
            page = await searcher.search(query, flt)
            assert all(h.point.payload["tenant"] == "acme" for h in page.hits)


async def test_cursor_pages_tile_the_ranking(searcher: Searcher) -> None:
    full = await searcher.search(SearchQuery(text="violin order match rain", top_k=8), ACME)
    ids, cursor = [], None
    for _ in range(10):
        page = await searcher.search(SearchQuery(text="violin order match rain", top_k=3, cursor=cursor), ACME)
        ids += [h.point.id for h in page.hits]
        cursor = page.next_cursor
        if not cursor:
            break
    assert ids == [h.point.id for h in full.hits]
    assert decode_cursor(full.next_cursor or encode_cursor(8, "x"))[0] == 8 or not full.next_cursor


async def test_cursor_is_bound_to_its_query(searcher: Searcher) -> None:
    page = await searcher.search(SearchQuery(text="violin", top_k=2), ACME)
    assert page.next_cursor and "violin" not in page.next_cursor  # opaque
    # Same query, other page size: fine.
    await searcher.search(SearchQuery(text="violin", top_k=5, cursor=page.next_cursor), ACME)
    changes = [
        (SearchQuery(text="viola", top_k=2, cursor=page.next_cursor), ACME),
        (SearchQuery(text="violin", top_k=2, cursor=page.next_cursor, mode=SearchMode.DENSE), ACME),
        (
            SearchQuery(text="violin", top_k=2, cursor=page.next_cursor),
            PointFilter(tenant="acme", media_ids=("guide",)),
        ),
        (SearchQuery(text="violin", top_k=2, cursor=page.next_cursor), PointFilter(tenant="rival")),
        (SearchQuery(text="violin", top_k=2, cursor=page.next_cursor, score_threshold=0.2), ACME),
    ]
    for query, flt in changes:
        with pytest.raises(InvalidInput) as err:
            await searcher.search(query, flt)
        assert err.value.field == "cursor" and "different query" in err.value.message
    for bad in ("not-a-cursor", "e30", encode_cursor(MAX_OFFSET + 1, "x"), "!!!"):
        with pytest.raises(InvalidInput) as err:
            await searcher.search(SearchQuery(text="violin", cursor=bad), ACME)
        assert err.value.field == "cursor"
    with pytest.raises(InvalidInput) as err:
        await searcher.search(SearchQuery(text="violin", offset=2, cursor=page.next_cursor), ACME)
    assert err.value.field == "cursor"


async def test_score_threshold_in_both_modes(searcher: Searcher) -> None:
    dense = await searcher.search(
        SearchQuery(text="football match", top_k=20, score_threshold=0.5, mode=SearchMode.DENSE), ACME
    )
    assert dense.hits and all(h.point.score >= 0.5 for h in dense.hits)
    # Hybrid: the threshold bounds the dense candidates; exact-term matches stay.
    hybrid = await searcher.search(SearchQuery(text="QZX-7781", top_k=20, score_threshold=0.99), ACME)
    assert [h.point.payload["media_id"] for h in hybrid.hits] == ["orders"]


async def test_min_tag_score_filter(searcher: Searcher) -> None:
    loose = await searcher.search(
        SearchQuery(text="match goal", top_k=20),
        PointFilter(tenant="acme", tags_any=("topic.sports",), tags_min_score=0.3),
    )
    strict = await searcher.search(
        SearchQuery(text="match goal", top_k=20),
        PointFilter(tenant="acme", tags_any=("topic.sports",), tags_min_score=0.5),
    )
    assert len(loose.hits) == 2 and [h.point.payload["chunk_index"] for h in strict.hits] == [0]


async def test_group_by_media_with_hybrid(searcher: Searcher) -> None:
    page = await searcher.search(SearchQuery(text="violin strings concert", top_k=3, group_by_media=True), ACME)
    media = [h.point.payload["media_id"] for h in page.hits]
    assert media[0] == "guide" and len(media) == len(set(media)) == 3
    assert page.hits[0].group_hits == 3 and page.hits[0].matched_terms


@pytest.mark.parametrize(
    ("query", "flt", "field"),
    [
        (SearchQuery(), ACME, "query"),
        (SearchQuery(text="a", vector=[1.0]), ACME, "query"),
        (SearchQuery(text="   "), ACME, "text"),
        (SearchQuery(text="x", top_k=0), ACME, "top_k"),
        (SearchQuery(text="x", top_k=101), ACME, "top_k"),
        (SearchQuery(text="x", offset=MAX_OFFSET + 1), ACME, "offset"),
        (SearchQuery(text="x", score_threshold=float("nan")), ACME, "score_threshold"),
        (SearchQuery(vector=[0.1] * (DIM - 1)), ACME, "vector"),
        (SearchQuery(vector=[float("nan")] * DIM), ACME, "vector"),
        (SearchQuery(vector=[0.0] * DIM), ACME, "vector"),
        (SearchQuery(text="x"), PointFilter(tenant="acme", tags_min_score=1.5), "filter.tags.min_score"),
        (SearchQuery(text="x"), PointFilter(tenant="acme", tags_min_score=float("nan")), "filter.tags.min_score"),
        (
            SearchQuery(text="x"),
            PointFilter(tenant="acme", created_after=20.0, created_before=10.0),
            "filter.created_before",
        ),
        (
            SearchQuery(text="x"),
            PointFilter(tenant="acme", overlaps_start_s=20.0, overlaps_end_s=10.0),
            "filter.time_range",
        ),
        (SearchQuery(text="x"), PointFilter(tenant="acme", overlaps_start_s=-1.0), "filter.time_range.start_s"),
        (SearchQuery(text="x"), PointFilter(tenant="acme", languages=("english!",)), "filter.languages[0]"),
    ],
)
async def test_bad_queries_name_the_field(searcher: Searcher, query: SearchQuery, flt: PointFilter, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        await searcher.search(query, flt)
    assert err.value.field == field


async def test_overlong_text_is_a_limit(searcher: Searcher) -> None:
    with pytest.raises(LimitExceeded) as err:
        await searcher.search(SearchQuery(text="word " * 1000), ACME)
    assert err.value.field == "text"


async def test_reanalysis_is_atomic_for_search(store: EdgeVectorStore, searcher: Searcher) -> None:
    newer = analysis("acme", "guide", ["the violin guide second edition"], version=2)
    store.stage(analysis_points(newer))
    before = await searcher.search(
        SearchQuery(text="violin", top_k=10), PointFilter(tenant="acme", media_ids=("guide",))
    )
    assert {h.point.payload["version"] for h in before.hits} == {1} and len(before.hits) == 3
    store.commit_media("acme", "guide", 2)
    after = await searcher.search(
        SearchQuery(text="violin", top_k=10), PointFilter(tenant="acme", media_ids=("guide",))
    )
    assert [h.point.payload["text"] for h in after.hits] == ["the violin guide second edition"]
