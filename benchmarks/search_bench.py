"""Search at scale on the embedded store: indexing, latency, recall, hybrid vs dense.

    python benchmarks/search_bench.py [--quick] [--points N] [--queries N] [--models multilingual,minilm]

Corpus (not written by us, shipped by Debian): the reStructuredText sources of
the Python 3.11 documentation (`apt-get install python3.11-doc`, one chunk per
paragraph, long ones windowed like the text pipeline) and the fortune cookies
(`apt-get install fortunes`, one chunk per fortune): ~58k chunks. Embedded
with the real models (the service's ONNX backend); the vectors are cached under
`${UNDERSTANDING_CACHE:-~/.cache/understanding}/bench/` so reruns are fast.
Lexical terms are the service's (sinks/lexical.py, English documents).

Every figure is measured for each model in `--models` (the first one at
`--points` scale, the others on the corpus alone), then the English retrieval
quality of the models is printed side by side.

Tenant `docs` holds the corpus; tenant `mirror` holds noisy copies up to
`--points` (default 100k), so every search runs with a tenant filter against a
store of that size. Figures:
  - indexing throughput into the embedded store (upsert incl. BM25 terms), and
    the HNSW build (`optimize`) time;
  - dense search latency p50/p99 and recall@10 against exact numpy search, for
    several `hnsw_ef` values (the store's default is marked);
  - hybrid search latency;
  - rare-term retrieval: for words occurring in 1-3 chunks, success@10 of
    finding a chunk containing the word, hybrid vs dense-only;
  - chunk-start retrieval: the first 12 words of a chunk as the query,
    success@10 of finding that chunk, hybrid vs dense-only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import percentile, result  # noqa: E402

if TYPE_CHECKING:
    from understanding.models.embedder import TextEncoder

PYDOCS = pathlib.Path("/usr/share/doc/python3.11/html/_sources")
FORTUNES = pathlib.Path("/usr/share/games/fortunes")
CHUNK_WORDS, STEP_WORDS = 96, 80  # the text pipeline's defaults
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{5,}")


def cache_dir() -> pathlib.Path:
    base = os.environ.get("UNDERSTANDING_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "understanding")
    path = pathlib.Path(base) / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_corpus() -> list[tuple[str, str]]:
    """(source, text) chunks, in a stable order."""
    missing = [p for p in (PYDOCS, FORTUNES) if not p.is_dir()]
    if missing:
        raise SystemExit(f"corpus missing: {', '.join(map(str, missing))}; apt-get install python3.11-doc fortunes")
    chunks: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(source: str, text: str) -> None:
        words = text.split()
        if len(words) < 8:
            return
        for start in range(0, max(1, len(words) - CHUNK_WORDS + STEP_WORDS), STEP_WORDS):
            piece = " ".join(words[start : start + CHUNK_WORDS])
            if piece not in seen:
                seen.add(piece)
                chunks.append((source, piece))

    for path in sorted(PYDOCS.rglob("*.txt")):
        for para in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            add(f"pydoc:{path.relative_to(PYDOCS)}", para)
    for path in sorted(FORTUNES.iterdir()):
        if path.is_file() and not path.suffix:
            for fortune in path.read_text(errors="replace").split("\n%\n"):
                add(f"fortune:{path.name}", fortune)
    return chunks


def embeddings(texts: list[str], model: str) -> tuple[np.ndarray, TextEncoder, float]:
    """Vectors for `texts` (cached), the encoder, and its texts/s (nan when cached)."""
    from understanding.models.embedder import load_text_encoder, resolve_model

    embedder = load_text_encoder(resolve_model(model), backend="onnx", cache_dir=cache_dir().parent / "models")
    digest = hashlib.sha256(f"{embedder.model_ref.name}|{embedder.model_ref.version}".encode())
    for t in texts:
        digest.update(t.encode())
        digest.update(b"\0")
    path = cache_dir() / f"search-corpus-{len(texts)}-{digest.hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path), embedder, float("nan")
    started = time.perf_counter()
    out = np.empty((len(texts), embedder.dimension), dtype=np.float32)
    by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
    for b in range(0, len(texts), 64):
        rows = by_length[b : b + 64]
        out[rows] = np.stack(embedder.encode([texts[i] for i in rows]))
        if b % 6400 == 0:
            print(f"  embedded {b}/{len(texts)}", file=sys.stderr, flush=True)
    rate = len(texts) / (time.perf_counter() - started)
    np.save(path, out)
    return out, embedder, rate


def measure(
    corpus: list[tuple[str, str]], model: str, *, points: int, queries: int, quick: bool, scale: bool
) -> dict[str, float]:
    """Index `corpus` (plus noisy copies up to `points` when `scale`) and print this model's figures."""
    from understanding.sinks import lexical
    from understanding.sinks.edge_store import EdgeVectorStore
    from understanding.sinks.store import SEARCH_HNSW_EF, PointFilter, PointRecord

    texts = [t for _, t in corpus]
    vectors, embedder, embed_rate = embeddings(texts, model)
    n = len(texts)
    total = max(points, n) if scale else n
    print(
        f"\n== {embedder.model_ref.name}: {n} chunks from python3.11-doc + fortunes; store: {total} points", flush=True
    )

    rng = np.random.default_rng(0)
    mirror_idx = rng.integers(0, n, size=total - n)
    noisy = vectors[mirror_idx] + rng.normal(scale=0.02, size=(total - n, vectors.shape[1])).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    terms = lexical.encoder()
    sparse = [terms.document(t, "en") for t in texts]  # as the text pipeline stores an English chunk

    def record(i: int, tenant: str, vector: np.ndarray, source_i: int) -> PointRecord:
        source, text = corpus[source_i]
        payload = {
            "tenant": tenant,
            "media_id": f"{source}#{source_i}",
            "modality": "text",
            "chunk_index": 0,
            "text": text,
            "start_s": 0.0,
            "end_s": 0.0,
            "tags": [],
            "tag_items": [],
            "language": "en",
            "version": 1,
            "created_at": 1.7e9,
            "embedding_model": embedder.model_ref.name,
            "metadata": {},
        }
        return PointRecord(
            id=f"00000000-0000-4000-8000-{i:012d}", vector=vector, payload=payload, sparse=sparse[source_i]
        )

    root = pathlib.Path(tempfile.mkdtemp(prefix="understanding-search-bench-"))
    store = EdgeVectorStore(root, dimension=vectors.shape[1], collection="bench")
    figures: dict[str, float] = {}
    try:
        started = time.perf_counter()
        batch = 512
        for start in range(0, total, batch):
            recs = []
            for i in range(start, min(total, start + batch)):
                if i < n:
                    recs.append(record(i, "docs", vectors[i], i))
                else:
                    recs.append(record(i, "mirror", noisy[i - n], int(mirror_idx[i - n])))
            store.upsert(recs)
        upsert_s = time.perf_counter() - started
        started = time.perf_counter()
        store.optimize()
        build_s = time.perf_counter() - started
        index_rate = total / upsert_s
        print(
            f"indexed {total} points in {upsert_s:.1f} s ({index_rate:.0f} points/s), HNSW build {build_s:.1f} s",
            flush=True,
        )

        # Queries: held-in chunk starts (first 12 words), embedded like a user query.
        q_idx = rng.choice(n, size=min(queries, n), replace=False)
        q_texts = [" ".join(texts[i].split()[:12]) for i in q_idx]
        q_vecs = np.stack(embedder.encode(q_texts))
        docs = PointFilter(tenant="docs")
        exact = np.argsort(-(q_vecs @ vectors.T), axis=1)[:, :10]
        ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(n)]

        def run(ef: int) -> tuple[list[float], float]:
            lat, recall = [], []
            for qi, qv in enumerate(q_vecs):
                t0 = time.perf_counter()
                hits = store.search(qv, docs, limit=10, hnsw_ef=ef)
                lat.append((time.perf_counter() - t0) * 1e3)
                want = {ids[j] for j in exact[qi]}
                recall.append(len(want & {h.id for h in hits}) / 10)
            return lat, float(np.mean(recall))

        run(SEARCH_HNSW_EF)  # warm caches
        sweep = {}
        for ef in sorted({16, 32, SEARCH_HNSW_EF, 128}) if scale else [SEARCH_HNSW_EF]:
            sweep[ef] = run(ef)
        hybrid_lat = []
        found = {"dense": 0, "hybrid": 0}
        for qi, (text, qv) in enumerate(zip(q_texts, q_vecs, strict=True)):
            for mode in found:
                t0 = time.perf_counter()
                terms_q = terms.query(text) if mode == "hybrid" else None
                hits = store.search(qv, docs, limit=10, lexical=terms_q)
                if mode == "hybrid":
                    hybrid_lat.append((time.perf_counter() - t0) * 1e3)
                found[mode] += ids[int(q_idx[qi])] in {h.id for h in hits}

        # Rare terms: words in 1-3 chunks of the corpus.
        df: Counter[str] = Counter()
        for t in texts:
            df.update({w.lower() for w in _WORD.findall(t)})
        rare = sorted(w for w, c in df.items() if c <= 3 and not w.isdigit())
        picked = [rare[i] for i in rng.choice(len(rare), size=min(len(rare), 200 if not quick else 50), replace=False)]
        rare_vecs = np.stack(embedder.encode(picked))
        success = {"dense": 0, "hybrid": 0}
        for word, qv in zip(picked, rare_vecs, strict=True):
            for mode in success:
                terms_q = terms.query(word) if mode == "hybrid" else None
                hits = store.search(qv, docs, limit=10, lexical=terms_q)
                if any(word in h.payload["text"].lower() for h in hits):
                    success[mode] += 1
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)

    name = embedder.model_ref.name
    print()
    print(f"{'figure':52} {'value':>10}")
    if embed_rate == embed_rate:
        print(f"{'embedding (batches of 256) chunks/s':52} {embed_rate:10.1f}")
    print(f"{'upsert into embedded store, points/s':52} {index_rate:10.0f}")
    print(f"{'HNSW build (optimize), s':52} {build_s:10.1f}")
    print(f"{'hnsw_ef':>8} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>10}")
    for ef, (lat, rec) in sweep.items():
        mark = "  <- default" if ef == SEARCH_HNSW_EF else ""
        print(f"{ef:8d} {percentile(lat, 50):8.2f} {percentile(lat, 99):8.2f} {rec:10.3f}{mark}")
    print(f"{'hybrid':>8} {percentile(hybrid_lat, 50):8.2f} {percentile(hybrid_lat, 99):8.2f}")
    k, m = len(picked), len(q_texts)
    figures = {
        "rare_dense": success["dense"] / k,
        "rare_hybrid": success["hybrid"] / k,
        "start_dense": found["dense"] / m,
        "start_hybrid": found["hybrid"] / m,
    }
    print(
        f"rare-term success@10 over {k} words: hybrid {figures['rare_hybrid']:.3f}, dense {figures['rare_dense']:.3f}"
    )
    print(
        f"chunk-start success@10 over {m} queries: hybrid {figures['start_hybrid']:.3f}, dense {figures['start_dense']:.3f}"
    )
    lat, rec = sweep[SEARCH_HNSW_EF]
    if scale:
        result("search index points/s into the embedded store", index_rate, None, "report", "points/s")
        result("search HNSW build s", build_s, None, "report", "s")
        result(f"search dense p50 ms at {total} points, tenant filter", percentile(lat, 50), None, "< 5", "ms")
        result(f"search dense p99 ms at {total} points, tenant filter", percentile(lat, 99), None, "< 20", "ms")
        result("search recall@10 vs exact", rec, None, ">= 0.95")
        result("search hybrid p50 ms", percentile(hybrid_lat, 50), None, "report", "ms")
        result("search hybrid p99 ms", percentile(hybrid_lat, 99), None, "report", "ms")
    result(
        f"rare-term success@10, hybrid vs dense ({name})", figures["rare_hybrid"], figures["rare_dense"] or None, "> 1"
    )
    result(
        f"chunk-start success@10, hybrid vs dense ({name})",
        figures["start_hybrid"],
        figures["start_dense"] or None,
        ">= 1",
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small corpus for CI smoke")
    parser.add_argument("--points", type=int, default=100_000, help="points in the store (corpus + noisy copies)")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--models", default="multilingual,minilm", help="embedding models (the first at --points scale)"
    )
    args = parser.parse_args()

    corpus = load_corpus()
    if args.quick:
        corpus, args.points, args.queries = corpus[:: max(1, len(corpus) // 3000)][:3000], 6000, 100
    models = [m for m in args.models.split(",") if m]
    figures = {
        model: measure(corpus, model, points=args.points, queries=args.queries, quick=args.quick, scale=i == 0)
        for i, model in enumerate(models)
    }
    print("\nEnglish retrieval quality, models side by side (success@10)")
    print(f"  {'model':14s} {'rare dense':>10s} {'rare hybrid':>11s} {'start dense':>11s} {'start hybrid':>12s}")
    for model, f in figures.items():
        print(
            f"  {model:14s} {f['rare_dense']:10.3f} {f['rare_hybrid']:11.3f} {f['start_dense']:11.3f} {f['start_hybrid']:12.3f}"
        )
    if len(models) == 2:
        new, old = models
        for key in ("rare_hybrid", "start_hybrid", "rare_dense", "start_dense"):
            result(
                f"English {key.replace('_', ' ')} S@10, {new} vs {old}",
                figures[new][key],
                figures[old][key] or None,
                "report",
            )


if __name__ == "__main__":
    main()
