"""The embedded store indexes points added while serving, without a restart.

A background build copies the shard, builds the HNSW index in a child process
and swaps the copy in; writes made meanwhile are replayed. These tests use a
tiny indexing threshold so a few hundred points get a real HNSW index, wait
for the build by polling the store's own status (bounded), and check data,
not time.
"""

from __future__ import annotations

import pathlib
import time
import uuid

import numpy as np

from understanding.sinks.edge_store import LIVE_SUFFIX, EdgeVectorStore, live_shard_path
from understanding.sinks.store import PointFilter, PointRecord

DIM = 16
WAIT_S = 300.0  # bound for a build on a busy machine: a hang detector, not a timing check


def points(n: int, seed: int, tenant: str = "a") -> list[PointRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = rng.normal(size=DIM).astype(np.float32)
        payload = {"tenant": tenant, "media_id": f"s{seed}-{i}", "version": 1, "text": f"growth point {seed} {i}"}
        out.append(PointRecord(str(uuid.UUID(int=seed * 1_000_000 + i + 1)), v / np.linalg.norm(v), payload))
    return out


def open_store(root: pathlib.Path, **kw: int) -> EdgeVectorStore:
    return EdgeVectorStore(
        root, dimension=DIM, collection="c", background_index_min_points=500, indexing_threshold_kb=1, **kw
    )


def wait_until_built(store: EdgeVectorStore, root: pathlib.Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while store.index_status().building or not (root / f"c{LIVE_SUFFIX}").exists():
        assert time.monotonic() < deadline, f"no index build finished: {store.index_status()}"
        time.sleep(0.05)


def exact_top(all_points: list[PointRecord], query: np.ndarray, k: int) -> list[str]:
    scored = sorted(((float(np.dot(p.vector, query)), p.id) for p in all_points), reverse=True)
    return [pid for _, pid in scored[:k]]


def test_points_added_while_serving_get_an_index_without_a_restart(tmp_path: pathlib.Path) -> None:
    store = open_store(tmp_path)
    first = points(600, seed=1)
    for i in range(0, len(first), 100):
        store.upsert(first[i : i + 100])
    assert store.index_status().building or (tmp_path / f"c{LIVE_SUFFIX}").exists()
    # Written while the build runs (replayed into the new generation) or after it.
    later = points(150, seed=2)
    store.upsert(later)
    store.delete_points([first[0].id])
    wait_until_built(store, tmp_path)

    live = live_shard_path(tmp_path, "c")
    assert live.name.startswith("c.gen-") and live.is_dir() and not (tmp_path / "c").exists()
    status = store.index_status()
    assert status.points == 749 and status.unindexed < status.points, status
    expected = first[1:] + later
    assert store.count() == len(expected)
    for probe in (first[5], later[3], first[400]):
        got = [p.id for p in store.search(probe.vector, PointFilter(tenant="a"), limit=5, hnsw_ef=256)]
        assert got == exact_top(expected, probe.vector, 5)
    assert store.search(first[0].vector, PointFilter(tenant="a"), limit=1)[0].id != first[0].id
    store.close()

    # A restart opens the live generation, with everything in it.
    reopened = open_store(tmp_path)
    assert reopened.count() == len(expected) and reopened.index_status().unindexed < len(expected)
    assert not list(tmp_path.glob(".c.build-*"))
    reopened.close()


def test_close_during_a_build_keeps_the_old_generation(tmp_path: pathlib.Path) -> None:
    store = open_store(tmp_path)
    batch = points(600, seed=3)
    store.upsert(batch)
    store.close()  # stops the child and drops the copy
    assert not list(tmp_path.glob(".c.build-*"))
    reopened = open_store(tmp_path, optimize_on_open_min_points=10**9)
    assert reopened.count() == 600
    reopened.close()


def test_leftovers_of_a_crash_are_swept_at_open(tmp_path: pathlib.Path) -> None:
    store = open_store(tmp_path)
    store.upsert(points(20, seed=4))
    store.close()
    (tmp_path / ".c.build-dead").mkdir()
    (tmp_path / "c.gen-123").mkdir()
    reopened = open_store(tmp_path)
    assert reopened.count() == 20
    assert not (tmp_path / ".c.build-dead").exists() and not (tmp_path / "c.gen-123").exists()
    assert live_shard_path(tmp_path, "c") == tmp_path / "c"
    reopened.close()


def test_unindexed_counts_dense_vectors_only(tmp_path: pathlib.Path) -> None:
    """The engine counts sparse vectors as indexed; the store's status does not."""
    store = EdgeVectorStore(
        tmp_path,
        dimension=DIM,
        collection="c",
        background_index_min_points=10**9,
        optimize_on_open_min_points=10**9,
        indexing_threshold_kb=1,
    )
    store.upsert(points(300, seed=5))
    assert store.index_status().unindexed == 300
    store.optimize()
    assert store.index_status().unindexed == 0
    store.close()


def test_an_explicit_optimize_stops_a_build_and_indexes_everything(tmp_path: pathlib.Path) -> None:
    """Bulk loaders call optimize(): a build under way must not swap an older copy in after it."""
    store = open_store(tmp_path)
    store.upsert(points(600, seed=6))
    store.optimize()
    assert not store.index_status().building
    assert store.index_status().unindexed == 0 and store.count() == 600
    assert not list(tmp_path.glob(".c.build-*"))
    store.close()
