"""The result sink over a real embedded store and outbox: store first, then the event;
group commits; deletions; the write gate of the online reindex; injected faults."""

from __future__ import annotations

import asyncio
import pathlib

import numpy as np
import pytest

from understanding.domain import Analysis, Chunk, Modality, ModelRef, Tag
from understanding.faults import FaultInjector, InjectedFault
from understanding.sinks.edge_store import EdgeVectorStore
from understanding.sinks.outbox import Outbox
from understanding.sinks.results import ResultSink
from understanding.sinks.store import PointFilter
from understanding.v1 import events_pb2

DIM = 8
MODEL = ModelRef("fake", "1")


def analysis(media_id: str, version: int, texts: list[str], tenant: str = "t") -> Analysis:
    rng = np.random.default_rng(version)
    chunks = []
    for i, text in enumerate(texts):
        v = rng.normal(size=DIM).astype(np.float32)
        chunks.append(Chunk(index=i, text=text, embedding=v / np.linalg.norm(v), tags=(Tag("topic.x", "topic", 0.5),)))
    return Analysis(
        tenant=tenant, media_id=media_id, modality=Modality.TEXT, language=None, tags=(), chunks=tuple(chunks),
        embedding_model=MODEL, created_at=1.0, version=version,
    )  # fmt: skip


@pytest.fixture
async def sink(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    store = EdgeVectorStore(tmp_path / "edge", dimension=DIM, collection="c")
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    sink = ResultSink(store=store, outbox=outbox, analysis_topic="analysis")
    await sink.start()
    yield sink
    await sink.stop()
    store.close()
    outbox.close()


async def test_a_write_indexes_every_chunk_then_queues_one_event(sink: ResultSink) -> None:
    event_id = await sink.write(analysis("m1", 5, ["a", "b", "c"]), trace_id="trace-1")
    points = sink.store.media_points("t", "m1")
    assert [p.payload["chunk_index"] for p in points] == [0, 1, 2]
    assert {p.payload["version"] for p in points} == {5}
    [pending] = sink.outbox.peek(10)
    assert pending.record.topic == "analysis" and pending.record.key == b"m1"
    assert dict(pending.record.headers)["trace-id"] == b"trace-1"
    event = events_pb2.AnalysisEvent.FromString(pending.record.value)
    assert event.event_id == event_id and event.analysis.version == 5 and len(event.analysis.chunks) == 3


async def test_a_re_analysis_replaces_the_media_and_a_retry_repeats_the_event_id(sink: ResultSink) -> None:
    first = await sink.write(analysis("m1", 1, ["a", "b", "c"]))
    second = await sink.write(analysis("m1", 2, ["x"]))
    again = await sink.write(analysis("m1", 2, ["x"]))
    assert first != second == again
    points = sink.store.media_points("t", "m1")
    assert [(p.payload["version"], p.payload["text"]) for p in points] == [(2, "x")]


async def test_concurrent_writes_share_group_commits(sink: ResultSink) -> None:
    await asyncio.gather(*(sink.write(analysis(f"m{i}", 1, ["a"])) for i in range(40)))
    assert sink.store.count() == 40 and sink.outbox.size() == 40
    store_writes, outbox_writes = sink.batchers
    assert store_writes.stats.batches < 40 and outbox_writes.stats.batches < 40


async def test_delete_removes_points_and_publishes_once(sink: ResultSink) -> None:
    await sink.write(analysis("m1", 1, ["a", "b"]))
    await sink.write(analysis("m1", 1, ["a", "b"], tenant="other"))
    assert await sink.delete_media("t", "m1") == 2
    assert await sink.delete_media("t", "m1") == 0
    assert sink.store.media_points("t", "m1") == [] and len(sink.store.media_points("other", "m1")) == 2
    kinds = [dict(p.record.headers)["schema"] for p in sink.outbox.peek(10)]
    assert kinds.count(b"understanding.v1.MediaDeletedEvent") == 1


async def test_paused_writes_wait_until_resumed(sink: ResultSink) -> None:
    await sink.pause_writes()
    pending = asyncio.create_task(sink.write(analysis("m1", 1, ["a"])))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not pending.done() and sink.store.count() == 0
    sink.resume_writes()
    await asyncio.wait_for(pending, 30)
    assert sink.store.count() == 1


async def test_an_injected_store_fault_writes_nothing(tmp_path: pathlib.Path) -> None:
    store = EdgeVectorStore(tmp_path / "edge", dimension=DIM, collection="c")
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    sink = ResultSink(store=store, outbox=outbox, analysis_topic="a", faults=FaultInjector("store_write=1"))
    await sink.start()
    try:
        with pytest.raises(InjectedFault):
            await sink.write(analysis("m1", 1, ["a"]))
        assert store.count() == 0 and outbox.size() == 0
        await sink.write(analysis("m1", 1, ["a"]))
        assert store.count() == 1 and outbox.size() == 1
        assert store.search(np.ones(DIM, dtype=np.float32) / np.sqrt(DIM), PointFilter(tenant="t"), limit=5)
    finally:
        await sink.stop()
        store.close()
        outbox.close()
