"""Limits on a real server: per-tenant rate and upload streams, deadlines that stop the work, SIGTERM drain."""

from __future__ import annotations

import json
import pathlib
import signal
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.fixtures import speech
from tests.support.metrics import Scrape, wait_for_metric
from tests.support.server import ServerProcess
from tests.support.upload import upload_requests
from tests.support.waiting import PATIENCE_S, wait_until
from understanding.v1 import understanding_pb2 as pb
from understanding.v1 import understanding_pb2_grpc

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
            "UNDERSTANDING_SHUTDOWN_GRACE_S": "300",  # the drain test's transcription, however slow
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


def get_job_code(stub: understanding_pb2_grpc.UnderstandingStub, tenant: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:  # NOT_FOUND is the RPC's own answer
        stub.GetJob(pb.GetJobRequest(job_id="job-none"), metadata=md(tenant), timeout=PATIENCE_S)
    return err.value


def test_rate_limit_answers_resource_exhausted_with_a_retry_hint(limited: ServerProcess) -> None:
    stub = limited.stub
    # The burst passes and the next call is refused, unless the calls were so slow that the
    # bucket earned a token back meanwhile (a busy machine): then try again with a fresh
    # tenant, whose bucket starts full. A limiter that never refuses still fails here.
    for attempt in range(20):
        tenant = f"rl-{attempt}"
        started = time.monotonic()
        for _ in range(BURST):
            assert get_job_code(stub, tenant).code() == grpc.StatusCode.NOT_FOUND
        err = get_job_code(stub, tenant)
        if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            break
        assert time.monotonic() - started >= 1 / RATE_RPS, "the call after the burst was not refused"
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in err.details()
    retry_ms = int(dict(err.trailing_metadata())["retry-after-ms"])
    assert 0 < retry_ms <= 1000 / RATE_RPS
    other = get_job_code(stub, "rl-other")  # another tenant has its own bucket
    assert other.code() == grpc.StatusCode.NOT_FOUND
    time.sleep(retry_ms / 1000 + 0.05)  # the hint's own wait: a slower machine only adds tokens
    assert get_job_code(stub, tenant).code() == grpc.StatusCode.NOT_FOUND
    scrape = Scrape(limited.metrics())
    assert scrape.value("understanding_rate_limited_total", method="GetJob", limit="rate") == 1
    assert scrape.value("understanding_rpc_total", method="GetJob", code="RESOURCE_EXHAUSTED") == 1
    assert limited.health_status() == health_pb2.HealthCheckResponse.SERVING


def test_concurrent_upload_streams_per_tenant(limited: ServerProcess) -> None:
    release = threading.Event()

    def held_upload() -> Iterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(filename="held.bin"))
        yield pb.UploadRequest(chunk=b"0" * 1024)
        release.wait(PATIENCE_S * 5)  # set by the test as soon as it is done with the held slot
        yield pb.UploadRequest(chunk=b"1" * 1024)

    first = limited.stub.UploadMedia.future(held_upload(), metadata=md("streams"), timeout=PATIENCE_S * 5)
    try:
        wait_for_metric(limited.metrics, lambda s: s.value("understanding_rpc_in_flight", method="UploadMedia") == 1)
        with pytest.raises(grpc.RpcError) as err:
            limited.stub.UploadMedia(
                upload_requests(b"x" * 10, pb.UploadHeader(filename="b.bin")),
                metadata=md("streams"),
                timeout=PATIENCE_S,
            )
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "uploads in progress" in err.value.details()
        assert int(dict(err.value.trailing_metadata())["retry-after-ms"]) > 0
        # Another tenant is not held back.
        other = limited.stub.UploadMedia(
            upload_requests(b"y" * 10, pb.UploadHeader(filename="c.bin")), metadata=md("streams-2"), timeout=PATIENCE_S
        )
        assert other.size_bytes == 10
    finally:
        release.set()
    assert first.result().size_bytes == 2048
    again = limited.stub.UploadMedia(
        upload_requests(b"z" * 10, pb.UploadHeader(filename="d.bin")), metadata=md("streams"), timeout=PATIENCE_S
    )
    assert again.size_bytes == 10  # the slot was given back
    assert (
        Scrape(limited.metrics()).value(
            "understanding_rate_limited_total", method="UploadMedia", limit="upload_streams"
        )
        == 1
    )


def whisper(scrape: Scrape, outcome: str) -> float:
    return scrape.value("understanding_model_seconds_count", model="whisper", outcome=outcome)


def test_deadline_stops_the_transcription(
    limited: ServerProcess, long_wav: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    assert speech.wav_duration(long_wav) > 120
    probe_wav = speech.make_speech_wav("The server is still listening to every word we say.", tmp_path / "probe.wav")
    before = Scrape(limited.metrics())
    # The deadline must pass while the media is being transcribed, which needs its upload and
    # decode done first: on a busy machine they can outlast a short deadline. Each attempt is
    # followed by a probe transcription, which needs the server's only Whisper slot, so by the
    # time it answers a transcription the attempt had started has been cut and recorded. No
    # cut recorded: the deadline passed before transcription began, so try a longer one (the
    # media takes far longer to transcribe than to upload and decode, on any machine).
    deadline_s, attempts, probes = 8.0, 0, 0
    while True:
        attempts += 1
        with pytest.raises(grpc.RpcError) as err:
            limited.stub.Transcribe(
                upload_requests(long_wav, pb.UploadHeader(filename="long.wav")),
                metadata=md("deadline"),
                timeout=deadline_s,
            )
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        probe = limited.stub.Transcribe(
            upload_requests(probe_wav, pb.UploadHeader(filename="probe.wav")),
            metadata=md("deadline"),
            timeout=PATIENCE_S * 5,
        )
        probes += 1
        # The probe is there to need the Whisper slot; that it was transcribed is what counts.
        assert probe.analysis.transcript.segments, probe.analysis.transcript
        ok_now = whisper(before, "ok") + probes
        after = wait_for_metric(limited.metrics, lambda s: whisper(s, "ok") >= ok_now)  # noqa: B023 - used at once
        if whisper(after, "cancelled") > whisper(before, "cancelled"):
            break
        deadline_s *= 2
        assert deadline_s <= 64, f"no deadline passed during a transcription in {attempts} attempts"
    # The server stopped decoding at the next segment instead of transcribing minutes of audio
    # for nobody: a cut transcription is recorded as cancelled, and none of them ran to the end.
    assert whisper(after, "ok") == whisper(before, "ok") + probes, after.text
    assert after.value("understanding_rpc_total", method="Transcribe", code="DEADLINE_EXCEEDED") == attempts
    # Healthy afterwards, with nothing left behind.
    assert limited.health_status() == health_pb2.HealthCheckResponse.SERVING
    response = limited.stub.AnalyzeText(
        pb.AnalyzeTextRequest(items=[pb.TextItem(text="still here")]), metadata=md("deadline"), timeout=PATIENCE_S
    )
    assert len(response.results) == 1
    assert spool_files(limited) == []
    lines = [json.loads(line) for line in limited.log_path.read_text().splitlines() if line.startswith("{")]
    assert any(
        d.get("msg") == "rpc"
        and d.get("method") == "Transcribe"
        and d.get("code") == "DEADLINE_EXCEEDED"
        and d.get("tenant") == "deadline"
        for d in lines
    )


def test_media_over_the_duration_limit_is_refused_before_transcribing(
    limited: ServerProcess, long_wav: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    too_long = tmp_path / "too-long.wav"
    speech.concat_with_silence([long_wav, long_wav], too_long)
    assert speech.wav_duration(too_long) > 300
    before = Scrape(limited.metrics())
    with pytest.raises(grpc.RpcError) as err:
        limited.stub.Transcribe(
            upload_requests(too_long, pb.UploadHeader(filename="too-long.wav")),
            metadata=md("duration"),
            timeout=PATIENCE_S * 5,
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.value.details().startswith("duration:") and "300 s limit" in err.value.details()
    after = Scrape(limited.metrics())
    assert after.value("understanding_model_seconds_count", model="whisper") == before.value(
        "understanding_model_seconds_count", model="whisper"
    )
    assert spool_files(limited) == []


def test_sigterm_finishes_in_flight_work_and_flushes_the_outbox(limited: ServerProcess, tmp_path: pathlib.Path) -> None:
    """Runs last: stops the module's server. In-flight RPCs finish, new ones are refused, events reach Kafka."""
    wav = speech.make_speech_wav(PARAGRAPH, tmp_path / "drain.wav")
    result: dict[str, object] = {}

    def transcribe() -> None:
        try:
            result["response"] = limited.stub.Transcribe(
                upload_requests(wav, pb.UploadHeader(media_id="drained-1", filename="drain.wav")),
                metadata=md("drain"),
                timeout=PATIENCE_S * 5,
            )
        except grpc.RpcError as error:
            result["error"] = error

    worker = threading.Thread(target=transcribe)
    worker.start()
    wait_for_metric(limited.metrics, lambda s: s.value("understanding_rpc_in_flight", method="Transcribe") == 1)
    assert limited.proc is not None
    limited.proc.send_signal(signal.SIGTERM)

    # New connections are refused once the signal is handled (how soon depends on load).
    def refused() -> grpc.RpcError | None:
        with grpc.insecure_channel(limited.target) as fresh:
            try:
                understanding_pb2_grpc.UnderstandingStub(fresh).AnalyzeText(
                    pb.AnalyzeTextRequest(items=[pb.TextItem(text="too late")]), metadata=md("drain"), timeout=30
                )
            except grpc.RpcError as error:
                # Not yet refused: this tenant's rate limit, or a call accepted but slow to answer.
                if error.code() not in {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}:
                    return error
        return None

    refusal = wait_until(refused, interval_s=0.5, what="a new call refused after SIGTERM")
    # UNAVAILABLE once the listener is closed; a call that races the server's stop on an
    # already open connection is CANCELLED by gRPC core. Either way it is refused.
    assert refusal.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, refusal
    worker.join(PATIENCE_S * 5)
    assert "error" not in result, result
    assert result["response"].analysis.media_id == "drained-1"  # type: ignore[attr-defined]
    assert limited.proc.wait(PATIENCE_S * 5) == 0
    assert limited.outbox() == []  # flushed to Kafka before exit
    log = limited.log_path.read_text()
    assert '"shutdown requested"' in log and '"stopped"' in log
