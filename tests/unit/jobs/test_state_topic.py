"""Materialising the job state topic: every view applies the same records the same way."""

from __future__ import annotations

import asyncio
import pathlib

import numpy as np

from tests.support.waiting import PATIENCE_S
from understanding.codec.records import decode_result, encode_result
from understanding.domain import (
    Analysis,
    Chunk,
    Job,
    JobError,
    JobSpec,
    JobState,
    Language,
    Modality,
    ModelRef,
    Segment,
    Shot,
    Tag,
    Transcript,
    VideoInfo,
    Word,
)
from understanding.jobs.state_topic import decode, encode, merge
from understanding.jobs.store import SqliteJobStore


def _job(state: JobState = JobState.QUEUED, created_at: float = 100.0, **changes: object) -> Job:
    job = Job(
        job_id="job-1",
        tenant="t",
        spec=JobSpec(modality=Modality.TEXT, media_id="m", text="hello"),
        state=state,
        created_at=created_at,
        idempotency_key="k",
        fingerprint="f",
        stage=state.value.lower(),
    )
    return job.with_(**changes)


def _replay(path: pathlib.Path, records: list[Job]) -> Job | None:
    store = SqliteJobStore(path, durable=False)
    try:
        store.apply(records, merge)
        return store.get("job-1")
    finally:
        store.close()


def test_state_record_round_trips() -> None:
    job = _job(
        JobState.FAILED, attempts=3, error=JobError("UNAVAILABLE", "down", True), result=b"\x00\x01", finished_at=5.0
    )
    assert decode(encode(job)) == job


def test_first_terminal_state_wins_and_progress_never_revives(tmp_path: pathlib.Path) -> None:
    running = _job(JobState.RUNNING, attempts=1, progress=0.5)
    cancelled = _job(JobState.CANCELLED, attempts=1)
    succeeded = _job(JobState.SUCCEEDED, attempts=1, progress=1.0)
    late_progress = _job(JobState.RUNNING, attempts=1, progress=0.9)
    final = _replay(tmp_path / "a.db", [_job(), running, cancelled, late_progress, succeeded])
    assert final is not None and final.state is JobState.CANCELLED and final.progress == 0.0


def test_views_fed_the_same_records_agree(tmp_path: pathlib.Path) -> None:
    records = [
        _job(),
        _job(JobState.RUNNING, attempts=1),
        _job(JobState.QUEUED, attempts=1, stage="retrying"),
        _job(JobState.RUNNING, attempts=2),
        _job(JobState.SUCCEEDED, attempts=2),
    ]
    assert _replay(tmp_path / "a.db", records) == _replay(tmp_path / "b.db", records)
    # Delivered in two batches (a restart in between) gives the same answer.
    store = SqliteJobStore(tmp_path / "c.db", durable=False)
    store.apply(records[:2], merge)
    store.apply(records[2:], merge)
    assert store.get("job-1") == _replay(tmp_path / "d.db", records)


def test_a_second_creation_of_the_same_id_is_ignored(tmp_path: pathlib.Path) -> None:
    """Two replicas taking one idempotency key at once: the first creation stands everywhere."""
    first, second = _job(created_at=100.0), _job(created_at=101.0, fingerprint="other")
    final = _replay(tmp_path / "a.db", [first, second, _job(JobState.RUNNING, created_at=100.0, attempts=1)])
    assert final is not None and final.created_at == 100.0 and final.state is JobState.RUNNING


async def test_watchers_see_materialised_updates(tmp_path: pathlib.Path) -> None:
    store = SqliteJobStore(tmp_path / "w.db", durable=False)
    store.bind_loop(asyncio.get_running_loop())
    queue = store.watch("job-1")
    await asyncio.to_thread(store.apply, [_job(), _job(JobState.RUNNING, attempts=1)], merge)
    seen = [await asyncio.wait_for(queue.get(), PATIENCE_S) for _ in range(2)]
    assert [j.state for _, j in seen] == [JobState.QUEUED, JobState.RUNNING]
    assert seen[0][0] < seen[1][0]  # numbered in the order they were written


def test_result_record_is_lossless() -> None:
    analysis = Analysis(
        tenant="t",
        media_id="m",
        modality=Modality.VIDEO,
        language=Language("en", 0.9),
        tags=(Tag("topic.safety", "topic", 0.7, 1.0, 2.0),),
        chunks=(
            Chunk(
                index=0,
                text="hello",
                embedding=np.arange(4, dtype=np.float32) / 3,
                tags=(Tag("a.b", "a", 0.5),),
                start_s=0.5,
                end_s=1.5,
                language=Language("de", 0.8),
                extra={"keyframe_s": 1.0, "face_count": 2},
            ),
        ),
        embedding_model=ModelRef("mini", "1"),
        created_at=12.5,
        version=12500000,
        metadata={"k": "v"},
        transcript=Transcript(
            segments=(Segment(0, 0.0, 1.0, "hello", -0.2, 0.01, (Word("hello", 0.0, 0.5, 0.9),)),),
            language=Language("en", 0.9),
            duration_s=1.0,
            task="transcribe",
            model=ModelRef("whisper", "base"),
        ),
        video=VideoInfo(2.0, 25.0, 64, 48, "h264", True, 50, 4),
        shots=(Shot(0, 0.0, 2.0, 1.0, (Tag("x.y", "x", 0.3),), 1, "hello", b"\xff\xd8jpeg"),),
    )
    job, back = decode_result(encode_result(_job(), analysis))
    assert job == _job()
    assert np.array_equal(back.chunks[0].embedding, analysis.chunks[0].embedding)
    assert back.chunks[0].embedding.dtype == np.float32
    strip = lambda a: a.__class__(**{**{f: getattr(a, f) for f in a.__slots__}, "chunks": ()})  # noqa: E731
    assert strip(back) == strip(analysis)
    assert back.chunks[0].__class__(
        **{**{f: getattr(back.chunks[0], f) for f in Chunk.__slots__}, "embedding": None}
    ) == Chunk(**{**{f: getattr(analysis.chunks[0], f) for f in Chunk.__slots__}, "embedding": None})
