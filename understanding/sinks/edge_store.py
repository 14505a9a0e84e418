"""Embedded vector store: Qdrant's own engine in-process (qdrant-edge-py).

Chosen over qdrant-client's local mode because it is the real engine (HNSW,
WAL, payload indexes): ~1.6 ms per filtered search at 100k points here versus
~190 ms brute force. Durable across restarts through its write-ahead log.
"""

from __future__ import annotations

import logging
import pathlib
import threading
from typing import Any, Sequence

import qdrant_edge as qe

from understanding.domain import Vector
from understanding.sinks.store import (
    FLOAT_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    PointFilter,
    PointRecord,
    StoredPoint,
)

log = logging.getLogger(__name__)


def build_filter(flt: PointFilter, *, extra_must: Sequence[Any] = ()) -> qe.Filter:
    must: list[Any] = [qe.FieldCondition("tenant", match=qe.MatchValue(flt.tenant))]
    if flt.modalities:
        must.append(qe.FieldCondition("modality", match=qe.MatchAny(list(flt.modalities))))
    if flt.media_ids:
        must.append(qe.FieldCondition("media_id", match=qe.MatchAny(list(flt.media_ids))))
    if flt.languages:
        must.append(qe.FieldCondition("language", match=qe.MatchAny(list(flt.languages))))
    if flt.tags_any:
        must.append(qe.FieldCondition("tags", match=qe.MatchAny(list(flt.tags_any))))
    for tag in flt.tags_all:
        must.append(qe.FieldCondition("tags", match=qe.MatchValue(tag)))
    if flt.created_after is not None or flt.created_before is not None:
        must.append(qe.FieldCondition("created_at", range=qe.RangeFloat(gte=flt.created_after, lte=flt.created_before)))
    if flt.overlaps_end_s is not None:
        must.append(qe.FieldCondition("start_s", range=qe.RangeFloat(lte=flt.overlaps_end_s)))
    if flt.overlaps_start_s is not None:
        must.append(qe.FieldCondition("end_s", range=qe.RangeFloat(gte=flt.overlaps_start_s)))
    for key, value in flt.metadata.items():
        must.append(qe.FieldCondition(f"metadata.{key}", match=qe.MatchValue(value)))
    must.extend(extra_must)
    return qe.Filter(must=must)


class EdgeVectorStore:
    """A Qdrant Edge shard per collection under `data_dir`."""

    def __init__(self, path: pathlib.Path, *, dimension: int, collection: str) -> None:
        self.dimension = dimension
        self.collection = collection
        self._path = path / collection
        self._lock = threading.RLock()
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine))
        if (self._path / "edge_config.json").exists() or any(self._path.glob("segments*")):
            self._shard = qe.EdgeShard.load(str(self._path), config)
        else:
            self._path.mkdir(parents=True, exist_ok=True)
            try:
                self._shard = qe.EdgeShard.create(str(self._path), config)
            except Exception:  # noqa: BLE001 - existing data in another layout: load it
                self._shard = qe.EdgeShard.load(str(self._path), config)
        self._ensure_indexes()

    def _ensure_indexes(self) -> None:
        existing = set(self._shard.info().payload_schema)
        wanted = [(f, qe.PayloadSchemaType.Keyword) for f in KEYWORD_FIELDS]
        wanted += [(f, qe.PayloadSchemaType.Float) for f in FLOAT_FIELDS]
        wanted += [(f, qe.PayloadSchemaType.Integer) for f in INTEGER_FIELDS]
        for name, schema in wanted:
            if name not in existing:
                self._shard.update(qe.UpdateOperation.create_field_index(name, schema))

    # ------------------------------------------------------------ writes
    def upsert(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        batch = [qe.Point(p.id, [float(x) for x in p.vector], dict(p.payload)) for p in points]
        with self._lock:
            self._shard.update(qe.UpdateOperation.upsert_points(batch))

    def replace_media(self, tenant: str, media_id: str, points: Sequence[PointRecord], version: int) -> None:
        with self._lock:
            self.upsert(points)
            stale = qe.Filter(
                must=[
                    qe.FieldCondition("tenant", match=qe.MatchValue(tenant)),
                    qe.FieldCondition("media_id", match=qe.MatchValue(media_id)),
                    qe.FieldCondition("version", range=qe.RangeFloat(lt=float(version))),
                ]
            )
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(stale))

    def delete_media(self, tenant: str, media_id: str) -> int:
        flt = build_filter(PointFilter(tenant=tenant, media_ids=(media_id,)))
        with self._lock:
            n = self._shard.count(qe.CountRequest(exact=True, filter=flt))
            if n:
                self._shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
        return int(n)

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
    ) -> list[StoredPoint]:
        request = qe.QueryRequest(
            limit=limit,
            offset=offset or None,
            query=qe.Query.Nearest([float(x) for x in vector]),
            filter=build_filter(flt),
            with_payload=True,
            with_vector=with_vectors,
            score_threshold=score_threshold,
        )
        return [self._stored(p, p.score) for p in self._shard.query(request)]

    def media_points(self, tenant: str, media_id: str, *, with_vectors: bool = False) -> list[StoredPoint]:
        flt = build_filter(PointFilter(tenant=tenant, media_ids=(media_id,)))
        out: list[StoredPoint] = []
        offset: Any = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=256, filter=flt, with_payload=True, with_vector=with_vectors)
            )
            out.extend(self._stored(r, 0.0) for r in records)
            if offset is None:
                break
        out.sort(key=lambda p: int(p.payload.get("chunk_index", 0)))
        return out

    def count(self, tenant: str | None = None) -> int:
        flt = None if tenant is None else build_filter(PointFilter(tenant=tenant))
        return int(self._shard.count(qe.CountRequest(exact=True, filter=flt)))

    def flush(self) -> None:
        with self._lock:
            self._shard.flush()

    def close(self) -> None:
        with self._lock:
            try:
                self._shard.flush()
            finally:
                self._shard.close()

    @staticmethod
    def _stored(point: Any, score: float) -> StoredPoint:
        vector = point.vector
        if isinstance(vector, dict):
            vector = vector.get("")
        return StoredPoint(id=str(point.id), score=float(score), payload=dict(point.payload or {}), vector=vector)
