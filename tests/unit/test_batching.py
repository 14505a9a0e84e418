"""MicroBatcher: ordering, batching, error isolation, cancellation, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Sequence

import pytest

from understanding.domain import LimitExceeded
from understanding.batching import BatcherClosed, MicroBatcher


def doubler(seen: list[list[int]]):  # type: ignore[no-untyped-def]
    def fn(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        return [i * 2 for i in items]

    return fn


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
    release = threading.Event()
    seen: list[list[int]] = []

    def fn(items: Sequence[int]) -> list[int]:
        release.wait(5)
        seen.append(list(items))
        return list(items)

    async with MicroBatcher(fn, name="t", max_batch_size=4, max_wait_ms=1) as b:
        first = asyncio.create_task(b.submit(1))  # occupies the worker
        await asyncio.sleep(0.05)
        doomed = asyncio.create_task(b.submit(2))
        kept = asyncio.create_task(b.submit(3))
        await asyncio.sleep(0.01)
        doomed.cancel()
        release.set()
        assert await first == 1 and await kept == 3
        with pytest.raises(asyncio.CancelledError):
            await doomed
    assert [2] not in seen and all(2 not in s for s in seen)


async def test_stop_fails_pending_instead_of_hanging() -> None:
    release = threading.Event()

    def fn(items: Sequence[int]) -> list[int]:
        release.wait(2)
        return list(items)

    b = MicroBatcher(fn, name="t", max_batch_size=1, max_wait_ms=0)
    await b.start()
    running = asyncio.create_task(b.submit(1))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(b.submit(2))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    stopper = asyncio.create_task(b.stop())
    await asyncio.sleep(0.05)
    release.set()
    await stopper
    for task in (running, waiting):
        with pytest.raises(BatcherClosed):
            await task
    assert time.monotonic() - started < 3
    with pytest.raises(BatcherClosed):
        await b.submit(3)
    await b.stop()  # twice is fine


async def test_bounded_queue_rejects_with_retry_hint() -> None:
    release = threading.Event()

    def fn(items: Sequence[int]) -> list[int]:
        release.wait(5)
        return list(items)

    async with MicroBatcher(fn, name="t", max_batch_size=1, max_wait_ms=0, max_queue=2) as b:
        busy = [asyncio.create_task(b.submit(0))]
        await asyncio.sleep(0.05)  # the worker holds item 0
        busy += [asyncio.create_task(b.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(LimitExceeded) as err:
            await b.submit_many([7, 8, 9])
        assert err.value.retry_after_s is not None
        release.set()
        assert await asyncio.gather(*busy) == [0, 1, 2]


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
    results = await asyncio.wait_for(asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True), 2)
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
    release = threading.Event()
    seen: list[list[int]] = []

    def fn(items: Sequence[int]) -> list[int]:
        release.wait(5)
        seen.append(list(items))
        return list(items)

    async with MicroBatcher(fn, name="t", max_batch_size=8, max_wait_ms=1) as b:
        first = asyncio.create_task(b.submit(0))  # occupies the worker
        await asyncio.sleep(0.05)
        doomed = asyncio.create_task(b.submit_many([1, 2, 3]))
        kept = asyncio.create_task(b.submit(4))
        await asyncio.sleep(0.01)
        doomed.cancel()
        release.set()
        assert await first == 0 and await kept == 4
        with pytest.raises(asyncio.CancelledError):
            await doomed
    assert all(i not in s for s in seen for i in (1, 2, 3))
