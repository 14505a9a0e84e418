"""The job lifecycle: submit, run with retries, watch, cancel, list.

Embedded backend: jobs persist in SQLite (so a restart loses nothing
accepted), an in-process queue feeds `job_workers` worker tasks in the serving
process, media waits in the blob directory until its job ends. A job moves
QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED; every terminal state is
published (job status topic) and exhausted jobs also go to the dead-letter
topic, both through the outbox.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import pathlib
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from understanding import codec, logs
from understanding.domain import (
    Cancelled,
    Conflict,
    InvalidInput,
    Job,
    JobError,
    JobSpec,
    JobState,
    LimitExceeded,
    NotFound,
    PreconditionFailed,
    UnderstandingError,
    new_job_id,
)
from understanding.jobs.blobs import BlobStore
from understanding.jobs.runner import AnalyzeAndIndex, media_request
from understanding.jobs.store import SqliteJobStore
from understanding.sinks.results import ResultSink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobSettings:
    workers: int = 1
    queue_size: int = 256
    tenant_inflight: int = 64
    max_attempts: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    status_topic: str = "understanding.jobs.status.v1"
    dead_letter_topic: str = "understanding.jobs.dlq.v1"
    progress_interval_s: float = 0.25


# Share of the whole job each stage covers, so overall progress never goes back.
_STAGES = {
    "starting": (0.0, 0.02),
    "decode": (0.02, 0.05),
    "frames": (0.05, 0.35),
    "transcribe": (0.35, 0.85),
    "embed": (0.85, 0.95),
    "index": (0.95, 1.0),
}


class StageProgress:
    """Latest (stage, overall fraction) reported from any thread; written out periodically."""

    def __init__(self) -> None:
        self.stage = "queued"
        self.fraction = 0.0
        self._lock = threading.Lock()

    def __call__(self, stage: str, fraction: float) -> None:
        start, end = _STAGES.get(stage, (0.0, 1.0))
        overall = start + (end - start) * max(0.0, min(1.0, fraction))
        with self._lock:
            self.stage, self.fraction = stage, max(self.fraction, overall)

    def read(self) -> tuple[str, float]:
        with self._lock:
            return self.stage, self.fraction


class JobReads:
    """What every backend shares: reads from a local job store, and the admission of new jobs."""

    _store: SqliteJobStore
    settings: JobSettings

    async def _admit(self, tenant: str, spec: JobSpec, idempotency_key: str, *, with_media: bool) -> tuple[Job, bool]:
        """The job this idempotency key already names (if the request is the same), or a new
        QUEUED job, not yet recorded, that passed the capacity checks; `True` when new."""
        job_id = new_job_id(tenant, idempotency_key)
        if with_media:
            spec = dataclasses.replace(spec, blob=job_id)
        fingerprint = spec.fingerprint()
        if idempotency_key:
            existing = await asyncio.to_thread(self._store.get, job_id)
            if existing is not None and existing.tenant == tenant:
                return self._same_request(existing, fingerprint), False
        await asyncio.to_thread(self._check_capacity, tenant)
        job = Job(
            job_id=job_id,
            tenant=tenant,
            spec=spec,
            state=JobState.QUEUED,
            created_at=time.time(),
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            stage="queued",
        )
        return job, True

    @staticmethod
    def _same_request(existing: Job, fingerprint: str) -> Job:
        if existing.fingerprint != fingerprint:
            raise Conflict(
                "was already used for a different request; use a new key for a new job", field="spec.idempotency_key"
            )
        return existing

    def _check_capacity(self, tenant: str) -> None:
        """Backpressure: queued jobs overall, unfinished jobs per tenant."""
        queued = self._store.count(states=(JobState.QUEUED,))
        if queued >= self.settings.queue_size:
            raise LimitExceeded(
                f"the job queue is full ({queued} queued)", field="spec", retry_after_s=retry_hint(queued)
            )
        inflight = self._store.count(states=(JobState.QUEUED, JobState.RUNNING), tenant=tenant)
        if inflight >= self.settings.tenant_inflight:
            raise LimitExceeded(
                f"tenant {tenant!r} already has {inflight} unfinished jobs (limit {self.settings.tenant_inflight})",
                field="spec",
                retry_after_s=retry_hint(inflight),
            )

    def get(self, tenant: str, job_id: str) -> Job:
        return self._snapshot(tenant, job_id)[1]

    def _snapshot(self, tenant: str, job_id: str) -> tuple[int, Job]:
        seq, job = self._store.snapshot(job_id) if job_id else (0, None)
        if job is None or job.tenant != tenant:  # another tenant's job does not exist for you
            raise NotFound(f"no job {job_id!r}", field="job_id")
        return seq, job

    async def watch(self, tenant: str, job_id: str) -> AsyncIterator[Job]:
        """The job now, then each change until it is terminal; never an update older than one sent."""
        queue = self._store.watch(job_id)  # before the snapshot, so no later write is missed
        try:
            seen, job = await asyncio.to_thread(self._snapshot, tenant, job_id)
            yield job
            last = (job.state, job.stage, round(job.progress, 3))
            while not job.state.terminal:
                seq, update = await queue.get()
                if seq <= seen:  # already in the snapshot, or overtaken by a newer write
                    continue
                seen, job = seq, update
                current = (job.state, job.stage, round(job.progress, 3))
                if current != last:
                    last = current
                    yield job
        finally:
            self._store.unwatch(job_id, queue)

    def list(
        self, tenant: str, *, states: Sequence[JobState], page_size: int, page_token: str
    ) -> tuple[list[Job], str]:
        if not 0 <= page_size <= 500:
            raise InvalidInput("must be between 1 and 500 (0 means 50)", field="page_size")
        after = _decode_token(page_token) if page_token else None
        limit = page_size or 50
        jobs = self._store.list(tenant, states=states, after=after, limit=limit + 1)
        more = len(jobs) > limit
        jobs = jobs[:limit]
        token = _encode_token(jobs[-1]) if more and jobs else ""
        return jobs, token

    def state_counts(self) -> dict[JobState, int]:
        """Jobs per state (blocking; read by the metrics collector at scrape time)."""
        return {state: self._store.count(states=(state,)) for state in JobState}


def retry_hint(backlog: int) -> float:
    """Seconds a rejected submitter should wait: grows with the backlog, capped."""
    return min(60.0, 1.0 + backlog * 0.05)


def backoff_s(settings: JobSettings, attempts: int) -> float:
    """Delay before the attempt after `attempts`: exponential, capped."""
    return float(min(settings.backoff_max_s, settings.backoff_s * 2 ** (attempts - 1)))


class JobService(JobReads):
    """The embedded backend: queue and workers in this process."""

    def __init__(
        self,
        *,
        store: SqliteJobStore,
        blobs: BlobStore,
        sink: ResultSink,
        analyzer: AnalyzeAndIndex,
        settings: JobSettings,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._sink = sink
        self._analyzer = analyzer
        self.settings = settings
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._running: dict[str, threading.Event] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._accepting = False

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._store.bind_loop(asyncio.get_running_loop())
        for job in await asyncio.to_thread(self._store.unfinished):
            if job.state is JobState.RUNNING:  # interrupted by a crash or a stop: run it again
                job = job.with_(state=JobState.QUEUED, stage="requeued")
                await asyncio.to_thread(self._store.put, job)
            self._queue.put_nowait(job.job_id)
        await asyncio.to_thread(self._sweep_blobs)
        self._accepting = True
        self._workers = [
            asyncio.get_running_loop().create_task(self._worker(i), name=f"job-worker-{i}")
            for i in range(self.settings.workers)
        ]

    def _sweep_blobs(self, upload_ttl_s: float = 24 * 3600) -> None:
        """Remove media a crash left behind: of finished or unknown jobs, and stale uploads."""
        for key in self._blobs.keys():
            if key.startswith("job-"):
                job = self._store.get(key)
                if job is None or job.state.terminal:
                    self._blobs.delete(key)
            elif key.startswith("upl-"):
                path = self._blobs.root / key
                if path.exists() and time.time() - path.stat().st_mtime > upload_ttl_s:
                    self._blobs.delete(key)

    async def stop(self) -> None:
        """Stop accepting; interrupt running jobs, which go back to QUEUED for the next start."""
        self._accepting = False
        for event in self._running.values():
            event.set()
        for timer in self._timers:
            timer.cancel()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

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
            job, created = await asyncio.to_thread(self._store.create, job)
        finally:
            if media is not None:
                media.unlink(missing_ok=True)
        if created:
            self._queue.put_nowait(job.job_id)
        return job, created

    async def cancel(self, tenant: str, job_id: str) -> Job:
        job = await asyncio.to_thread(self.get, tenant, job_id)
        if job.state.terminal:
            raise PreconditionFailed(f"job is already {job.state.value}", field="job_id")
        running = self._running.get(job_id)
        if running is not None:
            running.set()  # the worker records CANCELLED when the pipeline stops
            for _ in range(200):
                job = await asyncio.to_thread(self.get, tenant, job_id)
                if job.state.terminal:
                    return job
                await asyncio.sleep(0.05)
            return job
        return await self._finish(
            job, JobState.CANCELLED, error=JobError("CANCELLED", "cancelled by the caller", False)
        )

    # ------------------------------------------------------------ workers

    async def _worker(self, index: int) -> None:
        while True:
            job_id = await self._queue.get()
            job = await asyncio.to_thread(self._store.get, job_id)
            if job is None or job.state is not JobState.QUEUED:
                continue  # cancelled while queued, or a duplicate entry
            delay = job.not_before - time.time()
            if delay > 0:
                self._requeue_later(job_id, delay)
                continue
            await self._run(job)

    def _requeue_later(self, job_id: str, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._queue.put_nowait(job_id)

        handle = loop.call_later(delay_s, fire)
        self._timers.add(handle)

    async def _run(self, job: Job) -> None:
        with logs.context(job_id=job.job_id, tenant=job.tenant):  # on every log line of the job
            log.info("job started", extra={"attempt": job.attempts + 1, "modality": job.spec.modality.value})
            await self._run_job(job)

    async def _run_job(self, job: Job) -> None:
        cancelled = threading.Event()
        progress = StageProgress()
        progress("starting", 0.0)
        job = job.with_(
            state=JobState.RUNNING,
            attempts=job.attempts + 1,
            started_at=job.started_at or time.time(),
            stage="starting",
            progress=0.0,
        )
        self._running[job.job_id] = cancelled  # before RUNNING is visible: a cancel must find the job here
        try:
            if not await asyncio.to_thread(self._store.put, job):
                return  # cancelled between leaving the queue and starting: nothing to run
            reporter = asyncio.get_running_loop().create_task(self._report(job, progress))
            try:
                media = self._blobs.path(job.spec.blob) if job.spec.blob else None
                analysis = await self._analyzer.analyze_and_index(
                    job.tenant,
                    media_request(job, media),
                    progress=progress,
                    cancelled=cancelled,
                    version=job.version,
                    trace_id=job.job_id,
                )
                result = codec.analysis_pb(analysis).SerializeToString()
                reporter.cancel()
                await self._finish(job.with_(progress=1.0, stage="done", result=result), JobState.SUCCEEDED)
            except asyncio.CancelledError:
                # The service is stopping: the job goes back to the queue for the next start.
                reporter.cancel()
                await asyncio.to_thread(self._store.put, job.with_(state=JobState.QUEUED, stage="requeued"))
                raise
            except Exception as error:  # noqa: BLE001 - every failure is classified below
                reporter.cancel()
                await self._failed(job, error, cancelled.is_set())
        finally:
            self._running.pop(job.job_id, None)

    async def _report(self, job: Job, progress: StageProgress) -> None:
        """Write progress while the job runs. Cancelling this task does not stop a write already
        in its thread; the store refuses it if the job has meanwhile reached its terminal state."""
        last: tuple[str, float] | None = None
        while True:
            await asyncio.sleep(self.settings.progress_interval_s)
            current = progress.read()
            if current != last:
                last = current
                await asyncio.to_thread(self._store.put, job.with_(stage=current[0], progress=current[1]))

    async def _failed(self, job: Job, error: BaseException, cancelled: bool) -> None:
        if cancelled or isinstance(error, Cancelled):
            await self._finish(job, JobState.CANCELLED, error=JobError("CANCELLED", "cancelled by the caller", False))
            return
        code, retriable = classify_error(error)
        message = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
        if getattr(error, "field", None):
            message = f"{error.field}: {message}"  # type: ignore[attr-defined]
        err = JobError(code, message, retriable)
        if retriable and job.attempts < self.settings.max_attempts:
            delay = backoff_s(self.settings, job.attempts)
            log.warning("job failed, retrying", extra={"job_id": job.job_id, "attempt": job.attempts, "error": message})
            await asyncio.to_thread(
                self._store.put,
                job.with_(state=JobState.QUEUED, stage="retrying", error=err, not_before=time.time() + delay),
            )
            self._requeue_later(job.job_id, delay)
            return
        log.error("job failed", extra={"job_id": job.job_id, "attempts": job.attempts, "error": message})
        final = await self._finish(job, JobState.FAILED, error=err)
        if retriable and final.state is JobState.FAILED:  # exhausted its retries: dead-letter it for operators
            await self._sink.publish(
                self.settings.dead_letter_topic,
                final.job_id,
                codec.job_event(final, produced_at=time.time()),
                schema="understanding.v1.JobEvent",
                tenant=final.tenant,
                trace_id=final.job_id,
            )

    async def _finish(self, job: Job, state: JobState, *, error: JobError | None = None) -> Job:
        final = job.with_(
            state=state, finished_at=time.time(), error=error or (job.error if state is JobState.FAILED else None)
        )
        if not await asyncio.to_thread(self._store.put, final):
            # Another terminal state was recorded first (the job ended while a cancel was on
            # its way): that one stands, and was published and cleaned up when it was recorded.
            return await asyncio.to_thread(self._store.get, final.job_id) or final
        log.info("job finished", extra={"job_id": final.job_id, "state": final.state.value})
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


def classify_error(error: BaseException) -> tuple[str, bool]:
    """(status code name, retriable). Unknown errors are presumed transient."""
    if isinstance(error, UnderstandingError):
        permanent = not error.retriable and not (isinstance(error, LimitExceeded) and error.retry_after_s)
        return error.status, not permanent
    return "INTERNAL", True


def _encode_token(job: Job) -> str:
    return base64.urlsafe_b64encode(f"{job.created_at!r}|{job.job_id}".encode()).decode()


def _decode_token(token: str) -> tuple[float, str]:
    try:
        created, _, job_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return float(created), job_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("is not a token returned by ListJobs", field="page_token") from None
