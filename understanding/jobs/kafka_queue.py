"""The Kafka job backend, API side: submit to `understanding.jobs.v1`, answer from the state view.

`understanding serve` with `UNDERSTANDING_JOB_BACKEND=kafka` runs no jobs
itself: it puts the media into the shared blob directory, records the job
QUEUED in the state topic and produces it to the jobs topic (keyed by job id),
where the `understanding worker` group picks it up. Reads (GetJob, WatchJob,
ListJobs) come from this process's materialised state view, so any replica
answers for any job. Without a Qdrant URL, the one replica that owns the
embedded store also runs the `ResultIndexer`.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time

from understanding import codec
from understanding.domain import (
    Job,
    JobError,
    JobSpec,
    JobState,
    LimitExceeded,
    PreconditionFailed,
    Unavailable,
    UnderstandingError,
)
from understanding.jobs.blobs import BlobStore
from understanding.jobs.indexer import ResultIndexer
from understanding.jobs.kafka_io import JobTopics, Producer, ensure_topics
from understanding.jobs.service import JobReads, JobSettings
from understanding.jobs.state_topic import JobStateLog, encode
from understanding.jobs.store import SqliteJobStore
from understanding.sinks.results import ResultSink

log = logging.getLogger(__name__)


class KafkaJobService(JobReads):
    """Same interface as the embedded `JobService`; the queue and the state live in Kafka."""

    def __init__(
        self,
        *,
        store: SqliteJobStore,
        blobs: BlobStore,
        sink: ResultSink,
        topics: JobTopics,
        settings: JobSettings,
        run_indexer: bool,
        client_id: str = "understanding-api",
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._sink = sink
        self._topics = topics
        self.settings = settings
        self.state = JobStateLog(topics=topics, store=store, client_id=client_id)
        self._indexer = (
            ResultIndexer(
                topics=topics, state=self.state, sink=sink, blobs=blobs, settings=settings, client_id=client_id
            )
            if run_indexer
            else None
        )
        self._producer = Producer(topics.bootstrap, client_id=f"{client_id}-jobs")
        self._accepting = False

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await ensure_topics(self._topics)
        await self.state.start()
        await self._producer.start()
        if self._indexer is not None:
            await self._indexer.start()
        self._accepting = True

    async def stop(self) -> None:
        """Stop accepting; let the indexer finish its batch. Queued jobs stay in Kafka. Safe to call twice."""
        self._accepting = False
        if self._indexer is not None:
            await self._indexer.stop()
        await self._producer.stop()
        await self.state.stop()

    # ------------------------------------------------------------ API
    async def submit(
        self, tenant: str, spec: JobSpec, *, idempotency_key: str = "", media: pathlib.Path | None = None
    ) -> tuple[Job, bool]:
        """Create (or, for a known idempotency key, return) a job. The media file is taken over."""
        if not self._accepting:
            raise LimitExceeded("the service is shutting down; retry on another replica", retry_after_s=1.0)
        try:
            job, new = await self._admit(tenant, spec, idempotency_key, with_media=media is not None)
            if not new:
                return job, False
            if media is not None:
                await asyncio.to_thread(self._blobs.put, job.job_id, media, {"tenant": tenant})
                media = None
            try:
                stored = await self.state.publish(job, wait_applied=True, give_up_s=15.0)
            except Exception as error:  # noqa: BLE001 - the broker is unreachable: tell the client to retry
                if job.spec.blob:
                    await asyncio.to_thread(self._blobs.delete, job.spec.blob)
                raise Unavailable(f"the job queue is unavailable: {error!r}") from error
            if stored is not None and stored.created_at != job.created_at:
                # Another replica created this idempotency key's job first: that one stands.
                return self._same_request(stored, job.fingerprint), False
            try:
                await self._producer.send(self._topics.jobs, key=job.job_id.encode(), value=encode(job), give_up_s=15.0)
            except Exception as error:  # noqa: BLE001 - recorded but not queued: fail it so it cannot hang
                failed = job.with_(
                    state=JobState.FAILED,
                    finished_at=time.time(),
                    error=JobError("UNAVAILABLE", f"could not enqueue the job: {error!r}", True),
                )
                await asyncio.shield(self.state.publish(failed, give_up_s=30.0))
                raise Unavailable(f"the job queue is unavailable: {error!r}") from error
        finally:
            if media is not None:
                media.unlink(missing_ok=True)
        return job, True

    async def cancel(self, tenant: str, job_id: str) -> Job:
        """Record CANCELLED; a worker running the job sees it in its view and stops.

        If another terminal state reached the topic first (the job finished
        meanwhile), that one stands: it is written again so compaction keeps
        it, and returned.
        """
        job = await asyncio.to_thread(self.get, tenant, job_id)
        if job.state.terminal:
            raise PreconditionFailed(f"job is already {job.state.value}", field="job_id")
        cancelled = job.with_(
            state=JobState.CANCELLED,
            finished_at=time.time(),
            error=JobError("CANCELLED", "cancelled by the caller", False),
        )
        try:
            stored = await self.state.publish(cancelled, wait_applied=True, give_up_s=15.0)
        except Exception as error:  # noqa: BLE001
            raise Unavailable(f"the job state topic is unavailable: {error!r}") from error
        final = stored or cancelled
        if final.state is not JobState.CANCELLED:
            await self.state.publish(final)
            return final
        await self._sink.publish(
            self.settings.status_topic,
            final.job_id,
            codec.job_event(final, produced_at=time.time()),
            schema="understanding.v1.JobEvent",
            tenant=final.tenant,
            trace_id=final.job_id,
        )
        if final.spec.blob:
            try:
                await asyncio.to_thread(self._blobs.delete, final.spec.blob)
            except (OSError, UnderstandingError) as error:
                log.warning("could not delete job media", extra={"job_id": final.job_id, "error": repr(error)})
        return final
