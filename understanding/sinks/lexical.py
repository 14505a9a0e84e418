"""Lexical term weights for hybrid search: BM25-style sparse vectors, in any language.

Dense embeddings capture meaning but blur exact names, rare words and codes
("XJ-4471", a surname, a product id). Every point therefore also stores a
sparse vector of its text's terms (BM25 term-frequency weights); Qdrant applies
the IDF factor at query time (`Modifier.IDF` on the sparse vector), so rare
terms weigh most, and hybrid queries fuse both rankings with RRF.

Terms (sinks/tokenize.py cuts the text): words are analysed by Qdrant Edge's
`Bm25` word pipeline (numbers and code fragments kept, accents folded, English
stop words removed, words stemmed); Japanese, Chinese, Korean and Thai become
character bigrams, so a keyword finds the sentence it sits in. One analysis
for every language: a query's language is often unknown or wrong (a name, a
code, two words), and documents and queries must be cut the same way.

Term ids are Qdrant's token hashes, the same wherever the store runs.

Cross-lingual gate. A document's terms are stored twice: as they are, and
scoped to the document's detected language (the same ids mixed with the
language code). A query of a few terms (keywords, a name, a code) is matched
literally in every language. A longer query whose language is detected with
confidence (a sentence) is matched only against documents in its own
language: its incidental shared terms (a brand name, a number, a loanword)
would otherwise rank unrelated foreign-language documents lexically and
drown the dense ranking that finds its translation. Cross-lingual sentence
queries thus rank as dense-only, same-language ones keep their lexical
evidence (benchmarks/crosslingual_service.py measures both).
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import qdrant_edge as qe

from understanding.domain import Language
from understanding.sinks import tokenize

# Typical chunk length in terms after stop words (chunks are <= 96 words):
# BM25 length normalisation is relative to it.
AVERAGE_CHUNK_TERMS = 60.0
# BM25 term-frequency saturation and length normalisation (Qdrant's defaults).
BM25_K = 1.2
BM25_B = 0.75
# The gate (see the module docstring): a query is scoped to its language from
# this many distinct terms on, when detected with at least this probability.
# py3langid spreads its probability over a script's languages (zh/wuu/ja, ar/fa),
# so a right Chinese or Arabic sentence often scores 0.55-0.85: 0.5 is "detected"
# (below it the detector says `und`); a wrong language above it is ~1% of
# sentences (benchmarks/crosslingual_service.py measures the gate both ways).
SCOPE_MIN_TERMS = 4
SCOPE_MIN_PROBABILITY = 0.5
# Codes the detector confuses within one written language: scoped as one (py3langid
# calls some Chinese sentences Wu Chinese).
_SCOPE_ALIASES = {"wuu": "zh"}
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class SparseTerms:
    """Term ids and weights, the shape of a Qdrant sparse vector."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.indices)


def scoped(term: int, language: str) -> int:
    """The id of `term` scoped to `language` (a 32-bit hash, as Qdrant's own term ids)."""
    return zlib.crc32(f"{_SCOPE_ALIASES.get(language, language)}\x1f{term}".encode())


def scopes_to(language: Language | None, n_terms: int) -> str:
    """The language a query of `n_terms` distinct terms is scoped to, or "" (every language)."""
    if language is None or language.code in ("", "und") or n_terms < SCOPE_MIN_TERMS:
        return ""
    return language.code if language.probability >= SCOPE_MIN_PROBABILITY else ""


class LexicalEncoder:
    """Turns text into sparse term vectors: documents get BM25 TF weights, queries 1.0 per term."""

    def __init__(self) -> None:
        self._words = qe.Bm25(qe.Bm25Config(avg_len=AVERAGE_CHUNK_TERMS, ascii_folding=True))
        # Bigrams are terms already: no stemming, no stop words.
        self._grams = qe.Bm25(
            qe.Bm25Config(
                tokenizer=qe.TokenizerType.Whitespace,
                stemmer=qe.DisabledStemmer(),
                stopwords=qe.StopwordsSet(custom=set()),
                lowercase=False,
            )
        )
        self._ids = lru_cache(maxsize=1 << 16)(self._unit_ids)

    def _unit_ids(self, unit: str, is_gram: bool) -> tuple[int, ...]:
        """Term ids of one word (none for a stop word) or one bigram."""
        return tuple(int(i) for i in (self._grams if is_gram else self._words).embed_query(unit).indices)

    def term_ids(self, text: str) -> list[int]:
        """The text's term ids in order, repeats kept (term frequency)."""
        out: list[int] = []
        for unit, is_gram in tokenize.units(tokenize.normalize(text)):
            out.extend(self._ids(unit, is_gram))
        return out

    def document(self, text: str, language: str = "") -> SparseTerms:
        """BM25 TF weights of the text's terms; with a `language`, also scoped to it (see the gate)."""
        counts = Counter(self.term_ids(text))
        if not counts:
            return SparseTerms((), ())
        norm = BM25_K * (1.0 - BM25_B + BM25_B * sum(counts.values()) / AVERAGE_CHUNK_TERMS)
        weights = {term: tf * (BM25_K + 1.0) / (tf + norm) for term, tf in counts.items()}
        if language and language != "und":
            weights.update({scoped(term, language): w for term, w in list(weights.items())})
        ordered = sorted(weights.items())
        return SparseTerms(tuple(t for t, _ in ordered), tuple(w for _, w in ordered))

    def query(self, text: str, language: Language | None = None) -> SparseTerms:
        """1.0 per distinct term: in every language, or scoped to the query's (see the gate)."""
        terms = sorted(set(self.term_ids(text)))
        scope = scopes_to(language, len(terms))
        if scope:
            terms = sorted({scoped(term, scope) for term in terms})
        return SparseTerms(tuple(terms), (1.0,) * len(terms))

    def matched_terms(self, query: str, text: str) -> tuple[str, ...]:
        """Query words found in `text`: literally, as the same stemmed term, or (Japanese, Chinese,
        Korean, Thai) as a run of characters the text contains (sorted, lower case)."""
        words = {w for w in _WORD.findall(tokenize.normalize(query)) if len(w) > 1}
        if not words:
            return ()
        normalized = tokenize.normalize(text)
        literal = set(_WORD.findall(normalized))
        doc_terms = set(self.term_ids(text))
        found = []
        for word in words:
            if word in literal or (tokenize.has_grams(word) and word in normalized):
                found.append(word)
                continue
            terms = set(self.term_ids(word))
            if terms and terms <= doc_terms:
                found.append(word)
        return tuple(sorted(found))


_shared: LexicalEncoder | None = None


def encoder() -> LexicalEncoder:
    """The process-wide encoder (stateless but for its cache, so one is enough)."""
    global _shared
    if _shared is None:
        _shared = LexicalEncoder()
    return _shared
