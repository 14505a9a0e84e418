"""The vector store interface and the payload layout shared by its backends.

Backends (embedded Qdrant Edge, remote Qdrant through qdrant-client) implement
`VectorStore`; everything above speaks only these dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from understanding.domain import Analysis, Vector, point_id

# Payload fields with an index (filtered on by search).
KEYWORD_FIELDS = ("tenant", "media_id", "modality", "language", "tags", "embedding_model")
FLOAT_FIELDS = ("start_s", "end_s", "created_at")
INTEGER_FIELDS = ("chunk_index", "version")


@dataclass(frozen=True, slots=True)
class PointRecord:
    id: str
    vector: Vector
    payload: Mapping[str, Any]


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
    languages: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    created_after: float | None = None
    created_before: float | None = None
    overlaps_start_s: float | None = None
    overlaps_end_s: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class VectorStore(Protocol):
    """What the service needs from Qdrant. Blocking calls: run them off the event loop."""

    dimension: int
    collection: str

    def upsert(self, points: Sequence[PointRecord]) -> None: ...

    def replace_media(self, tenant: str, media_id: str, points: Sequence[PointRecord], version: int) -> None:
        """Write the media's new points, then drop its points from older versions."""
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
    ) -> list[StoredPoint]: ...

    def media_points(self, tenant: str, media_id: str, *, with_vectors: bool = False) -> list[StoredPoint]: ...

    def delete_media(self, tenant: str, media_id: str) -> int: ...

    def count(self, tenant: str | None = None) -> int: ...

    def close(self) -> None: ...


def analysis_points(analysis: Analysis) -> list[PointRecord]:
    """One point per chunk with the payload every consumer of the store relies on."""
    points = []
    for chunk in analysis.chunks:
        payload: dict[str, Any] = {
            "tenant": analysis.tenant,
            "media_id": analysis.media_id,
            "modality": analysis.modality.value,
            "chunk_index": chunk.index,
            "text": chunk.text,
            "start_s": float(chunk.start_s),
            "end_s": float(chunk.end_s),
            "tags": [t.label for t in chunk.tags],
            "tag_scores": {t.label: t.score for t in chunk.tags},
            "media_tags": [t.label for t in analysis.tags],
            "language": (chunk.language or analysis.language).code if (chunk.language or analysis.language) else "und",
            "embedding_model": analysis.embedding_model.name,
            "embedding_model_version": analysis.embedding_model.version,
            "created_at": float(analysis.created_at),
            "version": int(analysis.version),
            "metadata": dict(analysis.metadata),
        }
        payload.update({k: v for k, v in chunk.extra.items()})
        points.append(
            PointRecord(
                id=point_id(analysis.tenant, analysis.media_id, analysis.modality, chunk.index),
                vector=chunk.embedding,
                payload=payload,
            )
        )
    return points
