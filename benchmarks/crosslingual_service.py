"""Search across and within languages through the running service, next to the model called directly.

    python benchmarks/crosslingual_service.py [--quick] [--languages ko,ja,...] [--queries N]

Corpus (not written by us): the Firefox ESR parallel sentences
(benchmarks/_corpora.py, `python scripts/fetch_eval_data.py`). A real server
process with the default configuration (multilingual model, hybrid search).

1. Cross-lingual: the English sentences are indexed through AnalyzeText; each
   human translation is a Search query (hybrid, the default, and dense) whose
   only relevant document is its English original. Baseline in the same run:
   the same model called directly (ONNX, the service's backend) with exact
   cosine search over the same documents. Figures per language: recall@1 and
   @10 of service and model, the ratio; targets: service >= 0.98x direct,
   mean recall@10 >= 0.95.
2. Same language, ja/zh/ko/th: each language's translations are indexed (one
   tenant per language); queries are the longest piece of a sentence between
   its own punctuation and spaces, never the whole sentence (the writer's cut,
   so no tokenizer is favoured), and for Korean also the longest word that
   ends in a particle, without it ("비행기가" -> "비행기": what a person
   types). success@10 of hybrid (default) vs dense through the service;
   target: hybrid >= dense.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _corpora import LANGUAGES, parallel_sentences  # noqa: E402
from _harness import result, start_server  # noqa: E402
from lexical_multilingual import keyword, longest_piece  # noqa: E402

SAME_LANGUAGE = ("ja", "zh", "ko", "th")
BATCH = 32  # texts per AnalyzeText call
CLIENTS = 8  # concurrent search clients (figures are per query; this only saves time)


def index(stub: object, tenant: str, texts: dict[str, str]) -> None:
    from understanding.v1 import understanding_pb2 as pb

    md = [("x-tenant-id", tenant)]
    items = list(texts.items())
    for start in range(0, len(items), BATCH):
        batch = [pb.TextItem(media_id=m, text=t) for m, t in items[start : start + BATCH]]
        stub.AnalyzeText(pb.AnalyzeTextRequest(items=batch), metadata=md, timeout=300)  # type: ignore[attr-defined]


def ranks(stub: object, tenant: str, queries: Sequence[tuple[str, str]], *, dense: bool) -> list[int]:
    """Rank (0-based) of each query's target among the top 10 hits, 10 when absent."""
    from understanding.v1 import understanding_pb2 as pb

    md = [("x-tenant-id", tenant)]
    mode = pb.SEARCH_MODE_DENSE if dense else pb.SEARCH_MODE_UNSPECIFIED

    def one(query: tuple[str, str]) -> int:
        text, target = query
        hits = stub.Search(pb.SearchRequest(text=text, top_k=10, mode=mode), metadata=md, timeout=120).hits  # type: ignore[attr-defined]
        ids = [h.media_id for h in hits]
        return ids.index(target) if target in ids else 10

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, queries))


def at(ranked: Sequence[int], k: int) -> float:
    return float(np.mean([r < k for r in ranked])) if ranked else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--queries", type=int, default=0, help="queries per language (a fixed subset; 0 = all)")
    parser.add_argument("--quick", action="store_true", help="300 sentences; ko, ja, de; ja and ko same-language")
    args = parser.parse_args()
    languages = ("ko", "ja", "de") if args.quick else tuple(args.languages.split(","))
    same_languages = ("ja", "ko") if args.quick else SAME_LANGUAGE
    corpus = parallel_sentences(tuple(sorted({*languages, *same_languages})), limit=300 if args.quick else 0)
    doc_id = {sid: f"en-{i}" for i, sid in enumerate(corpus.english)}

    import grpc

    from understanding.models.embedder import MULTILINGUAL, load_text_encoder, resolve_model
    from understanding.v1 import understanding_pb2_grpc

    base = os.environ.get("UNDERSTANDING_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "understanding")
    encoder = load_text_encoder(resolve_model(MULTILINGUAL), backend="onnx", cache_dir=pathlib.Path(base) / "models")
    server = start_server()
    try:
        channel = grpc.insecure_channel(server.target)
        stub = understanding_pb2_grpc.UnderstandingStub(channel)
        index(stub, "xling", {doc_id[s]: t for s, t in corpus.english.items()})
        docs = np.stack(encoder.encode(list(corpus.english.values())))
        column = {doc_id[s]: i for i, s in enumerate(corpus.english)}
        print(f"Firefox ESR {corpus.version}: {len(corpus.english)} English documents; model {encoder.model_ref.name}")
        print("\n1. cross-lingual: a translation finds its English original")
        print(
            f"  {'lang':4s} {'queries':>7s} {'svc R@1':>8s} {'svc R@10':>9s} {'dense R@10':>10s} {'model R@1':>9s} {'model R@10':>10s}"
        )
        means: dict[str, list[float]] = {"svc1": [], "svc10": [], "dir1": [], "dir10": []}
        for lang in languages:
            pairs = list(corpus.translations[lang].items())
            if args.queries:
                pairs = sorted(pairs, key=lambda p: hashlib.sha256(p[0].encode()).hexdigest())[: args.queries]
            queries = [(text, doc_id[sid]) for sid, text in pairs]
            hybrid = ranks(stub, "xling", queries, dense=False)
            dense = ranks(stub, "xling", queries, dense=True)
            vectors = np.stack(encoder.encode([q for q, _ in queries]))
            scores = vectors @ docs.T
            target = scores[np.arange(len(queries)), [column[t] for _, t in queries]]
            direct = list((scores > target[:, None]).sum(1))
            row = (at(hybrid, 1), at(hybrid, 10), at(dense, 10), at(direct, 1), at(direct, 10))
            print(
                f"  {lang:4s} {len(queries):7d} {row[0]:8.3f} {row[1]:9.3f} {row[2]:10.3f} {row[3]:9.3f} {row[4]:10.3f}"
            )
            for key, value in zip(("svc1", "svc10", "dir1", "dir10"), (row[0], row[1], row[3], row[4]), strict=True):
                means[key].append(value)
            result(f"xling service R@10 vs model, {lang}", row[1], row[4], ">= 0.98")
            result(f"xling service R@1 vs model, {lang}", row[0], row[3], "report")
        mean = {k: float(np.mean(v)) for k, v in means.items()}
        print(
            f"  mean {'':7s} {mean['svc1']:8.3f} {mean['svc10']:9.3f} {'':10s} {mean['dir1']:9.3f} {mean['dir10']:10.3f}"
        )
        result("xling service mean R@10 vs model", mean["svc10"], mean["dir10"], ">= 0.98, >= 0.95 absolute")
        result("xling service mean R@1 vs model", mean["svc1"], mean["dir1"], "report")

        print("\n2. same language: a piece of a sentence finds the sentence (success@10)")
        print(f"  {'lang':4s} {'task':8s} {'queries':>7s} {'hybrid':>7s} {'dense':>7s}")
        for lang in same_languages:
            translated = corpus.translations[lang]
            ids = {sid: f"{lang}-{i}" for i, sid in enumerate(translated)}
            index(stub, f"same-{lang}", {ids[s]: t for s, t in translated.items()})
            tasks: dict[str, list[tuple[str, str]]] = {"piece": [], "keyword": []}
            for sid, text in translated.items():
                piece = longest_piece(text)
                if piece and len(piece) < len(text):
                    tasks["piece"].append((piece, ids[sid]))
                word = keyword(text, lang) if lang == "ko" else ""
                if word:
                    tasks["keyword"].append((word, ids[sid]))
            for task, queries in tasks.items():
                if not queries:
                    continue
                if args.queries:
                    queries = queries[: args.queries]
                hybrid10 = at(ranks(stub, f"same-{lang}", queries, dense=False), 10)
                dense10 = at(ranks(stub, f"same-{lang}", queries, dense=True), 10)
                print(f"  {lang:4s} {task:8s} {len(queries):7d} {hybrid10:7.3f} {dense10:7.3f}")
                result(f"same-language {lang} {task}: hybrid vs dense S@10", hybrid10, dense10, ">= 1.0")
        channel.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
