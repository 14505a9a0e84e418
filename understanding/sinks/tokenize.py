"""Lexical terms for languages that do not separate words with spaces (prototype, not wired in).

The BM25 side of hybrid search (sinks/lexical.py) splits on word characters:
a Japanese, Chinese or Thai sentence becomes one or two giant "words" that no
query ever matches, and a Korean word carries its particle ("도쿄행",
"비행기가"), so the query "도쿄" or "비행기" misses it. `terms(text, language)`
gives terms that do match:

- `bigram` (no dependency): overlapping character bigrams over runs of Han,
  kana, Hangul and Thai letters, as Lucene's CJKBigramFilter does for CJK
  (a run of one character is kept as a unigram); other scripts split into
  words. Recall-oriented and dictionary-free: any substring of two or more
  characters of the text shares terms with it.
- `icu`: ICU's dictionary-based word segmentation (`icu4py`, MIT + the
  Unicode licence, ICU 78 bundled) for Japanese, Chinese and Thai, Hangul
  still as bigrams (ICU has no Korean dictionary: it splits only at spaces).
- `auto`: `icu` when icu4py is importable, else `bigram`.

Other languages get NFKC-folded, lower-cased word tokens; English keeps the
service's own analysis (stemming, stop words) in sinks/lexical.py.
`benchmarks/lexical_multilingual.py` compares the methods.
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


def terms(text: str, language: str, *, method: str = "auto") -> list[str]:
    """The lexical terms of `text` written in `language` (ISO 639-1, or `und`), in order."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    text = unicodedata.normalize("NFKC", text).lower()
    if method == "auto":
        method = "icu" if _icu_available() else "bigram"
    if method == "icu" and language in _ICU_LANGUAGES:
        return list(_icu_terms(text, language))
    return list(_bigram_terms(text))


def _bigram_terms(text: str) -> Iterator[str]:
    """Words outside the bigram scripts; bigrams (or a lone character) inside them."""
    position = 0
    for run in _BIGRAM_RUN.finditer(text):
        yield from _WORD.findall(text[position : run.start()])
        yield from _bigrams(run.group())
        position = run.end()
    yield from _WORD.findall(text[position:])


def _bigrams(run: str) -> Iterator[str]:
    """Bigrams of characters, a character being a letter with its combining marks (Thai vowels, tones)."""
    units: list[str] = []
    for ch in run:
        if units and unicodedata.category(ch).startswith("M"):
            units[-1] += ch
        else:
            units.append(ch)
    if len(units) == 1:
        yield units[0]
        return
    for i in range(len(units) - 1):
        yield units[i] + units[i + 1]


def _icu_terms(text: str, language: str) -> Iterator[str]:
    """ICU word segments that contain a letter or digit; Hangul inside them as bigrams."""
    from icu4py.breakers import WordBreaker

    for segment in WordBreaker(text, language):
        if not any(ch.isalnum() for ch in segment):
            continue
        if _HANGUL_RUN.search(segment):
            yield from _bigram_terms(segment)
        else:
            yield segment


@lru_cache(maxsize=1)
def _icu_available() -> bool:
    try:
        import icu4py.breakers  # noqa: F401
    except ImportError:
        return False
    return True


def pretokenized(text: str, language: str, *, method: str = "auto") -> str:
    """The terms joined by spaces: what a whitespace-tokenizing BM25 model (Qdrant's) should index."""
    return " ".join(terms(text, language, method=method))


def describe() -> dict[str, Any]:
    """Which segmentation `auto` uses here (for logs and `understanding config`)."""
    return {"auto": "icu" if _icu_available() else "bigram", "segmented_languages": sorted(SEGMENTED)}
