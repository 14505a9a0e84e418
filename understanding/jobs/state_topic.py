"""Job state shared by every process: a compacted Kafka topic, materialised locally.

Every writer (API replica, worker, indexer) produces the whole job as JSON,
keyed by job id, to `understanding.jobs.state.v1` (compacted: the latest state
of each job survives). Every process reads the topic from the beginning into a
local SQLite view, so GetJob/WatchJob/ListJobs answer from any replica and
survive restarts. One partition orders all records of a job, so every view
applies them in the same order with the same rule (`merge`) and converges.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from understanding.codec import records
from understanding.domain import Job
from understanding.jobs.kafka_io import JobTopics, Producer
from understanding.jobs.store import SqliteJobStore

log = logging.getLogger(__name__)


def merge(stored: Job | None, record: Job) -> Job | None:
    """What a view keeps when `record` arrives; None keeps `stored`.

    - The first terminal state in topic order wins: a progress report racing a
      cancel, or a result arriving after one, never revives a finished job.
    - A job id is created once: a second creation (two replicas taking the same
      idempotency key at once) differs in `created_at` and is ignored, so every
      later writer works from the first one.
    """
    if stored is None:
        return record
    if stored.state.terminal or record.created_at != stored.created_at:
        return None
    return record


encode = records.encode_job
decode = records.decode_job


class JobStateLog:
    """Producer and materialiser of the job state topic.

    `start()` returns once the view has caught up with the topic, so a restarted
    replica answers for old jobs at once. `publish()` returns once the record
    is acknowledged (acks=all) and, with `wait_applied`, once this process's
    view has applied it (read-your-writes in topic order).
    """

    def __init__(self, *, topics: JobTopics, store: SqliteJobStore, client_id: str) -> None:
        self._topics = topics
        self.store = store
        self._client_id = client_id
        self._producer = Producer(topics.bootstrap, client_id=f"{client_id}-state")
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._applied: dict[int, int] = {}  # partition -> next offset to apply
        self._progress = asyncio.Condition()

    async def start(self, *, catch_up_timeout_s: float = 120.0) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.store.bind_loop(asyncio.get_running_loop())
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._topics.bootstrap,
            client_id=f"{self._client_id}-state-view",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await self._consumer.start()
        deadline = time.monotonic() + catch_up_timeout_s
        partitions = await self._producer.partitions_for(self._topics.state)
        tps = [TopicPartition(self._topics.state, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        ends = await self._consumer.end_offsets(tps)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="job-state-view")
        for tp, end in ends.items():
            await self._wait_offset(tp.partition, end - 1, max(1.0, deadline - time.monotonic()))
        log.info("job state view caught up", extra={"topic": self._topics.state, "records": sum(ends.values())})

    async def stop(self) -> None:
        """Safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        await self._producer.stop()

    async def publish(self, job: Job, *, wait_applied: bool = False, give_up_s: float = 600.0) -> Job | None:
        """Write the job's state; with `wait_applied`, return what this view holds for it afterwards."""
        meta = await self._producer.send(
            self._topics.state, key=job.job_id.encode(), value=encode(job), give_up_s=give_up_s
        )
        if not wait_applied:
            return None
        await self._wait_offset(meta.partition, meta.offset, 60.0)
        return await asyncio.to_thread(self.store.get, job.job_id)

    async def _wait_offset(self, partition: int, offset: int, timeout_s: float) -> None:
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self._applied.get(partition, 0) > offset), timeout_s)

    async def _run(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=500, max_records=500)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - broker outage: the consumer reconnects
                log.warning("job state view: fetch failed, retrying: %r", error)
                await asyncio.sleep(1.0)
                continue
            for tp, fetched in batch.items():
                jobs = []
                for r in fetched:
                    if r.value is None:  # a tombstone: the job was purged
                        continue
                    try:
                        jobs.append(decode(r.value))
                    except (ValueError, KeyError, TypeError) as error:
                        log.error("undecodable job state record skipped: %r", error, extra={"offset": r.offset})
                if jobs:
                    await asyncio.to_thread(self.store.apply, jobs, merge)
                if fetched:
                    async with self._progress:
                        self._applied[tp.partition] = fetched[-1].offset + 1
                        self._progress.notify_all()
