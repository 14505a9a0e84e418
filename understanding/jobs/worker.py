"""`understanding worker`: runs jobs from `understanding.jobs.v1` in one consumer group.

Each worker takes up to `concurrency` records at a time, runs them through the
same `PipelineExecutor` as the embedded backend, hands each result on (see
`ResultDelivery`) and commits the offsets only once every job of the batch is
durably finished. A worker killed mid-job never commits: the group rebalances
and another worker runs the job again. Attempts are counted in the shared job
state, so a job that keeps killing its workers ends FAILED after
`max_attempts` instead of cycling forever.

Transient failures retry in place with exponential back-off (the partition
waits, nothing is committed); permanent ones fail at once; exhausted jobs go to
the dead-letter topic. A job cancelled in the state topic stops at the
pipeline's next cancellation check and is committed without a result.

A batch comes again when the group rebalances before its commit (a worker
joined, left or died), often to the worker that already ran it: a job whose
result this worker delivered is not run again. On another worker the job's
state in this process's view may still say RUNNING while the store owner
marks it SUCCEEDED and deletes its media; the second run then fails on the
missing media. Since media are deleted only after the job's terminal state is
durable, a failure with the media gone waits for the view to show that state
and publishes nothing, instead of a FAILED event for a job that succeeded.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import Any, Protocol

from understanding import codec
from understanding.codec.records import encode_result
from understanding.domain import Analysis, Job, JobError, JobState, NotFound, UnderstandingError
from understanding.jobs.blobs import BlobStore
from understanding.jobs.kafka_io import JobTopics, Producer, consume_at_least_once, ensure_topics, publish_event
from understanding.jobs.runner import Analyze, media_request
from understanding.jobs.service import JobSettings, StageProgress, backoff_s, classify_error
from understanding.jobs.state_topic import JobStateLog, decode
from understanding.sinks.results import ResultSink

log = logging.getLogger(__name__)

_DELIVERED_MEMORY = 10_000  # job ids whose results a worker remembers having delivered


class ResultDelivery(Protocol):
    """Where a worker's finished analysis goes; done when the result is durable."""

    async def deliver(self, job: Job, analysis: Analysis) -> None: ...


class ResultsTopic:
    """No Qdrant URL: the store owner's indexer writes it (acks=all before the job commits)."""

    def __init__(self, *, topics: JobTopics, producer: Producer) -> None:
        self._topics = topics
        self._producer = producer

    async def deliver(self, job: Job, analysis: Analysis) -> None:
        await self._producer.send(self._topics.results, key=job.job_id.encode(), value=encode_result(job, analysis))


class DirectSink:
    """A Qdrant URL is set: the worker writes vectors and events itself, then marks the job SUCCEEDED."""

    def __init__(self, *, sink: ResultSink, state: JobStateLog, blobs: BlobStore, settings: JobSettings) -> None:
        self._sink = sink
        self._state = state
        self._blobs = blobs
        self._settings = settings

    async def deliver(self, job: Job, analysis: Analysis) -> None:
        await self._sink.write(analysis, trace_id=job.job_id)
        final = job.with_(
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
        await self._state.publish(final)
        if final.spec.blob:
            await asyncio.to_thread(self._blobs.delete, final.spec.blob)


class JobWorker:
    def __init__(
        self,
        *,
        topics: JobTopics,
        state: JobStateLog,
        blobs: BlobStore,
        analyzer: Analyze,
        settings: JobSettings,
        concurrency: int = 1,
        max_run_s: float = 1800.0,
        client_id: str = "understanding-worker",
        direct_sink: ResultSink | None = None,
        media_gone_wait_s: float = 30.0,
    ) -> None:
        self._topics = topics
        self.state = state
        self._blobs = blobs
        self._analyzer = analyzer
        self.settings = settings
        self._concurrency = max(1, concurrency)
        self._max_run_s = max_run_s
        self._client_id = client_id
        self._direct_sink = direct_sink
        self._delivery: ResultDelivery | None = None
        self._producer = Producer(topics.bootstrap, client_id=client_id, compression="gzip")
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._draining = asyncio.Event()
        self.completed = 0
        self._delivered: collections.OrderedDict[str, None] = collections.OrderedDict()
        # How long a failure with the job's media gone waits for the view to show who finished it.
        self._media_gone_wait_s = media_gone_wait_s

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self._draining.clear()
        await ensure_topics(self._topics)
        await self.state.start()
        await self._producer.start()
        self._delivery = (
            DirectSink(sink=self._direct_sink, state=self.state, blobs=self._blobs, settings=self.settings)
            if self._direct_sink is not None
            else ResultsTopic(topics=self._topics, producer=self._producer)
        )
        self._consumer = AIOKafkaConsumer(
            self._topics.jobs,
            bootstrap_servers=self._topics.bootstrap,
            client_id=self._client_id,
            group_id=self._topics.worker_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A batch is processed between two polls: a job may take this long.
            max_poll_interval_ms=int(self._max_run_s * 1000),
            session_timeout_ms=10000,
            heartbeat_interval_ms=3000,
            fetch_max_wait_ms=100,
        )
        await self._consumer.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="job-worker")
        log.info("worker consuming", extra={"topic": self._topics.jobs, "group": self._topics.worker_group})

    async def drain(self, timeout_s: float) -> None:
        """Take no new jobs; let the batch in hand finish for up to `timeout_s`, else leave it
        uncommitted (redelivered to another worker)."""
        self._draining.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        except Exception as error:  # noqa: BLE001 - the loop died: its batch stays uncommitted
            log.error("worker loop failed: %r", error)

    async def stop(self) -> None:
        """Drain at once and close. Safe to call twice."""
        await self.drain(0.0)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()  # leaves the group: its partitions move on at once
        await self._producer.stop()
        await self.state.stop()

    # ------------------------------------------------------------ consuming
    async def _run(self) -> None:
        await consume_at_least_once(
            self._consumer, self._handle, max_records=self._concurrency, stopping=self._draining, name="worker"
        )

    async def _handle(self, value: bytes) -> None:
        try:
            queued = decode(value)
        except (ValueError, KeyError, TypeError) as error:
            log.error("undecodable job record skipped: %r", error)
            return
        if queued.job_id in self._delivered:
            return  # the batch came again (a rebalance before its commit): its result went out already
        job = await asyncio.to_thread(self.state.store.get, queued.job_id) or queued
        if job.state.terminal:
            return  # cancelled while queued, or a redelivery of a finished job
        if job.state is JobState.RUNNING and job.attempts >= self.settings.max_attempts:
            # Every attempt so far died with its worker: stop handing the job around.
            lost = JobError("INTERNAL", f"worker lost during each of {job.attempts} attempts", True)
            await self._fail(job.with_(error=lost), lost)
            return
        await self._attempts(job)

    async def _attempts(self, job: Job) -> None:
        while True:
            job = job.with_(
                state=JobState.RUNNING,
                attempts=job.attempts + 1,
                started_at=job.started_at or time.time(),
                stage="starting",
                progress=0.0,
                not_before=0.0,
            )
            await self.state.publish(job)
            log.info("job running", extra={"job_id": job.job_id, "attempt": job.attempts})
            cancelled = threading.Event()
            progress = StageProgress()
            progress("starting", 0.0)
            reporter = asyncio.get_running_loop().create_task(self._report(job, progress, cancelled))
            try:
                media = await asyncio.to_thread(self._blobs.path, job.spec.blob) if job.spec.blob else None
                analysis = await self._analyzer.analyze(
                    job.tenant, media_request(job, media), progress=progress, cancelled=cancelled, version=job.version
                )
                reporter.cancel()
                if await self._finished_meanwhile(job):
                    return
                await self.state.publish(job.with_(stage="index", progress=0.95))
                assert self._delivery is not None
                await self._delivery.deliver(job, analysis)
                self._remember_delivered(job.job_id)
                self.completed += 1
                return
            except asyncio.CancelledError:
                reporter.cancel()  # draining: the uncommitted job comes back, QUEUED meanwhile
                await asyncio.shield(self._publish_quietly(job.with_(state=JobState.QUEUED, stage="requeued")))
                raise
            except Exception as error:  # noqa: BLE001 - classified below
                reporter.cancel()
                if await self._finished_meanwhile(job) or cancelled.is_set():
                    return  # cancelled by the caller: the canceller recorded it
                if await self._finished_elsewhere(job):
                    return
                code, retriable = classify_error(error)
                message = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
                if getattr(error, "field", None):
                    message = f"{error.field}: {message}"  # type: ignore[attr-defined]
                err = JobError(code, message, retriable)
                if not (retriable and job.attempts < self.settings.max_attempts):
                    await self._fail(job, err)
                    return
                delay = backoff_s(self.settings, job.attempts)
                log.warning(
                    "job failed, retrying", extra={"job_id": job.job_id, "attempt": job.attempts, "error": message}
                )
                job = job.with_(state=JobState.QUEUED, stage="retrying", error=err, not_before=time.time() + delay)
                await self.state.publish(job)
                await asyncio.sleep(delay)
                if await self._finished_meanwhile(job):
                    return

    async def _finished_meanwhile(self, job: Job) -> bool:
        """True when the job reached a terminal state elsewhere (a cancel): re-assert that
        state, so it is the job's last record even after one of our progress reports."""
        current = await asyncio.to_thread(self.state.store.get, job.job_id)
        if current is None or not current.state.terminal:
            return False
        await self.state.publish(current)
        return True

    async def _finished_elsewhere(self, job: Job) -> bool:
        """True when the job's media is gone and the view then shows the job finished.

        Whoever finishes a job (the store owner's indexer, a direct sink, a
        cancel) deletes its media only after the terminal state is durable in the
        state topic, so a run that lost its media ran a job finished elsewhere;
        this view applies that state within moments. Media missing with no
        terminal state after `media_gone_wait_s` is a real failure.
        """
        if not job.spec.blob:
            return False
        try:
            await asyncio.to_thread(self._blobs.path, job.spec.blob)
            return False
        except NotFound:
            pass
        deadline = time.monotonic() + self._media_gone_wait_s
        while True:
            if await self._finished_meanwhile(job):
                log.info("job finished elsewhere while it ran again here", extra={"job_id": job.job_id})
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)

    def _remember_delivered(self, job_id: str) -> None:
        self._delivered[job_id] = None
        while len(self._delivered) > _DELIVERED_MEMORY:
            self._delivered.popitem(last=False)

    async def _fail(self, job: Job, err: JobError) -> None:
        """FAILED: status event (and dead letter when retries ran out) before the state, so a
        crash in between repeats both with the same event ids rather than losing one."""
        final = job.with_(state=JobState.FAILED, finished_at=time.time(), error=err)
        log.error("job failed", extra={"job_id": final.job_id, "attempts": final.attempts, "error": err.message})
        event = codec.job_event(final, produced_at=time.time())
        topics = [self.settings.status_topic] + ([self.settings.dead_letter_topic] if err.retriable else [])
        for topic in topics:
            await publish_event(
                self._producer,
                topic,
                final.job_id,
                event,
                schema="understanding.v1.JobEvent",
                tenant=final.tenant,
                trace_id=final.job_id,
            )
        await self.state.publish(final)
        if final.spec.blob:
            try:
                await asyncio.to_thread(self._blobs.delete, final.spec.blob)
            except (OSError, UnderstandingError) as error:
                log.warning("could not delete job media", extra={"job_id": final.job_id, "error": repr(error)})

    async def _report(self, job: Job, progress: StageProgress, cancelled: threading.Event) -> None:
        """Publish progress while the job runs; stop the pipeline when the state says CANCELLED."""
        last: tuple[str, float] | None = None
        while True:
            await asyncio.sleep(self.settings.progress_interval_s)
            current = await asyncio.to_thread(self.state.store.get, job.job_id)
            if current is not None and current.state.terminal:
                cancelled.set()
                return
            now = progress.read()
            if now != last:
                last = now
                await self._publish_quietly(job.with_(stage=now[0], progress=now[1]))

    async def _publish_quietly(self, job: Job) -> None:
        """Progress is advisory: a broker hiccup must not fail the job."""
        try:
            await self.state.publish(job, give_up_s=5.0)
        except Exception as error:  # noqa: BLE001
            log.warning("progress not published: %r", error, extra={"job_id": job.job_id})
