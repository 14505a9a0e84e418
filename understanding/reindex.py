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
import pathlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from understanding.config import Settings
from understanding.domain import InvalidInput, ModelRef, PreconditionFailed, UnderstandingError, Unavailable, Vector
from understanding.models.batcher import MicroBatcher
from understanding.models.embedder import TextEncoder, load_embedder, resolve_embedding_model
from understanding.pipelines.tagging import Tagger, Taxonomy
from understanding.pipelines.text import EmbeddingBinding
from understanding.sinks.store import ReindexStats, VectorStore, collection_name, reembed_into

if TYPE_CHECKING:
    from understanding.app import Core

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


class Phase(enum.Enum):
    LOADING = "loading"
    COPYING = "copying"
    CATCHING_UP = "catching_up"
    SWITCHING = "switching"
    DONE = "done"
    NOTHING_TO_DO = "nothing_to_do"
    FAILED = "failed"


FINAL_PHASES = frozenset({Phase.DONE, Phase.NOTHING_TO_DO, Phase.FAILED})


def model_spec_of(spec: str, model_dir: pathlib.Path) -> str:
    """What the alias records for a model: `packaged`, or the absolute model directory."""
    return "packaged" if spec.strip() in ("", "packaged") else str(model_dir.expanduser().resolve())


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
        core: Callable[[], Core | None],
        settings: Settings,
        *,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._core = core
        self._settings = settings
        self._on_batch = on_batch
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
            raise InvalidInput("must name a model directory on the server (or `packaged`)", field="model_path")
        try:
            model_dir = resolve_embedding_model(spec)
        except (FileNotFoundError, ImportError, OSError) as error:
            raise InvalidInput(f"{error}", field="model_path") from error
        recorded = model_spec_of(spec, model_dir)
        running = self._state
        if running is not None and not running.finished:
            if running.model_path == recorded and running.no_switch == no_switch:
                return running
            raise PreconditionFailed(
                f"a reindex to {running.model_path} is running ({running.phase.value}); wait for it to finish"
            )
        core = self._core()
        if core is None:
            raise Unavailable("the service is still starting: retry when it is SERVING")
        if batch_size > MAX_BATCH_SIZE:
            raise InvalidInput(f"must be at most {MAX_BATCH_SIZE}", field="batch_size")
        self._loop = asyncio.get_running_loop()
        self._cancel.clear()
        state = ReindexState(
            model_path=recorded,
            alias=self._settings.qdrant_collection,
            from_collection=core.store.collection,
            no_switch=no_switch,
        )
        self._state = state
        self._task = asyncio.create_task(
            self._run(core, model_dir, state, batch_size or DEFAULT_BATCH_SIZE), name="online-reindex"
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

    # ------------------------------------------------------------ the run
    def _changed(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def _changed_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._changed)

    def _load(self, model_dir: pathlib.Path) -> TextEncoder:
        settings = self._settings
        try:
            encoder = load_embedder(
                model_dir,
                backend=settings.embedding_backend,
                device=settings.embedding_device,
                cache_dir=settings.cache_path / "models",
                threads=settings.embedding_threads,
            )
            encoder.warm_up()
        except Exception as error:  # noqa: BLE001 - any load failure is the model directory's
            raise InvalidInput(f"cannot load the embedding model at {model_dir}: {error}", field="model_path") from error
        return encoder

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

    async def _run(self, core: Core, model_dir: pathlib.Path, state: ReindexState, batch_size: int) -> None:
        settings = self._settings
        target: VectorStore | None = None
        batcher: MicroBatcher[str, Vector] | None = None
        paused = swapped = False
        try:
            encoder = await asyncio.to_thread(self._load, model_dir)
            state.model = encoder.model_ref
            state.to_collection = collection_name(state.alias, encoder.model_ref)
            if state.to_collection == core.store.collection:
                state.message = f"{state.alias} already serves {state.to_collection} ({encoder.model_ref.name}): nothing to do"
                state.target_points = await asyncio.to_thread(core.store.count)
                state.phase = Phase.NOTHING_TO_DO
                return
            target = self._retired_stores.pop(state.to_collection, None)
            if target is None:
                from understanding.app import open_store

                target = await asyncio.to_thread(
                    open_store, settings, encoder.dimension, encoder.model_ref, role="target"
                )
            source = core.store
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
            taxonomy = Taxonomy.load(settings.taxonomy_path or None)
            tagger = await asyncio.to_thread(Tagger, taxonomy, encoder.encode)
            batcher = MicroBatcher(
                lambda texts: encoder.encode(texts),
                name="embed",
                max_batch_size=settings.embed_max_batch,
                max_wait_ms=settings.embed_max_wait_ms,
                max_queue=settings.embed_queue_size,
                on_batch=self._on_batch,
            )
            await batcher.start()

            state.phase = Phase.SWITCHING
            self._changed()
            paused_at = time.monotonic()
            await core.sink.pause_writes()
            paused = True
            # Nothing can be written now: this pass leaves the two collections equal.
            await self._pass(source, target, encoder, state, batch_size)
            await asyncio.to_thread(target.promote, state.alias, model_path=state.model_path)
            # One event-loop step, no await: every component moves to the new model together.
            old_store, old_batcher = core.store, core.embed_batcher
            core.embedder = encoder
            core.embed_batcher = batcher
            core.store = target
            core.text.rebind(EmbeddingBinding(batcher.submit_many, tagger, encoder.model_ref))
            core.searcher.rebind(target, batcher.submit)
            core.sink.switch_store(target, model=encoder.model_ref, embed=batcher.submit_many)
            swapped = True
            core.sink.resume_writes()
            paused = False
            state.write_pause_s = time.monotonic() - paused_at
            state.switched = True
            self._retired_stores[old_store.collection] = old_store
            self._retire(old_batcher)
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
            if paused:
                core.sink.resume_writes()
            if not swapped:
                if batcher is not None:
                    await batcher.stop()
                if target is not None and target is not core.store:
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
