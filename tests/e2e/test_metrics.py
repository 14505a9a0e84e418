"""Prometheus metrics of a real server: RPCs by method and code, models, batches, jobs, outbox."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import grpc
import pytest

from tests.fixtures import speech
from tests.support.jobs import job_requests, text_spec, wait_terminal
from tests.support.metrics import Scrape, wait_for_metric
from tests.support.server import ServerProcess
from tests.support.upload import upload_requests
from understanding.v1 import jobs_pb2
from understanding.v1 import understanding_pb2 as pb

MD = [("x-tenant-id", "e2e-metrics"), ("x-api-key", "not-a-configured-key-but-secret-looking")]


@pytest.fixture(scope="module")
def metered(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, analysis_topic: str, job_status_topic: str
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("metrics-server"),
        env={
            "UNDERSTANDING_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "UNDERSTANDING_KAFKA_ANALYSIS_TOPIC": analysis_topic,
            "UNDERSTANDING_KAFKA_JOB_STATUS_TOPIC": job_status_topic,
            "UNDERSTANDING_WHISPER_WORKERS": "1",
        },
    ).start()
    try:
        proc.wait_serving()
        yield proc
    finally:
        assert proc.stop() == 0, proc.log()


def test_metrics_port_is_ephemeral_and_logged(metered: ServerProcess) -> None:
    port = metered.metrics_port()
    assert port not in (0, 9464, metered.port)
    first = Scrape(metered.metrics())
    assert first.value("understanding_ready") == 1.0


def test_rpcs_by_method_and_code_with_latency(metered: ServerProcess, tmp_path: pathlib.Path) -> None:
    before = Scrape(metered.metrics())
    stub = metered.stub
    stub.AnalyzeText(
        pb.AnalyzeTextRequest(items=[pb.TextItem(media_id="m-1", text="Metrics count every call.")]), metadata=MD
    )
    stub.AnalyzeText(
        pb.AnalyzeTextRequest(items=[pb.TextItem(text="A second one, dry.")], options=pb.TextOptions(dry_run=True)),
        metadata=MD,
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.AnalyzeText(pb.AnalyzeTextRequest(), metadata=MD)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(pb.GetJobRequest(job_id="job-missing"), metadata=MD)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    stub.Search(pb.SearchRequest(text="metrics"), metadata=MD)
    wav = speech.make_speech_wav("Counting calls keeps the service honest.", tmp_path / "m.wav")
    stub.Transcribe(upload_requests(wav, pb.UploadHeader(filename="m.wav")), metadata=MD, timeout=180)
    job = stub.SubmitJob(job_requests(text_spec("a job to count", media_id="m-job")), metadata=MD)
    assert wait_terminal(stub, job.job_id, MD).state == jobs_pb2.JOB_STATE_SUCCEEDED

    after = wait_for_metric(metered.metrics, lambda s: s.value("understanding_jobs", state="succeeded") >= 1)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("understanding_rpc_total", method="AnalyzeText", code="OK") == 2
    assert moved("understanding_rpc_total", method="AnalyzeText", code="INVALID_ARGUMENT") == 1
    assert moved("understanding_rpc_total", method="GetJob", code="NOT_FOUND") == 1
    assert moved("understanding_rpc_total", method="Search", code="OK") == 1
    assert moved("understanding_rpc_total", method="Transcribe", code="OK") == 1
    assert moved("understanding_rpc_seconds_count", method="AnalyzeText", code="OK") == 2
    assert after.value("understanding_rpc_seconds_bucket", method="Transcribe", code="OK", le="+Inf") >= 1
    assert after.value("understanding_rpc_in_flight", method="AnalyzeText") == 0
    # models and batches
    assert moved("understanding_model_seconds_count", model="whisper", outcome="ok") == 1
    assert after.value("understanding_batch_size_count", batcher="embed") >= 1
    assert after.value("understanding_batch_seconds_count", batcher="embed") >= 1
    assert after.value("understanding_store_write_seconds_count") >= 3  # two analyses and the job
    assert after.value("understanding_batch_size_count", batcher="outbox-writes") >= 1
    # lazily collected levels
    assert after.value("understanding_jobs", state="succeeded") >= 1
    assert after.has("understanding_job_queue_depth") and after.has("understanding_outbox_pending")
    assert after.has("understanding_outbox_lag_seconds") and after.has("understanding_batcher_queued")
    assert after.value("understanding_kafka_connected") == 1.0
    # the embedded store's index coverage: every point written so far is counted, none lost
    collections = [labels["collection"] for labels in after.labels("understanding_store_points")]
    assert len(collections) == 1
    assert after.value("understanding_store_points", collection=collections[0]) >= 3
    assert (
        0
        <= after.value("understanding_store_unindexed_points", collection=collections[0])
        <= after.value("understanding_store_points", collection=collections[0])
    )


def test_outbox_drains_to_kafka(metered: ServerProcess) -> None:
    done = wait_for_metric(
        metered.metrics,
        lambda s: s.value("understanding_outbox_pending") == 0 and s.value("understanding_events_published_total") >= 3,
    )
    assert done.value("understanding_outbox_pending") == 0
    assert done.value("understanding_events_published_total") >= 3


def test_logs_carry_ids_and_never_the_api_key(metered: ServerProcess) -> None:
    import json

    lines = [json.loads(line) for line in metered.log_path.read_text().splitlines() if line.startswith("{")]
    rpcs = [doc for doc in lines if doc.get("msg") == "rpc" and doc.get("tenant") == "e2e-metrics"]
    assert rpcs and all(doc["request_id"] and doc["trace_id"] and doc["method"] and doc["code"] for doc in rpcs)
    assert {"AnalyzeText", "GetJob", "Search", "Transcribe", "SubmitJob"} <= {doc["method"] for doc in rpcs}
    started = [doc for doc in lines if doc.get("msg") == "job started"]
    assert started and all(doc["job_id"].startswith("job-") and doc["tenant"] == "e2e-metrics" for doc in started)
    finished = [doc for doc in lines if doc.get("msg") == "job finished"]
    assert {doc["job_id"] for doc in finished} >= {doc["job_id"] for doc in started}
    assert "not-a-configured-key-but-secret-looking" not in metered.log_path.read_text()
