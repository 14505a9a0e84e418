"""Reads and deletions of one media's stored points (GetMedia, DeleteMedia), tenant-scoped."""

from __future__ import annotations

import asyncio

from understanding.sinks.results import ResultSink
from understanding.sinks.store import StoredPoint


class MediaCatalog:
    """Goes through the sink, so it always reads the collection being written (online reindex)."""

    def __init__(self, sink: ResultSink) -> None:
        self._sink = sink

    async def points(self, tenant: str, media_id: str) -> list[StoredPoint]:
        """The published version's points, in chunk order: never half of a re-analysis."""
        return await asyncio.to_thread(self._sink.store.media_points, tenant, media_id)

    async def delete(self, tenant: str, media_id: str, *, trace_id: str = "") -> int:
        """Drop every point of the media (all versions) and publish a MediaDeletedEvent."""
        return await self._sink.delete_media(tenant, media_id, trace_id=trace_id)
