"""Auth, back-pressure and restarts, each against a server process of this module.

One server with API keys and a per-tenant job limit of 1: wrong and missing
keys are Unauthenticated; a second unfinished job is RESOURCE_EXHAUSTED with a
`retry-after-ms` hint the SDK honours; then the server is stopped and started
again on the same port while idempotent calls retry through the outage.
"""

from __future__ import annotations

import hashlib
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures import speech
from tests.support.metrics import Scrape, wait_for_metric
from tests.support.server import ServerProcess
from tests.support.waiting import PATIENCE_S
from understanding_client import (
    NO_RETRY,
    Client,
    JobState,
    ResourceExhausted,
    RetryPolicy,
    Unauthenticated,
    Unavailable,
)

KEY = "s3cret-key-for-tenant-a"
ENV = {
    "UNDERSTANDING_API_KEYS": f"tenantA:{hashlib.sha256(KEY.encode()).hexdigest()}",
    "UNDERSTANDING_JOB_TENANT_INFLIGHT": "1",
    "UNDERSTANDING_JOB_WORKERS": "1",
}
PATIENT = RetryPolicy(max_attempts=1000, initial_backoff_s=0.1, max_backoff_s=1.0)  # ~15 min: any restart


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("keyed")
    state: dict[str, Any] = {"proc": ServerProcess(data_dir, env=ENV).start(), "data_dir": data_dir}
    try:
        state["proc"].wait_serving()
        yield state
    finally:
        state["proc"].stop()


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("long")
    parts: list[pathlib.Path | float] = []
    for i in range(6):
        parts += [
            speech.make_speech_wav(f"Part {i}: the council voted on the new library budget.", tmp / f"p{i}.wav"),
            0.5,
        ]
    out = tmp / "long.wav"
    speech.concat_with_silence(parts, out)
    return out


def test_api_key_auth(keyed: dict[str, Any]) -> None:
    target = keyed["proc"].target
    for kwargs in ({}, {"api_key": "wrong-key"}, {"tenant": "tenantA"}):
        with Client(target, timeout_s=PATIENCE_S, **kwargs) as c:
            with pytest.raises(Unauthenticated) as err:
                c.analyze_text("who am I?", dry_run=True)
        assert err.value.code == "UNAUTHENTICATED" and not err.value.retriable
        assert "api_key" in str(err.value)  # the hint says what to do
    with Client(target, api_key=KEY, tenant="someone-else", timeout_s=PATIENCE_S) as c:
        [analysis] = c.analyze_text("The key decides the tenant", dry_run=True)
    assert analysis.tenant == "tenantA"


def refused_submits(scrape: Scrape) -> float:
    return scrape.value("understanding_rpc_total", method="SubmitJob", code="RESOURCE_EXHAUSTED")


def test_resource_exhausted_retry_after_is_honoured(keyed: dict[str, Any], long_wav: pathlib.Path) -> None:
    server: ServerProcess = keyed["proc"]
    with Client(server.target, api_key=KEY, retry=NO_RETRY, timeout_s=PATIENCE_S) as impatient:
        first = impatient.submit_job(source=long_wav, modality="speech", media_id="busy-1")
        with pytest.raises(ResourceExhausted) as err:
            impatient.submit_job(text="a second unfinished job is over the limit")
        assert err.value.retriable and err.value.retry_after_s is not None and err.value.retry_after_s > 0
        hint = err.value.retry_after_s
        refused = refused_submits(Scrape(server.metrics()))

        result: dict[str, Any] = {}

        def submit_patiently() -> None:
            with Client(server.target, api_key=KEY, retry=PATIENT, timeout_s=PATIENCE_S) as patient:
                started = time.monotonic()
                try:
                    result["job"] = patient.submit_job(
                        text="a second job, once the first is gone", idempotency_key="second-1"
                    )
                except Exception as error:  # noqa: BLE001 - inspected below
                    result["job"] = error
                result["waited"] = time.monotonic() - started

        patient_thread = threading.Thread(target=submit_patiently, daemon=True)
        patient_thread.start()
        # The first job goes only once the patient client has been refused (and told to wait), so
        # its first attempt is refused whatever the timing: it must have waited out the hint.
        wait_for_metric(server.metrics, lambda s: refused_submits(s) > refused)
        impatient.cancel_job(first.job_id)
        patient_thread.join(PATIENCE_S * 5)
        second = result["job"]
        assert not isinstance(second, Exception), second
        assert second.job_id and result["waited"] >= hint
        with Client(server.target, api_key=KEY, timeout_s=PATIENCE_S) as patient:
            assert patient.wait_job(second.job_id, timeout=PATIENCE_S * 5).state is JobState.SUCCEEDED
        assert impatient.get_job(first.job_id).state is JobState.CANCELLED


def test_idempotent_calls_retry_through_a_restart(keyed: dict[str, Any], tmp_path: pathlib.Path) -> None:
    old: ServerProcess = keyed["proc"]
    assert old.stop() == 0
    media = tmp_path / "media.bin"
    media.write_bytes(b"\x01" * 300_000)
    results: dict[str, Any] = {}
    upload_attempts: list[int] = []

    def call(name: str, fn: Any) -> None:
        try:
            results[name] = fn()
        except Exception as error:  # noqa: BLE001 - inspected by the assertions below
            results[name] = error

    # Every attempt gets the full timeout: the restart below may take minutes on a busy machine.
    client = Client(old.target, api_key=KEY, retry=PATIENT, timeout_s=PATIENCE_S * 5)
    try:
        threads = [
            threading.Thread(target=call, args=("text", lambda: client.analyze_text("back again")), daemon=True),
            threading.Thread(
                target=call,
                args=(
                    "upload",
                    lambda: client.upload_media(media, progress=lambda sent, total: upload_attempts.append(sent)),
                ),
                daemon=True,
            ),
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        # Not idempotent (a repeat would answer NOT_FOUND): fails at once, no retry.
        with pytest.raises(Unavailable):
            client.delete_media("anything")
        time.sleep(2.0)
        assert threads[0].is_alive() and threads[1].is_alive(), results

        new = ServerProcess(keyed["data_dir"], env=ENV)
        new.port, new.target = old.port, old.target
        keyed["proc"] = new.start()
        new.wait_serving()
        for t in threads:
            t.join(PATIENCE_S * 5)
        elapsed = time.monotonic() - started
    finally:
        client.close()
    assert not isinstance(results["text"], Exception), results["text"]
    [analysis] = results["text"]
    assert analysis.tenant == "tenantA" and elapsed > 2.0
    upload = results["upload"]
    assert not isinstance(upload, Exception), upload
    # gRPC may fail an attempt before it pulls the first chunk, so the number of
    # attempts that reached the iterator is not fixed; what matters is that the
    # stored bytes are exactly the file, sent in full after the restart.
    assert upload.size_bytes == 300_000
    assert upload.sha256 == hashlib.sha256(media.read_bytes()).hexdigest()
    assert upload_attempts and upload_attempts[-1] == 300_000
