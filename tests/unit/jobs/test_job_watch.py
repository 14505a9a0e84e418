"""WatchJob over the job store: a stream that only moves forward, and a terminal state that stays.

Both used to depend on thread timing: updates committed while a watch took its
first snapshot were replayed after it (progress went back), and a progress
write still in flight when a job finished could land after the terminal state.
Here the interleavings are forced, so they happen on every run.
"""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from tests.support.waiting import PATIENCE_S
from understanding.domain import Job, JobSpec, JobState, Modality
from understanding.jobs.service import JobReads
from understanding.jobs.store import SqliteJobStore


def _job(state: JobState = JobState.QUEUED, **changes: object) -> Job:
    job = Job(
        job_id="job-1",
        tenant="t",
        spec=JobSpec(modality=Modality.TEXT, media_id="m", text="hello"),
        state=state,
        created_at=100.0,
        stage=state.value.lower(),
    )
    return job.with_(**changes)


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> SqliteJobStore:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    store.bind_loop(asyncio.get_running_loop())
    store.create(_job())
    return store


def reads(store: SqliteJobStore) -> JobReads:
    service = JobReads()
    service._store = store
    return service


async def test_updates_committed_during_the_first_snapshot_are_not_replayed(
    store: SqliteJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_snapshot = store.snapshot
    calls = 0

    def snapshot_while_two_updates_land(job_id: str) -> tuple[int, Job | None]:
        nonlocal calls
        calls += 1
        if calls == 1:  # the watch's first read: two progress updates commit just before it
            store.put(_job(JobState.RUNNING, stage="transcribe", progress=0.2))
            store.put(_job(JobState.RUNNING, stage="transcribe", progress=0.5))
        return real_snapshot(job_id)

    monkeypatch.setattr(store, "snapshot", snapshot_while_two_updates_land)
    stream = reads(store).watch("t", "job-1")
    first = await asyncio.wait_for(anext(stream), PATIENCE_S)
    assert (first.state, first.progress) == (JobState.RUNNING, 0.5)
    store.put(_job(JobState.RUNNING, stage="embed", progress=0.9))
    store.put(_job(JobState.SUCCEEDED, stage="done", progress=1.0))
    rest = [job async for job in stream]
    assert [(j.state, j.progress) for j in rest] == [(JobState.RUNNING, 0.9), (JobState.SUCCEEDED, 1.0)]


async def test_notifications_arriving_out_of_order_never_move_the_stream_back(
    store: SqliteJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = reads(store).watch("t", "job-1")
    assert (await asyncio.wait_for(anext(stream), PATIENCE_S)).state is JobState.QUEUED
    real_notify = store._notify
    held: list[tuple[object, ...]] = []

    def second_notification_first(*args: object) -> None:
        if not held:
            held.append(args)  # two writer threads: the first one's notification is late...
            return
        real_notify(*args)
        real_notify(*held.pop())  # ...and lands after the second one's

    monkeypatch.setattr(store, "_notify", second_notification_first)
    store.put(_job(JobState.RUNNING, stage="transcribe", progress=0.3))
    store.put(_job(JobState.RUNNING, stage="transcribe", progress=0.6))
    monkeypatch.undo()
    store.put(_job(JobState.SUCCEEDED, stage="done", progress=1.0))
    progress = [job.progress async for job in stream]
    assert progress == sorted(progress) and progress[-1] == 1.0, progress


def test_a_terminal_job_is_never_rewritten(store: SqliteJobStore) -> None:
    """A progress report still in flight when the job finished must not revive it."""
    assert store.put(_job(JobState.RUNNING, progress=0.4))
    assert store.put(_job(JobState.SUCCEEDED, progress=1.0))
    assert not store.put(_job(JobState.RUNNING, progress=0.8))  # the late report
    assert not store.put(_job(JobState.CANCELLED))  # a cancel that lost the race
    final = store.get("job-1")
    assert final is not None and final.state is JobState.SUCCEEDED and final.progress == 1.0
