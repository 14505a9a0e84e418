"""Outbox relay: moves events from the outbox to Kafka, surviving broker outages.

Producer: acks=all with idempotence, so retries inside a session never
duplicate; a row is deleted only after the broker acknowledged it. A crash
between ack and delete re-sends the event with the same event id, which
consumers deduplicate on (at-least-once with stable ids).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from understanding.sinks.outbox import Outbox

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        outbox: Outbox,
        *,
        bootstrap_servers: str,
        batch_size: int = 256,
        retry_max_s: float = 10.0,
        client_id: str = "understanding",
    ) -> None:
        self._outbox = outbox
        self._bootstrap = bootstrap_servers
        self._batch = batch_size
        self._retry_max_s = retry_max_s
        self._client_id = client_id
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: Any = None
        self._stopping = False
        self.delivered = 0
        self.connected = False

    def notify(self) -> None:
        """Called after new events are appended, so they leave without waiting a poll."""
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-relay")

    async def stop(self, *, flush_timeout_s: float = 5.0) -> None:
        """Try to drain what is pending for a while, then stop. Safe to call twice."""
        if self._task is None:
            return
        # Also when not connected yet: the producer may be connecting right now (it is lazy).
        if flush_timeout_s > 0 and await asyncio.to_thread(self._outbox.size) > 0:
            try:
                await asyncio.wait_for(self._drained(), flush_timeout_s)
            except TimeoutError:
                log.warning("outbox not drained on stop", extra={"pending": self._outbox.size()})
        self._stopping = True
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        await self._close_producer()

    async def _drained(self) -> None:
        while await asyncio.to_thread(self._outbox.size) > 0:
            self._wake.set()
            await asyncio.sleep(0.05)

    async def _producer_or_none(self) -> Any:
        if self._producer is not None:
            return self._producer
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=15000,
            retry_backoff_ms=200,
        )
        try:
            await producer.start()
        except BaseException:  # also when cancelled mid-connect: never leave an unclosed producer
            await producer.stop()
            raise
        self._producer = producer
        self.connected = True
        log.info("kafka producer connected", extra={"bootstrap": self._bootstrap})
        return producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        self.connected = False
        if producer is not None:
            try:
                await producer.stop()
            except Exception as error:  # noqa: BLE001 - closing a broken producer
                log.warning("kafka producer close failed: %r", error)

    async def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                sent = await self._relay_once()
                backoff = 0.2
                if sent == 0:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                    except TimeoutError:
                        pass
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - broker down: keep events, back off
                log.warning("outbox relay: kafka unavailable, will retry: %r", error)
                await self._close_producer()
                await asyncio.sleep(backoff)
                backoff = min(self._retry_max_s, backoff * 2)

    async def _relay_once(self) -> int:
        pending = await asyncio.to_thread(self._outbox.peek, self._batch)
        if not pending:
            return 0
        producer = await self._producer_or_none()
        futures = []
        for event in pending:
            r = event.record
            futures.append(await producer.send(r.topic, value=r.value, key=r.key, headers=list(r.headers)))
        results = await asyncio.gather(*futures, return_exceptions=True)
        acked = [e.seq for e, res in zip(pending, results, strict=True) if not isinstance(res, BaseException)]
        # Remove what the broker acknowledged even if part of the batch failed,
        # so a retry re-sends only the rest.
        await asyncio.to_thread(self._outbox.remove, acked)
        self.delivered += len(acked)
        failures = [res for res in results if isinstance(res, BaseException)]
        if failures:
            raise failures[0]
        return len(acked)
