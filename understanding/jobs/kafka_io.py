"""Kafka plumbing shared by the Kafka job backend: topic names, topic creation, producers, events.

Topics are created explicitly (not left to broker auto-creation) because two
of them need settings the broker default lacks: the job state topic is
compacted, and results may carry more than the default 1 MB of vectors.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from understanding import codec

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 16 * 1024 * 1024
_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True, slots=True)
class JobTopics:
    bootstrap: str
    jobs: str = "understanding.jobs.v1"
    state: str = "understanding.jobs.state.v1"
    results: str = "understanding.results.v1"
    status: str = "understanding.jobs.status.v1"
    dead_letter: str = "understanding.jobs.dlq.v1"
    partitions: int = 8
    worker_group: str = "understanding-workers"
    indexer_group: str = "understanding-indexer"


async def ensure_topics(topics: JobTopics, *, timeout_s: float = 60.0) -> None:
    """Create the backend's topics if missing (idempotent; every process calls it on start)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    wanted = [
        NewTopic(topics.jobs, topics.partitions, 1),
        NewTopic(topics.results, topics.partitions, 1, topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES)}),
        NewTopic(
            topics.state,
            topics.partitions,
            1,
            topic_configs={"cleanup.policy": "compact", "max.message.bytes": str(MAX_RECORD_BYTES)},
        ),
    ]
    deadline = time.monotonic() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=topics.bootstrap, request_timeout_ms=10000)
        try:
            await admin.start()
            response = await admin.create_topics(wanted)
            for name, code, *_ in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"cannot create topic {name!r}: error code {code}")
            return
        except Exception as error:  # noqa: BLE001 - broker not up yet: retry until the deadline
            if time.monotonic() > deadline:
                raise
            log.warning("kafka not ready for topic creation, retrying: %r", error)
            await asyncio.sleep(1.0)
        finally:
            await admin.close()


class Producer:
    """An acks=all idempotent producer that outlives broker restarts.

    An acknowledged record is on every in-sync replica. `send` retries through
    outages; when the client itself is broken (after a broker restart aiokafka
    can keep failing with OutOfOrderSequenceNumber, a fatal error for an
    idempotent producer) it is replaced by a fresh one. Retried records may
    reach the topic twice: every consumer here tolerates that by design.
    """

    def __init__(self, bootstrap: str, *, client_id: str, compression: str | None = None) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._compression = compression
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._client()

    async def stop(self) -> None:
        """Safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as error:  # noqa: BLE001 - closing a broken client
                log.warning("kafka producer close failed: %r", error)

    async def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions (waits for its metadata)."""
        return set(await (await self._client()).partitions_for(topic))

    async def _client(self) -> Any:
        async with self._lock:
            if self._producer is None:
                from aiokafka import AIOKafkaProducer

                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    client_id=self._client_id,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=2,
                    request_timeout_ms=15000,
                    retry_backoff_ms=200,
                    max_request_size=MAX_RECORD_BYTES,
                    compression_type=self._compression,
                )
                try:
                    await producer.start()
                except Exception:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _reset(self, broken: Any) -> None:
        async with self._lock:
            if self._producer is not broken:
                return  # another sender replaced it already
            self._producer = None
        try:
            await broken.stop()
        except Exception as error:  # noqa: BLE001
            log.warning("kafka producer close failed: %r", error)

    async def send(
        self,
        topic: str,
        *,
        key: bytes,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        give_up_s: float = 600.0,
    ) -> Any:
        """Produce and wait for the ack, retrying through broker outages (up to `give_up_s`)."""
        deadline = time.monotonic() + give_up_s
        delay = 0.2
        while True:
            producer = None
            try:
                producer = await self._client()
                return await producer.send_and_wait(topic, value=value, key=key, headers=headers)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - retriable or not, the record must get out
                if time.monotonic() > deadline:
                    raise
                log.warning("kafka produce failed, retrying: %r", error, extra={"topic": topic})
                if producer is not None and not getattr(error, "retriable", False):
                    await self._reset(producer)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)


def event_headers(schema: str, tenant: str, trace_id: str) -> list[tuple[str, bytes]]:
    """The headers ResultSink.publish puts on outbox events: same contract from every producer."""
    return [
        ("schema", schema.encode()),
        ("content-type", codec.CONTENT_TYPE),
        ("tenant", tenant.encode()),
        ("trace-id", (trace_id or uuid.uuid4().hex).encode()),
    ]


async def publish_event(
    producer: Producer, topic: str, key: str, event: Message, *, schema: str, tenant: str, trace_id: str
) -> None:
    await producer.send(
        topic, key=key.encode(), value=event.SerializeToString(), headers=event_headers(schema, tenant, trace_id)
    )


async def consume_at_least_once(
    consumer: Any,
    handle: Callable[[bytes], Awaitable[None]],
    *,
    max_records: int,
    stopping: asyncio.Event,
    name: str,
) -> None:
    """Run `handle` on every record of each fetched batch (concurrently); commit only after
    all of them succeeded, else seek back and handle the whole batch again.

    The worker and the indexer both need exactly this: a record is committed only
    once its effect is durable, and `handle` must be idempotent because a batch
    can come again (a failure here, or a rebalance before the commit).
    """
    while not stopping.is_set():
        try:
            batch = await consumer.getmany(timeout_ms=300, max_records=max_records)
        except Exception as error:  # noqa: BLE001 - broker outage: the consumer reconnects
            log.warning("%s: fetch failed, retrying: %r", name, error)
            await asyncio.sleep(1.0)
            continue
        records = [r for part in batch.values() for r in part]
        if not records:
            continue
        outcomes = await asyncio.gather(*(handle(r.value) for r in records), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:  # not durably done (the broker or store stayed away past every retry)
            log.error("%s: batch not durably handled, handling it again: %r", name, failures[0])
            for tp, part in batch.items():
                consumer.seek(tp, part[0].offset)
            await asyncio.sleep(5.0)
            continue
        try:
            await consumer.commit()
        except Exception as error:  # noqa: BLE001 - lost the partitions meanwhile: redelivered, idempotent
            log.warning("%s: commit failed, the batch will be handled again: %r", name, error)
