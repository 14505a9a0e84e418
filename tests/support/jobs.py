"""Helpers to submit and follow jobs over gRPC."""

from __future__ import annotations

import hashlib
import pathlib
import time
from collections.abc import Iterator

from understanding.v1 import common_pb2, jobs_pb2
from understanding.v1 import understanding_pb2 as pb

TERMINAL = {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED}


def job_requests(
    spec: pb.JobSpec, data: bytes | pathlib.Path | None = None, chunk_size: int = 64 * 1024
) -> Iterator[pb.SubmitJobRequest]:
    yield pb.SubmitJobRequest(spec=spec)
    if data is None:
        return
    raw = data.read_bytes() if isinstance(data, pathlib.Path) else data
    for i in range(0, len(raw), chunk_size):
        yield pb.SubmitJobRequest(chunk=raw[i : i + chunk_size])
    yield pb.SubmitJobRequest(end=pb.UploadEnd(sha256=hashlib.sha256(raw).hexdigest()))


def text_spec(text: str, key: str = "", media_id: str = "") -> pb.JobSpec:
    return pb.JobSpec(
        idempotency_key=key, modality=common_pb2.MODALITY_TEXT, text=text, media=pb.UploadHeader(media_id=media_id)
    )


def speech_spec(key: str = "", media_id: str = "", **header) -> pb.JobSpec:  # type: ignore[no-untyped-def]
    return pb.JobSpec(
        idempotency_key=key, modality=common_pb2.MODALITY_SPEECH, media=pb.UploadHeader(media_id=media_id, **header)
    )


def wait_terminal(stub, job_id: str, metadata, timeout_s: float = 300) -> jobs_pb2.Job:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=metadata, timeout=60)
        if job.state in TERMINAL:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not terminal after {timeout_s}s: {job}")
