"""Cross-lingual retrieval with the models called directly: USE-m3 versus all-MiniLM-L6-v2.

    python benchmarks/crosslingual_direct.py [--quick] [--limit N] [--languages ko,ja,...] [--threads N]

Corpus: the Firefox ESR parallel sentences (benchmarks/_corpora.py; fetched by
`python scripts/fetch_eval_data.py`): the English sentences are the documents,
each human translation is a query whose only relevant document is its English
original. Exact cosine search (numpy), so the figures are the models' own,
with no index in between. Figures per language and their mean: recall@1 and
recall@10; then texts/s and CPU ms per text of batched encode (batches of 32,
the service's micro-batch size) on the English documents.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _corpora import LANGUAGES, ParallelCorpus, parallel_sentences  # noqa: E402
from _harness import result  # noqa: E402

from understanding.models.embedder import TextEncoder  # noqa: E402

BATCH = 32


def cache_dir() -> pathlib.Path:
    base = os.environ.get("UNDERSTANDING_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "understanding")
    return pathlib.Path(base) / "models"


def load(model: str, threads: int) -> TextEncoder:
    if model == "usem3":
        from understanding.models.use_embedder import load_use_encoder

        return load_use_encoder(backend="onnx", cache_dir=cache_dir(), threads=threads)
    from understanding.models.embedder import load_embedder, resolve_embedding_model

    return load_embedder(resolve_embedding_model("packaged"), backend="onnx", cache_dir=cache_dir(), threads=threads)


def encode(encoder: TextEncoder, texts: list[str]) -> tuple[np.ndarray, float, float]:
    """Vectors of `texts` in batches of BATCH; wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = np.vstack([np.asarray(encoder.encode(texts[i : i + BATCH])) for i in range(0, len(texts), BATCH)])
    return out.astype(np.float32), time.perf_counter() - wall, time.process_time() - cpu


def recall(queries: np.ndarray, docs: np.ndarray, targets: np.ndarray, ks: tuple[int, ...]) -> dict[int, float]:
    scores = queries @ docs.T
    target_scores = scores[np.arange(len(targets)), targets]
    rank = (scores > target_scores[:, None]).sum(1)  # documents strictly better than the original
    return {k: float((rank < k).mean()) for k in ks}


def evaluate(
    name: str, encoder: TextEncoder, corpus: ParallelCorpus, languages: list[str]
) -> dict[str, dict[int, float]]:
    ids = list(corpus.english)
    index = {sid: i for i, sid in enumerate(ids)}
    encode(encoder, [corpus.english[s] for s in ids[:BATCH]])  # warm
    docs, wall, cpu = encode(encoder, [corpus.english[s] for s in ids])
    print(f"\n{name} ({encoder.model_ref.name} {encoder.model_ref.version}, dim {docs.shape[1]})")
    print(
        f"  batched encode of {len(ids)} English sentences: {len(ids) / wall:.0f} texts/s, {1000 * cpu / len(ids):.2f} CPU ms/text"
    )
    result(f"crosslingual_{name}_texts_per_s", len(ids) / wall, None, "report", "texts/s")
    out: dict[str, dict[int, float]] = {}
    print(f"  {'lang':4s} {'queries':>7s} {'R@1':>6s} {'R@10':>6s}")
    for lang in languages:
        pairs = corpus.translations[lang]
        queries, _, _ = encode(encoder, list(pairs.values()))
        targets = np.array([index[s] for s in pairs])
        out[lang] = recall(queries, docs, targets, (1, 10))
        print(f"  {lang:4s} {len(pairs):7d} {out[lang][1]:6.3f} {out[lang][10]:6.3f}")
    mean1 = float(np.mean([r[1] for r in out.values()]))
    mean10 = float(np.mean([r[10] for r in out.values()]))
    print(f"  mean {'':7s} {mean1:6.3f} {mean10:6.3f}")
    result(f"crosslingual_{name}_mean_recall_at_10", mean10, None, ">= 0.95")
    result(f"crosslingual_{name}_mean_recall_at_1", mean1, None, "report")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="English sentences kept (a fixed subset; 0 = all)")
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--models", default="usem3,minilm")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = one per core)")
    parser.add_argument("--quick", action="store_true", help="300 sentences, ko and ja (CI smoke)")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.languages = 300, "ko,ja"
    languages = [lang for lang in args.languages.split(",") if lang]
    corpus = parallel_sentences(tuple(languages), limit=args.limit)
    queries = sum(len(corpus.translations[lang]) for lang in languages)
    print(f"Firefox ESR {corpus.version}: {len(corpus.english)} English documents, {queries} translated queries")
    figures = {m: evaluate(m, load(m, args.threads), corpus, languages) for m in args.models.split(",")}
    if len(figures) == 2:
        a, b = figures
        print(f"\n{'lang':4s} {a + ' R@10':>12s} {b + ' R@10':>12s}")
        for lang in languages:
            print(f"{lang:4s} {figures[a][lang][10]:12.3f} {figures[b][lang][10]:12.3f}")


if __name__ == "__main__":
    main()
