"""The Kafka job backend with real processes: `serve` replicas, `understanding worker`s, a real broker.

Every submitted job must end in exactly one terminal state with its result in
the store once, even when a worker is SIGKILLed mid-job or the broker restarts.
"""

from __future__ import annotations

import collections
import pathlib
import signal
import threading
import time

import grpc
import pytest

from tests.fixtures import speech
from tests.support.jobs import TERMINAL, job_requests, speech_spec, text_spec, wait_terminal
from tests.support.kafka import broker_env, collect, kafka, wait_consumed
from tests.support.server import ServerProcess, free_port
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess, kafka_backend_env
from understanding.v1 import events_pb2, jobs_pb2
from understanding.v1 import understanding_pb2 as pb

MD = [("x-tenant-id", "kafka-workers")]
OUTAGE_S = 8.0
SENTENCES = [
    "The warehouse inventory was counted twice before the audit.",
    "Our quarterly safety briefing starts at nine in the morning.",
    "Please remember to lock the server room when you leave.",
    "The new delivery schedule applies to every regional depot.",
]


def _speech_files(tmp: pathlib.Path) -> list[pathlib.Path]:
    return [speech.make_speech_wav(text, tmp / f"speech-{i}.wav") for i, text in enumerate(SENTENCES)]


def _watch(stub, job_id: str, into: list[jobs_pb2.Job]) -> threading.Thread:  # type: ignore[no-untyped-def]
    def run() -> None:
        for update in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=MD, timeout=300):
            into.append(update)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _all_terminal(stub, job_ids: list[str], timeout_s: float) -> dict[str, jobs_pb2.Job]:  # type: ignore[no-untyped-def]
    return {job_id: wait_terminal(stub, job_id, MD, timeout_s=timeout_s) for job_id in job_ids}


def _assert_stored_once(stub, finals: dict[str, jobs_pb2.Job]) -> None:  # type: ignore[no-untyped-def]
    for job in finals.values():
        points = stub.GetMedia(pb.GetMediaRequest(media_id=job.media_id), metadata=MD).points
        indexes = [p.chunk_index for p in points]
        assert len(indexes) == len(set(indexes)) == len(job.result.chunks) > 0, (job.job_id, indexes)


def _assert_completion_events(records: list, finals: dict[str, jobs_pb2.Job]) -> None:  # type: ignore[type-arg]
    """Each job's terminal event was published; duplicates only with the same event id."""
    ids_by_job_state: dict[tuple[str, int], set[str]] = collections.defaultdict(set)
    for record in records:
        event = events_pb2.JobEvent.FromString(record.value)
        ids_by_job_state[(event.job.job_id, event.job.state)].add(event.event_id)
    for job in finals.values():
        assert len(ids_by_job_state[(job.job_id, job.state)]) == 1, job.job_id
        others = {s for (j, s) in ids_by_job_state if j == job.job_id} - {job.state}
        assert not others, (job.job_id, others)  # one terminal state per job, never two


def _speech_job(stub, i: int, wav: pathlib.Path) -> jobs_pb2.Job:  # type: ignore[no-untyped-def]
    spec = speech_spec(media_id=f"kw-speech-{i}", key=f"key-{i}" if i % 7 == 0 else "")
    return stub.SubmitJob(job_requests(spec, wav), metadata=MD, timeout=60)


@pytest.mark.kafka
async def test_fifty_jobs_two_workers_one_killed_mid_job(tmp_path: pathlib.Path, kafka_bootstrap: str) -> None:
    env = kafka_backend_env(kafka_bootstrap, tmp_path / "blobs", job_max_attempts="4")
    api = ServerProcess(tmp_path / "api", env=env).start()
    # A second API replica: its own data dir (the embedded store belongs to one process), the
    # same blob dir and topics; it runs no indexer, the store owner does.
    replica = ServerProcess(tmp_path / "api2", env={**env, "UNDERSTANDING_JOB_INDEXER": "false"}).start()
    workers: list[WorkerProcess] = []
    try:
        wavs = _speech_files(tmp_path)
        api.wait_serving()
        replica.wait_serving()

        # Watch the first job before any worker exists, so the stream must begin at QUEUED.
        jobs: list[jobs_pb2.Job] = [_speech_job(api.stub, 0, wavs[0])]
        watched: list[jobs_pb2.Job] = []
        watcher = _watch(api.stub, jobs[0].job_id, watched)
        wait_until(lambda: watched, what="the watch's first update")
        # Worker 0 hangs in the first media it decodes (and never times out), so it is
        # certainly mid-job when it is killed: that job can only finish by being redelivered.
        hanging = {"UNDERSTANDING_FAULTS": "decode_hang=1", "UNDERSTANDING_DECODE_TIMEOUT_S": "3600"}
        workers = [WorkerProcess(tmp_path / "worker-0", {**env, **hanging}).start()]
        workers.append(WorkerProcess(tmp_path / "worker-1", env).start())
        for worker in workers:
            worker.wait_ready()

        # 50 jobs: every fifth is speech, the rest text; some with idempotency keys.
        for i in range(1, 50):
            key = f"key-{i}" if i % 7 == 0 else ""
            if i % 5 == 0:
                job = _speech_job(api.stub, i, wavs[(i // 5) % len(wavs)])
            else:
                spec = text_spec(f"Text job {i}: {SENTENCES[i % len(SENTENCES)]}", media_id=f"kw-text-{i}", key=key)
                job = api.stub.SubmitJob(job_requests(spec), metadata=MD, timeout=60)
            assert job.state == jobs_pb2.JOB_STATE_QUEUED
            jobs.append(job)

        def hung_in_worker_0() -> str | None:
            """The speech job worker 0 started (it runs one job at a time and hangs in the first decode)."""
            speech = [j for j in jobs if j.media_id.startswith("kw-speech")]
            started = [j.job_id for j in speech if workers[0].ran(j.job_id)]
            if started:
                return started[0]
            states = [api.stub.GetJob(pb.GetJobRequest(job_id=j.job_id), metadata=MD, timeout=60).state for j in speech]
            if all(state in TERMINAL for state in states):  # none landed on worker 0's partitions: one more
                jobs.append(_speech_job(api.stub, len(jobs), wavs[len(jobs) % len(wavs)]))
            return None

        victim = wait_until(hung_in_worker_0, timeout_s=600, interval_s=0.5, what="worker 0 hung in a speech job")
        assert workers[0].stop(sig=signal.SIGKILL) == -signal.SIGKILL

        finals = _all_terminal(api.stub, [j.job_id for j in jobs], timeout_s=600)
        assert {j.state for j in finals.values()} == {jobs_pb2.JOB_STATE_SUCCEEDED}
        assert finals[victim].attempts >= 2 and workers[1].ran(victim)  # redelivered to the survivor
        _assert_stored_once(api.stub, finals)

        # WatchJob streamed QUEUED, RUNNING with progress, SUCCEEDED.
        watcher.join(300)
        states = [u.state for u in watched]
        assert states[0] == jobs_pb2.JOB_STATE_QUEUED and states[-1] == jobs_pb2.JOB_STATE_SUCCEEDED
        assert any(u.state == jobs_pb2.JOB_STATE_RUNNING and u.progress.fraction > 0 for u in watched)

        # The other replica answers for every job (once its view has applied the last records),
        # and shares idempotency keys.
        for job in jobs:
            seen = wait_terminal(replica.stub, job.job_id, MD, timeout_s=120)
            assert seen.state == jobs_pb2.JOB_STATE_SUCCEEDED and seen.attempts == finals[job.job_id].attempts
        listed = replica.stub.ListJobs(pb.ListJobsRequest(page_size=100), metadata=MD).jobs
        assert {j.job_id for j in listed} == {j.job_id for j in jobs}
        again = replica.stub.SubmitJob(
            job_requests(text_spec(f"Text job 7: {SENTENCES[7 % len(SENTENCES)]}", media_id="kw-text-7", key="key-7")),
            metadata=MD,
        )
        assert again.job_id == jobs[7].job_id and again.state == jobs_pb2.JOB_STATE_SUCCEEDED
        with pytest.raises(grpc.RpcError) as conflict:
            replica.stub.SubmitJob(job_requests(text_spec("another text", key="key-7")), metadata=MD)
        assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS
        # A job submitted to the replica is run by a worker and indexed by the store owner.
        extra = replica.stub.SubmitJob(
            job_requests(text_spec("submitted to the second replica", media_id="kw-r2")), metadata=MD
        )
        assert wait_terminal(replica.stub, extra.job_id, MD).state == jobs_pb2.JOB_STATE_SUCCEEDED
        assert api.stub.GetMedia(pb.GetMediaRequest(media_id="kw-r2"), metadata=MD).points

        # Errors: unknown job, cancelling a finished job.
        with pytest.raises(grpc.RpcError) as missing:
            replica.stub.GetJob(pb.GetJobRequest(job_id="job-does-not-exist"), metadata=MD)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as finished:
            api.stub.CancelJob(pb.CancelJobRequest(job_id=jobs[0].job_id), metadata=MD)
        assert finished.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # Cancel before it ends: CANCELLED everywhere, no result indexed.
        long_wav = tmp_path / "long.wav"
        speech.concat_with_silence([wavs[0], 0.5, wavs[1], 0.5, wavs[2], 0.5, wavs[3]], long_wav)
        doomed = api.stub.SubmitJob(job_requests(speech_spec(media_id="kw-cancelled"), long_wav), metadata=MD)
        cancelled = replica.stub.CancelJob(pb.CancelJobRequest(job_id=doomed.job_id), metadata=MD)
        assert cancelled.state == jobs_pb2.JOB_STATE_CANCELLED
        # Once the workers and the indexer have handled every record so far, a worker that had
        # taken the job has stopped it or handed in a result, and the indexer has seen that result.
        await wait_consumed(
            kafka_bootstrap, env["UNDERSTANDING_KAFKA_WORKER_GROUP"], env["UNDERSTANDING_KAFKA_JOBS_TOPIC"]
        )
        await wait_consumed(
            kafka_bootstrap, env["UNDERSTANDING_KAFKA_INDEXER_GROUP"], env["UNDERSTANDING_KAFKA_RESULTS_TOPIC"]
        )
        assert wait_terminal(api.stub, doomed.job_id, MD, timeout_s=120).state == jobs_pb2.JOB_STATE_CANCELLED
        with pytest.raises(grpc.RpcError) as no_media:
            api.stub.GetMedia(pb.GetMediaRequest(media_id="kw-cancelled"), metadata=MD)
        assert no_media.value.code() == grpc.StatusCode.NOT_FOUND

        # Undecodable media fails at once, without retries.
        broken = api.stub.SubmitJob(
            job_requests(speech_spec(media_id="kw-broken"), b"not audio at all" * 64), metadata=MD
        )
        failed = wait_terminal(api.stub, broken.job_id, MD)
        assert failed.state == jobs_pb2.JOB_STATE_FAILED and failed.attempts == 1 and not failed.error.retriable

        finals[extra.job_id] = wait_terminal(api.stub, extra.job_id, MD)
        finals[doomed.job_id] = cancelled
        finals[broken.job_id] = failed
        records = await collect(
            kafka_bootstrap,
            env["UNDERSTANDING_KAFKA_JOB_STATUS_TOPIC"],
            until=lambda rs: {events_pb2.JobEvent.FromString(r.value).job.job_id for r in rs} >= set(finals),
            settle_s=2,
        )
        _assert_completion_events(records, finals)
        # Media is removed once each job ended (just after its terminal state is recorded).
        wait_until(lambda: not list((tmp_path / "blobs").iterdir()), what="the blob dir emptied")
    finally:
        codes = [w.stop() for w in workers]
        assert replica.stop() == 0
        assert api.stop() == 0, api.log()
        assert codes[1:] in ([], [0]), workers[-1].log()[-3000:]


@pytest.mark.kafka
async def test_broker_restart_during_processing(tmp_path: pathlib.Path) -> None:
    """A private broker (never the shared one) goes down mid-run and comes back, and the store
    owner's first two vector store writes fail: nothing lost, nothing twice."""
    port, controller = free_port(), free_port()
    benv = broker_env(port, controller, tmp_path / "kafka")
    kafka("up", benv)
    bootstrap = f"127.0.0.1:{port}"
    env = kafka_backend_env(bootstrap, tmp_path / "blobs", outbox_retry_max_s="2", job_backoff_s="0.5")
    api = worker = None
    try:
        api = ServerProcess(tmp_path / "api", env={**env, "UNDERSTANDING_FAULTS": "store_write=2"}).start()
        worker = WorkerProcess(tmp_path / "worker", env).start()
        wavs = _speech_files(tmp_path)
        api.wait_serving()
        worker.wait_ready()
        jobs = []
        for i in range(12):
            if i % 3 == 0:
                jobs.append(
                    api.stub.SubmitJob(job_requests(speech_spec(media_id=f"br-speech-{i}"), wavs[i % 4]), metadata=MD)
                )
            else:
                jobs.append(
                    api.stub.SubmitJob(
                        job_requests(text_spec(f"broker restart text {i}", media_id=f"br-text-{i}")), metadata=MD
                    )
                )

        def terminal_count() -> int:
            return sum(api.stub.GetJob(pb.GetJobRequest(job_id=j.job_id), metadata=MD).state in TERMINAL for j in jobs)

        wait_until(lambda: terminal_count() >= 2, timeout_s=300, what="two jobs finished before the outage")
        kafka("pause", benv)
        time.sleep(OUTAGE_S)  # how long the broker stays away: the scenario, not a wait for anything
        kafka("resume", benv)
        finals = _all_terminal(api.stub, [j.job_id for j in jobs], timeout_s=600)
        assert {j.state for j in finals.values()} == {jobs_pb2.JOB_STATE_SUCCEEDED}, finals
        _assert_stored_once(api.stub, finals)
        assert "indexer: write failed, retrying" in (tmp_path / "api" / "server.log").read_text()  # the faults hit
        records = await collect(
            bootstrap,
            env["UNDERSTANDING_KAFKA_JOB_STATUS_TOPIC"],
            until=lambda rs: {events_pb2.JobEvent.FromString(r.value).job.job_id for r in rs} >= set(finals),
            settle_s=2,
        )
        _assert_completion_events(records, finals)
    finally:
        if worker is not None:
            worker.stop()
        if api is not None:
            api.stop()
        kafka("down", benv)
