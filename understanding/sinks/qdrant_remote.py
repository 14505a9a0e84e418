"""Vector store on a Qdrant server through qdrant-client (used when a URL is set).

Also runs against qdrant-client's local mode (`location=":memory:"` or a path),
which is how the congruence tests compare it with the embedded store here.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

from qdrant_client import QdrantClient, models

from understanding.domain import Vector
from understanding.sinks.store import (
    FLOAT_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    PointFilter,
    PointRecord,
    StoredPoint,
)


def build_filter(flt: PointFilter) -> models.Filter:
    must: list[Any] = [models.FieldCondition(key="tenant", match=models.MatchValue(value=flt.tenant))]
    if flt.modalities:
        must.append(models.FieldCondition(key="modality", match=models.MatchAny(any=list(flt.modalities))))
    if flt.media_ids:
        must.append(models.FieldCondition(key="media_id", match=models.MatchAny(any=list(flt.media_ids))))
    if flt.languages:
        must.append(models.FieldCondition(key="language", match=models.MatchAny(any=list(flt.languages))))
    if flt.tags_any:
        must.append(models.FieldCondition(key="tags", match=models.MatchAny(any=list(flt.tags_any))))
    for tag in flt.tags_all:
        must.append(models.FieldCondition(key="tags", match=models.MatchValue(value=tag)))
    if flt.created_after is not None or flt.created_before is not None:
        must.append(
            models.FieldCondition(key="created_at", range=models.Range(gte=flt.created_after, lte=flt.created_before))
        )
    if flt.overlaps_end_s is not None:
        must.append(models.FieldCondition(key="start_s", range=models.Range(lte=flt.overlaps_end_s)))
    if flt.overlaps_start_s is not None:
        must.append(models.FieldCondition(key="end_s", range=models.Range(gte=flt.overlaps_start_s)))
    for key, value in flt.metadata.items():
        must.append(models.FieldCondition(key=f"metadata.{key}", match=models.MatchValue(value=value)))
    return models.Filter(must=must)


class QdrantClientStore:
    def __init__(
        self,
        *,
        dimension: int,
        collection: str,
        url: str | None = None,
        api_key: str | None = None,
        location: str | None = None,
        path: str | None = None,
    ) -> None:
        self.dimension = dimension
        self.collection = collection
        if url:
            self._client = QdrantClient(url=url, api_key=api_key, timeout=30)
        elif path:
            self._client = QdrantClient(path=path)
        else:
            self._client = QdrantClient(location=location or ":memory:")
        self._lock = threading.RLock()
        if not self._client.collection_exists(collection):
            self._client.create_collection(
                collection, vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE)
            )
            schema = [(f, models.PayloadSchemaType.KEYWORD) for f in KEYWORD_FIELDS]
            schema += [(f, models.PayloadSchemaType.FLOAT) for f in FLOAT_FIELDS]
            schema += [(f, models.PayloadSchemaType.INTEGER) for f in INTEGER_FIELDS]
            for name, kind in schema:
                self._client.create_payload_index(collection, field_name=name, field_schema=kind)

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        self._client.upsert(
            self.collection,
            points=[models.PointStruct(id=p.id, vector=[float(x) for x in p.vector], payload=dict(p.payload)) for p in points],
            wait=True,
        )

    def replace_media(self, tenant: str, media_id: str, points: Sequence[PointRecord], version: int) -> None:
        with self._lock:
            self.upsert(points)
            stale = models.Filter(
                must=[
                    models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)),
                    models.FieldCondition(key="media_id", match=models.MatchValue(value=media_id)),
                    models.FieldCondition(key="version", range=models.Range(lt=version)),
                ]
            )
            self._client.delete(self.collection, points_selector=models.FilterSelector(filter=stale), wait=True)

    def delete_media(self, tenant: str, media_id: str) -> int:
        flt = build_filter(PointFilter(tenant=tenant, media_ids=(media_id,)))
        with self._lock:
            n = self._client.count(self.collection, count_filter=flt, exact=True).count
            if n:
                self._client.delete(self.collection, points_selector=models.FilterSelector(filter=flt), wait=True)
        return int(n)

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
        result = self._client.query_points(
            self.collection,
            query=[float(x) for x in vector],
            query_filter=build_filter(flt),
            limit=limit,
            offset=offset or None,
            score_threshold=score_threshold,
            with_payload=True,
            with_vectors=with_vectors,
        )
        return [self._stored(p, p.score) for p in result.points]

    def media_points(self, tenant: str, media_id: str, *, with_vectors: bool = False) -> list[StoredPoint]:
        flt = build_filter(PointFilter(tenant=tenant, media_ids=(media_id,)))
        out: list[StoredPoint] = []
        offset: Any = None
        while True:
            records, offset = self._client.scroll(
                self.collection, scroll_filter=flt, limit=256, offset=offset, with_payload=True, with_vectors=with_vectors
            )
            out.extend(self._stored(r, 0.0) for r in records)
            if offset is None:
                break
        out.sort(key=lambda p: int(p.payload.get("chunk_index", 0)))
        return out

    def count(self, tenant: str | None = None) -> int:
        flt = None if tenant is None else build_filter(PointFilter(tenant=tenant))
        return int(self._client.count(self.collection, count_filter=flt, exact=True).count)

    def close(self) -> None:
        self._client.close()

    @staticmethod
    def _stored(point: Any, score: float) -> StoredPoint:
        vector = point.vector
        if isinstance(vector, dict):
            vector = vector.get("")
        return StoredPoint(id=str(point.id), score=float(score), payload=dict(point.payload or {}), vector=vector)
