"""Language identification for text (py3langid: ships its model, ~1 ms per text)."""

from __future__ import annotations

import threading
from functools import lru_cache

from understanding.domain import Language

UNDETERMINED = Language(code="und", probability=0.0)


class LanguageDetector:
    """ISO 639-1 language of a text, or `und` when the evidence is too weak."""

    def __init__(self, *, min_probability: float = 0.5, min_letters: int = 3) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._min_probability = min_probability
        self._min_letters = min_letters
        self._lock = threading.Lock()
        # The same text is often asked twice (a one-chunk text: the media and its chunk).
        self._classify = lru_cache(maxsize=1024)(self._classify_uncached)

    def _classify_uncached(self, text: str) -> tuple[str, float]:
        with self._lock:
            code, probability = self._identifier.classify(text)
        return str(code), float(probability)

    def detect(self, text: str) -> Language:
        if sum(ch.isalpha() for ch in text) < self._min_letters:
            return UNDETERMINED
        code, probability = self._classify(text)
        if probability < self._min_probability:
            return Language(code="und", probability=float(probability))
        return Language(code=str(code), probability=float(probability))
