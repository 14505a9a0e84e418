"""Embedded vector store: Qdrant's own engine in-process (qdrant-edge-py).

Chosen over qdrant-client's local mode because it is the real engine (HNSW,
WAL, payload indexes, sparse vectors with IDF, RRF fusion): ~1.5 ms per
filtered search at 100k points here versus ~190 ms brute force. Durable across
restarts through its write-ahead log.

One shard directory per collection under the store root; Qdrant Edge has no
aliases, so an alias is a small JSON pointer file next to the shards
(`<alias>.alias.json`), replaced atomically with `os.replace`.

The HNSW graph is built by `optimize()`, which holds the GIL for its whole run
(seconds per 10k points on two cores): the store runs it when it opens a shard
with many unindexed points (start-up, before the service is SERVING), and bulk
loaders (reindex, benchmarks) call it explicitly.

Growth while serving: points written after the last build sit in the
appendable segment and are searched exactly (~0.2 us per point of the tenant).
Once `background_index_min_points` have been written, the store builds the
index aside without holding the GIL (`_build_index`): it copies the shard
(writes wait for the copy, reads go on), a child process loads the copy and
optimizes it, the store opens the optimized copy, replays the writes made
meanwhile, and swaps it in between two reads; the copy becomes the live
generation (`<collection>.gen-<n>`, named by `<collection>.live.json`) and the
old one is deleted. What still stalls the event loop is opening the new
generation (`EdgeShard.load` holds the GIL: ~25-50 us per point here) and the
replay; benchmarks/qdrant_server_bench.py measures it. A crash at any step
leaves either the old generation live (the copy is swept at the next open) or
the new one with every write replayed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import qdrant_edge as qe

from understanding.domain import Vector
from understanding.sinks import lexical
from understanding.sinks.edge_index_build import NOTHING_TO_DO
from understanding.sinks.lexical import SparseTerms
from understanding.sinks.store import (
    DENSE_VECTOR,
    FLOAT_FIELDS,
    HNSW_EF_CONSTRUCT,
    HNSW_M,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    PENDING,
    PUBLISHED,
    SEARCH_HNSW_EF,
    SPARSE_VECTOR,
    PointFilter,
    PointRecord,
    StoredPoint,
    hybrid_window,
    published_version,
    rrf_page,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

ALIAS_SUFFIX = ".alias.json"
# Names the directory holding a collection's live shard once the index has
# been rebuilt aside (absent: `<root>/<collection>`).
LIVE_SUFFIX = ".live.json"
# Opening a shard with at least this many points outside the HNSW index builds it.
OPTIMIZE_ON_OPEN_MIN_POINTS = 20_000
# Points written while serving after which the index is rebuilt aside. 20k
# unindexed points cost ~4 ms more per search of a tenant holding all of them.
BACKGROUND_INDEX_MIN_POINTS = 20_000
# Exact search cost per unindexed point of a tenant (measured here, 384-d), and
# the backlog past which a warning says searches are slow because of it.
EXACT_SEARCH_US_PER_POINT = 0.2
SLOW_UNINDEXED_POINTS = 100_000


def _tags(flt: PointFilter) -> list[Any]:
    if flt.tags_min_score is None:
        out: list[Any] = []
        if flt.tags_any:
            out.append(qe.FieldCondition("tags", match=qe.MatchAny(list(flt.tags_any))))
        out.extend(qe.FieldCondition("tags", match=qe.MatchValue(tag)) for tag in flt.tags_all)
        return out
    score = qe.FieldCondition("score", range=qe.RangeFloat(gte=flt.tags_min_score))

    def scored(label: Any | None) -> Any:
        inner: list[Any] = [score] if label is None else [qe.FieldCondition("label", match=label), score]
        return qe.NestedCondition("tag_items", qe.Filter(must=inner))

    out = [scored(qe.MatchValue(tag)) for tag in flt.tags_all]
    if flt.tags_any:
        out.append(scored(qe.MatchAny(list(flt.tags_any))))
    if not out:
        out.append(scored(None))
    return out


def build_filter(flt: PointFilter) -> qe.Filter:
    """The read filter: the caller's conditions, the tenant, and never a staged point."""
    must: list[Any] = [qe.FieldCondition("tenant", match=qe.MatchValue(flt.tenant))]
    if flt.modalities:
        must.append(qe.FieldCondition("modality", match=qe.MatchAny(list(flt.modalities))))
    if flt.media_ids:
        must.append(qe.FieldCondition("media_id", match=qe.MatchAny(list(flt.media_ids))))
    if flt.languages:
        must.append(qe.FieldCondition("language", match=qe.MatchAny(list(flt.languages))))
    must.extend(_tags(flt))
    if flt.created_after is not None or flt.created_before is not None:
        must.append(qe.FieldCondition("created_at", range=qe.RangeFloat(gte=flt.created_after, lte=flt.created_before)))
    if flt.overlaps_end_s is not None:
        must.append(qe.FieldCondition("start_s", range=qe.RangeFloat(lte=flt.overlaps_end_s)))
    if flt.overlaps_start_s is not None:
        must.append(qe.FieldCondition("end_s", range=qe.RangeFloat(gte=flt.overlaps_start_s)))
    for key, value in flt.metadata.items():
        must.append(qe.FieldCondition(f"metadata.{key}", match=qe.MatchValue(value)))
    if flt.moderation_decisions:
        must.append(qe.FieldCondition("moderation_decision", match=qe.MatchAny(list(flt.moderation_decisions))))
    if flt.moderation_categories:
        must.append(qe.FieldCondition("moderation_categories", match=qe.MatchAny(list(flt.moderation_categories))))
    if flt.speakers:
        must.append(qe.FieldCondition("speakers", match=qe.MatchAny(list(flt.speakers))))
    must_not: list[Any] = [qe.FieldCondition("pending", match=qe.MatchValue(PENDING))]
    if flt.exclude_media_ids:
        must_not.append(qe.FieldCondition("media_id", match=qe.MatchAny(list(flt.exclude_media_ids))))
    return qe.Filter(must=must, must_not=must_not)


_STAGED = qe.Filter(must=[qe.FieldCondition("pending", match=qe.MatchValue(PENDING))])


def _media(tenant: str, media_id: str, *extra: Any) -> qe.Filter:
    return qe.Filter(
        must=[
            qe.FieldCondition("tenant", match=qe.MatchValue(tenant)),
            qe.FieldCondition("media_id", match=qe.MatchValue(media_id)),
            *extra,
        ]
    )


# ---------------------------------------------------------------- aliases
@dataclass(frozen=True, slots=True)
class AliasPointer:
    collection: str
    dimension: int
    switched_at: float
    # The embedding model directory (or `packaged`) the collection was built
    # with, when the switch recorded it: a server configured with the default
    # model follows it on start (see app.serving_model_spec).
    model_path: str = ""


def read_alias(root: pathlib.Path, alias: str) -> AliasPointer | None:
    try:
        doc = json.loads((root / f"{alias}{ALIAS_SUFFIX}").read_text())
    except FileNotFoundError:
        return None
    return AliasPointer(
        str(doc["collection"]),
        int(doc["dimension"]),
        float(doc.get("switched_at", 0.0)),
        str(doc.get("model_path", "")),
    )


def write_alias(root: pathlib.Path, alias: str, collection: str, dimension: int, *, model_path: str = "") -> None:
    """Point `alias` at `collection`: write a temp file, fsync, os.replace, fsync the directory."""
    doc: dict[str, Any] = {"collection": collection, "dimension": dimension, "switched_at": time.time()}
    if model_path:
        doc["model_path"] = model_path
    _write_json_atomically(root / f"{alias}{ALIAS_SUFFIX}", doc)


def _write_json_atomically(final: pathlib.Path, doc: dict[str, Any]) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    with tmp.open("w") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def live_shard_path(root: pathlib.Path, collection: str) -> pathlib.Path:
    """The directory of the collection's live shard generation."""
    try:
        name = str(json.loads((root / f"{collection}{LIVE_SUFFIX}").read_text())["path"])
    except FileNotFoundError:
        return root / collection
    return root / name


@dataclass(frozen=True, slots=True)
class IndexStatus:
    """How much of a collection its HNSW index covers (for metrics and logs)."""

    collection: str
    points: int
    # Dense vectors outside the HNSW index: searched exactly, ~0.2 us each per search.
    unindexed: int
    building: bool


class _ShardGuard:
    """Reads share the live shard; a swap waits for them and holds new ones off for its instant."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._swapping = False

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def swapping(self) -> Iterator[None]:
        with self._cond:
            self._swapping = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._swapping = False
                self._cond.notify_all()


class EdgeVectorStore:
    """A Qdrant Edge shard per collection under `root` (`root/<collection>`).

    `dimension=None` opens an existing collection with the size it was made with.
    """

    def __init__(
        self,
        root: pathlib.Path,
        *,
        dimension: int | None,
        collection: str,
        optimize_on_open_min_points: int = OPTIMIZE_ON_OPEN_MIN_POINTS,
        background_index_min_points: int = BACKGROUND_INDEX_MIN_POINTS,
        indexing_threshold_kb: int | None = None,
    ) -> None:
        self.collection = collection
        self._root = root
        self._path = live_shard_path(root, collection)
        self._lock = threading.RLock()
        self._guard = _ShardGuard()
        self._lexical = lexical.encoder()
        self._background_min = background_index_min_points
        # Points written since the last index build; writes recorded while a build runs.
        self._since_build = 0
        self._replay: list[Any] | None = None
        self._builder: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._closing = False
        self._stopping_build = False
        self._warned_slow = False
        self._sweep()
        if (self._path / "edge_config.json").exists() or any(self._path.glob("segments*")):
            existing = self._stored_dimension()
            if dimension is not None and existing is not None and existing != dimension:
                raise ValueError(f"collection {collection} holds {existing}-dim vectors, not {dimension}")
            if existing is None:
                raise ValueError(
                    f"collection {collection} at {self._path} has the pre-hybrid layout (unnamed vector); "
                    "index into a new collection"
                )
            self.dimension = existing
            self._shard = qe.EdgeShard.load(str(self._path), None)
        else:
            if dimension is None:
                raise FileNotFoundError(f"no collection {collection} under {root}")
            self.dimension = dimension
            self._path.mkdir(parents=True, exist_ok=True)
            self._shard = qe.EdgeShard.create(str(self._path), self._config(dimension, indexing_threshold_kb))
        self._ensure_indexes()
        if self._unindexed() >= optimize_on_open_min_points:
            self.optimize()
        self._since_build = self._unindexed()

    @staticmethod
    def _config(dimension: int, indexing_threshold_kb: int | None = None) -> qe.EdgeConfig:
        """`indexing_threshold_kb`: segments smaller than this stay without HNSW (engine default ~10 MB)."""
        return qe.EdgeConfig(
            vectors={DENSE_VECTOR: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            hnsw_config=qe.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=10_000),
            optimizers=None
            if indexing_threshold_kb is None
            else qe.EdgeOptimizersConfig(indexing_threshold=indexing_threshold_kb),
        )

    def _stored_dimension(self) -> int | None:
        try:
            doc = json.loads((self._path / "edge_config.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        dense = (doc.get("vectors") or {}).get(DENSE_VECTOR)
        return int(dense["size"]) if dense else None

    def _ensure_indexes(self) -> None:
        existing = set(self._shard.info().payload_schema)
        wanted: list[tuple[str, Any]] = [("tenant", qe.KeywordIndexParams(is_tenant=True))]
        wanted += [(f, qe.PayloadSchemaType.Keyword) for f in KEYWORD_FIELDS if f != "tenant"]
        wanted += [(f, qe.PayloadSchemaType.Float) for f in FLOAT_FIELDS]
        wanted += [(f, qe.PayloadSchemaType.Integer) for f in INTEGER_FIELDS]
        for name, schema in wanted:
            if name not in existing:
                self._shard.update(qe.UpdateOperation.create_field_index(name, schema))

    # ------------------------------------------------------------ writes
    def _point(self, p: PointRecord, pending: int) -> qe.Point:
        terms = p.sparse if p.sparse is not None else self._lexical.document(str(p.payload.get("text", "")))
        vectors: dict[str, Any] = {DENSE_VECTOR: np.asarray(p.vector, dtype=np.float32).tolist()}
        if terms:
            vectors[SPARSE_VECTOR] = qe.SparseVector(list(terms.indices), list(terms.values))
        return qe.Point(p.id, vectors, {**p.payload, "pending": pending})

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        batch = [self._point(p, PUBLISHED) for p in points]
        with self._lock:
            self._apply(qe.UpdateOperation.upsert_points(batch), added=len(batch))

    def stage(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        batch = [self._point(p, PENDING) for p in points]
        with self._lock:
            # A retry of a published version must not hide it again: only
            # insert, or overwrite points that are still staged.
            self._apply(qe.UpdateOperation.upsert_points(batch, condition=_STAGED), added=len(batch))

    def commit_media(self, tenant: str, media_id: str, version: int) -> bool:
        v = float(version)
        with self._lock:
            newer = self._read(
                lambda shard: shard.count(
                    qe.CountRequest(
                        exact=True,
                        filter=qe.Filter(
                            must=[
                                qe.FieldCondition("tenant", match=qe.MatchValue(tenant)),
                                qe.FieldCondition("media_id", match=qe.MatchValue(media_id)),
                                qe.FieldCondition("version", range=qe.RangeFloat(gt=v)),
                            ],
                            must_not=[qe.FieldCondition("pending", match=qe.MatchValue(PENDING))],
                        ),
                    )
                )
            )
            mine = _media(tenant, media_id, qe.FieldCondition("version", match=qe.MatchValue(int(version))))
            if newer:
                self._apply(qe.UpdateOperation.delete_points_by_filter(mine))
                return False
            self._apply(qe.UpdateOperation.set_payload_by_filter(mine, {"pending": PUBLISHED}))
            stale = _media(tenant, media_id, qe.FieldCondition("version", range=qe.RangeFloat(lt=v)))
            self._apply(qe.UpdateOperation.delete_points_by_filter(stale))
        return True

    def replace_media(self, tenant: str, media_id: str, points: Sequence[PointRecord], version: int) -> None:
        with self._lock:
            self.stage(points)
            self.commit_media(tenant, media_id, version)

    def delete_media(self, tenant: str, media_id: str) -> int:
        with self._lock:
            visible = len(self.media_points(tenant, media_id))
            self._apply(qe.UpdateOperation.delete_points_by_filter(_media(tenant, media_id)))
        return visible

    def delete_points(self, ids: Sequence[str]) -> None:
        if ids:
            with self._lock:
                self._apply(qe.UpdateOperation.delete_points(list(ids)))

    # ------------------------------------------------------------ reads
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
        where = build_filter(flt)
        dense = qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist(), using=DENSE_VECTOR)
        ef = max(hnsw_ef or SEARCH_HNSW_EF, offset + limit)
        with_vector: Any = [DENSE_VECTOR] if with_vectors else False
        if lexical:
            return self._hybrid(dense, lexical, flt, where, limit, offset, score_threshold, ef, with_vector)
        request = qe.QueryRequest(
            limit=limit,
            offset=offset or None,
            query=dense,
            filter=where,
            with_payload=True,
            with_vector=with_vector,
            score_threshold=score_threshold,
            params=qe.SearchParams(hnsw_ef=ef),
        )
        return [self._stored(p, p.score) for p in self._read(lambda shard: shard.query(request))]

    def _hybrid(
        self,
        dense: Any,
        terms: SparseTerms,
        flt: PointFilter,
        where: qe.Filter,
        limit: int,
        offset: int,
        score_threshold: float | None,
        ef: int,
        with_vector: Any,
    ) -> list[StoredPoint]:
        with self._guard.reading():
            return self._hybrid_on(
                self._shard, dense, terms, flt, where, limit, offset, score_threshold, ef, with_vector
            )

    def _hybrid_on(
        self,
        shard: qe.EdgeShard,
        dense: Any,
        terms: SparseTerms,
        flt: PointFilter,
        where: qe.Filter,
        limit: int,
        offset: int,
        score_threshold: float | None,
        ef: int,
        with_vector: Any,
    ) -> list[StoredPoint]:
        window = hybrid_window(offset + limit)
        # IDF over the caller's own published points: another tenant's
        # documents must not shape this tenant's scores.
        corpus = build_filter(PointFilter(tenant=flt.tenant))
        rankings = shard.query_batch(
            qe.QueryBatchRequest(
                [
                    qe.QueryRequest(
                        limit=window,
                        query=dense,
                        filter=where,
                        score_threshold=score_threshold,
                        params=qe.SearchParams(hnsw_ef=max(ef, window)),
                        with_payload=False,
                        with_vector=False,
                    ),
                    qe.QueryRequest(
                        limit=window,
                        query=qe.Query.Nearest(
                            qe.SparseVector(list(terms.indices), list(terms.values)), using=SPARSE_VECTOR
                        ),
                        filter=where,
                        params=qe.SearchParams(idf=qe.IdfParams(corpus=corpus)),
                        with_payload=False,
                        with_vector=False,
                    ),
                ]
            )
        )
        page = rrf_page([[(str(p.id), float(p.score)) for p in ranking] for ranking in rankings], offset, limit)
        if not page:
            return []
        records = {
            str(r.id): r for r in shard.retrieve([pid for pid, _ in page], with_payload=True, with_vector=with_vector)
        }
        return [self._stored(records[pid], score) for pid, score in page if pid in records]

    def media_points(self, tenant: str, media_id: str, *, with_vectors: bool = False) -> list[StoredPoint]:
        out: list[StoredPoint] = []
        offset: Any = None
        with_vector: Any = [DENSE_VECTOR] if with_vectors else False
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=256, filter=_media(tenant, media_id), with_payload=True, with_vector=with_vector
            )
            records, offset = self._read(lambda shard, request=request: shard.scroll(request))  # type: ignore[misc]
            out.extend(self._stored(r, 0.0) for r in records)
            if offset is None:
                break
        return published_version(out)

    def count(self, tenant: str | None = None) -> int:
        if tenant is None:
            flt = qe.Filter(must_not=[qe.FieldCondition("pending", match=qe.MatchValue(PENDING))])
        else:
            flt = build_filter(PointFilter(tenant=tenant))
        return int(self._read(lambda shard: shard.count(qe.CountRequest(exact=True, filter=flt))))

    def scan(self, *, batch_size: int = 256, with_payload: bool = True) -> Iterator[list[StoredPoint]]:
        flt = qe.Filter(must_not=[qe.FieldCondition("pending", match=qe.MatchValue(PENDING))])
        offset: Any = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=batch_size, filter=flt, with_payload=with_payload, with_vector=False
            )
            records, offset = self._read(lambda shard, request=request: shard.scroll(request))  # type: ignore[misc]
            if records:
                yield [self._stored(r, 0.0) for r in records]
            if offset is None:
                return

    # ------------------------------------------------------------ lifecycle
    def promote(self, alias: str, *, model_path: str = "") -> None:
        self.flush()
        write_alias(self._root, alias, self.collection, self.dimension, model_path=model_path)

    def optimize(self) -> None:
        """Build the index now, in this process (holds the GIL: bulk loads and start-up only).

        A background build under way is stopped first: swapped in after this
        optimization, its older copy would leave the newest points unindexed.
        """
        self._stop_build()
        started = time.perf_counter()
        with self._lock:
            changed = self._shard.optimize()
        if changed:
            log.info(
                "vector index built",
                extra={"collection": self.collection, "seconds": round(time.perf_counter() - started, 2)},
            )

    def flush(self) -> None:
        with self._lock:
            self._shard.flush()

    def close(self) -> None:
        """Stop a background build (its copy is discarded), flush and close. Safe to call twice."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._stop_build()
        with self._lock:
            try:
                self._shard.flush()
            finally:
                self._shard.close()

    # ------------------------------------------------------------ growth
    def index_status(self) -> IndexStatus:
        """Points and unindexed dense vectors, for a gauge per collection (see README)."""
        return IndexStatus(
            self.collection,
            self._read(lambda shard: shard.info().points_count),
            self._unindexed(),
            self._builder is not None and self._builder.is_alive(),
        )

    def _unindexed(self) -> int:
        """Dense vectors outside the HNSW index.

        `indexed_vectors_count` counts every vector in an index, and sparse
        vectors always are (an inverted index, also in the appendable
        segment): the dense ones left out are points + sparse - indexed.
        """

        def count(shard: qe.EdgeShard) -> int:
            info = shard.info()
            has_terms = qe.Filter(must=[qe.HasVectorCondition(SPARSE_VECTOR)])
            sparse = int(shard.count(qe.CountRequest(exact=True, filter=has_terms)))
            return max(0, int(info.points_count) + sparse - int(info.indexed_vectors_count))

        return self._read(count)

    def _read(self, call: Callable[[qe.EdgeShard], T]) -> T:
        with self._guard.reading():
            return call(self._shard)

    def _apply(self, operation: Any, *, added: int = 0) -> None:
        """Apply a write to the live shard (holding self._lock), recorded for a build under way."""
        self._shard.update(operation)
        if self._replay is not None:
            self._replay.append(operation)
        self._since_build += added
        if (
            self._since_build >= self._background_min
            and not self._closing
            and not self._stopping_build
            and (self._builder is None or not self._builder.is_alive())
            # A build copies the whole shard: wait for a tenth of it to be new,
            # so copying costs O(1) per point however large the store grows.
            and self._since_build >= self._shard.info().points_count // 10
        ):
            self._builder = threading.Thread(target=self._build_index, name=f"index-{self.collection}", daemon=True)
            self._builder.start()
        elif self._since_build >= SLOW_UNINDEXED_POINTS and not self._warned_slow:
            self._warned_slow = True
            log.warning(
                "many points wait for the vector index: searches over them are exact and slower",
                extra={
                    "collection": self.collection,
                    "unindexed_points": self._since_build,
                    "extra_ms_per_search": round(self._since_build * EXACT_SEARCH_US_PER_POINT / 1000, 1),
                    "building": self._builder is not None and self._builder.is_alive(),
                },
            )

    def _stop_build(self) -> None:
        """Stop a background build under way (its copy is discarded); call without holding self._lock."""
        with self._lock:
            self._stopping_build = True
            child = self._child
        try:
            if child is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
            if self._builder is not None:
                self._builder.join()
        finally:
            with self._lock:
                self._stopping_build = False

    def _build_index(self) -> None:
        """Build the HNSW index of a copy in a child process, then swap the copy in (see module docstring)."""
        started = time.perf_counter()
        build = self._root / f".{self.collection}.build-{uuid.uuid4().hex[:8]}"
        try:
            with self._lock:
                if self._closing or self._stopping_build:
                    return
                self._shard.flush()
                shutil.copytree(self._path, build)
                self._replay = []
                self._since_build = 0
                self._warned_slow = False
            copied = time.perf_counter()
            with self._lock:
                if self._closing or self._stopping_build:
                    return
                self._child = subprocess.Popen(
                    [sys.executable, "-m", "understanding.sinks.edge_index_build", str(build)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            _, err = self._child.communicate()
            code = self._child.returncode
            if code == NOTHING_TO_DO:
                return
            if code != 0:
                if not (self._closing or self._stopping_build):
                    log.warning(
                        "building the vector index aside failed; new points stay searched exactly",
                        extra={"collection": self.collection, "exit_code": code, "stderr": err.decode()[-500:]},
                    )
                return
            built = time.perf_counter()
            generation = self._root / f"{self.collection}.gen-{time.time_ns()}"
            os.rename(build, generation)
            opened = qe.EdgeShard.load(str(generation), None)  # holds the GIL: the stall a swap costs
            loaded = time.perf_counter()
            with self._lock:
                if self._closing or self._stopping_build:
                    opened.close()
                    shutil.rmtree(generation, ignore_errors=True)
                    return
                replayed = self._replay or []
                for operation in replayed:
                    opened.update(operation)
                opened.flush()
                _write_json_atomically(self._root / f"{self.collection}{LIVE_SUFFIX}", {"path": generation.name})
                with self._guard.swapping():
                    old, old_path = self._shard, self._path
                    self._shard, self._path = opened, generation
                self._replay = None
            swapped = time.perf_counter()
            old.close()
            shutil.rmtree(old_path, ignore_errors=True)
            log.info(
                "vector index built aside and swapped in",
                extra={
                    "collection": self.collection,
                    "copy_s": round(copied - started, 2),
                    "build_s": round(built - copied, 2),
                    "load_s": round(loaded - built, 2),
                    "replay_s": round(swapped - loaded, 2),
                    "writes_replayed": len(replayed),
                },
            )
        except Exception:
            log.exception("building the vector index aside failed", extra={"collection": self.collection})
        finally:
            with self._lock:
                self._replay = None
                self._child = None
            shutil.rmtree(build, ignore_errors=True)

    def _sweep(self) -> None:
        """Remove generations and build copies other than the live one (left by a crash or a swap)."""
        leftovers = [*self._root.glob(f"{self.collection}.gen-*"), *self._root.glob(f".{self.collection}.build-*")]
        if self._path != self._root / self.collection:
            leftovers.append(self._root / self.collection)
        for path in leftovers:
            if path != self._path and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _stored(point: Any, score: float) -> StoredPoint:
        vector = point.vector
        if isinstance(vector, dict):
            vector = vector.get(DENSE_VECTOR)
        return StoredPoint(id=str(point.id), score=float(score), payload=dict(point.payload or {}), vector=vector)
