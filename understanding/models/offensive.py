"""Offensive language in English text: `alt-profanity-check`'s trained linear model.

The package (MIT, v1.9.1) ships a TF-IDF vectorizer (unigrams, English stop words) and a
linear SVM calibrated to probabilities (`CalibratedClassifierCV`, sigmoid), pickled with
scikit-learn 1.9.1; the package is released in lock-step with scikit-learn, and a pickle from
another scikit-learn version is refused at load time instead of silently mis-scoring.

**English only.** The vocabulary is English words: text in other languages scores low whatever
it says (measured in benchmarks/moderation_direct.py on Spanish and Italian offensive
fortunes), so `LANGUAGES` is what callers check before trusting a low score; other languages
need the multilingual zero-shot signal.

Why a window: the model was trained on short texts (tweets, comments); in a long chunk one
insult is diluted by the TF-IDF normalisation, so `score_text` scores sentence windows and
reports the worst one, with its span and the words that weighed most (the evidence).

Why de-obfuscation: a bag of words misses "f*u*c*k", "sh1t", "ＦＵＣＫ", "f u c k" and zalgo
text, which is how people write past filters; each window is also scored after NFKC, mark
stripping, letter-spacing collapse and leetspeak mapping (`deobfuscate`), and the higher score
counts (measured on rustrict's evasion test list in benchmarks/moderation_direct.py).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import pathlib
import re
import threading
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from understanding.domain import ModelRef

__all__ = [
    "LANGUAGES",
    "OffensiveModelError",
    "OffensiveScore",
    "OffensiveTextModel",
    "ProfanityCheckModel",
    "Span",
    "deobfuscate",
]

LANGUAGES = frozenset({"en"})
_WINDOW_CHARS = 280  # the length of the texts the model learnt from
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？\n])\s+")


class OffensiveModelError(RuntimeError):
    """The packaged model is missing or was pickled by another scikit-learn (a startup error)."""


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    text: str
    weight: float  # the word's contribution to the decision (positive: towards offensive)


@dataclass(frozen=True, slots=True)
class OffensiveScore:
    """Probability that a text is offensive, and where: the worst window and its heaviest words."""

    score: float
    start: int
    end: int
    words: tuple[Span, ...]
    model: ModelRef


class OffensiveTextModel(Protocol):
    model: ModelRef
    languages: frozenset[str]

    def warm_up(self) -> None: ...

    def predict(self, texts: Sequence[str]) -> list[float]: ...

    def score_text(self, text: str) -> OffensiveScore: ...

    def score_texts(self, texts: Sequence[str], *, evidence_min: float = 0.3) -> list[OffensiveScore]: ...


def _package_dir() -> pathlib.Path:
    # Located, not imported: `profanity_check` unpickles its model at import time.
    spec = importlib.util.find_spec("profanity_check")
    if spec is None or not spec.submodule_search_locations:
        raise OffensiveModelError("alt-profanity-check is not installed (it is pinned in requirements.lock)")
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "data"


class ProfanityCheckModel:
    """Scores texts in [0, 1]; thread-safe (scikit-learn predict holds no state)."""

    languages = LANGUAGES

    def __init__(self, data_dir: pathlib.Path | None = None) -> None:
        import joblib
        from sklearn.exceptions import InconsistentVersionWarning

        folder = data_dir or _package_dir()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", InconsistentVersionWarning)
                self._vectorizer: Any = joblib.load(folder / "vectorizer.joblib")
                self._classifier: Any = joblib.load(folder / "model.joblib")
        except InconsistentVersionWarning as exc:
            raise OffensiveModelError(
                f"alt-profanity-check's model was pickled by another scikit-learn than the installed one: {exc}; "
                "install the alt-profanity-check release that matches scikit-learn's version"
            ) from exc
        except (OSError, EOFError) as exc:
            raise OffensiveModelError(f"cannot load the offensive-language model from {folder}: {exc}") from exc
        try:
            version = importlib.metadata.version("alt-profanity-check")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        self.model = ModelRef(name="alt-profanity-check", version=version)
        # Mean of the calibrated folds' SVM weights: which words push a text towards "offensive".
        coefs = [c.estimator.coef_.ravel() for c in self._classifier.calibrated_classifiers_]
        self._weights = np.mean(coefs, axis=0)
        self._folds = _SigmoidFolds.of(self._classifier)
        self._vocabulary: dict[str, int] = self._vectorizer.vocabulary_
        self._token = re.compile(self._vectorizer.token_pattern)
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self.predict(["warm up"])

    def predict(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        matrix = self._vectorizer.transform(list(texts))
        if self._folds is not None:
            return [float(p) for p in self._folds.positive(matrix)]
        return [float(p) for p in self._classifier.predict_proba(matrix)[:, 1]]

    def score_text(self, text: str) -> OffensiveScore:
        """The worst window of `text` (sentences packed up to ~280 characters)."""
        return self.score_texts([text])[0]

    def score_texts(self, texts: Sequence[str], *, evidence_min: float = 0.3) -> list[OffensiveScore]:
        """`score_text` for many texts with one model call; words are looked up only for texts
        scoring at least `evidence_min` (the evidence a policy shows)."""
        windows = [_windows(text) for text in texts]
        pieces = [text[s:e] for text, spans in zip(texts, windows, strict=True) for s, e in spans]
        both = self.predict(pieces + [deobfuscate(piece) for piece in pieces])  # one model call
        plain, revealed = both[: len(pieces)], both[len(pieces) :]
        results: list[OffensiveScore] = []
        position = 0
        for text, spans in zip(texts, windows, strict=True):
            if not spans:
                results.append(OffensiveScore(0.0, 0, 0, (), self.model))
                continue
            scores = [
                max(a, b) for a, b in zip(plain[position : position + len(spans)], revealed[position:], strict=False)
            ]
            position += len(spans)
            best = int(np.argmax(scores))
            start, end = spans[best]
            words = self._heaviest_words(text, start, end) if scores[best] >= evidence_min else ()
            results.append(OffensiveScore(scores[best], start, end, words, self.model))
        return results

    def _heaviest_words(self, text: str, start: int, end: int, top: int = 3) -> tuple[Span, ...]:
        row = self._vectorizer.transform([text[start:end]])
        tfidf = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
        spans = []
        for match in self._token.finditer(text, start, end):
            index = self._vocabulary.get(match.group().lower())
            if index is None or index not in tfidf:
                continue
            weight = float(tfidf[index] * self._weights[index])
            if weight > 0:
                spans.append(Span(match.start(), match.end(), match.group(), weight))
        spans.sort(key=lambda s: -s.weight)
        return tuple(spans[:top])


@dataclass(frozen=True, slots=True)
class _SigmoidFolds:
    """scikit-learn's `CalibratedClassifierCV(LinearSVC, method="sigmoid").predict_proba`
    for the positive class, as one sparse product: the mean over folds of
    expit(-(a * (x . w + c) + b)). Same numbers; sklearn's version re-validates its
    inputs and refits label encoders in every fold on every call, which cost ~15 ms of
    CPU per AnalyzeText (more than the embedding model)."""

    weights: np.ndarray  # (features, folds)
    intercepts: np.ndarray  # (folds,)
    a: np.ndarray  # (folds,) sigmoid calibration slope
    b: np.ndarray  # (folds,) sigmoid calibration offset

    @classmethod
    def of(cls, classifier: Any) -> _SigmoidFolds | None:
        """The folds of a binary, sigmoid-calibrated linear classifier; None for any other
        shape (then sklearn's own predict_proba is used)."""
        try:
            folds = classifier.calibrated_classifiers_
            if classifier.method != "sigmoid" or list(classifier.classes_) != [0, 1]:
                return None
            if any(len(f.calibrators) != 1 or list(f.estimator.classes_) != [0, 1] for f in folds):
                return None
            weights = np.stack([np.asarray(f.estimator.coef_, dtype=np.float64).ravel() for f in folds], axis=1)
            intercepts = np.array([float(np.ravel(f.estimator.intercept_)[0]) for f in folds])
            a = np.array([float(f.calibrators[0].a_) for f in folds])
            b = np.array([float(f.calibrators[0].b_) for f in folds])
        except (AttributeError, TypeError, ValueError, IndexError):
            return None
        return cls(weights, intercepts, a, b)

    def positive(self, matrix: Any) -> np.ndarray:
        """P(offensive) per row of the vectorizer's sparse `matrix`."""
        from scipy.special import expit  # scikit-learn's own dependency

        decision: np.ndarray = np.asarray(matrix @ self.weights) + self.intercepts  # (n, folds)
        positive: np.ndarray = np.mean(expit(-(self.a * decision + self.b)), axis=1)  # as sklearn's calibrators
        return positive


_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "$": "s", "@": "a",
                       "!": "i", "|": "l", "€": "e", "¢": "c", "µ": "u", "μ": "u", "κ": "k"})  # fmt: skip
_SPACED_LETTERS = re.compile(r"\b(?:\w[\s*._\-+^#~]{1,2}){2,}\w\b")
_MIXED_TOKEN = re.compile(r"[\w$@!|€¢µμκ*]+")


def deobfuscate(text: str) -> str:
    """What an evasive spelling says: NFKC (full-width, styled letters), combining marks
    dropped (zalgo, "fučk"), letters spaced out or starred collapsed ("f u c k", "f*u*c*k"),
    leetspeak mapped in tokens that mix letters with digits or symbols ("sh1t", "$hit")."""
    folded = unicodedata.normalize("NFKC", text)
    folded = "".join(c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c))
    folded = _SPACED_LETTERS.sub(lambda m: re.sub(r"[\s*._\-+^#~]", "", m.group()), folded)

    def token(match: re.Match[str]) -> str:
        word = match.group()
        if any(c.isalpha() for c in word) and any(not c.isalpha() for c in word):
            return word.translate(_LEET).replace("*", "")
        return word

    return _MIXED_TOKEN.sub(token, folded)


def _windows(text: str) -> list[tuple[int, int]]:
    """Sentence spans packed greedily into windows of at most ~280 characters."""
    bounds: list[tuple[int, int]] = []
    position = 0
    for match in _SENTENCE_END.finditer(text):
        bounds.append((position, match.start()))
        position = match.end()
    bounds.append((position, len(text)))
    windows: list[tuple[int, int]] = []
    for start, end in bounds:
        if not text[start:end].strip():
            continue
        while end - start > _WINDOW_CHARS * 2:  # a run-on text without sentence ends: hard cut at spaces
            cut = text.rfind(" ", start, start + _WINDOW_CHARS)
            cut = cut if cut > start else start + _WINDOW_CHARS
            windows.append((start, cut))
            start = cut + 1
        if windows and end - windows[-1][0] <= _WINDOW_CHARS:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows
