"""A worker handed a job again after a rebalance: it neither runs a delivered job twice nor
reports a job that succeeded elsewhere as FAILED (fakes for Kafka, the state view and the blobs)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from understanding.domain import (
    Analysis,
    InvalidInput,
    Job,
    JobSpec,
    JobState,
    Modality,
    ModelRef,
    NotFound,
)
from understanding.jobs.kafka_io import JobTopics
from understanding.jobs.service import JobSettings
from understanding.jobs.state_topic import encode
from understanding.jobs.worker import JobWorker


class Store:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)


class StateView:
    """The state topic as this worker's view sees it; `published` is what the worker wrote."""

    def __init__(self) -> None:
        self.store = Store()
        self.published: list[Job] = []

    async def publish(self, job: Job, *, wait_applied: bool = False, give_up_s: float = 600.0) -> Job | None:
        self.published.append(job)
        current = self.store.jobs.get(job.job_id)
        if current is None or not current.state.terminal:  # the first terminal state wins
            self.store.jobs[job.job_id] = job
        return None


class Blobs:
    def __init__(self, *keys: str) -> None:
        self.keys = set(keys)

    def path(self, key: str) -> Any:
        if key not in self.keys:
            raise NotFound(f"no media stored under {key!r}", field="upload_id")
        return f"/blobs/{key}"

    def delete(self, key: str) -> None:
        self.keys.discard(key)


class Producer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, topic: str, **_: object) -> None:
        self.sent.append(topic)


class Delivery:
    def __init__(self) -> None:
        self.delivered: list[str] = []

    async def deliver(self, job: Job, analysis: Analysis) -> None:
        self.delivered.append(job.job_id)


class Analyzer:
    def __init__(self, run: Callable[[], None] | None = None) -> None:
        self.runs = 0
        self._run = run

    async def analyze(self, tenant: str, request: object, **_: object) -> Analysis:
        self.runs += 1
        if self._run is not None:
            await asyncio.to_thread(self._run)
        return Analysis(
            tenant=tenant,
            media_id="m",
            modality=Modality.SPEECH,
            language=None,
            tags=(),
            chunks=(),
            embedding_model=ModelRef("fake", "1"),
            created_at=100.0,
            version=1,
        )


def speech_job() -> Job:
    spec = JobSpec(modality=Modality.SPEECH, media_id="m", blob="job-1")
    return Job(job_id="job-1", tenant="t", spec=spec, state=JobState.QUEUED, created_at=100.0)


def worker(state: StateView, blobs: Blobs, analyzer: Analyzer, *, media_gone_wait_s: float = 30.0) -> JobWorker:
    w = JobWorker(
        topics=JobTopics("127.0.0.1:1"),
        state=state,  # type: ignore[arg-type]
        blobs=blobs,  # type: ignore[arg-type]
        analyzer=analyzer,
        settings=JobSettings(max_attempts=4, progress_interval_s=0.05),
        media_gone_wait_s=media_gone_wait_s,
    )
    w._producer = Producer()  # type: ignore[assignment]  # noqa: SLF001 - no broker in a unit test
    w._delivery = Delivery()  # noqa: SLF001
    return w


def terminal_states(w: JobWorker) -> set[JobState]:
    return {j.state for j in w.state.published if j.state.terminal}


async def test_a_job_whose_result_this_worker_delivered_is_not_run_again() -> None:
    state, analyzer = StateView(), Analyzer()
    w = worker(state, Blobs("job-1"), analyzer)
    record = encode(speech_job())
    await w._handle(record)  # noqa: SLF001
    await w._handle(record)  # the batch again, before the store owner's SUCCEEDED reached this view
    assert analyzer.runs == 1 and w._delivery.delivered == ["job-1"]  # type: ignore[union-attr]  # noqa: SLF001
    assert state.store.get("job-1").state is JobState.RUNNING  # type: ignore[union-attr]


async def test_a_run_whose_media_the_finisher_deleted_waits_for_its_state_and_reports_nothing() -> None:
    """Another worker's result is indexed while this one runs the job again: the store owner marks
    it SUCCEEDED (this view learns it a little later) and deletes the media under the decoder."""
    state, blobs = StateView(), Blobs("job-1")
    applied = threading.Event()

    def finished_elsewhere() -> None:
        blobs.delete("job-1")
        threading.Timer(0.5, apply_succeeded).start()
        raise InvalidInput("media could not be decoded: FileNotFoundError", field="chunk")

    def apply_succeeded() -> None:
        job = state.store.jobs["job-1"]
        state.store.jobs["job-1"] = job.with_(state=JobState.SUCCEEDED, progress=1.0)
        applied.set()

    w = worker(state, blobs, Analyzer(finished_elsewhere))
    await w._handle(encode(speech_job()))  # noqa: SLF001
    assert applied.is_set()
    assert w._producer.sent == []  # type: ignore[attr-defined]  # noqa: SLF001 - no FAILED event
    assert terminal_states(w) <= {JobState.SUCCEEDED}
    assert state.store.get("job-1").state is JobState.SUCCEEDED  # type: ignore[union-attr]


async def test_media_missing_with_nobody_finishing_the_job_fails_it() -> None:
    def gone() -> None:
        raise InvalidInput("media could not be decoded: FileNotFoundError", field="chunk")

    state = StateView()
    w = worker(state, Blobs(), Analyzer(gone), media_gone_wait_s=0.3)
    await w._handle(encode(speech_job()))  # noqa: SLF001
    assert terminal_states(w) == {JobState.FAILED}
    assert w._producer.sent == [JobSettings().status_topic]  # type: ignore[attr-defined]  # noqa: SLF001
