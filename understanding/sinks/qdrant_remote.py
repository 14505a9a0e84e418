"""Vector store on a Qdrant server through qdrant-client (used when a URL is set).

Also runs against qdrant-client's local mode (`location=":memory:"` or a path),
which is how the congruence tests compare it with the embedded store and with
a real server (tests/unit/sinks/test_store.py). Same collection layout,
filters, staging and fusion as the embedded store; aliases are Qdrant's own
(switched in one atomic `update_collection_aliases`).

Supported servers: Qdrant 1.16 to 1.18 (see `SUPPORTED_SERVERS`), through the
pinned qdrant-client 1.17 (Qdrant supports a client against servers one minor
version away). `connect` checks the server's version once and says so in the
log; a server older than 1.16 lacks conditional upserts (`update_filter`, used
to stage re-analyses) and is refused.

Lexical IDF per tenant: the embedded engine (and Qdrant >= 1.19) compute IDF
over a corpus filter; Qdrant 1.16-1.18 only over the whole collection, which
would let one tenant's documents shape another's scores. So the sparse vector
here has no server-side modifier: each point also stores its term ids in the
payload (`lexical_terms`, an on-disk integer index), the query's term weights
are multiplied by the tenant's IDF computed from exact counts (one count per
query term), and the server only takes the dot product. Same formula and
corpus as the engine's: idf = ln(1 + (N - df + 0.5) / (df + 0.5)) over the
tenant's published points that have terms.

Server calls go through `RetryingCaller` (qdrant_retry.py): back-off through a
restart, a deadline on every call, `StoreUnavailable`/`StoreTimeout` past the
budget.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from understanding.domain import Vector
from understanding.sinks import lexical
from understanding.sinks.lexical import SparseTerms
from understanding.sinks.qdrant_retry import DEFAULT_RETRY, RetryingCaller, RetryPolicy
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
    Handover,
    PointFilter,
    PointRecord,
    StoredPoint,
    hybrid_window,
    published_version,
    rrf_page,
)

log = logging.getLogger(__name__)

# Qdrant server versions this release supports, (major, minor) inclusive: the
# pinned qdrant-client's range (its minor +- 1). 1.16 is also the first with
# conditional upserts. CI tests against 1.16.3 (../shared/tools/qdrant).
SUPPORTED_SERVERS = ((1, 16), (1, 18))
# Payload field holding a point's lexical term ids (see the module docstring).
LEXICAL_TERMS = "lexical_terms"
# Collection metadata keys: the embedding model recorded by `promote`, and the reindex
# handover mark (see `sinks.store.SharedCollection`).
MODEL_PATH_KEY = "understanding_model_path"
HANDOVER_TO_KEY = "understanding_handover_to"
HANDOVER_UNTIL_KEY = "understanding_handover_until"

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
    if flt.moderation_decisions:
        must.append(
            models.FieldCondition(key="moderation_decision", match=models.MatchAny(any=list(flt.moderation_decisions)))
        )
    if flt.moderation_categories:
        must.append(
            models.FieldCondition(
                key="moderation_categories", match=models.MatchAny(any=list(flt.moderation_categories))
            )
        )
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


# ---------------------------------------------------------------- connection
_reported: set[str] = set()
_report_lock = threading.Lock()


def client_version() -> str:
    return metadata.version("qdrant-client")


def parse_version(text: str) -> tuple[int, int, int] | None:
    parts = text.strip().lstrip("v").split("-")[0].split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
        patch = int(parts[2]) if len(parts) > 2 else 0
    except (IndexError, ValueError):
        return None
    return major, minor, patch


class UnsupportedServer(RuntimeError):
    """The Qdrant server is too old for the features the store relies on."""


def version_verdict(server: str, where: str) -> tuple[int, str]:
    """(log level, message) about a server version; raises UnsupportedServer below the range."""
    (lo_major, lo_minor), (hi_major, hi_minor) = SUPPORTED_SERVERS
    supported = f"{lo_major}.{lo_minor} to {hi_major}.{hi_minor}"
    client = f"qdrant-client {client_version()}"
    parsed = parse_version(server)
    if parsed is None:
        return logging.WARNING, (
            f"Qdrant at {where} reports version {server!r}, which is not a version number; "
            f"this release supports Qdrant {supported} ({client})"
        )
    if parsed[:2] < (lo_major, lo_minor):
        raise UnsupportedServer(
            f"Qdrant at {where} is version {server}; this release needs Qdrant {supported} "
            f"(conditional upserts, used to stage re-analyses, came in 1.16): upgrade the server"
        )
    if parsed[:2] > (hi_major, hi_minor):
        return logging.WARNING, (
            f"Qdrant at {where} is version {server}, newer than this release is tested with "
            f"(Qdrant {supported}, through {client}); Qdrant keeps its API backward compatible, "
            "so it should work, but it is untested: report what breaks"
        )
    return logging.INFO, f"Qdrant at {where} is version {server}: supported (Qdrant {supported}, {client})"


def connect(
    url: str,
    *,
    api_key: str | None = None,
    prefer_grpc: bool = False,
    grpc_port: int = 6334,
    timeout_s: float = 10.0,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> QdrantClient:
    """A client for the server at `url` whose version is checked, and said once per process.

    qdrant-client's own check (a warning about minor versions) is replaced by
    `version_verdict`: our range, in our words, refusing servers that lack what
    the store needs. `prefer_grpc` talks gRPC on `grpc_port` (faster bulk
    writes); REST otherwise. Every call has a `timeout_s` deadline.
    """
    client = QdrantClient(
        url=url,
        api_key=api_key or None,
        prefer_grpc=prefer_grpc,
        grpc_port=grpc_port,
        timeout=max(1, math.ceil(timeout_s)),
        check_compatibility=False,
        # Reconnect promptly after a server restart (gRPC's default back-off grows to 120 s).
        grpc_options={"grpc.initial_reconnect_backoff_ms": 200, "grpc.max_reconnect_backoff_ms": 2000},
    )
    where = f"{url} ({'gRPC port ' + str(grpc_port) if prefer_grpc else 'REST'})"
    call = RetryingCaller(where, retry, timeout_s=timeout_s)
    try:
        info = call("the version check", client.info)
        level, message = version_verdict(str(info.version), url)
    except BaseException:
        client.close()
        raise
    with _report_lock:
        first = url not in _reported
        _reported.add(url)
    if first:
        log.log(level, message)
    return client


# ---------------------------------------------------------------- the store
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
        prefer_grpc: bool = False,
        grpc_port: int = 6334,
        timeout_s: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.collection = collection
        if client is not None:
            self._client = client
        elif url:
            self._client = connect(
                url, api_key=api_key, prefer_grpc=prefer_grpc, grpc_port=grpc_port, timeout_s=timeout_s, retry=retry
            )
        elif path:
            self._client = QdrantClient(path=path)
        else:
            self._client = QdrantClient(location=location or ":memory:")
        # Local mode searches exactly and warns about index parameters; only a server gets them.
        self._server = _is_remote(self._client)
        self._call = RetryingCaller(describe(self._client), retry, timeout_s=timeout_s)
        self._lock = threading.RLock()
        self._lexical = lexical.encoder()
        # False: per-tenant IDF computed here (see the module docstring); True: a
        # collection made before that, whose sparse vector has the server's IDF.
        self._server_idf = False
        if not self._call("collection_exists", lambda: self._client.collection_exists(collection)):
            if dimension is None:
                raise LookupError(f"no collection {collection}")
            if self._create(collection, dimension):
                self.dimension = dimension
                return
        self._open_existing(collection, dimension)

    def _open_existing(self, collection: str, dimension: int | None) -> None:
        info = self._call("get_collection", lambda: self._client.get_collection(collection))
        params = info.config.params
        vectors = params.vectors if isinstance(params.vectors, dict) else {}
        if DENSE_VECTOR not in vectors:
            raise ValueError(
                f"collection {collection} has the pre-hybrid layout (unnamed vector); index into a new one"
            )
        existing = int(vectors[DENSE_VECTOR].size)
        if dimension is not None and dimension != existing:
            raise ValueError(f"collection {collection} holds {existing}-dim vectors, not {dimension}")
        self.dimension = existing
        sparse = (params.sparse_vectors or {}).get(SPARSE_VECTOR)
        self._server_idf = bool(sparse is not None and sparse.modifier == models.Modifier.IDF)
        if self._server_idf:
            log.warning(
                "this collection was made with the server computing lexical IDF over every tenant; "
                "re-index it into a new collection to get per-tenant IDF",
                extra={"collection": collection},
            )
        if self._server:
            # Fields added since the collection was made (e.g. moderation) get their indexes, with the
            # parameters a new collection gets: a process that lost the race to create it (replicas and
            # workers starting at once) asks for exactly what the winner asks for, in either order.
            self._create_indexes(collection, skip=set(info.payload_schema or {}))

    def _create(self, collection: str, dimension: int) -> bool:
        """Make the collection; False when another process made it first (it exists, ours failed)."""
        try:
            self._call(
                "create_collection",
                lambda: self._client.create_collection(
                    collection,
                    vectors_config={DENSE_VECTOR: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
                    # No modifier: IDF per tenant is applied to the query (see `_tenant_idf`).
                    sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams()},
                    hnsw_config=models.HnswConfigDiff(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT),
                ),
            )
        except Exception:
            # Replicas and workers starting at once all see no collection; one creation wins, the
            # server refuses the others (409 "already exists"), which then open the winner's.
            if self._call("collection_exists", lambda: self._client.collection_exists(collection)):
                log.info("collection made meanwhile by another process", extra={"collection": collection})
                return False
            raise
        if self._server:  # local mode ignores payload indexes (and warns)
            self._create_indexes(collection, skip=set())
        return True

    def _create_indexes(self, collection: str, *, skip: set[str]) -> None:
        schema: list[tuple[str, Any]] = [
            ("tenant", models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True))
        ]
        schema += [(f, models.PayloadSchemaType.KEYWORD) for f in KEYWORD_FIELDS if f != "tenant"]
        schema += [(f, models.PayloadSchemaType.FLOAT) for f in FLOAT_FIELDS]
        schema += [(f, models.PayloadSchemaType.INTEGER) for f in INTEGER_FIELDS]
        # Looked up only (no ranges), on disk: ~60 ids per point would cost RAM.
        schema.append(
            (
                LEXICAL_TERMS,
                models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=True, range=False, on_disk=True),
            )
        )
        # wait=False: the server applies a collection's operations in order, so
        # the first write (wait=True) returns after every index exists; waiting
        # for each index would cost ~0.1 s apiece.
        for name, kind in schema:
            if name in skip:
                continue
            self._call(
                "create_payload_index",
                lambda name=name, kind=kind: self._client.create_payload_index(  # type: ignore[misc]
                    collection, field_name=name, field_schema=kind, wait=False
                ),
            )

    # ------------------------------------------------------------ aliases
    @staticmethod
    def alias_target(client: QdrantClient, alias: str) -> str | None:
        call = RetryingCaller(describe(client), DEFAULT_RETRY, timeout_s=10.0)
        return _aliased(call("get_aliases", client.get_aliases), alias)

    @staticmethod
    def has_collection(client: QdrantClient, name: str) -> bool:
        """A collection by that name exists (an alias by that name is not one: Qdrant's
        `collection_exists` also answers yes for an alias)."""
        call = RetryingCaller(describe(client), DEFAULT_RETRY, timeout_s=10.0)
        return name in {c.name for c in call("get_collections", client.get_collections).collections}

    def promote(self, alias: str, *, model_path: str = "") -> None:
        # The collection's metadata records the model (read by replicas that follow the
        # alias, and at start-up) and loses any handover mark left by an earlier reindex away
        # from it; then delete + create in one request: Qdrant applies alias changes atomically.
        self._set_metadata({MODEL_PATH_KEY: model_path, HANDOVER_TO_KEY: "", HANDOVER_UNTIL_KEY: 0.0})
        ops: list[Any] = []
        if self.alias_target(self._client, alias) is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=self.collection, alias_name=alias)
            )
        )
        self._call(
            "update_collection_aliases", lambda: self._client.update_collection_aliases(change_aliases_operations=ops)
        )

    # ------------------------------------------------------------ handover (SharedCollection)
    @staticmethod
    def collection_metadata(client: QdrantClient, collection: str) -> dict[str, Any]:
        call = RetryingCaller(describe(client), DEFAULT_RETRY, timeout_s=10.0)
        return _metadata_of(call("get_collection", lambda: client.get_collection(collection)))

    def _metadata(self) -> dict[str, Any]:
        return _metadata_of(self._call("get_collection", lambda: self._client.get_collection(self.collection)))

    def alias_points_at(self, alias: str) -> str | None:
        """The collection `alias` names now (through this store's connection and retry policy)."""
        return _aliased(self._call("get_aliases", self._client.get_aliases), alias)

    def _set_metadata(self, values: dict[str, Any]) -> None:
        # Qdrant merges the keys into the collection's metadata (a consensus operation:
        # applied when the call returns).
        self._call("update_collection", lambda: self._client.update_collection(self.collection, metadata=values))

    def recorded_model_path(self) -> str:
        return str(self._metadata().get(MODEL_PATH_KEY, ""))

    def handover(self) -> Handover | None:
        meta = self._metadata()
        to = str(meta.get(HANDOVER_TO_KEY, ""))
        return Handover(to, float(meta.get(HANDOVER_UNTIL_KEY, 0.0))) if to else None

    def begin_handover(self, to: str, until: float) -> None:
        self._set_metadata({HANDOVER_TO_KEY: to, HANDOVER_UNTIL_KEY: until})

    def end_handover(self) -> None:
        self._set_metadata({HANDOVER_TO_KEY: "", HANDOVER_UNTIL_KEY: 0.0})

    # ------------------------------------------------------------ writes
    def _point(self, p: PointRecord, pending: int) -> models.PointStruct:
        terms = p.sparse if p.sparse is not None else self._lexical.document(str(p.payload.get("text", "")))
        vectors: dict[str, Any] = {DENSE_VECTOR: np.asarray(p.vector, dtype=np.float32).tolist()}
        payload = {**p.payload, "pending": pending}
        if terms:
            vectors[SPARSE_VECTOR] = models.SparseVector(indices=list(terms.indices), values=list(terms.values))
            payload[LEXICAL_TERMS] = list(terms.indices)
        else:
            payload.pop(LEXICAL_TERMS, None)
        return models.PointStruct(id=p.id, vector=vectors, payload=payload)

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if points:
            batch = [self._point(p, PUBLISHED) for p in points]
            self._call("upsert", lambda: self._client.upsert(self.collection, points=batch, wait=True))

    def stage(self, points: Sequence[PointRecord]) -> None:
        if points:
            batch = [self._point(p, PENDING) for p in points]
            # A retry of a published version must not hide it again: only
            # insert, or overwrite points that are still staged.
            self._call(
                "stage",
                lambda: self._client.upsert(
                    self.collection, points=batch, update_filter=models.Filter(must=[_NOT_PENDING]), wait=True
                ),
            )

    def commit_media(self, tenant: str, media_id: str, version: int) -> bool:
        with self._lock:
            newer_filter = models.Filter(
                must=[
                    models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)),
                    models.FieldCondition(key="media_id", match=models.MatchValue(value=media_id)),
                    models.FieldCondition(key="version", range=models.Range(gt=version)),
                ],
                must_not=[_NOT_PENDING],
            )
            newer = self._call(
                "count", lambda: self._client.count(self.collection, count_filter=newer_filter, exact=True)
            ).count
            mine = _media(
                tenant, media_id, models.FieldCondition(key="version", match=models.MatchValue(value=int(version)))
            )
            if newer:
                self._delete_where("delete", mine)
                return False
            self._call(
                "publish",
                lambda: self._client.set_payload(
                    self.collection, payload={"pending": PUBLISHED}, points=mine, wait=True
                ),
            )
            stale = _media(tenant, media_id, models.FieldCondition(key="version", range=models.Range(lt=version)))
            self._delete_where("delete older versions", stale)
        return True

    def _delete_where(self, what: str, where: models.Filter) -> None:
        self._call(
            what,
            lambda: self._client.delete(
                self.collection, points_selector=models.FilterSelector(filter=where), wait=True
            ),
        )

    def replace_media(self, tenant: str, media_id: str, points: Sequence[PointRecord], version: int) -> None:
        with self._lock:
            self.stage(points)
            self.commit_media(tenant, media_id, version)

    def delete_media(self, tenant: str, media_id: str) -> int:
        with self._lock:
            visible = len(self.media_points(tenant, media_id))
            self._delete_where("delete media", _media(tenant, media_id))
        return visible

    def delete_points(self, ids: Sequence[str]) -> None:
        if ids:
            selector = models.PointIdsList(points=list(ids))
            self._call(
                "delete points", lambda: self._client.delete(self.collection, points_selector=selector, wait=True)
            )

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
            result = self._call(
                "search",
                lambda: self._client.query_points(
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
                ),
            )
            return [self._stored(p, p.score) for p in result.points]
        window = hybrid_window(offset + limit)
        # IDF over the caller's own published points (see the embedded store).
        weighted = lexical if self._server_idf else self._tenant_idf(lexical, flt.tenant)
        requests = [
            models.QueryRequest(
                query=dense,
                using=DENSE_VECTOR,
                filter=where,
                limit=window,
                score_threshold=score_threshold,
                params=models.SearchParams(hnsw_ef=max(ef, window)) if self._server else None,
                with_payload=False,
                with_vector=False,
            )
        ]
        if weighted:
            requests.append(
                models.QueryRequest(
                    query=models.SparseVector(indices=list(weighted.indices), values=list(weighted.values)),
                    using=SPARSE_VECTOR,
                    filter=where,
                    limit=window,
                    with_payload=False,
                    with_vector=False,
                )
            )
        # Both rankings in one round trip; fused here (see store.rrf_page).
        rankings = self._call(
            "hybrid search", lambda: self._client.query_batch_points(self.collection, requests=requests)
        )
        page = rrf_page([[(str(p.id), float(p.score)) for p in r.points] for r in rankings], offset, limit)
        if not page:
            return []
        ids = [pid for pid, _ in page]
        records = {
            str(r.id): r
            for r in self._call(
                "retrieve",
                lambda: self._client.retrieve(self.collection, ids=ids, with_payload=True, with_vectors=with_vector),
            )
        }
        return [self._stored(records[pid], score) for pid, score in page if pid in records]

    def _tenant_idf(self, terms: SparseTerms, tenant: str) -> SparseTerms:
        """The query's term weights times their IDF over the tenant's published points with terms.

        What the engine's IDF modifier computes with a corpus filter (checked
        against it by the congruence tests); terms absent from the tenant's
        corpus match nothing and are dropped.
        """
        corpus = build_filter(PointFilter(tenant=tenant))
        # The engine's N counts the corpus points that have a sparse vector.
        documents = models.Filter(
            must=[corpus],
            must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=LEXICAL_TERMS))],
        )
        n = self._count(documents)
        indices: list[int] = []
        values: list[float] = []
        if n:
            for index, weight in zip(terms.indices, terms.values, strict=True):
                df = self._count(
                    models.Filter(
                        must=[
                            documents,
                            models.FieldCondition(key=LEXICAL_TERMS, match=models.MatchValue(value=int(index))),
                        ]
                    )
                )
                if df:
                    indices.append(int(index))
                    values.append(float(weight) * math.log(1.0 + (n - df + 0.5) / (df + 0.5)))
        return SparseTerms(tuple(indices), tuple(values))

    def _count(self, where: models.Filter) -> int:
        return int(
            self._call("count", lambda: self._client.count(self.collection, count_filter=where, exact=True)).count
        )

    def media_points(self, tenant: str, media_id: str, *, with_vectors: bool = False) -> list[StoredPoint]:
        out: list[StoredPoint] = []
        offset: Any = None
        with_vector: Any = [DENSE_VECTOR] if with_vectors else False
        where = _media(tenant, media_id)
        while True:
            records, offset = self._call(
                "scroll",
                lambda offset=offset: self._client.scroll(  # type: ignore[misc]
                    self.collection,
                    scroll_filter=where,
                    limit=256,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vector,
                ),
            )
            out.extend(self._stored(r, 0.0) for r in records)
            if offset is None:
                break
        return published_version(out)

    def count(self, tenant: str | None = None) -> int:
        flt = models.Filter(must_not=[_NOT_PENDING]) if tenant is None else build_filter(PointFilter(tenant=tenant))
        return self._count(flt)

    def scan(self, *, batch_size: int = 256, with_payload: bool = True) -> Iterator[list[StoredPoint]]:
        offset: Any = None
        while True:
            records, offset = self._call(
                "scroll",
                lambda offset=offset: self._client.scroll(  # type: ignore[misc]
                    self.collection,
                    scroll_filter=models.Filter(must_not=[_NOT_PENDING]),
                    limit=batch_size,
                    offset=offset,
                    with_payload=with_payload,
                    with_vectors=False,
                ),
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
        payload = dict(point.payload or {})
        payload.pop(LEXICAL_TERMS, None)  # storage detail, not part of a result
        return StoredPoint(id=str(point.id), score=float(score), payload=payload, vector=vector)


def _aliased(aliases: Any, alias: str) -> str | None:
    """The collection `alias` names in a get_aliases answer."""
    return next((str(a.collection_name) for a in aliases.aliases if a.alias_name == alias), None)


def _metadata_of(info: Any) -> dict[str, Any]:
    """A get_collection answer's metadata (None on servers without it)."""
    return dict(getattr(info.config, "metadata", None) or {})


def _is_remote(client: QdrantClient) -> bool:
    from qdrant_client.local.qdrant_local import QdrantLocal

    return not isinstance(getattr(client, "_client", None), QdrantLocal)


def describe(client: QdrantClient) -> str:
    """Where a client points, for errors and logs (never the API key)."""
    inner = getattr(client, "_client", None)
    url = getattr(inner, "rest_uri", None)
    return str(url) if url else "local mode"
