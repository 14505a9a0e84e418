"""Embedded store (Qdrant Edge in-process) vs a Qdrant server, and growth while serving.

    python benchmarks/qdrant_server_bench.py [--quick] [--points N] [--growth N] [--queries N]
                                             [--backends edge,server] [--no-growth] [--settle-cap S]

Corpus: synthetic, because embedding 1M real chunks on two shared cores takes
hours. Vectors are 384-d unit vectors drawn around 2,000 random centres (so
neighbourhoods exist, like sentence embeddings; uniform random vectors would
have none), with the payload the service writes (tenant, media id, modality,
chunk index, language, tags with scores, times, version, ~30 words of text
from a Zipf vocabulary, turned into BM25 terms by the store as in
production). Tenant `t0` holds half the points, nine others the rest; every
search filters on `t0`. Queries are noisy copies of stored points.

Figures per backend (embedded, server over gRPC; same points, same queries):
  - upsert points/s (batches of 512, BM25 terms included), then the time to
    index (embedded: `optimize`; server: until its optimizer is done);
  - dense search p50/p99 and recall@10 against exact numpy search;
  - hybrid (dense + BM25) search p50.
Growth (`--growth`, default 200k): on top of the indexed base, points are
added online in batches of 1,000 while a search runs after every batch: the
curve of search p50 per 20k added, for the embedded store without background
builds (as before issue 18), with them, and the server; plus the longest
stall of a Python thread (the event loop's view: a build that holds the GIL
shows up here) during the run.

The server is the binary beside the checkout (tests/support/qdrant.py), on
free loopback ports, or UNDERSTANDING_TEST_QDRANT_URL. Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import percentile, result  # noqa: E402

from understanding.sinks.lexical import encoder  # noqa: E402
from understanding.sinks.store import PointFilter, PointRecord, VectorStore  # noqa: E402

DIM = 384
CENTRES = 2000
BATCH = 512
TENANT_FILTER = PointFilter(tenant="t0")
VOCAB = [f"w{i:05d}" for i in range(20_000)]


class Corpus:
    """Deterministic points: point i is the same in every run and backend."""

    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        c = rng.normal(size=(CENTRES, DIM)).astype(np.float32)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)
        zipf = 1.0 / np.arange(1, len(VOCAB) + 1)
        self.word_p = zipf / zipf.sum()

    def block(self, start: int, n: int) -> tuple[np.ndarray, list[PointRecord]]:
        rng = np.random.default_rng(1_000_003 + start)
        centre = rng.integers(0, CENTRES, size=n)
        v = self.centres[centre] + rng.normal(scale=0.06, size=(n, DIM)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        words = rng.choice(len(VOCAB), size=(n, 30), p=self.word_p)
        tenants = np.where(rng.random(n) < 0.5, 0, rng.integers(1, 10, size=n))
        out = []
        for j in range(n):
            i = start + j
            tags = [{"label": "topic.sports", "score": 0.6}] if i % 3 == 0 else []
            payload = {
                "tenant": f"t{tenants[j]}",
                "media_id": f"m{i // 8}",
                "modality": "speech" if i % 2 else "text",
                "chunk_index": i % 8,
                "point_id": str(uuid.UUID(int=i + 1)),
                "language": "en",
                "tags": [t["label"] for t in tags],
                "tag_items": tags,
                "start_s": float(i % 8) * 15.0,
                "end_s": float(i % 8) * 15.0 + 15.0,
                "created_at": 1.7e9 + i,
                "version": 1,
                "metadata": {"source": "bench"},
                "text": " ".join(VOCAB[w] for w in words[j]),
            }
            out.append(PointRecord(str(uuid.UUID(int=i + 1)), v[j], payload))
        return v, out

    def queries(self, vectors: np.ndarray, n: int) -> np.ndarray:
        rng = np.random.default_rng(99)
        q = vectors[rng.integers(0, len(vectors), size=n)] + rng.normal(scale=0.04, size=(n, DIM)).astype(np.float32)
        return q / np.linalg.norm(q, axis=1, keepdims=True)


def load(store: VectorStore, corpus: Corpus, start: int, n: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Upsert points [start, start+n); returns (points/s, tenant-t0 vectors, their ids as ints)."""
    t0_vectors, t0_ids = [], []
    spent = 0.0
    for s in range(start, start + n, BATCH):
        vectors, batch = corpus.block(s, min(BATCH, start + n - s))
        began = time.perf_counter()
        store.upsert(batch)
        spent += time.perf_counter() - began
        mask = np.array([p.payload["tenant"] == "t0" for p in batch])
        t0_vectors.append(vectors[mask])
        t0_ids.append(np.arange(s, s + len(batch))[mask])
        if (s - start + len(batch)) % 100_000 < BATCH and n >= 200_000:
            print(f"loaded {s - start + len(batch):,} of {n:,} points ({spent:.0f} s in upserts)", flush=True)
    return n / spent, np.concatenate(t0_vectors), np.concatenate(t0_ids)


def recall_and_latency(
    store: VectorStore, queries: np.ndarray, t0_vectors: np.ndarray, t0_ids: np.ndarray
) -> tuple[float, float, float]:
    """(recall@10 vs exact, p50 ms, p99 ms) of dense searches filtered on tenant t0."""
    hits, times = 0, []
    for q in queries:
        began = time.perf_counter()
        got = store.search(q, TENANT_FILTER, limit=10)
        times.append((time.perf_counter() - began) * 1000)
        exact = t0_ids[np.argsort(-(t0_vectors @ q))[:10]]
        hits += len({str(uuid.UUID(int=int(i) + 1)) for i in exact} & {p.id for p in got})
    return hits / (10 * len(queries)), percentile(times, 50), percentile(times, 99)


def recall_free_p50(store: VectorStore, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        began = time.perf_counter()
        store.search(q, TENANT_FILTER, limit=10)
        times.append((time.perf_counter() - began) * 1000)
    return percentile(times, 50)


def hybrid_p50(store: VectorStore, queries: np.ndarray) -> float:
    rng = np.random.default_rng(5)
    lex = encoder()
    times = []
    for q in queries:
        terms = lex.query(" ".join(VOCAB[int(w)] for w in rng.integers(0, 2000, size=3)))
        began = time.perf_counter()
        store.search(q, TENANT_FILTER, limit=10, lexical=terms)
        times.append((time.perf_counter() - began) * 1000)
    return percentile(times, 50)


class StallWatch:
    """The longest gap between wake-ups of a thread sleeping 5 ms: what an event loop would feel."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(0.005):
            now = time.perf_counter()
            self.gaps.append((now - last - 0.005) * 1000)
            last = now

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- backends
class Backends:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.server: Any = None
        self.endpoint: Any = None

    def edge(self, name: str, *, background: bool) -> VectorStore:
        from understanding.sinks.edge_store import EdgeVectorStore

        return EdgeVectorStore(
            self.root / "edge",
            dimension=DIM,
            collection=name,
            optimize_on_open_min_points=10**12,
            background_index_min_points=20_000 if background else 10**12,
        )

    def remote(self, name: str) -> VectorStore:
        from tests.support.qdrant import QdrantServer, configured_endpoint, qdrant_binary
        from understanding.sinks.qdrant_remote import QdrantClientStore, connect

        if self.endpoint is None:
            self.endpoint = configured_endpoint()
            if self.endpoint is None:
                binary = qdrant_binary()
                if binary is None:
                    raise RuntimeError(
                        "no Qdrant server: set UNDERSTANDING_TEST_QDRANT_URL or UNDERSTANDING_QDRANT_BIN"
                    )
                self.server = QdrantServer(binary, self.root / "qdrant").start().wait_ready()
                self.endpoint = self.server.endpoint
        client = connect(self.endpoint.url, prefer_grpc=True, grpc_port=self.endpoint.grpc_port, timeout_s=60)
        return QdrantClientStore(dimension=DIM, collection=f"bench-{name}-{uuid.uuid4().hex[:6]}", client=client)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def wait_indexed(store: VectorStore, settle_cap_s: float | None = None) -> str:
    """Embedded: build the index now. Server: until its optimizer has finished (green).

    At 1M points on two cores the server's optimizer goes on merging indexed
    segments long after every point is in one: with `settle_cap_s`, the wait
    ends that many seconds after every point is indexed even if it is still
    merging, and the figures say so (searches then share the cores with it).
    """
    from understanding.sinks.qdrant_remote import QdrantClientStore

    if not isinstance(store, QdrantClientStore):
        print("embedded: building the index over every point", flush=True)
        store.optimize()
        return "indexed"
    from qdrant_client import models

    client = store._client
    began = last_print = time.perf_counter()
    all_indexed_at: float | None = None
    while True:
        info = client.get_collection(store.collection)
        now = time.perf_counter()
        if info.status == models.CollectionStatus.GREEN:
            return "indexed, optimizer done"
        points = info.points_count or 0
        # Dense and sparse vectors both count: every point is in an indexed segment at 2 per point.
        if all_indexed_at is None and (info.indexed_vectors_count or 0) >= 2 * points > 0:
            all_indexed_at = now
            print(f"server: every point indexed after {now - began:.0f} s; optimizer still merging", flush=True)
        if settle_cap_s is not None and all_indexed_at is not None and now - all_indexed_at >= settle_cap_s:
            return (
                f"indexed after {all_indexed_at - began:.0f} s, optimizer still merging {info.segments_count} segments"
            )
        if now - last_print >= 60:
            last_print = now
            print(
                f"server: {now - began:.0f} s, {points} points, {info.indexed_vectors_count} vectors indexed, "
                f"{info.segments_count} segments, {info.status.value}",
                flush=True,
            )
        time.sleep(0.5)


def static(
    backends: Backends, kind: str, corpus: Corpus, n: int, nq: int, settle_cap_s: float | None = None
) -> tuple[VectorStore, np.ndarray, np.ndarray]:
    store = backends.edge("base", background=False) if kind == "edge" else backends.remote("base")
    rate, t0v, t0i = load(store, corpus, 0, n)
    began = time.perf_counter()
    state = wait_indexed(store, settle_cap_s)
    index_s = time.perf_counter() - began
    print(f"{kind}: {state}", flush=True)
    queries = corpus.queries(t0v, nq)
    recall, p50, p99 = recall_and_latency(store, queries, t0v, t0i)
    hp50 = hybrid_p50(store, queries[: max(10, nq // 4)])
    print(
        f"{kind:7} {n:>9,} pts  upsert {rate:8.0f} pts/s  index {index_s:7.1f} s  "
        f"search p50 {p50:6.2f} ms p99 {p99:6.2f} ms  recall@10 {recall:.3f}  hybrid p50 {hp50:6.2f} ms",
        flush=True,
    )
    result(f"{kind} {n} upsert points/s", rate, None, "", "pts/s")
    result(f"{kind} {n} search p50 (tenant filter)", p50, None, "", "ms")
    result(f"{kind} {n} search p99 (tenant filter)", p99, None, "", "ms")
    result(f"{kind} {n} recall@10 vs exact", recall, None, ">=0.95", "")
    return store, t0v, t0i


def growth(label: str, store: VectorStore, corpus: Corpus, base: int, n: int, queries: np.ndarray) -> None:
    """Add n points online in batches of 1,000, searching after each batch; print the curve."""
    step = max(1000, n // 10)
    curve: list[tuple[int, float]] = []
    window: list[float] = []
    with StallWatch() as watch:
        for s in range(base, base + n, 1000):
            _, batch = corpus.block(s, min(1000, base + n - s))
            store.upsert(batch)
            for q in queries[(s // 1000) % len(queries) :][:3]:
                began = time.perf_counter()
                store.search(q, TENANT_FILTER, limit=10)
                window.append((time.perf_counter() - began) * 1000)
            added = s + len(batch) - base
            if added % step == 0 or added == n:
                curve.append((added, percentile(window, 50)))
                window = []
    stalls = sorted(watch.gaps)
    print(f"growth {label:24} " + "  ".join(f"+{a // 1000}k:{p:.1f}" for a, p in curve) + " (search p50 ms)")
    print(
        f"growth {label:24} longest thread stall {stalls[-1]:.0f} ms, p99 {percentile(stalls, 99):.1f} ms",
        flush=True,
    )
    result(f"growth {label} search p50 after +{n // 1000}k", curve[-1][1], curve[0][1], "", "ms")
    result(f"growth {label} longest stall", stalls[-1], None, "", "ms")


def wait_builds(store: VectorStore) -> None:
    status: Callable[[], Any] | None = getattr(store, "index_status", None)
    while status is not None and status().building:
        time.sleep(0.5)


class ExtrasFormatter(logging.Formatter):
    """The message and its `extra` fields (the build timings), one line."""

    _standard = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in record.__dict__.items() if k not in self._standard}
        return f"log: {record.getMessage()} {extra}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--growth", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backends", default="edge,server")
    parser.add_argument("--no-growth", action="store_true")
    parser.add_argument(
        "--settle-cap",
        type=float,
        default=None,
        help="server: search this many seconds after every point is indexed even if the optimizer is still merging",
    )
    args = parser.parse_args()
    # The embedded store logs each background build (copy, build, load = event-loop stall, replay).
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(ExtrasFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("understanding.sinks.edge_store").setLevel(logging.INFO)
    if args.quick:
        args.points, args.growth, args.queries = 4000, 4000, 20
    kinds = [k for k in args.backends.split(",") if k]
    corpus = Corpus()
    root = pathlib.Path(tempfile.mkdtemp(prefix="qdrant-bench-"))
    backends = Backends(root)
    print(f"synthetic corpus: {DIM}-d vectors around {CENTRES} centres, tenant t0 = half; {args.queries} queries")
    try:
        for kind in kinds:
            if kind == "server":
                from tests.support.qdrant import configured_endpoint, qdrant_binary

                if configured_endpoint() is None and qdrant_binary() is None:
                    print("server: skipped (no UNDERSTANDING_TEST_QDRANT_URL and no binary)")
                    continue
            store, t0v, _ = static(backends, kind, corpus, args.points, args.queries, args.settle_cap)
            if args.no_growth:
                store.close()
                continue
            queries = corpus.queries(t0v, 60)
            if kind == "edge":
                store.close()
                base = root / "edge" / "base"
                for label, background in (("embedded, no builds", False), ("embedded, background builds", True)):
                    name = "before" if not background else "after"
                    shutil.copytree(base, root / "edge" / name)
                    grown = backends.edge(name, background=background)
                    growth(label, grown, corpus, args.points, args.growth, queries)
                    began = time.perf_counter()
                    wait_builds(grown)
                    settled = [recall_free_p50(grown, queries)]
                    print(
                        f"growth {label:24} after the last build settled ({time.perf_counter() - began:.0f} s): "
                        f"search p50 {settled[0]:.1f} ms, {grown.index_status().unindexed} points unindexed",  # type: ignore[attr-defined]
                        flush=True,
                    )
                    grown.close()
                    shutil.rmtree(root / "edge" / name, ignore_errors=True)
            else:
                growth("server", store, corpus, args.points, args.growth, queries)
                store.close()
    finally:
        backends.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
