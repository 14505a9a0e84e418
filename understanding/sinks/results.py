"""Writes a finished analysis out: vector store first, then its event via the outbox.

Order matters: a consumer that receives the event can already query the
vectors. Both writes are group-committed through micro-batchers so many
concurrent analyses share one store update and one outbox transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from understanding import codec
from understanding.batching import MicroBatcher
from understanding.domain import Analysis, Modality, ModelRef, Moderation, Vector
from understanding.faults import FaultInjector
from understanding.sinks.outbox import Outbox, OutboxRecord
from understanding.sinks.relay import OutboxRelay
from understanding.sinks.store import PointRecord, VectorStore, analysis_points


class ResultSink:
    def __init__(
        self,
        *,
        store: VectorStore,
        outbox: Outbox,
        analysis_topic: str,
        moderation_topic: str = "understanding.moderation.v1",
        relay: OutboxRelay | None = None,
        group_commit_wait_ms: float = 2.0,
        faults: FaultInjector | None = None,
    ) -> None:
        self._faults = faults
        self.store = store
        self.outbox = outbox
        self._topic = analysis_topic
        self._moderation_topic = moderation_topic
        self._relay = relay
        self._store_writes: MicroBatcher[tuple[Analysis, list[PointRecord]], None] = MicroBatcher(
            self._write_points, name="store-writes", max_batch_size=64, max_wait_ms=group_commit_wait_ms
        )
        self._event_writes: MicroBatcher[OutboxRecord, None] = MicroBatcher(
            self._append_events, name="outbox-writes", max_batch_size=256, max_wait_ms=group_commit_wait_ms
        )
        self._gate = WriteGate()
        # Set by `switch_store`: the model the store's vectors come from, and
        # how to embed with it (for analyses made with the previous model).
        self._model: ModelRef | None = None
        self._reembed: Callable[[Sequence[str]], Awaitable[list[Vector]]] | None = None
        self._fence: Callable[[VectorStore], Awaitable[bool]] | None = None

    @property
    def batchers(self) -> tuple[MicroBatcher[Any, None], ...]:
        """The group-commit batchers (store writes, outbox writes), for metrics."""
        return (self._store_writes, self._event_writes)

    async def start(self) -> None:
        await self._store_writes.start()
        await self._event_writes.start()

    async def stop(self) -> None:
        await self._store_writes.stop()
        await self._event_writes.stop()

    async def write(self, analysis: Analysis, *, trace_id: str = "") -> str:
        """Index the analysis and queue its event durably (and its moderation event on the
        moderation topic when it was moderated); returns the analysis event's id."""
        if self._faults is not None:
            self._faults.check("store_write")
        while True:
            async with self._gate.passage():
                analysis = await self._in_store_model(analysis)
                store = self.store
                await self._store_writes.submit((analysis, analysis_points(analysis)))
            if not await self._moved_on(store):
                break
        collection = store.collection
        event = codec.analysis_event(analysis, collection=collection, produced_at=time.time())
        await self.publish(
            self._topic,
            analysis.media_id,
            event,
            schema="understanding.v1.AnalysisEvent",
            tenant=analysis.tenant,
            trace_id=trace_id,
        )
        if analysis.moderation is not None:
            await self.publish_moderation(
                analysis.tenant, analysis.media_id, analysis.moderation,
                modality=analysis.modality, version=analysis.version, metadata=analysis.metadata, trace_id=trace_id,
            )  # fmt: skip
        return str(event.event_id)

    async def publish_moderation(
        self,
        tenant: str,
        media_id: str,
        moderation: Moderation,
        *,
        modality: Modality,
        version: int,
        metadata: Mapping[str, str] | None = None,
        window: tuple[float, float] | None = None,
        trace_id: str = "",
    ) -> str:
        """Queue a ModerationEvent: a media's final verdict, or (with `window`, seconds on a
        live stream's clock) a partial one the live path publishes as soon as it is made.
        Returns the event id (stable per verdict, so a retry is deduplicated)."""
        event = codec.moderation_event(
            tenant=tenant, media_id=media_id, modality=modality, version=version, moderation=moderation,
            produced_at=time.time(), metadata=dict(metadata or {}), window=window,
        )  # fmt: skip
        await self.publish(
            self._moderation_topic, media_id, event, schema="understanding.v1.ModerationEvent",
            tenant=tenant, trace_id=trace_id,
        )  # fmt: skip
        return str(event.event_id)

    async def publish(
        self, topic: str, key: str, event: Message, *, schema: str, tenant: str, trace_id: str = ""
    ) -> None:
        """Durably queue a protobuf event (it must have an `event_id`) for Kafka."""
        await self._event_writes.submit(
            OutboxRecord(
                topic=topic,
                key=key.encode(),
                value=event.SerializeToString(),
                headers=(
                    ("schema", schema.encode()),
                    ("content-type", codec.CONTENT_TYPE),
                    ("tenant", tenant.encode()),
                    ("trace-id", (trace_id or uuid.uuid4().hex).encode()),
                ),
                event_id=str(event.event_id),
            )
        )
        if self._relay is not None:
            self._relay.notify()

    async def delete_media(self, tenant: str, media_id: str, *, trace_id: str = "") -> int:
        """Remove every point of the media and tell consumers (MediaDeletedEvent)."""
        deleted = 0
        while True:
            async with self._gate.passage():
                store = self.store
                # Made again after a switch (see `set_fence`), it may find the media gone already.
                deleted = max(deleted, await asyncio.to_thread(store.delete_media, tenant, media_id))
            if not await self._moved_on(store):
                break
        if deleted:
            event = codec.media_deleted_event(tenant, media_id, deleted, produced_at=time.time())
            await self.publish(
                self._topic,
                media_id,
                event,
                schema="understanding.v1.MediaDeletedEvent",
                tenant=tenant,
                trace_id=trace_id,
            )
        return deleted

    # ------------------------------------------------------------ online reindex
    async def pause_writes(self) -> None:
        """Hold every new store write and deletion, and wait for those already under way.

        The online reindex pauses writes for its final catch-up pass, so no
        write lands in the old collection after it (`resume_writes` releases).
        """
        await self._gate.close()

    def resume_writes(self) -> None:
        self._gate.open()

    def switch_store(
        self, store: VectorStore, *, model: ModelRef, embed: Callable[[Sequence[str]], Awaitable[list[Vector]]]
    ) -> None:
        """Write into `store` from now on (call with writes paused).

        An analysis made with another model than `model` (it was embedded
        before the switch and written after it, or by a worker still running
        the old model) has its chunks re-embedded with `embed` before it is
        written, so the store never mixes two models' vectors.
        """
        self.store, self._model, self._reembed = store, model, embed

    def set_fence(self, fence: Callable[[VectorStore], Awaitable[bool]]) -> None:
        """`fence(store)` runs after every write into `store` (outside the write gate); True
        means this process serves another collection now and the write is made again there
        (core/follow.py: another process's reindex moved the alias)."""
        self._fence = fence

    async def _moved_on(self, store: VectorStore) -> bool:
        return self._fence is not None and await self._fence(store)

    async def _in_store_model(self, analysis: Analysis) -> Analysis:
        if self._model is None or self._reembed is None or analysis.embedding_model == self._model:
            return analysis
        vectors = await self._reembed([c.text for c in analysis.chunks]) if analysis.chunks else []
        chunks = tuple(dataclasses.replace(c, embedding=v) for c, v in zip(analysis.chunks, vectors, strict=True))
        return dataclasses.replace(analysis, chunks=chunks, embedding_model=self._model)

    def _write_points(self, batch: Sequence[tuple[Analysis, list[PointRecord]]]) -> list[None]:
        """Stage every analysis's points (one store update, invisible to readers),
        then publish each media's version, which also drops its older versions.

        Readers see a media's old version or its new one, never a mix: see
        `VectorStore.commit_media`. A crash between the two steps leaves only
        invisible staged points, which the next write of the media removes.
        """
        self.store.stage([p for _, points in batch for p in points])
        for analysis, _ in batch:
            self.store.commit_media(analysis.tenant, analysis.media_id, analysis.version)
        return [None] * len(batch)

    def _append_events(self, records: Sequence[OutboxRecord]) -> list[None]:
        self.outbox.append(records)
        return [None] * len(records)


class WriteGate:
    """Lets writes through until `close`, which then waits for those already through."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._inflight = 0

    @contextlib.asynccontextmanager
    async def passage(self) -> AsyncIterator[None]:
        while not self._open.is_set():
            await self._open.wait()
        self._inflight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def close(self) -> None:
        self._open.clear()
        await self._idle.wait()

    def open(self) -> None:
        self._open.set()
