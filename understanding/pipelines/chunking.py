"""Split long text into overlapping word windows the embedder can see whole.

all-MiniLM-L6-v2 truncates at 256 word pieces; ~96 words stay well under that
for most languages, and the overlap keeps a phrase cut at a boundary findable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\S+")


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
