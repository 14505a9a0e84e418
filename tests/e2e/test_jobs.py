"""Jobs over gRPC with the embedded queue: submit, watch, cancel, list, idempotency, failures."""

from __future__ import annotations

import pathlib

import grpc
import pytest

from tests.fixtures import speech
from tests.support.jobs import job_requests, speech_spec, text_spec, wait_terminal
from tests.support.kafka import collect
from tests.support.server import ServerProcess
from tests.support.upload import upload_requests
from tests.support.waiting import PATIENCE_S, wait_until
from understanding.v1 import common_pb2, events_pb2, jobs_pb2
from understanding.v1 import understanding_pb2 as pb

MD = [("x-tenant-id", "e2e-jobs")]
SAY = "The delivery truck will arrive at the warehouse tomorrow morning at eight."


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return speech.make_speech_wav(SAY, tmp_path_factory.mktemp("jobs") / "say.wav")


def submit(server: ServerProcess, spec: pb.JobSpec, data=None, md=MD) -> jobs_pb2.Job:  # type: ignore[no-untyped-def]
    return server.stub.SubmitJob(job_requests(spec, data), metadata=md, timeout=PATIENCE_S)


async def test_speech_job_watch_and_status_event(
    server: ServerProcess, wav: pathlib.Path, kafka_bootstrap: str, job_status_topic: str
) -> None:
    job = submit(server, speech_spec(media_id="job-audio-1", speech=pb.SpeechOptions(word_timestamps=True)), wav)
    assert job.job_id.startswith("job-") and job.state == jobs_pb2.JOB_STATE_QUEUED
    states, fractions = [], []
    for update in server.stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), metadata=MD, timeout=PATIENCE_S * 5):
        states.append(update.state)
        fractions.append(update.progress.fraction)
    assert states[0] in (jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_RUNNING)
    assert jobs_pb2.JOB_STATE_RUNNING in states and states[-1] == jobs_pb2.JOB_STATE_SUCCEEDED
    assert fractions[-1] == pytest.approx(1.0) and fractions == sorted(fractions), fractions
    final = server.stub.GetJob(pb.GetJobRequest(job_id=job.job_id), metadata=MD)
    assert final.attempts == 1 and final.finished_at.seconds >= final.created_at.seconds
    text = " ".join(s.text for s in final.result.transcript.segments).lower()
    assert "warehouse" in text and final.result.modality == common_pb2.MODALITY_SPEECH
    hits = server.stub.Search(pb.SearchRequest(text="truck delivery to the warehouse", top_k=1), metadata=MD).hits
    assert hits[0].media_id == "job-audio-1"
    # Media is removed after the job (just after its terminal state is recorded).
    wait_until(lambda: not list(server.data_dir.joinpath("blobs").iterdir()), what="the job's media removed")

    records = await collect(
        kafka_bootstrap, job_status_topic, until=lambda rs: any(r.key == job.job_id.encode() for r in rs)
    )
    event = events_pb2.JobEvent.FromString(next(r for r in records if r.key == job.job_id.encode()).value)
    assert event.job.state == jobs_pb2.JOB_STATE_SUCCEEDED and event.job.tenant == "e2e-jobs"


def test_watch_shows_running_progress(server: ServerProcess, tmp_path: pathlib.Path) -> None:
    parts: list = []
    for i in range(6):
        parts += [
            speech.make_speech_wav(
                f"This is sentence number {i} of a longer recording about gardening.", tmp_path / f"p{i}.wav"
            ),
            1.0,
        ]
    long_wav = tmp_path / "long.wav"
    speech.concat_with_silence(parts, long_wav)
    job = submit(server, speech_spec(media_id="job-long-1"), long_wav)
    seen = [
        (u.state, u.progress.stage, u.progress.fraction)
        for u in server.stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), metadata=MD, timeout=PATIENCE_S * 5)
    ]
    running = [s for s in seen if s[0] == jobs_pb2.JOB_STATE_RUNNING]
    assert any(stage == "transcribe" and 0 < frac < 1 for _, stage, frac in running), seen
    assert seen[-1][0] == jobs_pb2.JOB_STATE_SUCCEEDED


def test_text_job_idempotency_and_list(server: ServerProcess) -> None:
    md = [("x-tenant-id", "e2e-jobs-idem")]
    first = submit(server, text_spec("A pasta recipe with garlic and olive oil", key="order-42"), md=md)
    again = submit(server, text_spec("A pasta recipe with garlic and olive oil", key="order-42"), md=md)
    assert again.job_id == first.job_id
    with pytest.raises(grpc.RpcError) as err:
        submit(server, text_spec("Something else entirely", key="order-42"), md=md)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and "idempotency_key" in err.value.details()
    done = wait_terminal(server.stub, first.job_id, md)
    assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED and "topic.food" in {t.label for t in done.result.tags}
    # Same key from another tenant is a different job.
    other = submit(
        server,
        text_spec("A pasta recipe with garlic and olive oil", key="order-42"),
        md=[("x-tenant-id", "someone-else")],
    )
    assert other.job_id != first.job_id

    ids = {first.job_id}
    for i in range(4):
        ids.add(submit(server, text_spec(f"note number {i}"), md=md).job_id)
    listed, token = [], ""
    while True:
        page = server.stub.ListJobs(pb.ListJobsRequest(page_size=2, page_token=token), metadata=md)
        listed += [j.job_id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert set(listed) == ids and len(listed) == len(ids)
    for job_id in ids:
        wait_terminal(server.stub, job_id, md)
    succeeded = server.stub.ListJobs(pb.ListJobsRequest(states=[jobs_pb2.JOB_STATE_SUCCEEDED]), metadata=md)
    assert {j.job_id for j in succeeded.jobs} == ids


def test_job_errors(server: ServerProcess, wav: pathlib.Path) -> None:
    for fn, req, code in (
        (server.stub.GetJob, pb.GetJobRequest(job_id="job-nope"), grpc.StatusCode.NOT_FOUND),
        (server.stub.CancelJob, pb.CancelJobRequest(job_id="job-nope"), grpc.StatusCode.NOT_FOUND),
        (server.stub.ListJobs, pb.ListJobsRequest(page_size=501), grpc.StatusCode.INVALID_ARGUMENT),
        (server.stub.ListJobs, pb.ListJobsRequest(page_token="garbage!"), grpc.StatusCode.INVALID_ARGUMENT),
        (server.stub.ListJobs, pb.ListJobsRequest(states=[99]), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as err:
            fn(req, metadata=MD, timeout=PATIENCE_S)
        assert err.value.code() == code
    with pytest.raises(grpc.RpcError) as err:
        list(server.stub.WatchJob(pb.WatchJobRequest(job_id="job-nope"), metadata=MD, timeout=PATIENCE_S))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    bad_specs = [
        (pb.JobSpec(modality=common_pb2.MODALITY_UNSPECIFIED, text="x"), None, "spec.modality"),
        (text_spec(""), None, "spec.text"),
        (speech_spec(), None, "zero-length"),
        (text_spec("x"), b"bytes", "chunk"),
        (pb.JobSpec(modality=common_pb2.MODALITY_SPEECH, upload_id="upl-unknown"), None, "upload_id"),
        (speech_spec(speech=pb.SpeechOptions(language="zz")), wav, "speech.language"),
    ]
    for spec, data, needle in bad_specs:
        with pytest.raises(grpc.RpcError) as err:
            submit(server, spec, data)
        assert needle in err.value.details(), err.value.details()
    assert list(server.data_dir.joinpath("spool").iterdir()) == []

    # Another tenant's job does not exist for you; a finished job cannot be cancelled.
    job = submit(server, text_spec("hello there"))
    wait_terminal(server.stub, job.job_id, MD)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.GetJob(pb.GetJobRequest(job_id=job.job_id), metadata=[("x-tenant-id", "intruder")])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        server.stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id), metadata=MD)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_undecodable_media_fails_at_once(server: ServerProcess) -> None:
    job = submit(server, speech_spec(media_id="junk-1"), b"this is not audio at all" * 100)
    done = wait_terminal(server.stub, job.job_id, MD)
    assert done.state == jobs_pb2.JOB_STATE_FAILED and done.attempts == 1
    assert done.error.code == "INVALID_ARGUMENT" and not done.error.retriable and "decodable" in done.error.message


def test_upload_then_submit_by_reference(server: ServerProcess, wav: pathlib.Path) -> None:
    uploaded = server.stub.UploadMedia(upload_requests(wav, pb.UploadHeader(filename="say.wav")), metadata=MD)
    assert uploaded.upload_id.startswith("upl-") and uploaded.size_bytes == wav.stat().st_size
    with pytest.raises(grpc.RpcError) as err:  # not visible to other tenants
        submit(
            server,
            pb.JobSpec(modality=common_pb2.MODALITY_SPEECH, upload_id=uploaded.upload_id),
            md=[("x-tenant-id", "intruder")],
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    job = submit(
        server,
        pb.JobSpec(
            modality=common_pb2.MODALITY_SPEECH,
            upload_id=uploaded.upload_id,
            media=pb.UploadHeader(media_id="by-ref-1"),
        ),
    )
    done = wait_terminal(server.stub, job.job_id, MD)
    assert (
        done.state == jobs_pb2.JOB_STATE_SUCCEEDED
        and "warehouse" in " ".join(s.text for s in done.result.transcript.segments).lower()
    )


def test_cancel_queued_and_running(server: ServerProcess, tmp_path: pathlib.Path) -> None:
    parts: list = []
    for i in range(8):
        parts += [
            speech.make_speech_wav(
                f"Paragraph {i}: the committee discussed the new bridge design at length.", tmp_path / f"c{i}.wav"
            ),
            0.5,
        ]
    long_wav = tmp_path / "cancel.wav"
    speech.concat_with_silence(parts, long_wav)
    running = submit(server, speech_spec(media_id="cancel-run"), long_wav)
    queued = submit(server, speech_spec(media_id="cancel-queued"), long_wav)
    for update in server.stub.WatchJob(pb.WatchJobRequest(job_id=running.job_id), metadata=MD, timeout=PATIENCE_S * 5):
        if update.state == jobs_pb2.JOB_STATE_RUNNING and update.progress.stage == "transcribe":
            break
    else:
        pytest.fail("the first job was never seen transcribing")
    cancelled_q = server.stub.CancelJob(pb.CancelJobRequest(job_id=queued.job_id), metadata=MD, timeout=PATIENCE_S)
    assert cancelled_q.state == jobs_pb2.JOB_STATE_CANCELLED
    cancelled_r = server.stub.CancelJob(pb.CancelJobRequest(job_id=running.job_id), metadata=MD, timeout=PATIENCE_S)
    # The transcription stops at its next segment: a window of audio, slow on a busy machine.
    final = wait_terminal(server.stub, running.job_id, MD, timeout_s=PATIENCE_S * 5)
    assert cancelled_r.state in (jobs_pb2.JOB_STATE_CANCELLED, jobs_pb2.JOB_STATE_RUNNING)
    assert final.state == jobs_pb2.JOB_STATE_CANCELLED
    with pytest.raises(grpc.RpcError) as err:
        server.stub.GetMedia(pb.GetMediaRequest(media_id="cancel-run"), metadata=MD)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
