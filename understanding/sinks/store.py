"""The vector store interface and the payload layout shared by its backends.

Backends (embedded Qdrant Edge, remote Qdrant through qdrant-client) implement
`VectorStore`; everything above speaks only these dataclasses.

Collection layout: a named dense vector (`dense`, cosine) and a named sparse
vector (`bm25`, IDF modifier) of the chunk's lexical terms, so a query can be
dense, lexical or both fused with RRF. Each collection holds the vectors of one
embedding model and is named `<alias>__<model>__<model version>`; the service
reads and writes through the alias (`understanding`), which `reindex` moves to
a new model's collection once it is filled.

Re-analysis is atomic for readers (see `VectorStore.commit_media`): a media's
new points are written `pending` (invisible), then published as a whole.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from understanding.domain import Analysis, Decision, ModelRef, Vector, point_id
from understanding.sinks import lexical
from understanding.sinks.lexical import SparseTerms

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"

# Payload fields with an index (filtered on by search). `tag_items[]` holds
# {label, score} objects so a nested filter can ask "label X with score >= s".
KEYWORD_FIELDS = (
    "tenant",
    "media_id",
    "modality",
    "language",
    "tags",
    "embedding_model",
    "point_id",
    "tag_items[].label",
    "moderation_decision",
    "moderation_categories",
    "speakers",
)
FLOAT_FIELDS = ("start_s", "end_s", "created_at", "tag_items[].score")
INTEGER_FIELDS = ("chunk_index", "version", "pending")

# HNSW for the dense vector. Tuned with benchmarks/search_bench.py: 100k
# MiniLM vectors, recall@10 >= 0.95 with a tenant filter at these settings.
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
# Search-time beam width; raised to the number of candidates asked for.
SEARCH_HNSW_EF = 64

# RRF: score = sum over rankings of 1 / (k + rank), rank from 1. 60 is the
# constant of the original paper and Qdrant's default.
RRF_K = 60
# Each ranking of a hybrid query contributes this many candidates at least, in
# power-of-two windows, so consecutive pages inside a window fuse the same lists.
HYBRID_MIN_CANDIDATES = 128

# The staged/published flag (an integer: qdrant-edge's bool matching is unreliable).
PENDING = 1
PUBLISHED = 0


@dataclass(frozen=True, slots=True)
class PointRecord:
    id: str
    vector: Vector
    payload: Mapping[str, Any]
    # Lexical terms; None means "derive them from payload['text']".
    sparse: SparseTerms | None = None


@dataclass(frozen=True, slots=True)
class StoredPoint:
    id: str
    score: float
    payload: Mapping[str, Any]
    vector: Sequence[float] | None = None


@dataclass(frozen=True, slots=True)
class PointFilter:
    """Conditions every returned point satisfies. `tenant` is mandatory on purpose."""

    tenant: str
    modalities: tuple[str, ...] = ()
    media_ids: tuple[str, ...] = ()
    exclude_media_ids: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    # With a minimum, a tag only counts when its score is >= it; alone, it asks
    # for at least one tag scoring >= it.
    tags_min_score: float | None = None
    created_after: float | None = None
    created_before: float | None = None
    overlaps_start_s: float | None = None
    overlaps_end_s: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Moderation: the media's decision is one of these ("allow", "review", "block"); the
    # media has one of these categories at REVIEW or BLOCK.
    moderation_decisions: tuple[str, ...] = ()
    moderation_categories: tuple[str, ...] = ()
    # At least one of these speakers speaks in the point (payload `speakers`).
    speakers: tuple[str, ...] = ()


class VectorStore(Protocol):
    """What the service needs from Qdrant. Blocking calls: run them off the event loop.

    Every read sees only published points (never `pending` ones) and, per
    media, one version: see `commit_media`.
    """

    dimension: int
    # The physical collection (one embedding model); `alias` names it for readers.
    collection: str

    def upsert(self, points: Sequence[PointRecord]) -> None:
        """Write points visible at once (bulk loads, reindex). Same ids overwrite."""
        ...

    def stage(self, points: Sequence[PointRecord]) -> None:
        """Write points `pending`: stored, invisible to every read until `commit_media`."""
        ...

    def commit_media(self, tenant: str, media_id: str, version: int) -> bool:
        """Publish the media's staged `version` and drop its older versions.

        Why readers never see a mix: point ids include the version, so staging
        never touches the published points. Publishing flips `pending` on the
        version's points in one filtered update, then deletes older versions.
        While that happens a reader may meet both versions, so every read keeps
        only the newest version of each media it sees (`newest_versions`), and
        `media_points` serves the newest version that has any published point,
        with all of that version's points (they were all written before the
        flip began). A reader thus sees the old version or the new one, whole.
        Returns False, dropping the staged points, when a newer version is
        already published (a slow writer lost the race).
        """
        ...

    def replace_media(self, tenant: str, media_id: str, points: Sequence[PointRecord], version: int) -> None:
        """`stage` the media's new points, then `commit_media`."""
        ...

    def search(
        self,
        vector: Vector,
        flt: PointFilter,
        *,
        limit: int,
        offset: int = 0,
        score_threshold: float | None = None,
        with_vectors: bool = False,
        lexical: SparseTerms | None = None,
        hnsw_ef: int | None = None,
    ) -> list[StoredPoint]:
        """Nearest points by the dense vector, or, with `lexical` terms, the RRF
        fusion of the dense and the lexical rankings (IDF over the tenant's
        points). `score_threshold` bounds the dense similarity; in a hybrid
        query it filters the dense candidates, lexical matches are kept."""
        ...

    def media_points(self, tenant: str, media_id: str, *, with_vectors: bool = False) -> list[StoredPoint]:
        """The media's published version, every chunk, in chunk order."""
        ...

    def delete_media(self, tenant: str, media_id: str) -> int:
        """Remove every point of the media (all versions, staged ones too); returns the visible count."""
        ...

    def count(self, tenant: str | None = None) -> int: ...

    def scan(self, *, batch_size: int = 256, with_payload: bool = True) -> Iterator[list[StoredPoint]]:
        """Every published point, in batches (for reindex)."""
        ...

    def delete_points(self, ids: Sequence[str]) -> None: ...

    def promote(self, alias: str, *, model_path: str = "") -> None:
        """Point `alias` at this collection, atomically for readers of the alias.

        `model_path` (the model directory, or `packaged`) is recorded with the
        alias where the backend can (the embedded store's pointer file)."""
        ...

    def optimize(self) -> None:
        """Build pending vector indexes now (a no-op where the server does it itself)."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- payload
def storage_point_id(public_id: str, version: int) -> str:
    """Qdrant id of a chunk's point in one analysis version.

    The public id (`domain.point_id`: tenant, media, modality, chunk) stays in
    the payload as `point_id` and is what clients see; the version in the
    storage id lets a re-analysis be staged next to the published points.
    A retry of the same version derives the same id, so it overwrites.
    """
    return str(uuid.uuid5(uuid.UUID(public_id), f"v{int(version)}"))


def analysis_points(analysis: Analysis) -> list[PointRecord]:
    """One point per chunk with the payload every consumer of the store relies on, and its
    lexical terms (scoped to the chunk's language: see sinks/lexical.py)."""
    points = []
    terms = lexical.encoder()
    for chunk in analysis.chunks:
        public = point_id(analysis.tenant, analysis.media_id, analysis.modality, chunk.index)
        language = chunk.language or analysis.language
        payload: dict[str, Any] = {
            "tenant": analysis.tenant,
            "media_id": analysis.media_id,
            "modality": analysis.modality.value,
            "chunk_index": chunk.index,
            "point_id": public,
            "text": chunk.text,
            "start_s": float(chunk.start_s),
            "end_s": float(chunk.end_s),
            "tags": [t.label for t in chunk.tags],
            "tag_scores": {t.label: t.score for t in chunk.tags},
            "tag_items": [{"label": t.label, "score": float(t.score)} for t in chunk.tags],
            "media_tags": [t.label for t in analysis.tags],
            "language": language.code if language else "und",
            "embedding_model": analysis.embedding_model.name,
            "embedding_model_version": analysis.embedding_model.version,
            "created_at": float(analysis.created_at),
            "version": int(analysis.version),
            "metadata": dict(analysis.metadata),
            "speakers": list(chunk.speakers),
        }
        payload.update(moderation_payload(analysis, chunk.index))
        payload.update({k: v for k, v in chunk.extra.items()})
        points.append(
            PointRecord(
                id=storage_point_id(public, analysis.version),
                vector=chunk.embedding,
                payload=payload,
                sparse=terms.document(chunk.text, payload["language"]),
            )
        )
    return points


def moderation_payload(analysis: Analysis, chunk_index: int) -> dict[str, Any]:
    """The media's decision and flagged categories (what search filters on), and those of
    them with evidence in this chunk (what a hit shows); nothing for an unmoderated media."""
    moderation = analysis.moderation
    if moderation is None:
        return {}
    flagged = [c for c in moderation.categories if c.severity is not Decision.ALLOW]
    return {
        "moderation_decision": moderation.decision.value,
        "moderation_categories": [c.category for c in flagged],
        "chunk_moderation_categories": [
            c.category for c in flagged if any(e.chunk_index == chunk_index for e in c.evidence)
        ],
        "moderation_policy": f"{moderation.policy}@{moderation.policy_version}",
    }


def public_point_id(point: StoredPoint) -> str:
    return str(point.payload.get("point_id") or point.id)


def _version(point: StoredPoint) -> int:
    return int(point.payload.get("version", 0))


def newest_versions(points: Sequence[StoredPoint]) -> list[StoredPoint]:
    """Keep, per media, only the points of the newest version present (order kept)."""
    newest: dict[tuple[Any, Any], int] = {}
    for p in points:
        key = (p.payload.get("tenant"), p.payload.get("media_id"))
        newest[key] = max(newest.get(key, _version(p)), _version(p))
    return [p for p in points if _version(p) == newest[(p.payload.get("tenant"), p.payload.get("media_id"))]]


def published_version(points: Sequence[StoredPoint]) -> list[StoredPoint]:
    """All stored points of one media -> its published version's points, in chunk order."""
    published = [_version(p) for p in points if int(p.payload.get("pending", PUBLISHED)) != PENDING]
    if not published:
        return []
    current = max(published)
    chosen = [p for p in points if _version(p) == current]
    chosen.sort(key=lambda p: int(p.payload.get("chunk_index", 0)))
    return chosen


def hybrid_window(needed: int) -> int:
    """Candidates per ranking for a hybrid query returning ranks [0, needed)."""
    window = HYBRID_MIN_CANDIDATES
    while window < needed:
        window *= 2
    return window


def rrf_page(
    rankings: Sequence[Sequence[tuple[str, float]]], offset: int, limit: int, *, k: int = RRF_K
) -> list[tuple[str, float]]:
    """Fuse (id, score) rankings by reciprocal rank and cut one page.

    Done here rather than in Qdrant so the order is deterministic: each ranking
    is ordered by score then id before ranks are taken (BM25 ties are common:
    equal-length chunks sharing a rare word), and equal fused scores are
    ordered by id, so pages never overlap and both backends agree. Scores are
    Qdrant's: sum of 1 / (k + rank), rank from 0.
    """
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, (pid, _) in enumerate(sorted(ranking, key=lambda s: (-s[1], s[0]))):
            fused[pid] = fused.get(pid, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda s: (-s[1], s[0]))[offset : offset + limit]


# ---------------------------------------------------------------- collections
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def collection_name(alias: str, model: ModelRef) -> str:
    """The physical collection holding `model`'s vectors behind `alias`."""
    return f"{alias}__{_UNSAFE.sub('-', model.name)}__{_UNSAFE.sub('-', model.version)}"


@dataclass(frozen=True, slots=True)
class Handover:
    """A reindex is moving the alias from this collection to `to`: until `until` (epoch
    seconds, the reindexer's clock), a write that lands here may be missed by its final pass."""

    to: str
    until: float


@runtime_checkable
class SharedCollection(Protocol):
    """A collection several processes write to (a Qdrant server): the online reindex marks
    the old collection before its final pass, so a writer in another process can tell that
    what it just wrote must be written again in the new collection (core/follow.py)."""

    collection: str

    def handover(self) -> Handover | None:
        """The reindex moving readers away from this collection, if one is under way."""
        ...

    def begin_handover(self, to: str, until: float) -> None: ...

    def end_handover(self) -> None: ...

    def alias_points_at(self, alias: str) -> str | None:
        """The collection `alias` names now."""
        ...

    def recorded_model_path(self) -> str:
        """The model directory (or packaged model name) recorded with this collection."""
        ...


@dataclass(frozen=True, slots=True)
class ReindexStats:
    embedded: int
    unchanged: int
    without_text: int
    removed: int
    seconds: float


def reembed_into(
    source: VectorStore,
    target: VectorStore,
    encode: Callable[[list[str]], Sequence[Vector]],
    model: ModelRef,
    *,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> ReindexStats:
    """Copy every published point of `source` into `target`, embedding its text with `encode`.

    Ids and payloads are kept (the payload's model fields name `model`), lexical
    terms recomputed (with the payload's language, so points indexed before
    language-scoped terms get them). Incremental: a point already in `target` has the same id,
    hence the same version and text, and is skipped; points gone from `source`
    are removed. Run it again to catch up with writes made meanwhile. Points
    without text (nothing to embed) are not copied.
    """
    started = time.perf_counter()
    terms = lexical.encoder()
    existing = {p.id for batch in target.scan(batch_size=1024, with_payload=False) for p in batch}
    seen: set[str] = set()
    embedded = unchanged = without_text = 0
    for batch in source.scan(batch_size=batch_size):
        seen.update(p.id for p in batch)
        todo = []
        for p in batch:
            if p.id in existing:
                unchanged += 1
            elif not str(p.payload.get("text", "")).strip():
                without_text += 1
            else:
                todo.append(p)
        if todo:
            vectors = encode([str(p.payload["text"]) for p in todo])
            target.upsert(
                [
                    PointRecord(
                        id=p.id,
                        vector=v,
                        payload={
                            **p.payload,
                            "embedding_model": model.name,
                            "embedding_model_version": model.version,
                            "pending": PUBLISHED,
                        },
                        sparse=terms.document(str(p.payload["text"]), str(p.payload.get("language", ""))),
                    )
                    for p, v in zip(todo, vectors, strict=True)
                ]
            )
            embedded += len(todo)
        if progress is not None:
            progress(len(batch))
    stale = sorted(existing - seen)
    for i in range(0, len(stale), 1024):
        target.delete_points(stale[i : i + 1024])
    return ReindexStats(embedded, unchanged, without_text, len(stale), time.perf_counter() - started)
