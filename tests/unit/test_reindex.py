"""The pieces of the online reindex, without a server: the restart rule, the
write pause, and the atomic model swap seen by calls already under way.

The end-to-end switch under load is tests/e2e/test_reindex_online.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tests.support.waiting import PATIENCE_S, wait_until_async
from understanding.api.identity import AdminIdentity, parse_admin_keys
from understanding.config import Settings
from understanding.core.embedding import StoreOpener
from understanding.core.search import Searcher, SearchMode, SearchQuery
from understanding.domain import Analysis, Chunk, Modality, ModelRef, PermissionDenied, Unauthenticated
from understanding.models.language import LanguageDetector
from understanding.pipelines.tagging import Tagger, Taxonomy
from understanding.pipelines.text import EmbeddingBinding, TextInput, TextPipeline
from understanding.sinks.edge_store import read_alias, write_alias
from understanding.sinks.outbox import Outbox
from understanding.sinks.results import ResultSink
from understanding.sinks.store import PointFilter, PointRecord, StoredPoint

DIM = 16
OLD, NEW = ModelRef("old", "1"), ModelRef("new", "2")


def vector(text: str, salt: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(f"{salt}:{text}".encode()).digest()[:4], "little")
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def encoder(salt: str) -> Any:
    return lambda texts: [vector(t, salt) for t in texts]


# ---------------------------------------------------------------- restart rule
def test_a_default_configured_server_follows_the_alias_to_the_recorded_model(tmp_path: pathlib.Path) -> None:
    model_dir = tmp_path / "new-model"
    model_dir.mkdir()
    settings = Settings.from_env({}, data_dir=str(tmp_path), qdrant_url="")
    assert StoreOpener(settings).serving_model_spec() == "multilingual"  # no alias yet: the default
    root = tmp_path / "qdrant-edge"
    write_alias(root, "understanding", "understanding__new-model__2", DIM, model_path=str(model_dir))
    assert read_alias(root, "understanding").model_path == str(model_dir)  # type: ignore[union-attr]
    assert StoreOpener(settings).serving_model_spec() == str(model_dir)
    # An explicit model wins (open_store then refuses a mismatch, naming the model to set).
    explicit = Settings.from_env({}, data_dir=str(tmp_path), qdrant_url="", embedding_model="/elsewhere")
    assert StoreOpener(explicit).serving_model_spec() == "/elsewhere"
    # A recorded directory that is gone is not followed.
    model_dir.rmdir()
    assert StoreOpener(settings).serving_model_spec() == "multilingual"
    # `packaged` was MiniLM's name before the multilingual default: such a deployment keeps MiniLM.
    write_alias(root, "understanding", "understanding__all__1", DIM, model_path="packaged")
    assert StoreOpener(settings).serving_model_spec() == "minilm"


def test_a_mismatch_names_the_model_the_alias_was_switched_to(tmp_path: pathlib.Path) -> None:
    settings = Settings.from_env({}, data_dir=str(tmp_path), qdrant_url="")
    store = StoreOpener(settings).serving(OLD, DIM, model_path="packaged")
    store.close()
    assert read_alias(tmp_path / "qdrant-edge", "understanding").model_path == "packaged"  # type: ignore[union-attr]
    target = StoreOpener(settings).target(NEW, DIM)
    target.promote("understanding", model_path="/models/new")
    target.close()
    with pytest.raises(RuntimeError, match="UNDERSTANDING_EMBEDDING_MODEL=/models/new"):
        StoreOpener(settings).serving(OLD, DIM, model_path="")


# ---------------------------------------------------------------- admin identity
def test_admin_identity() -> None:
    digest = hashlib.sha256(b"root-key").hexdigest()
    strict = AdminIdentity(parse_admin_keys(f"ops:{digest}"), tenant_auth=True)
    assert strict.resolve({"x-api-key": "root-key"}).tenant == "ops"
    with pytest.raises(Unauthenticated):
        strict.resolve({})
    with pytest.raises(PermissionDenied):
        strict.resolve({"x-api-key": "tenant-key"})
    # No admin keys: open in development mode, closed once tenants need keys.
    assert AdminIdentity({}, tenant_auth=False).resolve({}).authenticated is False
    with pytest.raises(PermissionDenied, match="UNDERSTANDING_ADMIN_API_KEYS"):
        AdminIdentity({}, tenant_auth=True).resolve({"x-api-key": "anything"})
    with pytest.raises(ValueError, match="UNDERSTANDING_ADMIN_API_KEYS"):
        parse_admin_keys("ops:not-a-digest")


# ---------------------------------------------------------------- write pause and store switch
class RecordingStore:
    """Just enough of a VectorStore for the sink: records what was staged where.

    `staging` is set when a write reaches the store; clearing `proceed` holds it there."""

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.dimension = DIM
        self.staged: list[PointRecord] = []
        self.staging = threading.Event()
        self.proceed = threading.Event()
        self.proceed.set()

    def stage(self, points: Sequence[PointRecord]) -> None:
        self.staging.set()
        self.proceed.wait(PATIENCE_S)
        self.staged.extend(points)

    def commit_media(self, tenant: str, media_id: str, version: int) -> bool:
        return True

    def delete_media(self, tenant: str, media_id: str) -> int:
        return 0


def analysis(media_id: str, model: ModelRef, salt: str) -> Analysis:
    chunks = tuple(
        Chunk(index=i, text=f"{media_id} part {i}", embedding=vector(f"{media_id} part {i}", salt)) for i in range(2)
    )
    return Analysis("t", media_id, Modality.TEXT, None, (), chunks, model, time.time(), 1)


async def test_pause_waits_for_writes_under_way_and_holds_new_ones(tmp_path: pathlib.Path) -> None:
    old, new = RecordingStore("old"), RecordingStore("new")
    sink = ResultSink(store=old, outbox=Outbox(tmp_path / "outbox.sqlite3"), analysis_topic="t")  # type: ignore[arg-type]
    await sink.start()
    try:
        old.proceed.clear()
        under_way = asyncio.create_task(sink.write(analysis("a", OLD, "old")))
        await wait_until_async(old.staging.is_set, what="a write in the store")
        pausing = asyncio.create_task(sink.pause_writes())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not pausing.done()  # the pause waits for the write under way...
        old.proceed.set()
        await pausing
        assert len(old.staged) == 2  # ...whose store write finished before the pause returned
        await under_way  # (its event goes to the outbox, which the pause does not hold)
        held = asyncio.create_task(sink.write(analysis("b", OLD, "old")))  # embedded before the switch
        deleting = asyncio.create_task(sink.delete_media("t", "a"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not held.done() and not deleting.done() and len(old.staged) == 2

        async def embed_new(texts: Sequence[str]) -> list[np.ndarray]:
            return [vector(t, "new") for t in texts]

        sink.switch_store(new, model=NEW, embed=embed_new)  # type: ignore[arg-type]
        sink.resume_writes()
        await asyncio.gather(held, deleting)
        # The held write went to the new store, re-embedded with the new model.
        assert len(old.staged) == 2 and [p.payload["media_id"] for p in new.staged] == ["b", "b"]
        assert {p.payload["embedding_model"] for p in new.staged} == {"new"}
        for p in new.staged:
            assert np.allclose(p.vector, vector(p.payload["text"], "new"))
        # A write already made with the new model is written as it is.
        await sink.write(analysis("c", NEW, "new"))
        assert [p.payload["media_id"] for p in new.staged][-2:] == ["c", "c"]
    finally:
        await sink.stop()
        sink.outbox.close()


# ---------------------------------------------------------------- swaps seen by calls under way
class SlowEmbed:
    """An embed function that waits for `release` before answering (a call under way)."""

    def __init__(self, salt: str) -> None:
        self.salt = salt
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return [vector(t, self.salt) for t in texts]


async def test_text_analysis_under_way_during_a_swap_uses_the_new_model_throughout() -> None:
    taxonomy = Taxonomy.load()
    old_embed, new_embed = SlowEmbed("old"), SlowEmbed("new")
    new_embed.release.set()
    pipeline = TextPipeline(
        embed=old_embed,
        tagger=Tagger(taxonomy, encoder("old")),
        language=LanguageDetector(),
        model=OLD,
        chunk_max_words=50,
        chunk_overlap_words=0,
    )
    task = asyncio.create_task(pipeline.analyze("t", TextInput("m", "the football match ended late")))
    await old_embed.started.wait()
    pipeline.rebind(EmbeddingBinding(new_embed, Tagger(taxonomy, encoder("new")), NEW))
    old_embed.release.set()
    result = await task
    assert result.embedding_model == NEW and new_embed.calls == 1
    assert np.allclose(result.chunks[0].embedding, vector(result.chunks[0].text, "new"))
    assert pipeline.model == NEW


class OneHitStore:
    def __init__(self, name: str) -> None:
        self.collection = name
        self.dimension = DIM
        self.vectors: list[np.ndarray] = []

    def search(self, vec: Any, flt: PointFilter, **kw: Any) -> list[StoredPoint]:
        self.vectors.append(np.asarray(vec))
        return [StoredPoint(id="p", score=1.0, payload={"tenant": "t", "media_id": self.collection, "text": "x"})]


async def test_a_search_under_way_during_a_swap_runs_again_on_the_new_store() -> None:
    old_store, new_store = OneHitStore("old"), OneHitStore("new")
    old_embed, new_embed = SlowEmbed("old"), SlowEmbed("new")
    new_embed.release.set()

    async def old_query(text: str) -> np.ndarray:
        return (await old_embed([text]))[0]

    async def new_query(text: str) -> np.ndarray:
        return (await new_embed([text]))[0]

    searcher = Searcher(old_store, old_query)  # type: ignore[arg-type]
    task = asyncio.create_task(
        searcher.search(SearchQuery(text="goal", mode=SearchMode.DENSE), PointFilter(tenant="t"))
    )
    await old_embed.started.wait()
    searcher.rebind(new_store, new_query)  # type: ignore[arg-type]
    old_embed.release.set()
    page = await task
    assert [h.point.payload["media_id"] for h in page.hits] == ["new"]
    assert len(new_store.vectors) == 1 and np.allclose(new_store.vectors[0], vector("goal", "new"))


async def test_a_watcher_reports_a_phase_that_came_and_went_while_it_waited(tmp_path: pathlib.Path) -> None:
    from understanding.core.reindex import OnlineReindex, Phase, ReindexState

    reindex = OnlineReindex(switch=None, factory=None, sink=None)  # type: ignore[arg-type]  # watch() needs none
    state = ReindexState(model_path="m", alias="a", from_collection="c")
    seen: list[Phase] = []

    async def watch() -> None:
        async for update in reindex.watch(state):
            seen.append(update.phase)

    watcher = asyncio.create_task(watch())
    await wait_until_async(lambda: seen == [Phase.LOADING], what="LOADING reported")
    state.phase = Phase.COPYING
    reindex._changed()
    await wait_until_async(lambda: Phase.COPYING in seen, what="COPYING reported")
    state.phase = Phase.SWITCHING  # entered and left while the watcher waits for the next change
    state.phase = Phase.DONE
    reindex._changed()
    await asyncio.wait_for(watcher, PATIENCE_S)
    assert seen == [Phase.LOADING, Phase.COPYING, Phase.SWITCHING, Phase.DONE]
