"""Limits on a real server: per-tenant rate and upload streams, deadlines that stop the work, SIGTERM drain."""

from __future__ import annotations

import json
import pathlib
import signal
import threading
import time
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.fixtures import speech
from tests.support.metrics import Scrape, wait_for_metric
from tests.support.server import ServerProcess
from tests.support.upload import upload_requests
from understanding.v1 import understanding_pb2 as pb, understanding_pb2_grpc

RATE_RPS, BURST = 2, 5

PARAGRAPH = (
    "The committee met on Tuesday to review the budget for the coming year. "
    "Several members asked for more detail about the maintenance costs of the old library building. "
    "The treasurer explained that the heating system must be replaced before the winter. "
    "After a long discussion the proposal was approved with two votes against. "
)


def md(tenant: str) -> list[tuple[str, str]]:
    return [("x-tenant-id", tenant)]


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, analysis_topic: str, job_status_topic: str
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("limits-server"),
        env={
            "UNDERSTANDING_RATE_LIMIT_RPS": str(RATE_RPS),
            "UNDERSTANDING_RATE_LIMIT_BURST": str(BURST),
            "UNDERSTANDING_TENANT_MAX_UPLOAD_STREAMS": "1",
            "UNDERSTANDING_SHUTDOWN_GRACE_S": "60",
            "UNDERSTANDING_WHISPER_WORKERS": "1",
            "UNDERSTANDING_MAX_MEDIA_DURATION_S": "300",
            "UNDERSTANDING_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "UNDERSTANDING_KAFKA_ANALYSIS_TOPIC": analysis_topic,
            "UNDERSTANDING_KAFKA_JOB_STATUS_TOPIC": job_status_topic,
        },
    ).start()
    try:
        proc.wait_serving()
        yield proc
    finally:
        assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """About three minutes of speech: far longer to transcribe than the deadlines below."""
    return speech.make_speech_wav(PARAGRAPH * 8, tmp_path_factory.mktemp("limits") / "long.wav")


def spool_files(server: ServerProcess) -> list[pathlib.Path]:
    spool = server.data_dir / "spool"
    return list(spool.iterdir()) if spool.exists() else []


def test_rate_limit_answers_resource_exhausted_with_a_retry_hint(limited: ServerProcess) -> None:
    stub = limited.stub
    for _ in range(BURST):  # the burst passes (NOT_FOUND is the RPC's own answer)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetJob(pb.GetJobRequest(job_id="job-none"), metadata=md("rl"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(pb.GetJobRequest(job_id="job-none"), metadata=md("rl"))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in err.value.details()
    retry_ms = int(dict(err.value.trailing_metadata())["retry-after-ms"])
    assert 0 < retry_ms <= 1000 / RATE_RPS
    with pytest.raises(grpc.RpcError) as other:  # another tenant has its own bucket
        stub.GetJob(pb.GetJobRequest(job_id="job-none"), metadata=md("rl-other"))
    assert other.value.code() == grpc.StatusCode.NOT_FOUND
    time.sleep(retry_ms / 1000 + 0.05)
    with pytest.raises(grpc.RpcError) as again:
        stub.GetJob(pb.GetJobRequest(job_id="job-none"), metadata=md("rl"))
    assert again.value.code() == grpc.StatusCode.NOT_FOUND
    scrape = Scrape(limited.metrics())
    assert scrape.value("understanding_rate_limited_total", method="GetJob", limit="rate") == 1
    assert scrape.value("understanding_rpc_total", method="GetJob", code="RESOURCE_EXHAUSTED") == 1
    assert limited.health_status() == health_pb2.HealthCheckResponse.SERVING


def test_concurrent_upload_streams_per_tenant(limited: ServerProcess) -> None:
    release = threading.Event()

    def held_upload() -> Iterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(filename="held.bin"))
        yield pb.UploadRequest(chunk=b"0" * 1024)
        release.wait(60)
        yield pb.UploadRequest(chunk=b"1" * 1024)

    first = limited.stub.UploadMedia.future(held_upload(), metadata=md("streams"), timeout=120)
    try:
        wait_for_metric(limited.metrics, lambda s: s.value("understanding_rpc_in_flight", method="UploadMedia") == 1, 30)
        with pytest.raises(grpc.RpcError) as err:
            limited.stub.UploadMedia(upload_requests(b"x" * 10, pb.UploadHeader(filename="b.bin")), metadata=md("streams"), timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "uploads in progress" in err.value.details()
        assert int(dict(err.value.trailing_metadata())["retry-after-ms"]) > 0
        # Another tenant is not held back.
        other = limited.stub.UploadMedia(upload_requests(b"y" * 10, pb.UploadHeader(filename="c.bin")), metadata=md("streams-2"), timeout=30)
        assert other.size_bytes == 10
    finally:
        release.set()
    assert first.result().size_bytes == 2048
    again = limited.stub.UploadMedia(upload_requests(b"z" * 10, pb.UploadHeader(filename="d.bin")), metadata=md("streams"), timeout=30)
    assert again.size_bytes == 10  # the slot was given back
    assert Scrape(limited.metrics()).value("understanding_rate_limited_total", method="UploadMedia", limit="upload_streams") == 1


def test_deadline_stops_the_transcription(limited: ServerProcess, long_wav: pathlib.Path) -> None:
    assert speech.wav_duration(long_wav) > 120
    before = Scrape(limited.metrics())
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        limited.stub.Transcribe(upload_requests(long_wav, pb.UploadHeader(filename="long.wav")), metadata=md("deadline"), timeout=8)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server stops decoding at the next segment instead of transcribing three minutes for nobody.
    after = wait_for_metric(
        limited.metrics,
        lambda s: s.value("understanding_model_seconds_count", model="whisper", outcome="cancelled")
        > before.value("understanding_model_seconds_count", model="whisper", outcome="cancelled"),
        timeout_s=60,
    )
    stopped_after = time.monotonic() - started
    assert after.value("understanding_model_seconds_count", model="whisper", outcome="cancelled") == 1, after.text
    assert after.value("understanding_model_seconds_count", model="whisper", outcome="ok") == before.value(
        "understanding_model_seconds_count", model="whisper", outcome="ok"
    )
    assert after.value("understanding_rpc_total", method="Transcribe", code="DEADLINE_EXCEEDED") == 1
    assert stopped_after < 60
    # Healthy afterwards, with nothing left behind.
    assert limited.health_status() == health_pb2.HealthCheckResponse.SERVING
    response = limited.stub.AnalyzeText(pb.AnalyzeTextRequest(items=[pb.TextItem(text="still here")]), metadata=md("deadline"), timeout=30)
    assert len(response.results) == 1
    assert spool_files(limited) == []
    lines = [json.loads(line) for line in limited.log_path.read_text().splitlines() if line.startswith("{")]
    assert any(d.get("msg") == "rpc" and d.get("method") == "Transcribe" and d.get("code") == "DEADLINE_EXCEEDED" and d.get("tenant") == "deadline" for d in lines)


def test_media_over_the_duration_limit_is_refused_before_transcribing(
    limited: ServerProcess, long_wav: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    too_long = tmp_path / "too-long.wav"
    speech.concat_with_silence([long_wav, long_wav], too_long)
    assert speech.wav_duration(too_long) > 300
    before = Scrape(limited.metrics())
    with pytest.raises(grpc.RpcError) as err:
        limited.stub.Transcribe(upload_requests(too_long, pb.UploadHeader(filename="too-long.wav")), metadata=md("duration"), timeout=60)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.value.details().startswith("duration:") and "300 s limit" in err.value.details()
    after = Scrape(limited.metrics())
    assert after.value("understanding_model_seconds_count", model="whisper") == before.value("understanding_model_seconds_count", model="whisper")
    assert spool_files(limited) == []


def test_sigterm_finishes_in_flight_work_and_flushes_the_outbox(limited: ServerProcess, tmp_path: pathlib.Path) -> None:
    """Runs last: stops the module's server. In-flight RPCs finish, new ones are refused, events reach Kafka."""
    wav = speech.make_speech_wav(PARAGRAPH, tmp_path / "drain.wav")
    result: dict[str, object] = {}

    def transcribe() -> None:
        try:
            result["response"] = limited.stub.Transcribe(
                upload_requests(wav, pb.UploadHeader(media_id="drained-1", filename="drain.wav")), metadata=md("drain"), timeout=120
            )
        except grpc.RpcError as error:
            result["error"] = error

    worker = threading.Thread(target=transcribe)
    worker.start()
    wait_for_metric(limited.metrics, lambda s: s.value("understanding_rpc_in_flight", method="Transcribe") == 1, 30)
    assert limited.proc is not None
    limited.proc.send_signal(signal.SIGTERM)
    # New connections are refused once the signal is handled (how soon depends on load).
    refused: grpc.RpcError | None = None
    deadline = time.monotonic() + 15
    while refused is None and time.monotonic() < deadline:
        with grpc.insecure_channel(limited.target) as fresh:
            try:
                understanding_pb2_grpc.UnderstandingStub(fresh).AnalyzeText(
                    pb.AnalyzeTextRequest(items=[pb.TextItem(text="too late")]), metadata=md("drain"), timeout=5
                )
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:  # this tenant's rate limit: try again
                    refused = error
                    break
            time.sleep(0.5)
    # UNAVAILABLE once the listener is closed; a call that races the server's stop on an
    # already open connection is CANCELLED by gRPC core. Either way it is refused.
    assert refused is not None and refused.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, refused
    worker.join(120)
    assert "error" not in result, result
    assert result["response"].analysis.media_id == "drained-1"  # type: ignore[attr-defined]
    assert limited.proc.wait(60) == 0
    assert limited.outbox() == []  # flushed to Kafka before exit
    log = limited.log_path.read_text()
    assert '"shutdown requested"' in log and '"stopped"' in log
