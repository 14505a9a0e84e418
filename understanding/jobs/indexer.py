"""Writes workers' results into the store this process owns, then marks the jobs SUCCEEDED.

Only one process may open the embedded vector store, so without a Qdrant URL
workers cannot write vectors themselves: they publish each finished analysis to
`understanding.results.v1` and the store owner (`understanding serve`) indexes
it here through the same `ResultSink` as every other write (store, then the
analysis event via the outbox). The offset is committed only after the write,
the job status event and the SUCCEEDED state are durable, so a crash re-indexes
the record: the same point ids and event ids, nothing duplicated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from understanding import codec
from understanding.codec import records
from understanding.domain import Analysis, Job, JobError, JobState, UnderstandingError
from understanding.jobs.blobs import BlobStore
from understanding.jobs.kafka_io import JobTopics, consume_at_least_once
from understanding.jobs.service import JobSettings, backoff_s, classify_error
from understanding.jobs.state_topic import JobStateLog
from understanding.sinks.results import ResultSink

log = logging.getLogger(__name__)


encode_result = records.encode_result
decode_result = records.decode_result


class ResultIndexer:
    def __init__(
        self,
        *,
        topics: JobTopics,
        state: JobStateLog,
        sink: ResultSink,
        blobs: BlobStore,
        settings: JobSettings,
        client_id: str,
        batch_size: int = 32,
    ) -> None:
        self._topics = topics
        self._state = state
        self._sink = sink
        self._blobs = blobs
        self._settings = settings
        self._client_id = client_id
        self._batch = batch_size
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.indexed = 0

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self._stopping.clear()
        self._consumer = AIOKafkaConsumer(
            self._topics.results,
            bootstrap_servers=self._topics.bootstrap,
            client_id=f"{self._client_id}-indexer",
            group_id=self._topics.indexer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_wait_ms=100,
            session_timeout_ms=10000,
            heartbeat_interval_ms=3000,
        )
        await self._consumer.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="result-indexer")

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Finish the batch in hand (up to `grace_s`), then leave the group. Safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), grace_s)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def _run(self) -> None:
        await consume_at_least_once(
            self._consumer, self._index_with_retries, max_records=self._batch, stopping=self._stopping, name="indexer"
        )

    async def _index_with_retries(self, value: bytes) -> None:
        """Index one result; a failing write is retried with back-off (idempotent), and after
        `max_attempts` the job fails: FAILED event, dead letter when the cause was transient."""
        try:
            job, analysis = decode_result(value)
        except (ValueError, KeyError, TypeError) as error:
            log.error("undecodable result record skipped: %r", error)
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._index(job, analysis)
                return
            except Exception as error:  # noqa: BLE001 - classified below
                code, retriable = classify_error(error)
                message = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
                if retriable and attempt < self._settings.max_attempts:
                    log.warning("indexer: write failed, retrying: %s", message, extra={"job_id": job.job_id})
                    await asyncio.sleep(backoff_s(self._settings, attempt))
                    continue
                await self._fail(job, JobError(code, f"indexing the result: {message}", retriable))
                return

    async def _fail(self, job: Job, err: JobError) -> None:
        current = await asyncio.to_thread(self._state.store.get, job.job_id)
        if current is not None and current.state.terminal:
            return
        base = current if current is not None and current.created_at == job.created_at else job
        final = base.with_(state=JobState.FAILED, finished_at=time.time(), error=err)
        log.error("job failed", extra={"job_id": final.job_id, "error": err.message})
        event = codec.job_event(final, produced_at=time.time())
        for topic in [self._settings.status_topic] + ([self._settings.dead_letter_topic] if err.retriable else []):
            await self._sink.publish(
                topic,
                final.job_id,
                event,
                schema="understanding.v1.JobEvent",
                tenant=final.tenant,
                trace_id=final.job_id,
            )
        await self._state.publish(final, wait_applied=True)
        if final.spec.blob:
            try:
                await asyncio.to_thread(self._blobs.delete, final.spec.blob)
            except (OSError, UnderstandingError) as error:
                log.warning("could not delete job media", extra={"job_id": final.job_id, "error": repr(error)})

    async def _index(self, job: Job, analysis: Analysis) -> None:
        current = await asyncio.to_thread(self._state.store.get, job.job_id)
        if current is not None and current.state.terminal:
            return  # a redelivery of an indexed result, or a job cancelled meanwhile
        base = current if current is not None and current.created_at == job.created_at else job
        await self._sink.write(analysis, trace_id=job.job_id)
        final = base.with_(
            state=JobState.SUCCEEDED,
            progress=1.0,
            stage="done",
            finished_at=time.time(),
            error=None,
            result=codec.analysis_pb(analysis).SerializeToString(),
        )
        await self._sink.publish(
            self._settings.status_topic,
            final.job_id,
            codec.job_event(final, produced_at=time.time()),
            schema="understanding.v1.JobEvent",
            tenant=final.tenant,
            trace_id=final.job_id,
        )
        await self._state.publish(final, wait_applied=True)
        self.indexed += 1
        if final.spec.blob:
            try:
                await asyncio.to_thread(self._blobs.delete, final.spec.blob)
            except (OSError, UnderstandingError) as error:
                log.warning("could not delete job media", extra={"job_id": final.job_id, "error": repr(error)})
