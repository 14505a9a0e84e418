"""Online reindex: move the serving process to another embedding model without downtime.

The Admin RPC `Reindex` runs this in the process that owns the store (the
embedded store admits one process, so an offline `understanding reindex`
would need the server stopped). Steps, while every RPC keeps being served
from the current collection with the current model:

1. load and warm the new model (same backend settings as the serving one);
2. re-embed every published point of the current collection into the new
   model's collection (`sinks.store.reembed_into`, in a worker thread, in
   batches), then incremental catch-up passes for points written, re-analysed
   or deleted meanwhile, until a pass finds little left;
3. pause store writes (`ResultSink.pause_writes`: new writes wait, writes
   under way finish), run the final catch-up pass, point the alias at the new
   collection (recording the model directory with it), and swap every serving
   component in one event-loop step (embedder, embed batcher, the text
   pipeline's binding, which speech/video/jobs share, the searcher's store and
   query embedding, the sink's store), then resume writes.

Other processes on the same Qdrant server (replicas, workers that write
vectors directly) follow by themselves (`follow`, driven by
core/follow.py): before the final pass the old collection is marked as
handed over to the new one, for a lease; a process that writes there sees
the mark right after its write, waits for the alias to move, switches to
the recorded model and writes again (ids are idempotent), so no write made
after the final pass stays behind. Processes that do not write notice the
alias by polling it.

Readers never wait: searches in flight during the swap run again on the new
pair (`Searcher.rebind`), analyses embedded with the old model re-embed
(`TextPipeline.rebind`, `ResultSink.switch_store`). The old collection stays
on disk (and open until the process stops), so rolling back is a reindex to
the old model, which only embeds what changed since.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from understanding.batching import MicroBatcher
from understanding.core.embedding import EmbeddingFactory, EmbeddingSwitch, ServingEmbedding
from understanding.domain import InvalidInput, ModelRef, PreconditionFailed, Unavailable, UnderstandingError, Vector
from understanding.models.embedder import EmbeddingModel, TextEncoder
from understanding.sinks.results import ResultSink
from understanding.sinks.store import ReindexStats, SharedCollection, VectorStore, collection_name, reembed_into

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 256
MAX_BATCH_SIZE = 4096
# Catch-up passes stop when one touches at most this many points (the final
# pass, with writes paused, does the rest) or after this many passes.
CATCH_UP_SETTLED_POINTS = 64
MAX_CATCH_UP_PASSES = 5
# The old embed batcher stops this long after the switch: calls queued in it
# finish; a later call finds it closed and embeds again with the new model.
RETIRE_BATCHER_AFTER_S = 30.0
# From this many points the new collection's HNSW index is built before the
# switch (below, exact search is fast enough). The build holds the GIL for
# seconds per 10k points: searches are slower meanwhile, never refused.
OPTIMIZE_MIN_POINTS = 20_000
# Progress is streamed at most this often.
PROGRESS_INTERVAL_S = 0.25
# On a shared server, the final pass and the alias move must end within this lease
# (writers elsewhere wait for the alias to move until then).
DEFAULT_HANDOVER_S = 120.0


class Phase(enum.Enum):
    LOADING = "loading"
    COPYING = "copying"
    CATCHING_UP = "catching_up"
    SWITCHING = "switching"
    DONE = "done"
    NOTHING_TO_DO = "nothing_to_do"
    FAILED = "failed"


FINAL_PHASES = frozenset({Phase.DONE, Phase.NOTHING_TO_DO, Phase.FAILED})


@dataclass
class ReindexState:
    """A reindex's progress; `snapshot()` copies it for a reader."""

    model_path: str
    alias: str
    from_collection: str
    no_switch: bool = False
    phase: Phase = Phase.LOADING
    to_collection: str = ""
    model: ModelRef | None = None
    total_points: int = 0
    done_points: int = 0
    embedded_points: int = 0
    removed_points: int = 0
    without_text_points: int = 0
    passes: int = 0
    switched: bool = False
    write_pause_s: float = 0.0
    message: str = ""
    target_points: int = 0
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    error: UnderstandingError | None = None
    # A snapshot taken as each phase was entered (shared by the snapshots), so a watcher that
    # was asleep while a short phase (SWITCHING) came and went still reports it.
    phase_entries: list[ReindexState] = field(default_factory=list, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "phase" and "phase_entries" in self.__dict__:
            self.phase_entries.append(self.snapshot())

    @property
    def finished(self) -> bool:
        return self.phase in FINAL_PHASES

    @property
    def elapsed_s(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started_at

    def snapshot(self) -> ReindexState:
        return dataclasses.replace(self)


class _Cancelled(Exception):
    """Raised from the progress hook to stop a pass when the server stops."""


class OnlineReindex:
    """At most one reindex at a time in the serving process; see the module docstring."""

    def __init__(
        self,
        *,
        switch: EmbeddingSwitch,
        factory: EmbeddingFactory,
        sink: ResultSink,
        handover_s: float = DEFAULT_HANDOVER_S,
    ) -> None:
        self._switch = switch
        self._handover_s = handover_s
        self._follow_lock = asyncio.Lock()
        self._factory = factory
        self._sink = sink
        self._state: ReindexState | None = None
        self._task: asyncio.Task[None] | None = None
        self._tick = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel = threading.Event()
        # Collections this process served before a switch: still open (a search
        # in flight may read one), reused if a later reindex goes back to it.
        self._retired_stores: dict[str, VectorStore] = {}
        self._retired_batchers: list[MicroBatcher[str, Vector]] = []
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def state(self) -> ReindexState | None:
        return self._state

    # ------------------------------------------------------------ API
    async def start(self, model_path: str, *, batch_size: int = 0, no_switch: bool = False) -> ReindexState:
        """Start a reindex to `model_path` (or join the same one already running)."""
        spec = model_path.strip()
        if not spec:
            raise InvalidInput(
                "must name a model: `multilingual`, `minilm`, or a model directory on the server", field="model_path"
            )
        model = self._factory.resolve(spec)
        recorded = model.spec
        running = self._state
        if running is not None and not running.finished:
            if running.model_path == recorded and running.no_switch == no_switch:
                return running
            raise PreconditionFailed(
                f"a reindex to {running.model_path} is running ({running.phase.value}); wait for it to finish"
            )
        if batch_size > MAX_BATCH_SIZE:
            raise InvalidInput(f"must be at most {MAX_BATCH_SIZE}", field="batch_size")
        self._loop = asyncio.get_running_loop()
        self._cancel.clear()
        state = ReindexState(
            model_path=recorded,
            alias=self._factory.stores.alias,
            from_collection=self._switch.current.collection,
            no_switch=no_switch,
        )
        self._state = state
        self._task = asyncio.create_task(
            self._run(model, state, batch_size or DEFAULT_BATCH_SIZE), name="online-reindex"
        )
        log.info("reindex started", extra={"model_path": recorded, "from": state.from_collection})
        return state

    async def watch(self, state: ReindexState) -> AsyncIterator[ReindexState]:
        """Snapshots of `state` as it changes, the final one last; raises its error if it failed."""
        seen = len(state.phase_entries)
        while True:
            tick = self._tick
            entered, seen = state.phase_entries[seen:], len(state.phase_entries)
            for entry in entered:
                if entry.phase is not state.phase:  # entered and left since the last update
                    yield entry
            snapshot = state.snapshot()
            yield snapshot
            if snapshot.finished:
                break
            try:
                await asyncio.wait_for(tick.wait(), timeout=1.0)
            except TimeoutError:
                pass
            if not state.finished:
                await asyncio.sleep(PROGRESS_INTERVAL_S)
        if state.error is not None:
            raise state.error

    async def stop(self) -> None:
        """Cancel a running reindex, stop the retired batchers, close the retired stores. Safe twice."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            self._cancel.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=60)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("reindex did not stop in time")
        for retiring in list(self._retiring):
            retiring.cancel()
        batchers, self._retired_batchers = self._retired_batchers, []
        for batcher in batchers:
            await batcher.stop()
        stores, self._retired_stores = self._retired_stores, {}
        for store in stores.values():
            await asyncio.to_thread(store.close)

    @property
    def running(self) -> bool:
        return self._state is not None and not self._state.finished

    async def follow(self, collection: str) -> bool:
        """Serve `collection`, which a reindex in another process filled and pointed the
        alias at: load its recorded model, then swap as a local reindex does (writes
        paused for the swap only). False when this process serves it already, or runs
        a reindex of its own (which decides)."""
        async with self._follow_lock:
            current = self._switch.current
            if current.collection == collection or self.running:
                return False
            stores = self._factory.stores
            store = self._retired_stores.pop(collection, None)
            try:
                if store is None:
                    store, recorded = await asyncio.to_thread(stores.open, collection)
                else:
                    recorded = await asyncio.to_thread(stores.recorded_model, store)
                spec = stores.model_spec_for(collection, recorded)
                if not spec:
                    raise PreconditionFailed(
                        f"the alias {stores.alias!r} moved to {collection!r}, which records no model this "
                        "process can load: restart it with UNDERSTANDING_EMBEDDING_MODEL set to that model"
                    )
                encoder = await asyncio.to_thread(self._load, self._factory.resolve(spec))
                wanted = collection_name(stores.alias, encoder.model_ref)
                if wanted != collection:
                    raise PreconditionFailed(
                        f"the alias {stores.alias!r} moved to {collection!r}, but its recorded model {spec} "
                        f"has the collection {wanted!r}"
                    )
                unit = await asyncio.to_thread(self._factory.assemble, encoder, store, spec)
            except BaseException:
                if store is not None:
                    self._retired_stores[collection] = store
                raise
            await unit.batcher.start()
            await self._sink.pause_writes()
            try:
                previous = self._switch.swap(unit)
            finally:
                self._sink.resume_writes()
            if previous.store is not None:
                self._retired_stores[previous.collection] = previous.store
            self._retire(previous.batcher)
            log.info(
                "followed the alias to another model",
                extra={"alias": stores.alias, "from": previous.collection, "to": collection, "model": spec},
            )
            return True

    # ------------------------------------------------------------ the run
    def _changed(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def _changed_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._changed)

    def _load(self, model: EmbeddingModel) -> TextEncoder:
        try:
            return self._factory.load_encoder(model)
        except InvalidInput:
            raise
        except Exception as error:  # noqa: BLE001 - any load failure is the model's
            raise InvalidInput(f"cannot load the embedding model {model.spec}: {error}", field="model_path") from error

    async def _pass(
        self, source: VectorStore, target: VectorStore, encoder: TextEncoder, state: ReindexState, batch_size: int
    ) -> ReindexStats:
        state.passes += 1
        state.done_points = 0
        state.total_points = await asyncio.to_thread(source.count)
        self._changed()

        def progress(n: int) -> None:
            if self._cancel.is_set():
                raise _Cancelled()
            state.done_points += n
            self._changed_threadsafe()

        stats = await asyncio.to_thread(
            reembed_into, source, target, encoder.encode, encoder.model_ref, batch_size=batch_size, progress=progress
        )
        state.embedded_points += stats.embedded
        state.removed_points += stats.removed
        state.without_text_points = stats.without_text
        self._changed()
        return stats

    async def _run(self, model: EmbeddingModel, state: ReindexState, batch_size: int) -> None:
        serving = self._switch.current
        source = serving.store
        target: VectorStore | None = None
        unit: ServingEmbedding | None = None
        paused = swapped = marked = False
        shared = source if isinstance(source, SharedCollection) else None
        lease_ends = 0.0
        try:
            if source is None:
                raise PreconditionFailed("this process does not own the vector store")
            encoder = await asyncio.to_thread(self._load, model)
            state.model = encoder.model_ref
            state.to_collection = collection_name(state.alias, encoder.model_ref)
            if state.to_collection == source.collection:
                state.message = (
                    f"{state.alias} already serves {state.to_collection} ({encoder.model_ref.name}): nothing to do"
                )
                state.target_points = await asyncio.to_thread(source.count)
                state.phase = Phase.NOTHING_TO_DO
                return
            target = self._retired_stores.pop(state.to_collection, None)
            if target is None:
                target = await asyncio.to_thread(self._factory.stores.target, encoder.model_ref, encoder.dimension)
            state.phase = Phase.COPYING
            stats = await self._pass(source, target, encoder, state, batch_size)
            state.phase = Phase.CATCHING_UP
            while stats.embedded + stats.removed > CATCH_UP_SETTLED_POINTS and state.passes < MAX_CATCH_UP_PASSES:
                stats = await self._pass(source, target, encoder, state, batch_size)
            if await asyncio.to_thread(target.count) >= OPTIMIZE_MIN_POINTS:
                await asyncio.to_thread(target.optimize)
            if state.no_switch:
                await self._pass(source, target, encoder, state, batch_size)
                state.target_points = await asyncio.to_thread(target.count)
                state.message = f"{state.to_collection} filled; {state.alias} still serves {state.from_collection}"
                state.phase = Phase.DONE
                return
            unit = await asyncio.to_thread(self._factory.assemble, encoder, target, state.model_path)
            await unit.batcher.start()

            state.phase = Phase.SWITCHING
            self._changed()
            paused_at = time.monotonic()
            await self._sink.pause_writes()
            paused = True
            if shared is not None:
                # Other processes writing to the server: from now on, one that writes here
                # sees the mark after its write and writes again into the new collection.
                lease_ends = time.time() + self._handover_s
                await asyncio.to_thread(shared.begin_handover, target.collection, lease_ends)
                marked = True
            # Nothing can be written now (here; elsewhere, see above): this pass leaves the
            # two collections equal.
            await self._pass(source, target, encoder, state, batch_size)
            if marked and time.time() >= lease_ends:
                raise Unavailable(
                    f"the final pass outlasted the {self._handover_s:g} s handover lease: writers in other "
                    "processes may have stopped waiting; nothing was switched (raise "
                    "UNDERSTANDING_REINDEX_HANDOVER_S and run the reindex again)"
                )
            await asyncio.to_thread(target.promote, state.alias, model_path=state.model_path)
            marked = False  # the source keeps its mark: a late writer there must follow the alias
            # One event-loop step, no await: every consumer moves to the new model together.
            previous = self._switch.swap(unit)
            swapped = True
            self._sink.resume_writes()
            paused = False
            state.write_pause_s = time.monotonic() - paused_at
            state.switched = True
            self._retired_stores[source.collection] = source
            self._retire(previous.batcher)
            state.target_points = await asyncio.to_thread(target.count)
            state.message = f"{state.alias} -> {state.to_collection}; {state.from_collection} kept for rollback"
            state.phase = Phase.DONE
            log.info(
                "reindex switched",
                extra={
                    "alias": state.alias,
                    "from": state.from_collection,
                    "to": state.to_collection,
                    "points": state.target_points,
                    "write_pause_ms": round(state.write_pause_s * 1000, 1),
                },
            )
        except _Cancelled:
            state.error = Unavailable("the reindex was cancelled: the server is stopping")
        except UnderstandingError as error:
            state.error = error
        except Exception as error:  # noqa: BLE001 - reported to the caller; the old collection keeps serving
            log.exception("reindex failed")
            state.error = UnderstandingError(f"reindex failed: {type(error).__name__}: {error}")
        finally:
            if marked and shared is not None:
                try:
                    # Unless the alias did move (a promote that failed after it took effect): then
                    # a late writer there must still follow it.
                    if await asyncio.to_thread(shared.alias_points_at, state.alias) == shared.collection:
                        await asyncio.to_thread(shared.end_handover)
                except Exception:  # noqa: BLE001 - the mark expires with its lease anyway
                    log.warning("could not clear the handover mark; writers wait for its lease to end")
            if paused:
                self._sink.resume_writes()
            if not swapped:
                if unit is not None:
                    await unit.batcher.stop()
                if target is not None and target is not self._switch.current.store:
                    # Kept open for a retry (and for the stores retired earlier, required).
                    self._retired_stores[target.collection] = target
            if state.error is not None:
                state.phase = Phase.FAILED
                state.message = state.error.message
                log.warning("reindex failed", extra={"error": state.message})
            state.ended_at = time.monotonic()
            self._changed()

    def _retire(self, batcher: MicroBatcher[str, Vector]) -> None:
        self._retired_batchers.append(batcher)

        async def later() -> None:
            await asyncio.sleep(RETIRE_BATCHER_AFTER_S)
            if batcher in self._retired_batchers:
                self._retired_batchers.remove(batcher)
                await batcher.stop()

        task = asyncio.create_task(later(), name="retire-embed-batcher")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


@dataclass(frozen=True, slots=True)
class OfflineReindexResult:
    alias: str
    from_collection: str
    to_collection: str
    switched: bool
    embedded: int
    without_text: int
    removed: int
    points: int
    seconds: float
    nothing_to_do: bool = False


def reindex_offline(
    factory: EmbeddingFactory,
    model_spec: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    no_switch: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> OfflineReindexResult:
    """The same re-embedding with no server running (blocking): every point of the alias's
    collection into the new model's, a second incremental pass for what was written meanwhile
    (by a remote-store writer), index build, then the alias moves unless `no_switch`.

    Raises InvalidInput for a bad model spec, LookupError when the alias points nowhere.
    """
    model = factory.resolve(model_spec)
    source = factory.stores.current()
    target: VectorStore | None = None
    try:
        encoder = factory.load_encoder(model)
        target = factory.stores.target(encoder.model_ref, encoder.dimension)
        alias = factory.stores.alias
        if target.collection == source.collection:
            points = source.count()
            return OfflineReindexResult(alias, source.collection, target.collection, False, 0, 0, 0, points, 0.0, True)
        total, done = source.count(), 0

        def report(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        runs = [reembed_into(source, target, encoder.encode, encoder.model_ref, batch_size=batch_size, progress=report)]
        runs.append(reembed_into(source, target, encoder.encode, encoder.model_ref, batch_size=batch_size))
        target.optimize()
        if not no_switch:
            target.promote(alias, model_path=model.spec)
        return OfflineReindexResult(
            alias=alias,
            from_collection=source.collection,
            to_collection=target.collection,
            switched=not no_switch,
            embedded=sum(r.embedded for r in runs),
            without_text=runs[-1].without_text,
            removed=sum(r.removed for r in runs),
            points=target.count(),
            seconds=round(sum(r.seconds for r in runs), 2),
        )
    finally:
        if target is not None:
            target.close()
        source.close()
