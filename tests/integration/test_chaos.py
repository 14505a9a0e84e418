"""Faults under load with a real (private) Kafka broker and a real server.

- The vector store fails writes while many AnalyzeText calls run: the callers
  hit get UNAVAILABLE (retriable) and nothing of theirs is half-written; every
  accepted analysis is in the store and has exactly one event.
- Kafka goes away in the middle of a load and comes back: every accepted
  analysis is delivered, exactly once per event id (a consumer deduplicating
  by event id sees each result once), and the outbox drains.
- The upload spool's disk is full: uploads get RESOURCE_EXHAUSTED with a retry
  hint, and the next upload after it clears works; nothing is left behind.

What is not here because it is covered elsewhere: job retries/dead letters
under store faults, queue back-pressure, SIGTERM/SIGKILL mid-job
(test_job_faults.py); a broker down from the start (test_outbox.py).

The broker is private (own ports and data dir): the session broker is never touched.
"""

from __future__ import annotations

import pathlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.fixtures import speech
from tests.support.kafka import broker_env, collect, kafka
from tests.support.server import ServerProcess, free_port
from tests.support.upload import upload_requests
from tests.support.waiting import wait_until
from understanding.v1 import events_pb2
from understanding.v1 import understanding_pb2 as pb

pytestmark = pytest.mark.kafka

MD = [("x-tenant-id", "chaos")]
STORE_FAULTS = 5
SPOOL_FAULTS = 2


class Chaos:
    def __init__(self, server: ServerProcess, bootstrap: str, topic: str, env: dict[str, str]) -> None:
        self.server, self.bootstrap, self.topic, self.env = server, bootstrap, topic, env


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    root = tmp_path_factory.mktemp("chaos")
    port, controller = free_port(), free_port()
    env = broker_env(port, controller, root / "kafka")
    bootstrap = f"127.0.0.1:{port}"
    topic = f"understanding.analysis.v1.chaos-{uuid.uuid4().hex[:8]}"
    kafka("up", env)
    server = ServerProcess(
        root / "srv",
        env={
            "UNDERSTANDING_KAFKA_BOOTSTRAP": bootstrap,
            "UNDERSTANDING_KAFKA_ANALYSIS_TOPIC": topic,
            "UNDERSTANDING_OUTBOX_RETRY_MAX_S": "1",
            "UNDERSTANDING_FAULTS": f"store_write={STORE_FAULTS},spool_full={SPOOL_FAULTS}",
            "UNDERSTANDING_METRICS_PORT": "0",
        },
    ).start()
    try:
        server.wait_serving()
        yield Chaos(server, bootstrap, topic, env)
    finally:
        code = server.stop()
        kafka("down", env)
        assert code == 0, server.log()


class Load:
    """Threads calling AnalyzeText with fresh media ids until stopped; records what was accepted."""

    def __init__(
        self, server: ServerProcess, prefix: str, threads: int, *, per_thread: int | None = None, retry: bool = False
    ) -> None:
        self.server, self.prefix, self.per_thread, self.retry = server, prefix, per_thread, retry
        self.accepted: dict[str, int] = {}  # media id -> version of the accepted analysis
        self.errors: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.per_thread is None or exc[0] is not None:  # a counted load runs to its end
            self.stop.set()
        for t in self.threads:
            t.join(600)  # each call has its own deadline: this only bounds a hang
        assert not any(t.is_alive() for t in self.threads), "a load thread never finished"

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def _run(self, worker: int) -> None:
        stub = self.server.stub
        n = 0
        while not self.stop.is_set() and (self.per_thread is None or n < self.per_thread):
            media_id = f"{self.prefix}-{worker}-{n}"
            request = pb.AnalyzeTextRequest(
                items=[pb.TextItem(media_id=media_id, text=f"Chaos report {worker} {n}: the relay keeps every event.")]
            )
            for _attempt in range(8):
                try:
                    response = stub.AnalyzeText(request, metadata=MD, timeout=60)
                except grpc.RpcError as error:
                    with self.lock:
                        self.errors.append((error.code().name, error.details() or ""))
                    if self.retry and error.code() == grpc.StatusCode.UNAVAILABLE:
                        time.sleep(0.1)
                        continue
                    break
                with self.lock:
                    self.accepted[media_id] = int(response.results[0].version)
                break
            n += 1


def events_for(records: list[Any], prefix: str) -> tuple[dict[str, tuple[str, int]], int]:
    """event id -> (media id, version) for the prefix's media, and the raw record count."""
    by_id: dict[str, tuple[str, int]] = {}
    raw = 0
    for record in records:
        if not record.key or not record.key.decode().startswith(prefix + "-"):
            continue
        event = events_pb2.AnalysisEvent.FromString(record.value)
        raw += 1
        key = (event.analysis.media_id, int(event.analysis.version))
        assert by_id.setdefault(event.event_id, key) == key, f"event id {event.event_id} reused for another result"
    return by_id, raw


def assert_delivered_once(accepted: dict[str, int], by_id: dict[str, tuple[str, int]]) -> None:
    delivered = set(by_id.values())
    missing = {(m, v) for m, v in accepted.items()} - delivered
    assert not missing, f"{len(missing)} accepted results never delivered: {sorted(missing)[:5]}"
    assert len(by_id) == len(accepted), f"{len(by_id)} distinct event ids for {len(accepted)} accepted results"


def test_store_write_failures_under_load_lose_nothing(chaos: Chaos) -> None:
    with Load(chaos.server, "sf", threads=4, per_thread=10, retry=True) as load:
        pass
    injected = [d for code, d in load.errors if code == "UNAVAILABLE" and "injected" in d]
    assert len(injected) == STORE_FAULTS and len(load.errors) == STORE_FAULTS, load.errors
    assert len(load.accepted) == 40  # every caller succeeded on a retry
    for media_id in load.accepted:
        points = chaos.server.stub.GetMedia(pb.GetMediaRequest(media_id=media_id), metadata=MD, timeout=30).points
        assert len(points) == 1, media_id
    records = await_events(chaos, "sf", len(load.accepted))
    assert_delivered_once(load.accepted, events_for(records, "sf")[0])


def await_events(chaos: Chaos, prefix: str, count: int, timeout_s: float = 120) -> list[Any]:
    import asyncio

    def enough(records: list[Any]) -> bool:
        return len(events_for(records, prefix)[0]) >= count

    return asyncio.run(collect(chaos.bootstrap, chaos.topic, until=enough, timeout_s=timeout_s, settle_s=3))


def relay_failures(chaos: Chaos) -> int:
    return chaos.server.log_path.read_text(errors="replace").count("outbox relay: kafka unavailable")


def test_kafka_outage_during_load_delivers_every_event_once(chaos: Chaos) -> None:
    with Load(chaos.server, "ko", threads=3) as load:
        wait_until(lambda: load.count() >= 5, what="the load under way")
        failures_before = relay_failures(chaos)
        kafka("pause", chaos.env)  # the broker goes away mid-load
        outage_started = load.count()
        # The outage lasts until calls were accepted while the broker was down and the relay
        # has failed to deliver them: however slow the machine, the outage is felt.
        wait_until(
            lambda: load.count() - outage_started >= 5 and relay_failures(chaos) > failures_before,
            timeout_s=300,
            what="calls accepted and a failed delivery during the outage",
        )
        accepted_during = load.count() - outage_started
        kafka("resume", chaos.env)  # blocks until the broker serves metadata again
        resumed = load.count()
        wait_until(lambda: load.count() - resumed >= 5, what="calls accepted after the broker came back")
    assert load.errors == [], load.errors[:5]  # the API never depends on the broker
    assert accepted_during > 0, "no call was accepted while Kafka was down"
    records = await_events(chaos, "ko", len(load.accepted), timeout_s=180)
    by_id, raw = events_for(records, "ko")
    assert_delivered_once(load.accepted, by_id)
    print(
        f"{len(load.accepted)} accepted ({accepted_during} during the outage), {raw} records, {len(by_id)} distinct event ids"
    )
    wait_until(lambda: not chaos.server.outbox(), what="the outbox drained")


def test_full_spool_is_resource_exhausted_then_recovers(chaos: Chaos, tmp_path: pathlib.Path) -> None:
    wav = speech.make_speech_wav("The spool had room again.", tmp_path / "clip.wav")
    stub = chaos.server.stub
    for _ in range(SPOOL_FAULTS):
        with pytest.raises(grpc.RpcError) as err:
            stub.Transcribe(upload_requests(wav, pb.UploadHeader(media_id="spool-1")), metadata=MD, timeout=60)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "spool is full" in err.value.details()
        assert int(dict(err.value.trailing_metadata())["retry-after-ms"]) > 0
        assert list((chaos.server.data_dir / "spool").iterdir()) == []
    response = stub.Transcribe(upload_requests(wav, pb.UploadHeader(media_id="spool-1")), metadata=MD, timeout=120)
    assert response.analysis.media_id == "spool-1"
    assert list((chaos.server.data_dir / "spool").iterdir()) == []
