"""Lexical term weights for hybrid search: BM25-style sparse vectors.

Dense embeddings capture meaning but blur exact names, rare words and codes
("XJ-4471", a surname, a product id). Every point therefore also stores a
sparse vector of its text's terms (BM25 term-frequency weights); Qdrant applies
the IDF factor at query time (`Modifier.IDF` on the sparse vector), so rare
terms weigh most, and hybrid queries fuse both rankings with RRF.

Qdrant Edge's `Bm25` computes the vectors for both backends: no model file, no
download, and the same token ids wherever the store runs. The word tokenizer
keeps numbers and code fragments as terms (the multilingual one drops pure
numbers); accents are folded, English stop words removed and words stemmed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import qdrant_edge as qe

# Typical chunk length in terms after stop words (chunks are <= 96 words):
# BM25 length normalisation is relative to it.
AVERAGE_CHUNK_TERMS = 60.0
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class SparseTerms:
    """Term ids and weights, the shape of a Qdrant sparse vector."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.indices)


class LexicalEncoder:
    """Turns text into sparse term vectors: documents get BM25 TF weights, queries 1.0 per term."""

    def __init__(self) -> None:
        self._bm25 = qe.Bm25(qe.Bm25Config(avg_len=AVERAGE_CHUNK_TERMS, ascii_folding=True))

    def document(self, text: str) -> SparseTerms:
        v = self._bm25.embed_document(text)
        return SparseTerms(tuple(v.indices), tuple(float(x) for x in v.values))

    def query(self, text: str) -> SparseTerms:
        v = self._bm25.embed_query(text)
        return SparseTerms(tuple(v.indices), tuple(float(x) for x in v.values))

    def matched_terms(self, query: str, text: str) -> tuple[str, ...]:
        """Query words found in `text`, literally or as the same stemmed term (sorted, lower case)."""
        words = {w.lower() for w in _WORD.findall(query) if len(w) > 1}
        if not words:
            return ()
        literal = {w.lower() for w in _WORD.findall(text)}
        doc_terms = set(self._bm25.embed_query(text).indices)
        found = []
        for word in words:
            if word in literal:
                found.append(word)
                continue
            terms = self._bm25.embed_query(word).indices
            if terms and set(terms) <= doc_terms:
                found.append(word)
        return tuple(sorted(found))


_shared: LexicalEncoder | None = None


def encoder() -> LexicalEncoder:
    """The process-wide encoder (stateless, so one is enough)."""
    global _shared
    if _shared is None:
        _shared = LexicalEncoder()
    return _shared
