"""Lexical units of text in any script: words, or character bigrams where words are not spaced.

The BM25 side of hybrid search (sinks/lexical.py) cannot split Japanese,
Chinese or Thai on spaces: a sentence would become one or two giant "words"
that no query matches. Korean is spaced, but a word carries its particle
("도쿄행", "비행기가"), so the query "도쿄" or "비행기" would miss it. `units`
therefore yields:

- overlapping character bigrams over runs of Han, kana, Hangul and Thai
  letters, as Lucene's CJKBigramFilter does for CJK (a run of one character
  is kept as a unigram). Recall-oriented and dictionary-free: any substring
  of two or more characters shares terms with the text, whatever its
  language, so documents and queries are always cut the same way (a
  dictionary segmenter can cut a short query differently from the sentence
  it came from; benchmarks/lexical_multilingual.py measures both);
- words (`\\w+` runs) everywhere else, left to the service's word analysis
  (accent folding, stop words, stemming) in sinks/lexical.py.

The segmentation depends on the script only, never on a detected language:
a mixed text (code-switching, a Korean post quoting an English name) is cut
correctly piece by piece. `terms` and the `icu` method (ICU's dictionary
word segmentation, `icu4py`, optional) serve the benchmark's comparison.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

METHODS = ("auto", "bigram", "icu")
# Languages whose words are not delimited by spaces (ko: particles attach to words).
SEGMENTED = frozenset({"ja", "zh", "th", "ko"})
_ICU_LANGUAGES = frozenset({"ja", "zh", "th"})

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA = r"\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_HANGUL = r"\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
_THAI = r"\u0e00-\u0e7f"
_BIGRAM_RUN = re.compile(f"[{_HAN}{_KANA}{_HANGUL}{_THAI}]+")
_HANGUL_RUN = re.compile(f"[{_HANGUL}]+")
_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """NFKC (full-width forms, compatibility characters) and lower case: the same for documents and queries."""
    return unicodedata.normalize("NFKC", text).lower()


def units(text: str) -> Iterator[tuple[str, bool]]:
    """(unit, is_gram) in order: words outside the bigram scripts, bigrams (or a lone character) inside them.

    `text` should be `normalize`d first.
    """
    position = 0
    for run in _BIGRAM_RUN.finditer(text):
        for word in _WORD.findall(text[position : run.start()]):
            yield word, False
        for gram in _bigrams(run.group()):
            yield gram, True
        position = run.end()
    for word in _WORD.findall(text[position:]):
        yield word, False


def has_grams(text: str) -> bool:
    """Whether `text` has letters of a script cut into bigrams."""
    return _BIGRAM_RUN.search(text) is not None


def terms(text: str, language: str, *, method: str = "bigram") -> list[str]:
    """The lexical terms of `text` written in `language` (ISO 639-1, or `und`), in order (benchmarks)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    text = normalize(text)
    if method == "auto":
        method = "icu" if _icu_available() else "bigram"
    if method == "icu" and language in _ICU_LANGUAGES:
        return list(_icu_terms(text, language))
    return [unit for unit, _ in units(text)]


def _bigrams(run: str) -> Iterator[str]:
    """Bigrams of characters, a character being a letter with its combining marks (Thai vowels, tones)."""
    chars: list[str] = []
    for ch in run:
        if chars and unicodedata.category(ch).startswith("M"):
            chars[-1] += ch
        else:
            chars.append(ch)
    if len(chars) == 1:
        yield chars[0]
        return
    for i in range(len(chars) - 1):
        yield chars[i] + chars[i + 1]


def _icu_terms(text: str, language: str) -> Iterator[str]:
    """ICU word segments that contain a letter or digit; Hangul inside them as bigrams."""
    from icu4py.breakers import WordBreaker

    for segment in WordBreaker(text, language):
        if not any(ch.isalnum() for ch in segment):
            continue
        if _HANGUL_RUN.search(segment):
            yield from (unit for unit, _ in units(segment))
        else:
            yield segment


@lru_cache(maxsize=1)
def _icu_available() -> bool:
    try:
        import icu4py.breakers  # noqa: F401
    except ImportError:
        return False
    return True


def pretokenized(text: str, language: str, *, method: str = "bigram") -> str:
    """The terms joined by spaces: what a whitespace-tokenizing BM25 model (Qdrant's) should index."""
    return " ".join(terms(text, language, method=method))


def describe() -> dict[str, Any]:
    """How text is cut (for logs and benchmarks)."""
    return {"segmented_scripts": "Han, kana, Hangul, Thai: character bigrams", "icu_available": _icu_available()}
