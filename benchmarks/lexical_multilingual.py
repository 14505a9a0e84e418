"""Hybrid versus dense-only search in languages without spaces, per lexical tokenizer.

    python benchmarks/lexical_multilingual.py [--quick] [--languages ja,zh,ko,th] [--methods ...]

Corpus: the Firefox ESR translations (benchmarks/_corpora.py). For each
language the documents are its ~1,400-1,650 translated sentences and the dense
vectors are USE-m3's. Two query sets, each with one relevant document:

- `span` (same-language keyword search): the longest piece of the sentence
  between punctuation or spaces, never the whole sentence (sentences with one
  piece are skipped). The cut comes from the writer's own punctuation and
  spacing, so no tokenizer is favoured by how the query was made.
  The current `word` tokenizer keeps such a piece as one token, so this
  task is its best case.
- `keyword`: the sentence's longest dictionary word (see
  `keyword`), the query a person types; it favours `icu` (ja/zh/th need the
  optional `icu4py` to make these queries; without it they are skipped).
- `xling` (cross-language): the English original as the query: lexical terms
  rarely match, so this shows what a hybrid default costs a cross-lingual search.

Rankings as the service makes them: dense by cosine (exact here), lexical by
BM25 (Qdrant Edge's `Bm25`: TF weights per document, IDF at query time, 1.0
per query term), fused by the service's own `rrf_page` over `hybrid_window`
candidates. Lexical variants: `word` (the word tokenizer alone), `qdrant-ml`
(Qdrant's multilingual tokenizer: charabia), `bigram` and `icu`
(understanding/sinks/tokenize.py, fed to a whitespace Bm25), and `service`:
the service's own `LexicalEncoder` (bigrams, words, language-scoped terms)
with its cross-lingual gate (documents in their language, queries' language
detected as the service does). Figures:
success@1 and @10 of dense-only, lexical-only and hybrid, per language.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import unicodedata
from collections.abc import Callable

import numpy as np
import qdrant_edge as qe
from scipy import sparse

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _corpora import parallel_sentences  # noqa: E402
from _harness import result  # noqa: E402

from understanding.sinks.lexical import AVERAGE_CHUNK_TERMS, SparseTerms  # noqa: E402
from understanding.sinks.store import hybrid_window, rrf_page  # noqa: E402
from understanding.sinks.tokenize import _icu_available, pretokenized  # noqa: E402

METHODS = ("word", "qdrant-ml", "bigram", "icu", "service")
K = (1, 10)


def longest_piece(text: str) -> str:
    """The longest run between punctuation/spaces, or "" when the text is a single piece."""
    pieces: list[str] = []
    current: list[str] = []
    for ch in text:
        if ch.isspace() or unicodedata.category(ch).startswith("P"):
            if current:
                pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
    if current:
        pieces.append("".join(current))
    pieces = [p for p in pieces if sum(c.isalpha() for c in p) >= 2]
    if len(pieces) < 2:
        return ""
    return max(pieces, key=len)


# Korean particles (and the copula/conjunctive endings users drop in a keyword query).
_KO_PARTICLES = (
    "에서",
    "으로",
    "에게",
    "까지",
    "부터",
    "이",
    "가",
    "을",
    "를",
    "은",
    "는",
    "의",
    "에",
    "도",
    "로",
    "와",
    "과",
    "만",
)


def keyword(text: str, lang: str) -> str:
    """A dictionary-word keyword query taken from the sentence, or "".

    ja/zh/th: the longest ICU word of the longest piece (at least 2
    characters, 3 for Thai; the piece must have two words or more): a content
    word, the kind of query a person types, cut where a dictionary cuts (this
    favours the `icu` method, which segments the documents the same way). ko: the longest word
    that ends in a particle, without the particle ("비행기가" -> "비행기").
    """
    piece = longest_piece(text) or text
    if lang == "ko":
        for word in sorted(text.split(), key=len, reverse=True):
            word = "".join(ch for ch in word if ch.isalnum())
            for particle in _KO_PARTICLES:
                stem = word[: -len(particle)]
                if word.endswith(particle) and len(stem) >= 2 and all("\uac00" <= c <= "\ud7af" for c in stem):
                    return stem
        return ""
    if not _icu_available():
        return ""
    words = [w for w in pretokenized(piece, lang, method="icu").split() if any(c.isalpha() for c in w)]
    if len(words) < 2:
        return ""
    longest = max(words, key=len)  # the first of the longest: a content word, not a particle
    return longest if len(longest) >= (3 if lang == "th" else 2) else ""


class Lexical:
    """BM25 over one document set, the way the store scores it (TF in the document, IDF at query time)."""

    def __init__(self, method: str, lang: str, docs: list[str]) -> None:
        self._service = method == "service"
        if self._service:
            from understanding.models.language import LanguageDetector
            from understanding.sinks.lexical import LexicalEncoder

            self._encoder = LexicalEncoder()
            self._detector = LanguageDetector()
            self._bm25 = qe.Bm25()  # unused: the service encoder makes the vectors
            self._prep = lambda t: t
        elif method == "word":
            self._bm25 = qe.Bm25(qe.Bm25Config(avg_len=AVERAGE_CHUNK_TERMS, ascii_folding=True))
            self._prep: Callable[[str], str] = lambda t: t
        elif method == "qdrant-ml":
            self._bm25 = qe.Bm25(
                qe.Bm25Config(tokenizer=qe.TokenizerType.Multilingual, avg_len=AVERAGE_CHUNK_TERMS, ascii_folding=True)
            )
            self._prep = lambda t: t
        else:
            self._bm25 = qe.Bm25(
                qe.Bm25Config(
                    tokenizer=qe.TokenizerType.Whitespace,
                    avg_len=AVERAGE_CHUNK_TERMS,
                    stemmer=qe.DisabledStemmer(),
                    lowercase=True,
                )
            )
            self._prep = lambda t: pretokenized(t, lang, method=method)
        self._columns: dict[int, int] = {}
        rows, cols, vals = [], [], []
        for row, text in enumerate(docs):
            vector = self._document(text)
            for index, value in zip(vector.indices, vector.values, strict=True):
                rows.append(row)
                cols.append(self._columns.setdefault(int(index), len(self._columns)))
                vals.append(float(value))
        self._matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(len(docs), max(1, len(self._columns))))
        df = np.bincount(np.array(cols, dtype=np.int64), minlength=self._matrix.shape[1]) if cols else np.zeros(1)
        n = len(docs)
        self._idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))  # Qdrant's IDF modifier

    def _document(self, text: str) -> qe.SparseVector | SparseTerms:
        if self._service:  # the document's own language, as the text pipeline stores it
            return self._encoder.document(text, self._detector.detect(text).code)
        return self._bm25.embed_document(self._prep(text))

    def _query(self, text: str) -> list[int]:
        if self._service:
            return list(self._encoder.query(text, self._detector.detect(text)).indices)
        return list(self._bm25.embed_query(self._prep(text)).indices)

    def scores(self, query: str) -> np.ndarray:
        q = np.zeros(self._matrix.shape[1], dtype=np.float64)
        for index in self._query(query):
            column = self._columns.get(int(index))
            if column is not None:
                q[column] = self._idf[column]
        return np.asarray(self._matrix @ q).ravel()


def ranking(scores: np.ndarray, window: int, *, positive_only: bool) -> list[tuple[str, float]]:
    order = np.argsort(-scores, kind="stable")[:window]
    return [(f"{i:06d}", float(scores[i])) for i in order if not positive_only or scores[i] > 0]


def success(ranked_ids: list[str], target: int) -> dict[int, float]:
    key = f"{target:06d}"
    return {k: float(key in ranked_ids[:k]) for k in K}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default="ja,zh,ko,th")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="ja and ko, 300 sentences, word/bigram/service (CI smoke)")
    args = parser.parse_args()
    languages = ("ja", "ko") if args.quick else tuple(args.languages.split(","))
    methods = ["word", "bigram", "service"] if args.quick else [m for m in args.methods.split(",") if m]
    if "icu" in methods and not _icu_available():
        print("icu4py is not installed: the `icu` method is skipped")
        methods.remove("icu")

    from understanding.models.use_embedder import load_use_encoder

    base = os.environ.get("UNDERSTANDING_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "understanding")
    encoder = load_use_encoder(backend="onnx", cache_dir=pathlib.Path(base) / "models", threads=args.threads)
    corpus = parallel_sentences(languages, limit=300 if args.quick else 0)
    window = hybrid_window(max(K))
    print(f"Firefox ESR {corpus.version}; dense: {encoder.model_ref.name}; RRF over {window} candidates per ranking")

    for lang in languages:
        ids = list(corpus.translations[lang])
        docs = [corpus.translations[lang][s] for s in ids]
        doc_vectors = encoder.encode_matrix(docs)
        tasks: dict[str, list[tuple[str, int]]] = {"span": [], "keyword": [], "xling": []}
        for i, (sid, text) in enumerate(zip(ids, docs, strict=True)):
            piece = longest_piece(text)
            if piece and len(piece) < len(text):
                tasks["span"].append((piece, i))
            word = keyword(text, lang)
            if word:
                tasks["keyword"].append((word, i))
            tasks["xling"].append((corpus.english[sid], i))
        lexicals = {m: Lexical(m, lang, docs) for m in methods}
        print(f"\n{lang}: {len(docs)} documents")
        print(f"  {'task':6s} {'queries':>7s} {'ranking':18s} {'S@1':>6s} {'S@10':>6s}")
        for task, queries in tasks.items():
            if not queries:
                print(f"  {task:6s} (no queries: the keyword task needs icu4py for {lang})")
                continue
            q_vectors = encoder.encode_matrix([q for q, _ in queries])
            totals: dict[str, dict[int, float]] = {}

            def add(totals: dict[str, dict[int, float]], name: str, ranked: list[str], target: int) -> None:
                hit = success(ranked, target)
                bucket = totals.setdefault(name, dict.fromkeys(K, 0.0))
                for k in K:
                    bucket[k] += hit[k]

            for (query, target), q_vector in zip(queries, q_vectors, strict=True):
                dense = ranking(doc_vectors @ q_vector, window, positive_only=False)
                add(totals, "dense", [pid for pid, _ in dense], target)
                for method, lexical in lexicals.items():
                    lex = ranking(lexical.scores(query), window, positive_only=True)
                    add(totals, f"lexical {method}", [pid for pid, _ in lex], target)
                    fused = rrf_page([dense, lex], 0, max(K)) if lex else dense[: max(K)]
                    add(totals, f"hybrid {method}", [pid for pid, _ in fused], target)
            for name, bucket in totals.items():
                s1, s10 = bucket[1] / len(queries), bucket[10] / len(queries)
                print(f"  {task:6s} {len(queries):7d} {name:18s} {s1:6.3f} {s10:6.3f}")
            dense10 = totals["dense"][10] / len(queries)
            for method in methods:
                hybrid10 = totals[f"hybrid {method}"][10] / len(queries)
                result(f"lexical_{lang}_{task}_hybrid_{method}_s10", hybrid10, dense10, ">= 1.0 x dense")
        del lexicals


if __name__ == "__main__":
    main()
