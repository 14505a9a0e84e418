"""Search over the caller's tenant: turn a query into ranked points.

Three ways to ask (text, a raw vector, or an example chunk: "more like
this", which never returns the example's own media) and two ways to rank:
dense (cosine over the embeddings) or hybrid, the default for text, which
fuses the dense ranking with a lexical BM25 ranking by reciprocal rank
(RRF), so exact names, rare words and codes are found where the embedding
alone misses them.

Paging is by offset or by the opaque cursor a page returns; a cursor is bound
to its query (text/vector/example, mode, filter, threshold, grouping), so
reusing it with another query is an error rather than a silently wrong page.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import enum
import hashlib
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from understanding.batching import BatcherClosed
from understanding.domain import InvalidInput, Language, LimitExceeded, NotFound, Vector
from understanding.sinks import lexical
from understanding.sinks.lexical import LexicalEncoder, SparseTerms
from understanding.sinks.store import PointFilter, StoredPoint, VectorStore, newest_versions

MAX_TOP_K = 100
MAX_OFFSET = 10_000
MAX_QUERY_CHARS = 2_000
# Group-by-media ranks groups among this many best points at most.
MAX_GROUP_FETCH = 1_000
_CURSOR_VERSION = 1
# ISO 639 code, optionally with a region/script subtag, as stored in `language`.
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")


class SearchMode(enum.Enum):
    AUTO = "auto"  # hybrid for text (and nothing else), dense otherwise
    DENSE = "dense"
    HYBRID = "hybrid"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str | None = None
    vector: Sequence[float] | None = None
    example_media_id: str | None = None
    example_chunk_index: int = 0
    top_k: int = 10
    offset: int = 0
    cursor: str | None = None
    score_threshold: float | None = None
    group_by_media: bool = False
    with_vectors: bool = False
    mode: SearchMode = SearchMode.AUTO


@dataclass(frozen=True, slots=True)
class Hit:
    point: StoredPoint
    matched_terms: tuple[str, ...]
    group_hits: int = 1


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: list[Hit]
    # Pass back as `SearchQuery.cursor` for the next page; "" when there is none.
    next_cursor: str
    mode: SearchMode


@dataclass(frozen=True, slots=True)
class _Resolved:
    vector: Vector
    lexical: SparseTerms | None
    flt: PointFilter


class Searcher:
    def __init__(
        self,
        store: VectorStore,
        embed_query: Callable[[str], Awaitable[Vector]],
        *,
        lexical_encoder: LexicalEncoder | None = None,
        detect_language: Callable[[str], Language] | None = None,
    ) -> None:
        self._store = store
        self._embed_query = embed_query
        self._lexical = lexical_encoder or lexical.encoder()
        # A text query's language decides whether its terms match every language or
        # only its own (the cross-lingual gate in sinks/lexical.py).
        self._detect_language = detect_language
        self._generation = 0

    def rebind(self, store: VectorStore, embed_query: Callable[[str], Awaitable[Vector]]) -> None:
        """Search `store` with queries embedded by `embed_query` from now on (online reindex).

        A search under way when this is called runs again on the new pair, so a
        query vector is never searched in another model's collection.
        """
        self._store, self._embed_query = store, embed_query
        self._generation += 1

    async def search(self, query: SearchQuery, flt: PointFilter) -> SearchPage:
        if not 1 <= query.top_k <= MAX_TOP_K:
            raise InvalidInput(f"must be between 1 and {MAX_TOP_K}", field="top_k")
        if query.score_threshold is not None and not math.isfinite(query.score_threshold):
            raise InvalidInput("must be a finite number", field="score_threshold")
        validate_filter(flt)
        mode = self._mode(query)
        fingerprint = query_fingerprint(query, flt, mode)
        offset = self._offset(query, fingerprint)
        if query.group_by_media:
            fetch, skip = min(MAX_GROUP_FETCH, (offset + query.top_k) * 10), 0
        else:
            fetch, skip = query.top_k, offset
        while True:
            generation, store = self._generation, self._store
            try:
                resolved = await self._resolve(query, flt, mode)
                points = await asyncio.to_thread(
                    store.search,
                    resolved.vector,
                    resolved.flt,
                    limit=fetch,
                    offset=skip,
                    score_threshold=query.score_threshold,
                    with_vectors=query.with_vectors,
                    lexical=resolved.lexical,
                )
            except BatcherClosed:
                if generation == self._generation:
                    raise
                continue
            if generation == self._generation:
                break  # else the model and store were swapped meanwhile: ask again
        # A re-analysis being published can show both versions of a media for
        # an instant: keep the newest (see VectorStore.commit_media).
        points = newest_versions(points)
        text = query.text or ""
        if query.group_by_media:
            hits = self._group(points, text, query.top_k, offset)
        else:
            hits = [Hit(p, self._matched(text, p)) for p in points]
        next_offset = offset + len(hits)
        more = len(hits) == query.top_k and next_offset <= MAX_OFFSET
        return SearchPage(hits, encode_cursor(next_offset, fingerprint) if more else "", mode)

    # ------------------------------------------------------------ parts
    @staticmethod
    def _mode(query: SearchQuery) -> SearchMode:
        given = [x for x in (query.text is not None, query.vector is not None, query.example_media_id is not None) if x]
        if len(given) != 1:
            raise InvalidInput("exactly one of text, vector or example is required", field="query")
        if query.mode is SearchMode.AUTO:
            return SearchMode.HYBRID if query.text is not None else SearchMode.DENSE
        if query.mode is SearchMode.HYBRID and query.vector is not None:
            raise InvalidInput("hybrid search needs a text or example query; a raw vector has no terms", field="mode")
        return query.mode

    @staticmethod
    def _offset(query: SearchQuery, fingerprint: str) -> int:
        if not query.cursor:
            if not 0 <= query.offset <= MAX_OFFSET:
                raise InvalidInput(f"must be between 0 and {MAX_OFFSET}", field="offset")
            return query.offset
        if query.offset:
            raise InvalidInput("give either offset or cursor, not both", field="cursor")
        offset, bound_to = decode_cursor(query.cursor)
        if bound_to != fingerprint:
            raise InvalidInput(
                "belongs to a different query (text, vector, example, mode, filter, threshold or grouping changed)",
                field="cursor",
            )
        return offset

    async def _resolve(self, query: SearchQuery, flt: PointFilter, mode: SearchMode) -> _Resolved:
        hybrid = mode is SearchMode.HYBRID
        if query.text is not None:
            text = query.text.strip()
            if not text:
                raise InvalidInput("must not be empty", field="text")
            if len(text) > MAX_QUERY_CHARS:
                raise LimitExceeded(f"{len(text)} characters exceed the limit of {MAX_QUERY_CHARS}", field="text")
            vector = await self._embed_query(text)
            if not hybrid:
                return _Resolved(vector, None, flt)
            language = self._detect_language(text) if self._detect_language is not None else None
            return _Resolved(vector, self._lexical.query(text, language), flt)
        if query.vector is not None:
            values = np.asarray(list(query.vector), dtype=np.float32)
            if values.shape != (self._store.dimension,):
                raise InvalidInput(f"must have {self._store.dimension} values, got {values.size}", field="vector")
            if not np.all(np.isfinite(values)):
                raise InvalidInput("must contain only finite numbers", field="vector")
            norm = float(np.linalg.norm(values))
            if norm == 0:
                raise InvalidInput("must not be the zero vector", field="vector")
            if not math.isfinite(norm):  # finite values whose squares overflow float32
                raise InvalidInput("is too long: its length overflows (scale it down)", field="vector")
            return _Resolved(values / norm, None, flt)
        assert query.example_media_id is not None
        media = query.example_media_id
        # Scoped to the caller's tenant: another tenant's media is simply not found.
        points = await asyncio.to_thread(self._store.media_points, flt.tenant, media, with_vectors=True)
        if not points:
            raise NotFound(f"no media {media!r}", field="example.media_id")
        for point in points:
            if int(point.payload.get("chunk_index", -1)) == query.example_chunk_index and point.vector is not None:
                # The example's own language: its terms match documents in that language.
                language = Language(str(point.payload.get("language", "und")), 1.0)
                terms = self._lexical.query(str(point.payload.get("text", "")), language) if hybrid else None
                others = dataclasses.replace(flt, exclude_media_ids=(*flt.exclude_media_ids, media))
                return _Resolved(np.asarray(point.vector, dtype=np.float32), terms, others)
        raise NotFound(
            f"media {media!r} has no chunk {query.example_chunk_index} (it has {len(points)})",
            field="example.chunk_index",
        )

    def _matched(self, text: str, point: StoredPoint) -> tuple[str, ...]:
        if not text:
            return ()
        return self._lexical.matched_terms(text, str(point.payload.get("text", "")))

    def _group(self, points: list[StoredPoint], text: str, top_k: int, offset: int) -> list[Hit]:
        best: dict[str, StoredPoint] = {}
        counts: dict[str, int] = {}
        for p in points:
            media = str(p.payload.get("media_id"))
            counts[media] = counts.get(media, 0) + 1
            if media not in best:
                best[media] = p
        ordered = list(best.values())[offset : offset + top_k]
        return [Hit(p, self._matched(text, p), counts[str(p.payload.get("media_id"))]) for p in ordered]


# ---------------------------------------------------------------- validation
def validate_filter(flt: PointFilter) -> None:
    """Reject malformed filter values, naming the request field."""
    for i, code in enumerate(flt.languages):
        if not _LANGUAGE_CODE.match(code):
            raise InvalidInput(
                f"{code[:16]!r} is not a language code like 'en' or 'und'", field=f"filter.languages[{i}]"
            )
    if flt.tags_min_score is not None and not (math.isfinite(flt.tags_min_score) and 0.0 <= flt.tags_min_score <= 1.0):
        raise InvalidInput("must be between 0 and 1", field="filter.tags.min_score")
    for name, value in (("filter.created_after", flt.created_after), ("filter.created_before", flt.created_before)):
        if value is not None and not math.isfinite(value):
            raise InvalidInput("must be a valid time", field=name)
    if flt.created_after is not None and flt.created_before is not None and flt.created_after > flt.created_before:
        raise InvalidInput("created_after is later than created_before", field="filter.created_before")
    for name, value in (
        ("filter.time_range.start_s", flt.overlaps_start_s),
        ("filter.time_range.end_s", flt.overlaps_end_s),
    ):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise InvalidInput("must be a finite number of seconds >= 0", field=name)
    if (
        flt.overlaps_start_s is not None
        and flt.overlaps_end_s is not None
        and flt.overlaps_start_s > flt.overlaps_end_s
    ):
        raise InvalidInput("start_s is after end_s", field="filter.time_range")


# ---------------------------------------------------------------- cursors
def query_fingerprint(query: SearchQuery, flt: PointFilter, mode: SearchMode) -> str:
    """What a cursor is bound to: everything that decides the ranked list (not the page size)."""
    shape = {
        "mode": mode.value,
        "text": query.text,
        "example": [query.example_media_id, query.example_chunk_index] if query.example_media_id else None,
        "threshold": query.score_threshold,
        "group": query.group_by_media,
        "filter": {
            k: (dict(sorted(v.items())) if isinstance(v, Mapping) else v)
            for k, v in ((f.name, getattr(flt, f.name)) for f in dataclasses.fields(flt))
        },
    }
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True, default=list).encode())
    if query.vector is not None:
        digest.update(np.asarray(list(query.vector), dtype=np.float32).tobytes())
    return digest.hexdigest()[:20]


def encode_cursor(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"v": _CURSOR_VERSION, "o": offset, "q": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """(offset, query fingerprint) from a cursor; InvalidInput if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        doc = json.loads(raw)
        offset, bound_to = doc["o"], doc["q"]
        if doc.get("v") != _CURSOR_VERSION or not isinstance(offset, int) or not isinstance(bound_to, str):
            raise ValueError(cursor)
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("is not a cursor returned by Search", field="cursor") from None
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput("is not a cursor returned by Search", field="cursor")
    return offset, bound_to
