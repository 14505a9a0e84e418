"""Dynamic micro-batching: concurrent callers share one forward pass.

Each submitted item gets a future; a scheduler task takes items off a bounded
queue until the batch is full or `max_wait_ms` passed since the first item,
runs the batch function in a worker thread, and completes the futures back on
the event loop. Used for the embedder, and as group commit for the sinks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from understanding.domain import LimitExceeded, Unavailable

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

log = logging.getLogger(__name__)

# Told (batch size, seconds) after each batch, e.g. by metrics.
BatchObserver = Callable[[int, float], None]


class BatcherClosed(Unavailable):
    """The batcher is stopped; pending and new submissions fail with this."""


@dataclass(slots=True)
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    future: asyncio.Future[ResultT]


@dataclass(slots=True)
class BatchStats:
    batches: int = 0
    items: int = 0
    max_batch: int = 0

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class MicroBatcher(Generic[ItemT, ResultT]):
    """Groups single items into batches for `batch_fn(items) -> outputs`.

    `batch_fn` must return one output per input, in order. If it raises, the
    batch is retried item by item so one bad item fails only its own caller.
    """

    def __init__(
        self,
        batch_fn: Callable[[Sequence[ItemT]], Sequence[ResultT]],
        *,
        name: str,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 4096,
        executor: concurrent.futures.Executor | None = None,
        on_batch: BatchObserver | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.name = name
        self._fn = batch_fn
        self._max_batch = max_batch_size
        self._max_wait_s = max_wait_ms / 1000.0
        self._max_queue = max_queue
        self._own_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"batch-{name}"
        )
        self._queue: asyncio.Queue[_Pending[ItemT, ResultT]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._on_batch = on_batch
        self.stats = BatchStats()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._task is not None:
            return
        self._queue = asyncio.Queue()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")
        self._task.add_done_callback(self._on_task_done)

    async def stop(self) -> None:
        """Stop accepting, fail whatever is still queued, wait for the running batch.

        Safe to call twice.
        """
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: BLE001 - it crashed earlier: logged and callers failed by _on_task_done
                pass
        self._fail_pending(BatcherClosed(f"{self.name} batcher stopped"))
        if self._own_executor:
            # Wait for the running batch in a thread: a blocking wait here would freeze every
            # other task on the loop (health checks, the RPCs of a drain) until the batch ends.
            await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> MicroBatcher[ItemT, ResultT]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def observe(self, on_batch: BatchObserver) -> None:
        """Report each batch's (size, seconds) to `on_batch`, e.g. metrics."""
        self._on_batch = on_batch

    # ------------------------------------------------------------ submit
    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, item: ItemT) -> ResultT:
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[ItemT]) -> list[ResultT]:
        """Queue items (they may land in different batches) and wait for all."""
        if self._closed or self._queue is None:
            raise BatcherClosed(f"{self.name} batcher is not running")
        if self._queue.qsize() + len(items) > self._max_queue:
            raise LimitExceeded(f"{self.name} queue is full ({self._max_queue} pending)", retry_after_s=0.5)
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[ResultT]] = []
        for item in items:
            fut: asyncio.Future[ResultT] = loop.create_future()
            futures.append(fut)
            self._queue.put_nowait(_Pending(item, fut))
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for fut in futures:
                fut.cancel()  # a cancelled caller frees its queued items
            raise

    # ------------------------------------------------------------ internals
    async def _next_batch(self) -> list[_Pending[ItemT, ResultT]]:
        assert self._queue is not None
        first = await self._queue.get()
        batch = [first]
        deadline = time.monotonic() + self._max_wait_s
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [p for p in batch if not p.future.done()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            items = [p.item for p in batch]
            started = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self._executor, self._call, items)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(BatcherClosed(f"{self.name} batcher stopped"))
                raise
            except BaseException as error:  # e.g. the executor was shut down: the task dies,
                for p in batch:  # so fail this batch here and `_on_task_done` fails the queue
                    if not p.future.done():
                        p.future.set_exception(BatcherClosed(f"{self.name} batcher crashed: {error!r}"))
                raise
            self._record(len(batch), time.perf_counter() - started)
            for p, out in zip(batch, outputs, strict=True):
                if p.future.done():
                    continue
                if isinstance(out, _Failure):
                    p.future.set_exception(out.error)
                else:
                    p.future.set_result(out)

    def _call(self, items: list[ItemT]) -> list[ResultT | _Failure]:
        """Run in the worker thread: whole batch, or item by item on failure."""
        try:
            return list(self._checked(items))
        except Exception as batch_error:
            if len(items) == 1:
                return [_Failure(batch_error)]
            results: list[ResultT | _Failure] = []
            for item in items:
                try:
                    results.append(self._checked([item])[0])
                except Exception as error:  # noqa: BLE001 - isolated per item on purpose
                    results.append(_Failure(error))
            return results

    def _checked(self, items: list[ItemT]) -> list[ResultT]:
        outputs = list(self._fn(items))
        if len(outputs) != len(items):
            raise RuntimeError(f"{self.name}: batch_fn returned {len(outputs)} outputs for {len(items)} items")
        return outputs

    def _record(self, size: int, seconds: float) -> None:
        self.stats.batches += 1
        self.stats.items += size
        self.stats.max_batch = max(self.stats.max_batch, size)
        if self._on_batch is not None:
            try:
                self._on_batch(size, seconds)
            except Exception:  # noqa: BLE001 - a metrics hook must never stop the batcher
                log.exception("%s batcher: on_batch hook failed", self.name)

    def _fail_pending(self, error: Exception) -> None:
        if self._queue is None:
            return
        while True:
            try:
                pending = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if not pending.future.done():
                pending.future.set_exception(error)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        """If the scheduler dies unexpectedly, fail everyone instead of hanging."""
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("batcher %s crashed: %r", self.name, error)
            self._closed = True
            self._fail_pending(BatcherClosed(f"{self.name} batcher crashed: {error!r}"))


@dataclass(frozen=True, slots=True)
class _Failure:
    error: Exception
