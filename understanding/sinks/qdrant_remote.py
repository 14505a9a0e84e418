"""Vector store on a Qdrant server through qdrant-client (used when a URL is set).

Also runs against qdrant-client's local mode (`location=":memory:"` or a path),
which is how the congruence tests compare it with the embedded store here.
Same collection layout, filters, staging and fusion as the embedded store;
aliases are Qdrant's own (switched in one atomic `update_collection_aliases`).
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Sequence

import numpy as np
from qdrant_client import QdrantClient, models

from understanding.domain import Vector
from understanding.sinks import lexical
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

# Matches staged points; used as `must_not` by every read.
_NOT_PENDING = models.FieldCondition(key="pending", match=models.MatchValue(value=PENDING))


def _tags(flt: PointFilter) -> list[Any]:
    if flt.tags_min_score is None:
        out: list[Any] = []
        if flt.tags_any:
            out.append(models.FieldCondition(key="tags", match=models.MatchAny(any=list(flt.tags_any))))
        out.extend(models.FieldCondition(key="tags", match=models.MatchValue(value=tag)) for tag in flt.tags_all)
        return out
    score = models.FieldCondition(key="score", range=models.Range(gte=flt.tags_min_score))

    def scored(label: Any | None) -> Any:
        inner: list[Any] = [score] if label is None else [models.FieldCondition(key="label", match=label), score]
        return models.NestedCondition(nested=models.Nested(key="tag_items", filter=models.Filter(must=inner)))

    out = [scored(models.MatchValue(value=tag)) for tag in flt.tags_all]
    if flt.tags_any:
        out.append(scored(models.MatchAny(any=list(flt.tags_any))))
    if not out:
        out.append(scored(None))
    return out


def build_filter(flt: PointFilter) -> models.Filter:
    """The read filter: the caller's conditions, the tenant, and never a staged point."""
    must: list[Any] = [models.FieldCondition(key="tenant", match=models.MatchValue(value=flt.tenant))]
    if flt.modalities:
        must.append(models.FieldCondition(key="modality", match=models.MatchAny(any=list(flt.modalities))))
    if flt.media_ids:
        must.append(models.FieldCondition(key="media_id", match=models.MatchAny(any=list(flt.media_ids))))
    if flt.languages:
        must.append(models.FieldCondition(key="language", match=models.MatchAny(any=list(flt.languages))))
    must.extend(_tags(flt))
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
    if flt.speakers:
        must.append(models.FieldCondition(key="speakers", match=models.MatchAny(any=list(flt.speakers))))
    must_not: list[Any] = [_NOT_PENDING]
    if flt.exclude_media_ids:
        must_not.append(models.FieldCondition(key="media_id", match=models.MatchAny(any=list(flt.exclude_media_ids))))
    return models.Filter(must=must, must_not=must_not)


def _media(tenant: str, media_id: str, *extra: Any) -> models.Filter:
    return models.Filter(
        must=[
            models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)),
            models.FieldCondition(key="media_id", match=models.MatchValue(value=media_id)),
            *extra,
        ]
    )


class QdrantClientStore:
    """One collection on a Qdrant server (or in qdrant-client's local mode).

    `dimension=None` opens an existing collection with the size it was made with;
    `client` shares one connection (or one local-mode instance) between stores.
    """

    def __init__(
        self,
        *,
        dimension: int | None,
        collection: str,
        url: str | None = None,
        api_key: str | None = None,
        location: str | None = None,
        path: str | None = None,
        client: QdrantClient | None = None,
    ) -> None:
        self.collection = collection
        if client is not None:
            self._client = client
        elif url:
            self._client = QdrantClient(url=url, api_key=api_key, timeout=30)
        elif path:
            self._client = QdrantClient(path=path)
        else:
            self._client = QdrantClient(location=location or ":memory:")
        # Local mode searches exactly and warns about index parameters; only a server gets them.
        self._server = _is_remote(self._client)
        self._lock = threading.RLock()
        self._lexical = lexical.encoder()
        if self._client.collection_exists(collection):
            params = self._client.get_collection(collection).config.params
            vectors = params.vectors if isinstance(params.vectors, dict) else {}
            if DENSE_VECTOR not in vectors:
                raise ValueError(
                    f"collection {collection} has the pre-hybrid layout (unnamed vector); index into a new one"
                )
            existing = int(vectors[DENSE_VECTOR].size)
            if dimension is not None and dimension != existing:
                raise ValueError(f"collection {collection} holds {existing}-dim vectors, not {dimension}")
            self.dimension = existing
            return
        if dimension is None:
            raise LookupError(f"no collection {collection}")
        self.dimension = dimension
        self._client.create_collection(
            collection,
            vectors_config={DENSE_VECTOR: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            hnsw_config=models.HnswConfigDiff(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT),
        )
        schema: list[tuple[str, Any]] = [
            ("tenant", models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True))
        ]
        schema += [(f, models.PayloadSchemaType.KEYWORD) for f in KEYWORD_FIELDS if f != "tenant"]
        schema += [(f, models.PayloadSchemaType.FLOAT) for f in FLOAT_FIELDS]
        schema += [(f, models.PayloadSchemaType.INTEGER) for f in INTEGER_FIELDS]
        if self._server:  # local mode ignores payload indexes (and warns)
            for name, kind in schema:
                self._client.create_payload_index(collection, field_name=name, field_schema=kind)

    # ------------------------------------------------------------ aliases
    @staticmethod
    def alias_target(client: QdrantClient, alias: str) -> str | None:
        for a in client.get_aliases().aliases:
            if a.alias_name == alias:
                return str(a.collection_name)
        return None

    def promote(self, alias: str, *, model_path: str = "") -> None:
        # Delete + create in one request: Qdrant applies alias changes atomically.
        # `model_path` is not recorded: a Qdrant alias carries no data (replicas
        # are configured with their model explicitly).
        ops: list[Any] = []
        if self.alias_target(self._client, alias) is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=self.collection, alias_name=alias)
            )
        )
        self._client.update_collection_aliases(change_aliases_operations=ops)

    # ------------------------------------------------------------ writes
    def _point(self, p: PointRecord, pending: int) -> models.PointStruct:
        terms = p.sparse if p.sparse is not None else self._lexical.document(str(p.payload.get("text", "")))
        vectors: dict[str, Any] = {DENSE_VECTOR: np.asarray(p.vector, dtype=np.float32).tolist()}
        if terms:
            vectors[SPARSE_VECTOR] = models.SparseVector(indices=list(terms.indices), values=list(terms.values))
        return models.PointStruct(id=p.id, vector=vectors, payload={**p.payload, "pending": pending})

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if points:
            self._client.upsert(self.collection, points=[self._point(p, PUBLISHED) for p in points], wait=True)

    def stage(self, points: Sequence[PointRecord]) -> None:
        if points:
            # A retry of a published version must not hide it again: only
            # insert, or overwrite points that are still staged.
            self._client.upsert(
                self.collection,
                points=[self._point(p, PENDING) for p in points],
                update_filter=models.Filter(must=[_NOT_PENDING]),
                wait=True,
            )

    def commit_media(self, tenant: str, media_id: str, version: int) -> bool:
        with self._lock:
            newer = self._client.count(
                self.collection,
                count_filter=models.Filter(
                    must=[
                        models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)),
                        models.FieldCondition(key="media_id", match=models.MatchValue(value=media_id)),
                        models.FieldCondition(key="version", range=models.Range(gt=version)),
                    ],
                    must_not=[_NOT_PENDING],
                ),
                exact=True,
            ).count
            mine = _media(
                tenant, media_id, models.FieldCondition(key="version", match=models.MatchValue(value=int(version)))
            )
            if newer:
                self._client.delete(self.collection, points_selector=models.FilterSelector(filter=mine), wait=True)
                return False
            self._client.set_payload(self.collection, payload={"pending": PUBLISHED}, points=mine, wait=True)
            stale = _media(tenant, media_id, models.FieldCondition(key="version", range=models.Range(lt=version)))
            self._client.delete(self.collection, points_selector=models.FilterSelector(filter=stale), wait=True)
        return True

    def replace_media(self, tenant: str, media_id: str, points: Sequence[PointRecord], version: int) -> None:
        with self._lock:
            self.stage(points)
            self.commit_media(tenant, media_id, version)

    def delete_media(self, tenant: str, media_id: str) -> int:
        with self._lock:
            visible = len(self.media_points(tenant, media_id))
            self._client.delete(
                self.collection, points_selector=models.FilterSelector(filter=_media(tenant, media_id)), wait=True
            )
        return visible

    def delete_points(self, ids: Sequence[str]) -> None:
        if ids:
            self._client.delete(self.collection, points_selector=models.PointIdsList(points=list(ids)), wait=True)

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
        dense = np.asarray(vector, dtype=np.float32).tolist()
        ef = max(hnsw_ef or SEARCH_HNSW_EF, offset + limit)
        with_vector: Any = [DENSE_VECTOR] if with_vectors else False
        if not lexical:
            result = self._client.query_points(
                self.collection,
                query=dense,
                using=DENSE_VECTOR,
                query_filter=where,
                limit=limit,
                offset=offset or None,
                score_threshold=score_threshold,
                with_payload=True,
                with_vectors=with_vector,
                search_params=models.SearchParams(hnsw_ef=ef) if self._server else None,
            )
            return [self._stored(p, p.score) for p in result.points]
        window = hybrid_window(offset + limit)
        # IDF over the caller's own published points (see the embedded store).
        corpus = build_filter(PointFilter(tenant=flt.tenant))
        # Both rankings in one round trip; fused here (see store.rrf_page).
        rankings = self._client.query_batch_points(
            self.collection,
            requests=[
                models.QueryRequest(
                    query=dense,
                    using=DENSE_VECTOR,
                    filter=where,
                    limit=window,
                    score_threshold=score_threshold,
                    params=models.SearchParams(hnsw_ef=max(ef, window)) if self._server else None,
                    with_payload=False,
                    with_vector=False,
                ),
                models.QueryRequest(
                    query=models.SparseVector(indices=list(lexical.indices), values=list(lexical.values)),
                    using=SPARSE_VECTOR,
                    filter=where,
                    limit=window,
                    params=models.SearchParams(idf=models.IdfCorpusParams(corpus=corpus)),
                    with_payload=False,
                    with_vector=False,
                ),
            ],
        )
        page = rrf_page([[(str(p.id), float(p.score)) for p in r.points] for r in rankings], offset, limit)
        if not page:
            return []
        records = {
            str(r.id): r
            for r in self._client.retrieve(
                self.collection, ids=[pid for pid, _ in page], with_payload=True, with_vectors=with_vector
            )
        }
        return [self._stored(records[pid], score) for pid, score in page if pid in records]

    def media_points(self, tenant: str, media_id: str, *, with_vectors: bool = False) -> list[StoredPoint]:
        out: list[StoredPoint] = []
        offset: Any = None
        with_vector: Any = [DENSE_VECTOR] if with_vectors else False
        while True:
            records, offset = self._client.scroll(
                self.collection,
                scroll_filter=_media(tenant, media_id),
                limit=256,
                offset=offset,
                with_payload=True,
                with_vectors=with_vector,
            )
            out.extend(self._stored(r, 0.0) for r in records)
            if offset is None:
                break
        return published_version(out)

    def count(self, tenant: str | None = None) -> int:
        flt = models.Filter(must_not=[_NOT_PENDING]) if tenant is None else build_filter(PointFilter(tenant=tenant))
        return int(self._client.count(self.collection, count_filter=flt, exact=True).count)

    def scan(self, *, batch_size: int = 256, with_payload: bool = True) -> Iterator[list[StoredPoint]]:
        offset: Any = None
        while True:
            records, offset = self._client.scroll(
                self.collection,
                scroll_filter=models.Filter(must_not=[_NOT_PENDING]),
                limit=batch_size,
                offset=offset,
                with_payload=with_payload,
                with_vectors=False,
            )
            if records:
                yield [self._stored(r, 0.0) for r in records]
            if offset is None:
                return

    def optimize(self) -> None:
        """The server builds its indexes in the background: nothing to do."""

    def close(self) -> None:
        self._client.close()

    @staticmethod
    def _stored(point: Any, score: float) -> StoredPoint:
        vector = point.vector
        if isinstance(vector, dict):
            vector = vector.get(DENSE_VECTOR)
        return StoredPoint(id=str(point.id), score=float(score), payload=dict(point.payload or {}), vector=vector)


def _is_remote(client: QdrantClient) -> bool:
    from qdrant_client.local.qdrant_local import QdrantLocal

    return not isinstance(getattr(client, "_client", None), QdrantLocal)
