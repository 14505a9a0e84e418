"""MicroBatcher: ordering, batching, error isolation, cancellation, shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from tests.support.waiting import PATIENCE_S, wait_until_async
from understanding.batching import BatcherClosed, MicroBatcher
from understanding.domain import LimitExceeded


def doubler(seen: list[list[int]]):  # type: ignore[no-untyped-def]
    def fn(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        return [i * 2 for i in items]

    return fn


class Held:
    """A batch function that signals when a batch starts and holds it until released:
    tests wait for `running` instead of sleeping and hoping the worker took the item."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.release = threading.Event()
        self.seen: list[list[int]] = []

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.running.set()
        self.release.wait(PATIENCE_S)
        self.seen.append(list(items))
        return list(items)

    async def started(self) -> None:
        await wait_until_async(self.running.is_set, what="the worker started a batch")


async def test_concurrent_items_share_batches_and_keep_order() -> None:
    seen: list[list[int]] = []
    async with MicroBatcher(doubler(seen), name="t", max_batch_size=8, max_wait_ms=20) as b:
        results = await asyncio.gather(*(b.submit(i) for i in range(20)))
    assert results == [i * 2 for i in range(20)]
    assert max(len(s) for s in seen) == 8  # full batches formed
    assert len(seen) == 3
    assert [i for s in seen for i in s] == list(range(20))  # FIFO


async def test_submit_many_returns_in_order() -> None:
    async with MicroBatcher(doubler([]), name="t", max_batch_size=3, max_wait_ms=1) as b:
        assert await b.submit_many([5, 6, 7, 8, 9]) == [10, 12, 14, 16, 18]


async def test_one_bad_item_fails_only_its_caller() -> None:
    def fn(items: Sequence[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return [i + 1 for i in items]

    async with MicroBatcher(fn, name="t", max_batch_size=16, max_wait_ms=20) as b:
        results = await asyncio.gather(*(b.submit(i) for i in (1, 13, 2)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 3
    assert isinstance(results[1], ValueError)


async def test_cancelled_waiter_is_skipped() -> None:
    held = Held()
    async with MicroBatcher(held, name="t", max_batch_size=4, max_wait_ms=1) as b:
        try:
            first = asyncio.create_task(b.submit(1))
            await held.started()  # the worker holds item 1
            doomed = asyncio.create_task(b.submit(2))
            kept = asyncio.create_task(b.submit(3))
            await wait_until_async(lambda: b.queued == 2, what="both items queued")
            doomed.cancel()
        finally:
            held.release.set()
        assert await first == 1 and await kept == 3
        with pytest.raises(asyncio.CancelledError):
            await doomed
    assert held.seen == [[1], [3]]


async def test_stop_fails_pending_instead_of_hanging() -> None:
    held = Held()
    b = MicroBatcher(held, name="t", max_batch_size=1, max_wait_ms=0)
    await b.start()
    try:
        running = asyncio.create_task(b.submit(1))
        await held.started()
        waiting = asyncio.create_task(b.submit(2))
        await wait_until_async(lambda: b.queued == 1, what="item 2 queued")
        stopper = asyncio.create_task(b.stop())
        # Both callers fail while the batch is still running in its thread: nobody waits for it,
        # and the event loop keeps running meanwhile (stop waits for the batch off the loop).
        for task in (running, waiting):
            with pytest.raises(BatcherClosed):
                await task
        assert not stopper.done()  # stop itself waits for the running batch...
    finally:
        held.release.set()
    await stopper  # ...and returns once it ended
    with pytest.raises(BatcherClosed):
        await b.submit(3)
    await b.stop()  # twice is fine


async def test_bounded_queue_rejects_with_retry_hint() -> None:
    held = Held()
    async with MicroBatcher(held, name="t", max_batch_size=1, max_wait_ms=0, max_queue=2) as b:
        try:
            busy = [asyncio.create_task(b.submit(0))]
            await held.started()  # the worker holds item 0
            busy += [asyncio.create_task(b.submit(i)) for i in (1, 2)]
            await wait_until_async(lambda: b.queued == 2, what="the queue full")
            with pytest.raises(LimitExceeded) as err:
                await b.submit(7)  # one more item is one too many
            assert err.value.retry_after_s is not None
            with pytest.raises(LimitExceeded):
                await b.submit_many([7, 8, 9])
        finally:
            held.release.set()
        assert await asyncio.gather(*busy) == [0, 1, 2]
    assert held.seen == [[0], [1], [2]]


async def test_wrong_output_count_is_an_error_per_item() -> None:
    async with MicroBatcher(lambda items: [], name="t", max_batch_size=4, max_wait_ms=5) as b:
        with pytest.raises(RuntimeError, match="returned 0 outputs for 1"):
            await b.submit(1)


async def test_crashed_scheduler_fails_running_and_queued_callers() -> None:
    """If the scheduler task dies (here: its executor is gone), nobody hangs."""
    import concurrent.futures

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    executor.shutdown()
    b = MicroBatcher(doubler([]), name="t", max_batch_size=1, max_wait_ms=0, executor=executor)
    await b.start()
    results = await asyncio.wait_for(
        asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True), PATIENCE_S
    )
    assert all(isinstance(r, BatcherClosed) for r in results), results
    with pytest.raises(BatcherClosed):
        await b.submit(9)
    await b.stop()


async def test_failing_metrics_hook_does_not_break_batches() -> None:
    def hook(size: int, seconds: float) -> None:
        raise RuntimeError("metrics down")

    async with MicroBatcher(doubler([]), name="t", max_batch_size=4, max_wait_ms=1, on_batch=hook) as b:
        assert await asyncio.gather(*(b.submit(i) for i in range(6))) == [0, 2, 4, 6, 8, 10]


async def test_cancelled_submit_many_frees_its_queued_items() -> None:
    held = Held()
    async with MicroBatcher(held, name="t", max_batch_size=8, max_wait_ms=1) as b:
        try:
            first = asyncio.create_task(b.submit(0))
            await held.started()  # the worker holds item 0
            doomed = asyncio.create_task(b.submit_many([1, 2, 3]))
            kept = asyncio.create_task(b.submit(4))
            await wait_until_async(lambda: b.queued == 4, what="all four items queued")
            doomed.cancel()
        finally:
            held.release.set()
        assert await first == 0 and await kept == 4
        with pytest.raises(asyncio.CancelledError):
            await doomed
    assert held.seen == [[0], [4]]
