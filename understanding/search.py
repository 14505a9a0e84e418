"""Semantic search over the caller's tenant: turn a query into nearest points."""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

import numpy as np

from understanding.domain import InvalidInput, NotFound, Vector
from understanding.sinks.store import PointFilter, StoredPoint, VectorStore

MAX_TOP_K = 100
MAX_OFFSET = 10_000
_TERM = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str | None = None
    vector: Sequence[float] | None = None
    example_media_id: str | None = None
    example_chunk_index: int = 0
    top_k: int = 10
    offset: int = 0
    score_threshold: float | None = None
    group_by_media: bool = False
    with_vectors: bool = False


@dataclass(frozen=True, slots=True)
class Hit:
    point: StoredPoint
    matched_terms: tuple[str, ...]
    group_hits: int = 1


class Searcher:
    def __init__(self, store: VectorStore, embed_query: Callable[[str], Awaitable[Vector]]) -> None:
        self._store = store
        self._embed_query = embed_query

    async def search(self, query: SearchQuery, flt: PointFilter) -> list[Hit]:
        if not 1 <= query.top_k <= MAX_TOP_K:
            raise InvalidInput(f"must be between 1 and {MAX_TOP_K}", field="top_k")
        if query.offset > MAX_OFFSET:
            raise InvalidInput(f"must be at most {MAX_OFFSET}", field="offset")
        vector = await self._query_vector(query, flt.tenant)
        fetch = query.top_k if not query.group_by_media else min(MAX_TOP_K * 10, query.top_k * 10)
        points = await asyncio.to_thread(
            self._store.search,
            vector,
            flt,
            limit=fetch,
            offset=query.offset if not query.group_by_media else 0,
            score_threshold=query.score_threshold,
            with_vectors=query.with_vectors,
        )
        terms = _terms(query.text or "")
        if query.group_by_media:
            return _group(points, terms, query.top_k, query.offset)
        return [Hit(p, _matched(terms, p)) for p in points]

    async def _query_vector(self, query: SearchQuery, tenant: str) -> Vector:
        given = [x for x in (query.text is not None, query.vector is not None, query.example_media_id is not None) if x]
        if len(given) != 1:
            raise InvalidInput("exactly one of text, vector or example is required", field="query")
        if query.text is not None:
            if not query.text.strip():
                raise InvalidInput("must not be empty", field="text")
            return await self._embed_query(query.text)
        if query.vector is not None:
            values = np.asarray(list(query.vector), dtype=np.float32)
            if values.shape != (self._store.dimension,):
                raise InvalidInput(f"must have {self._store.dimension} values, got {values.size}", field="vector")
            if not np.all(np.isfinite(values)):
                raise InvalidInput("must contain only finite numbers", field="vector")
            norm = float(np.linalg.norm(values))
            if norm == 0 or not math.isfinite(norm):
                raise InvalidInput("must not be the zero vector", field="vector")
            return values / norm
        assert query.example_media_id is not None
        points = await asyncio.to_thread(self._store.media_points, tenant, query.example_media_id, with_vectors=True)
        for point in points:
            if int(point.payload.get("chunk_index", -1)) == query.example_chunk_index and point.vector is not None:
                return np.asarray(point.vector, dtype=np.float32)
        raise NotFound(f"no media {query.example_media_id!r} chunk {query.example_chunk_index}", field="example")


def _terms(text: str) -> set[str]:
    return {t.lower() for t in _TERM.findall(text) if len(t) > 1}


def _matched(terms: set[str], point: StoredPoint) -> tuple[str, ...]:
    if not terms:
        return ()
    words = _terms(str(point.payload.get("text", "")))
    return tuple(sorted(terms & words))


def _group(points: list[StoredPoint], terms: set[str], top_k: int, offset: int) -> list[Hit]:
    best: dict[str, StoredPoint] = {}
    counts: dict[str, int] = {}
    for p in points:
        media = str(p.payload.get("media_id"))
        counts[media] = counts.get(media, 0) + 1
        if media not in best:
            best[media] = p
    ordered = list(best.values())[offset : offset + top_k]
    return [Hit(p, _matched(terms, p), counts[str(p.payload.get("media_id"))]) for p in ordered]
