"""The remote store against a real Qdrant server that crashes or stalls.

- SIGKILL under write load, then a restart on the same storage: every write
  the store accepted (returned from `replace_media`) is there exactly once
  after recovery, in the version last accepted and whole; writes made while
  the server was down either rode out the outage on the store's back-off or
  failed with `StoreUnavailable` (UNAVAILABLE, with a retry-after hint) and
  were retried by the writer, as the job runner does; no staged leftover, no
  mix of versions.
- SIGSTOP: reads and writes hit their deadline and fail with `StoreTimeout`
  naming the deadline, instead of hanging; after SIGCONT the same store works.

Each test has its own server (the binary beside the checkout): the session
server is never touched. Nothing here sleeps for a fixed time or times
anything: tests wait for events (readiness, a counter, a thread's end).
"""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import numpy as np
import pytest

from tests.support.qdrant import QdrantServer, private_server
from understanding.domain import Modality, Unavailable, point_id
from understanding.sinks.qdrant_remote import QdrantClientStore, connect
from understanding.sinks.qdrant_retry import RetryPolicy, StoreTimeout, StoreUnavailable
from understanding.sinks.store import PointFilter, PointRecord, storage_point_id

pytestmark = pytest.mark.qdrant_server

DIM = 32
TENANT = "faults"
WRITERS = 4
MEDIA_PER_WRITER = 40
# Generous bound for a thread that must end by itself: a hang detector, not a timing check.
HANG_S = 120.0
T = TypeVar("T")


def chunks(media: str, version: int) -> list[PointRecord]:
    """Version 1 has 3 chunks, version 2 has 2: a mix of versions would show."""
    rng = np.random.default_rng(abs(hash((media, version))) % 2**32)
    out = []
    for i in range(3 if version == 1 else 2):
        public = point_id(TENANT, media, Modality.TEXT, i)
        v = rng.normal(size=DIM).astype(np.float32)
        payload = {
            "tenant": TENANT,
            "media_id": media,
            "chunk_index": i,
            "point_id": public,
            "version": version,
            "text": f"{media} version {version} chunk {i}",
        }
        out.append(PointRecord(storage_point_id(public, version), v / np.linalg.norm(v), payload))
    return out


def open_store(server: QdrantServer, transport: str, *, timeout_s: float, retry: RetryPolicy) -> QdrantClientStore:
    client = connect(
        server.url,
        prefer_grpc=transport == "grpc",
        grpc_port=server.grpc_port,
        timeout_s=timeout_s,
        retry=retry,
    )
    return QdrantClientStore(dimension=DIM, collection="faults", client=client, timeout_s=timeout_s, retry=retry)


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[QdrantServer]:
    with private_server(tmp_path / "qdrant", binary_only=True) as s:
        yield s


@dataclass
class WriteLog:
    """What the writers saw; `changed` is notified on every update."""

    accepted: dict[str, int] = field(default_factory=dict)  # media -> last accepted version
    refusals: list[StoreUnavailable] = field(default_factory=list)
    unexpected: list[BaseException] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, predicate: object, what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, timeout=HANG_S):  # type: ignore[arg-type]
                raise AssertionError(f"gave up waiting for {what}: {len(self.accepted)} accepted, {self.refusals[-3:]}")


def writer(store: QdrantClientStore, media: list[str], log: WriteLog) -> None:
    """Write version 1 then version 2 of each media; retry refused writes until accepted."""
    try:
        for name in media:
            for version in (1, 2):
                while True:
                    try:
                        store.replace_media(TENANT, name, chunks(name, version), version)
                    except StoreUnavailable as refused:
                        with log.changed:
                            log.refusals.append(refused)
                            log.changed.notify_all()
                        continue
                    with log.changed:
                        log.accepted[name] = version
                        log.changed.notify_all()
                    break
    except BaseException as error:  # noqa: BLE001 - reported by the test
        with log.changed:
            log.unexpected.append(error)
            log.changed.notify_all()


def assert_stored_once(store: QdrantClientStore, media: list[str]) -> None:
    """Every media in its last version (2), whole, once; nothing staged or stale; searches see version 2."""
    for name in media:
        got = store.media_points(TENANT, name)
        assert [p.payload["text"] for p in got] == [p.payload["text"] for p in chunks(name, 2)], name
    assert store.count(TENANT) == 2 * len(media)
    stored = [p for batch in store.scan(batch_size=512) for p in batch]
    assert len(stored) == len({p.id for p in stored}) == 2 * len(media)
    raw = store._client.count("faults", exact=True).count  # type: ignore[attr-defined]
    assert raw == 2 * len(media), "staged or older-version points survived"
    hits = store.search(chunks(media[0], 2)[0].vector, PointFilter(tenant=TENANT), limit=50)
    assert hits and {p.payload["version"] for p in hits} == {2}


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_sigkill_under_write_load_loses_and_duplicates_nothing(server: QdrantServer, transport: str) -> None:
    # A short budget so writes during the outage are refused (the path a job
    # retry takes), not only retried inside the store.
    retry = RetryPolicy(attempts=4, first_backoff_s=0.05, max_backoff_s=0.5, budget_s=1.5)
    store = open_store(server, transport, timeout_s=5, retry=retry)
    log = WriteLog()
    media = [f"m{w}-{i}" for w in range(WRITERS) for i in range(MEDIA_PER_WRITER)]
    threads = [
        threading.Thread(target=writer, args=(store, media[w::WRITERS], log), daemon=True) for w in range(WRITERS)
    ]
    for t in threads:
        t.start()
    try:
        log.wait_for(lambda: len(log.accepted) >= 20 or log.unexpected, "writes before the crash")
        server.kill()
        log.wait_for(lambda: log.refusals or log.unexpected, "a refused write while the server is down")
        server.restart()
        for t in threads:
            t.join(HANG_S)
        assert not any(t.is_alive() for t in threads), "a writer hung"
    finally:
        server.resume()
    assert not log.unexpected, log.unexpected
    assert log.refusals, "the crash was never noticed"
    for refused in log.refusals:
        assert isinstance(refused, Unavailable) and refused.retriable and refused.status == "UNAVAILABLE"
        assert refused.retry_after_s and refused.retry_after_s > 0
        assert "Qdrant" in refused.message and "retry later" in refused.message

    assert log.accepted == {name: 2 for name in media}
    try:
        assert_stored_once(store, media)
    except grpc.RpcError as error:
        # Seen once in CI (2026-12-02), never since: after the SIGKILL and restart, reading points
        # back over gRPC failed with "Exception deserializing response!" (a client-side decode of
        # the server's answer; cause not found, issue 18). The data must then be intact over REST:
        # only that exact failure, with every check passing over REST, is an expected failure.
        if transport != "grpc" or "deserializing response" not in str(error):
            raise
        rest = open_store(server, "rest", timeout_s=5, retry=retry)
        assert_stored_once(rest, media)
        rest.close()
        pytest.xfail(f"gRPC read-back after kill -9 undecodable, data intact over REST: {error}")
    store.close()


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_a_paused_server_hits_the_deadline_instead_of_hanging(server: QdrantServer, transport: str) -> None:
    relaxed = open_store(server, transport, timeout_s=10, retry=RetryPolicy())
    relaxed.replace_media(TENANT, "before", chunks("before", 1), 1)
    # A 1 s deadline and a short budget, so the paused calls end soon; opening
    # it may itself need a retry on a busy machine.
    tight_retry = RetryPolicy(attempts=2, first_backoff_s=0.05, max_backoff_s=0.2, budget_s=3.0)
    tight = until_answered(lambda: open_store(server, transport, timeout_s=1, retry=tight_retry))
    query, query_id = chunks("before", 1)[0].vector, chunks("before", 1)[0].id
    outcomes: dict[str, BaseException | object] = {}

    def attempt(name: str, call: Callable[[], object]) -> threading.Thread:
        def run() -> None:
            try:
                outcomes[name] = call()
            except BaseException as error:  # noqa: BLE001 - inspected below
                outcomes[name] = error

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    server.pause()
    try:
        threads = [
            attempt("search", lambda: tight.search(query, PointFilter(tenant=TENANT), limit=3)),
            attempt("write", lambda: tight.replace_media(TENANT, "during", chunks("during", 1), 1)),
        ]
        for t in threads:
            t.join(HANG_S)
        assert not any(t.is_alive() for t in threads), "a call hung on the paused server"
    finally:
        server.resume()
    for name in ("search", "write"):
        error = outcomes[name]
        assert isinstance(error, StoreTimeout), (name, error)
        assert "did not answer" in error.message and "deadline" in error.message
        assert error.status == "UNAVAILABLE" and error.retriable and error.retry_after_s
    # Resumed: the same client answers again once the server has worked off
    # what queued up while it was stopped, and the refused write is retried.
    assert until_answered(lambda: tight.search(query, PointFilter(tenant=TENANT), limit=1))[0].id == query_id
    relaxed.replace_media(TENANT, "during", chunks("during", 1), 1)
    assert len(relaxed.media_points(TENANT, "during")) == 3
    tight.close()
    relaxed.close()


def until_answered(call: Callable[[], T]) -> T:
    """Retry a call refused with StoreUnavailable (as a client honouring retry-after would), up to HANG_S."""
    deadline = time.monotonic() + HANG_S
    while True:
        try:
            return call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
