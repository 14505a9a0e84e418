"""Jobs under faults: failing store writes, full queues, SIGTERM and SIGKILL mid-job.

Every submitted job must end in exactly one terminal state with its result
stored once: real server processes, real Kafka, the real embedded store.
"""

from __future__ import annotations

import pathlib
import signal
import uuid

import grpc
import pytest

from tests.fixtures import speech
from tests.support.jobs import TERMINAL, job_requests, speech_spec, text_spec, wait_terminal
from tests.support.kafka import collect
from tests.support.server import ServerProcess
from tests.support.waiting import wait_until
from understanding.v1 import events_pb2, jobs_pb2
from understanding.v1 import understanding_pb2 as pb

MD = [("x-tenant-id", "faults")]


def start(data_dir: pathlib.Path, **env: str) -> ServerProcess:
    server = ServerProcess(data_dir, env={f"UNDERSTANDING_{k.upper()}": v for k, v in env.items()}).start()
    server.wait_serving()
    return server


@pytest.mark.kafka
async def test_transient_store_failures_retry_then_dead_letter(tmp_path: pathlib.Path, kafka_bootstrap: str) -> None:
    dlq = f"understanding.jobs.dlq.v1.test-{uuid.uuid4().hex[:8]}"
    server = start(
        tmp_path / "a",
        faults="store_write=4",
        job_backoff_s="0.2",
        job_max_attempts="3",
        kafka_bootstrap=kafka_bootstrap,
        kafka_job_dlq_topic=dlq,
    )
    try:
        # Attempts 1-3 hit injected store failures: the job is exhausted and dead-lettered.
        first = server.stub.SubmitJob(
            job_requests(text_spec("first job hits the outage", media_id="dlq-1")), metadata=MD
        )
        failed = wait_terminal(server.stub, first.job_id, MD)
        assert failed.state == jobs_pb2.JOB_STATE_FAILED and failed.attempts == 3
        assert failed.error.retriable and failed.error.code == "UNAVAILABLE" and "injected" in failed.error.message
        # One more failure left: the next job fails once, then succeeds on its retry.
        second = server.stub.SubmitJob(job_requests(text_spec("second job recovers", media_id="retry-1")), metadata=MD)
        done = wait_terminal(server.stub, second.job_id, MD)
        assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED and done.attempts == 2
        media = server.stub.GetMedia(pb.GetMediaRequest(media_id="retry-1"), metadata=MD)
        assert len(media.points) == 1
        records = await collect(kafka_bootstrap, dlq, until=lambda rs: len(rs) >= 1, settle_s=2)
        assert [events_pb2.JobEvent.FromString(r.value).job.job_id for r in records] == [first.job_id]
    finally:
        assert server.stop() == 0


def test_backpressure_and_tenant_limit(tmp_path: pathlib.Path) -> None:
    wav = speech.make_speech_wav("Backpressure keeps the queue bounded when workers are busy.", tmp_path / "b.wav")
    # The only worker stays busy until we cancel its job (its decoder hangs and never times
    # out), so what is queued does not depend on how fast the machine runs the jobs.
    server = start(
        tmp_path / "b", job_workers="1", job_queue_size="2", job_tenant_inflight="3",
        faults="decode_hang=1", decode_timeout_s="3600",
    )  # fmt: skip
    try:

        def submit(i: int) -> jobs_pb2.Job:
            return server.stub.SubmitJob(job_requests(speech_spec(media_id=f"bp-{i}"), wav), metadata=MD, timeout=60)

        busy = submit(0)
        wait_until(
            lambda: (
                server.stub.GetJob(pb.GetJobRequest(job_id=busy.job_id), metadata=MD).state
                == jobs_pb2.JOB_STATE_RUNNING
            ),
            what="the worker busy with the first job",
        )
        accepted, rejected = [busy], []
        for i in range(1, 6):
            try:
                accepted.append(submit(i))
            except grpc.RpcError as error:
                rejected.append(error)
        assert len(accepted) == 3 and len(rejected) == 3  # one running, two queued: the queue is full
        for error in rejected:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in error.details()
            assert int(dict(error.trailing_metadata())["retry-after-ms"]) > 0
        server.stub.CancelJob(pb.CancelJobRequest(job_id=busy.job_id), metadata=MD, timeout=60)
        assert wait_terminal(server.stub, busy.job_id, MD).state == jobs_pb2.JOB_STATE_CANCELLED
        for job in accepted[1:]:
            assert wait_terminal(server.stub, job.job_id, MD, timeout_s=300).state == jobs_pb2.JOB_STATE_SUCCEEDED
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_mid_job_loses_nothing(tmp_path: pathlib.Path, sig: int) -> None:
    parts: list = []
    for i in range(5):
        parts += [
            speech.make_speech_wav(
                f"Section {i} of the quarterly safety briefing for all staff.", tmp_path / f"s{i}.wav"
            ),
            0.5,
        ]
    long_wav = tmp_path / "long.wav"
    speech.concat_with_silence(parts, long_wav)
    data = tmp_path / "c"
    server = start(data)
    jobs = [
        server.stub.SubmitJob(job_requests(speech_spec(media_id=f"rs-{i}", key=f"k{i}"), long_wav), metadata=MD)
        for i in range(3)
    ]
    jobs += [
        server.stub.SubmitJob(job_requests(text_spec(f"text job {i}", media_id=f"rt-{i}")), metadata=MD)
        for i in range(3)
    ]
    for update in server.stub.WatchJob(pb.WatchJobRequest(job_id=jobs[0].job_id), metadata=MD, timeout=300):
        if update.state == jobs_pb2.JOB_STATE_RUNNING:
            break
    server.stop(sig=sig)
    server = start(data)  # same data dir: same job store, blobs and vector store
    try:
        for job in jobs:
            final = wait_terminal(server.stub, job.job_id, MD, timeout_s=300)
            assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final
        assert wait_terminal(server.stub, jobs[0].job_id, MD).attempts >= 1
        for i in range(3):
            points = server.stub.GetMedia(pb.GetMediaRequest(media_id=f"rs-{i}"), metadata=MD).points
            assert points and len({p.chunk_index for p in points}) == len(points)  # each chunk once
        # Re-submitting with the same idempotency key returns the finished job.
        again = server.stub.SubmitJob(job_requests(speech_spec(media_id="rs-0", key="k0"), long_wav), metadata=MD)
        assert again.job_id == jobs[0].job_id and again.state == jobs_pb2.JOB_STATE_SUCCEEDED
        listed = server.stub.ListJobs(pb.ListJobsRequest(page_size=50), metadata=MD).jobs
        assert sorted(j.job_id for j in listed) == sorted(j.job_id for j in jobs)
        assert all(j.state in TERMINAL for j in listed)
        # Media is deleted just after the terminal state is recorded.
        wait_until(lambda: not list((data / "blobs").iterdir()), what="the blob dir emptied")
        assert list((data / "spool").iterdir()) == []
    finally:
        assert server.stop() == 0
