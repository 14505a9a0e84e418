"""LocalAgreement-2: commit only the words two consecutive hypotheses agree on.

Whisper re-decodes the growing utterance every step, and its last words
change as more audio arrives ("I scream" -> "ice cream"). Following
whisper_streaming (Machacek et al., 2023, "Turning Whisper into Real-Time
Transcription System"), a word becomes stable once two consecutive
hypotheses share the prefix that ends with it; a stable word never changes
again, so a client can show it as final text. Words are compared case- and
punctuation-insensitively ("there" / "there." agree); the newer spelling is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from understanding.domain import Word

__all__ = ["LocalAgreement", "same_word"]

_NOT_WORD = re.compile(r"[^\w']+")
# A word starting this much before the last committed word's end is a repeat of it.
_OVERLAP_S = 0.1
# Hypotheses restate up to this many committed words at their start ("... the cat | the cat sat").
_MAX_NGRAM = 5


def _key(text: str) -> str:
    return _NOT_WORD.sub("", text.casefold())


def same_word(a: Word, b: Word) -> bool:
    return _key(a.text) == _key(b.text)


class LocalAgreement:
    """The stable prefix of an utterance's successive hypotheses.

    `insert` takes a new hypothesis (absolute times) and returns the words it
    commits; `tentative` is what the latest hypothesis says after them.
    """

    def __init__(self) -> None:
        self.committed: list[Word] = []
        self._previous: list[Word] = []
        self._committed_end_s = 0.0

    @property
    def committed_end_s(self) -> float:
        return self._committed_end_s

    @property
    def tentative(self) -> list[Word]:
        return list(self._previous)

    def insert(self, hypothesis: Sequence[Word]) -> list[Word]:
        """Compare with the previous hypothesis; commit their common prefix."""
        new = self._after_committed(hypothesis)
        agreed: list[Word] = []
        for mine, theirs in zip(new, self._previous, strict=False):
            if not same_word(mine, theirs):
                break
            agreed.append(mine)
        self._commit(agreed)
        self._previous = new[len(agreed) :]
        return agreed

    def commit_all(self, hypothesis: Sequence[Word]) -> list[Word]:
        """The utterance is over: its last hypothesis is final, past the committed words."""
        words = self._after_committed(hypothesis)
        self._commit(words)
        self._previous = []
        return words

    def take_committed(self, until_s: float | None = None) -> list[Word]:
        """Remove and return committed words (ending by `until_s`, or all) once they went into a final segment."""
        if until_s is None:
            taken, self.committed = self.committed, []
        else:
            n = sum(1 for w in self.committed if w.end_s <= until_s + 1e-6)
            taken, self.committed = self.committed[:n], self.committed[n:]
        return taken

    def reset(self) -> None:
        """Start a new utterance (committed words already taken)."""
        self._previous = []

    def _commit(self, words: Sequence[Word]) -> None:
        if words:
            self.committed.extend(words)
            self._committed_end_s = max(self._committed_end_s, words[-1].end_s)

    def _after_committed(self, hypothesis: Sequence[Word]) -> list[Word]:
        """The hypothesis without what is already committed: words that end before the
        committed end, and a restated n-gram of the committed tail at its start."""
        new = [w for w in hypothesis if w.start_s > self._committed_end_s - _OVERLAP_S and _key(w.text)]
        if new and self.committed and abs(new[0].start_s - self._committed_end_s) < 1.0:
            tail = self.committed
            for n in range(min(_MAX_NGRAM, len(tail), len(new)), 0, -1):
                if all(same_word(a, b) for a, b in zip(tail[-n:], new[:n], strict=True)):
                    return new[n:]
        return new
