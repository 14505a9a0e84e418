"""Follow an online reindex made by another process on the same Qdrant server.

Every process serving one alias on a Qdrant server (API replicas, workers
that write vectors directly) must end on the new model after a reindex run in
one of them, without losing a write made in the old collection after the
reindex's final pass. Two mechanisms:

- the write fence (`written`, called by the ResultSink after every store
  write and deletion): if the collection written to is marked as handed over
  (`SharedCollection.handover`, set by the reindexer before its final pass),
  wait until the alias moves, switch to the new model (`OnlineReindex.follow`)
  and tell the sink to write again. A write the reindexer's final pass could
  miss (it ended after the mark was set) always sees the mark, since the mark
  is read after the write. If the reindex fails, its mark is cleared (or its
  lease runs out) and the write stands in the collection that keeps serving;
  a later reindex copies it.
- polling the alias every `poll_s` (`UNDERSTANDING_QDRANT_ALIAS_POLL_S`), so a
  process that only searches also moves to the new model.

Tested with real processes on a real server in tests/integration/test_reindex_replicas.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from understanding.core.embedding import EmbeddingSwitch
from understanding.core.reindex import OnlineReindex
from understanding.domain import Unavailable
from understanding.sinks.store import SharedCollection, VectorStore

log = logging.getLogger(__name__)

# How often a writer that met a handover mark looks at the alias again.
HANDOVER_POLL_S = 0.2
# Tolerated difference between this host's clock and the reindexer's (the lease's end is
# the reindexer's wall-clock time).
CLOCK_SKEW_S = 5.0


class AliasFollower:
    """Keeps this process on the collection the alias names; see the module docstring."""

    def __init__(self, *, switch: EmbeddingSwitch, reindex: OnlineReindex, alias: str, poll_s: float) -> None:
        self._switch = switch
        self._reindex = reindex
        self._alias = alias
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._poll_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._poll(), name="alias-follower")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.check()
            except Exception as error:  # noqa: BLE001 - the next round tries again
                log.warning("could not follow the alias", extra={"alias": self._alias, "error": str(error)})

    async def check(self) -> bool:
        """Switch if the alias names another collection than the one served; True if switched."""
        store = self._switch.current.store
        if not isinstance(store, SharedCollection) or self._reindex.running:
            return False
        target = await asyncio.to_thread(store.alias_points_at, self._alias)
        if target is None or target == store.collection:
            return False
        return await self._reindex.follow(target)

    async def written(self, store: VectorStore) -> bool:
        """Called after a write into `store`; True if it must be written again (this process
        serves the alias's new collection now)."""
        if not isinstance(store, SharedCollection):
            return False
        handover = await asyncio.to_thread(store.handover)
        if handover is None:
            return False
        while True:
            target = await asyncio.to_thread(store.alias_points_at, self._alias)
            if target is not None and target != store.collection:
                while self._reindex.running:  # this process's own reindex moved it: it swaps in a moment
                    await asyncio.sleep(HANDOVER_POLL_S)
                if self._switch.current.collection != target:
                    await self._reindex.follow(target)
                if self._switch.current.collection != target:
                    raise Unavailable(
                        f"the alias {self._alias!r} moved to {target!r} while this process was writing; "
                        "it has not switched yet"
                    )
                log.info(
                    "a write landed in a collection a reindex handed over: writing it again in the new one",
                    extra={"from": store.collection, "to": target},
                )
                return True
            handover = await asyncio.to_thread(store.handover)
            if handover is None:
                return False  # the reindex failed: this collection keeps serving, the write stands
            if time.time() > handover.until + CLOCK_SKEW_S:
                log.warning(
                    "a reindex's handover mark outlived its lease (the reindexer stopped?); writing on",
                    extra={"collection": store.collection, "to": handover.to},
                )
                return False
            await asyncio.sleep(HANDOVER_POLL_S)
