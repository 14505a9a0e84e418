"""Split long text into overlapping word windows the embedder can see whole.

all-MiniLM-L6-v2 truncates at 256 word pieces; ~96 words stay well under that
for most languages, and the overlap keeps a phrase cut at a boundary findable.

Japanese, Chinese and Thai do not separate words with spaces, so a "word"
there is a unit of a few characters (2 of Han/kana, 4 of Thai: about one
word's worth): a long Japanese text is windowed like a long English one
instead of becoming one chunk the model truncates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The same script ranges as sinks/tokenize.py (Hangul is spaced into words already).
_HAN_KANA = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_THAI = "\u0e00-\u0e7f"
_WORD = re.compile(f"[{_HAN_KANA}]{{1,2}}|[{_THAI}]{{1,4}}|[^\\s{_HAN_KANA}{_THAI}]+")


@dataclass(frozen=True, slots=True)
class TextSpan:
    index: int
    text: str
    start_char: int
    end_char: int


def chunk_text(text: str, *, max_words: int, overlap_words: int) -> list[TextSpan]:
    """Windows of at most `max_words` words, slicing the original text (spacing kept)."""
    if max_words < 1:
        raise ValueError("max_words must be >= 1")
    overlap = min(max(0, overlap_words), max_words - 1)
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not words:
        return []
    spans: list[TextSpan] = []
    step = max_words - overlap
    start = 0
    while True:
        window = words[start : start + max_words]
        a, b = window[0][0], window[-1][1]
        spans.append(TextSpan(index=len(spans), text=text[a:b], start_char=a, end_char=b))
        if start + max_words >= len(words):
            break
        start += step
    return spans
