"""Zero-shot tagging: compare content embeddings to label descriptions.

The taxonomy is data (a TOML file shipped in the package and replaceable by
configuration), so Trust & Safety can tune labels and thresholds without a
release.

Thresholds are per embedding model: cosine similarities of different models
live on different scales (all-MiniLM-L6-v2 and the multilingual USE model
are both selectable), so a label may give one per model name:

    [[label]]
    id = "topic.sports"
    threshold = 0.30                        # any model without its own
    thresholds = { "universal-sentence-encoder-multilingual-3" = 0.27 }

A label's threshold for a model is, in order: its `thresholds[model]`, its
`threshold`, `[defaults.thresholds][model]`, `[defaults] threshold`.

Scores are relative for the models in `[scoring] relative` (model name =
floor): each label's similarity minus the mean of the text's similarities to
every label. A language (or a text's length and genericness) moves all of a
text's similarities up or down together; the difference does not move with
it, so a translation crosses the same thresholds as its original more often.
A text unlike every label still has a label that is best relative to the
others, so a label also needs its similarity to reach the floor; below it the
label's score is -1 (`BELOW_FLOOR`). Thresholds are calibrated for one way of
scoring: a model's thresholds and its `relative` entry go together.
"""

from __future__ import annotations

import pathlib
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from understanding.domain import InvalidInput, Tag, Vector

BELOW_FLOOR = -1.0  # a relative score whose similarity did not reach the model's floor


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    group: str
    threshold: float  # for a model without its own entry in `thresholds`
    descriptions: tuple[str, ...]
    thresholds: Mapping[str, float] = field(default_factory=dict)  # embedding model name -> threshold

    def threshold_for(self, model: str) -> float:
        return self.thresholds.get(model, self.threshold)


@dataclass(frozen=True, slots=True)
class Taxonomy:
    version: str
    labels: tuple[Label, ...]
    relative: Mapping[str, float] = field(default_factory=dict)  # model name -> floor (relative scoring)

    @classmethod
    def load(cls, path: str | pathlib.Path | None = None) -> Taxonomy:
        """Load the packaged taxonomy, or the file at `path`."""
        if path:
            raw = pathlib.Path(path).read_bytes()
            source = str(path)
        else:
            raw = resources.files("understanding.data").joinpath("taxonomy.toml").read_bytes()
            source = "packaged taxonomy"
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise InvalidInput(f"{source} is not valid TOML: {error}") from error
        defaults = doc.get("defaults", {})
        default_threshold = _threshold(defaults.get("threshold", 0.4), source, "defaults.threshold")
        default_per_model = _per_model(defaults.get("thresholds", {}), source, "defaults.thresholds")
        labels = []
        seen: set[str] = set()
        for entry in doc.get("label", []):
            label_id = str(entry["id"])
            if label_id in seen:
                raise InvalidInput(f"{source}: label {label_id!r} is defined twice")
            seen.add(label_id)
            descriptions = tuple(str(d) for d in entry.get("descriptions", []))
            if not descriptions:
                raise InvalidInput(f"{source}: label {label_id!r} has no descriptions")
            own = entry.get("threshold")
            per_model = _per_model(entry.get("thresholds", {}), source, f"{label_id}.thresholds")
            if own is None:  # the defaults' per-model values, under the label's own ones
                per_model = {**default_per_model, **per_model}
            labels.append(
                Label(
                    id=label_id,
                    group=str(entry.get("group", label_id.split(".", 1)[0])),
                    threshold=default_threshold if own is None else _threshold(own, source, f"{label_id}.threshold"),
                    descriptions=descriptions,
                    thresholds=per_model,
                )
            )
        if not labels:
            raise InvalidInput(f"{source} defines no labels")
        scoring = doc.get("scoring", {})
        if not isinstance(scoring, dict):
            raise InvalidInput(f"{source}: scoring must be a table")
        relative = _per_model(scoring.get("relative", {}), source, "scoring.relative")
        return cls(version=str(doc.get("version", "0")), labels=tuple(labels), relative=relative)


def _threshold(value: object, source: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= float(value) <= 1.0:
        raise InvalidInput(f"{source}: {where} must be a cosine similarity between -1 and 1, not {value!r}")
    return float(value)


def _per_model(table: object, source: str, where: str) -> dict[str, float]:
    if not isinstance(table, dict):
        raise InvalidInput(f"{source}: {where} must be a table of embedding model name = threshold")
    return {str(model): _threshold(value, source, f"{where}.{model}") for model, value in table.items()}


class Tagger:
    """Scores embeddings against every label; keeps those over their threshold for `model`
    (the embedding model's name, which picks the label's per-model threshold)."""

    def __init__(
        self, taxonomy: Taxonomy, encode: Callable[[Sequence[str]], Sequence[Vector]], *, model: str = ""
    ) -> None:
        self.taxonomy = taxonomy
        self.model = model
        descriptions: list[str] = []
        owners: list[int] = []
        for i, label in enumerate(taxonomy.labels):
            descriptions.extend(label.descriptions)
            owners.extend([i] * len(label.descriptions))
        self._matrix = np.stack(list(encode(descriptions))).astype(np.float32)  # (D, dim)
        self._owners = np.asarray(owners)
        # Descriptions are grouped by label, so each label's best score is one
        # reduceat segment: no Python loop per description on the event loop.
        self._starts = np.searchsorted(self._owners, np.arange(len(taxonomy.labels)))
        self._thresholds = np.asarray([label.threshold_for(model) for label in taxonomy.labels], dtype=np.float32)
        self._floor = taxonomy.relative.get(model)  # None: plain cosine similarities

    @property
    def dimension(self) -> int:
        """Size of the vectors this tagger scores (its model's)."""
        return int(self._matrix.shape[1])

    @property
    def relative(self) -> bool:
        """Whether scores are relative to the label mean (see the module's docstring)."""
        return self._floor is not None

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """(N, labels) each label's best cosine similarity (vectors are unit-norm); for a
        relative model, minus the row's mean over the labels, or BELOW_FLOOR."""
        sims = vectors.astype(np.float32) @ self._matrix.T  # (N, D)
        best = np.maximum.reduceat(sims, self._starts, axis=1)
        if self._floor is None:
            return best
        relative = best - best.mean(axis=1, keepdims=True)
        return np.where(best >= self._floor, relative, np.float32(BELOW_FLOOR))

    def tag(self, vectors: Sequence[Vector], *, start_s: float = 0.0, end_s: float = 0.0) -> list[tuple[Tag, ...]]:
        if not vectors:
            return []
        scores = self.scores(np.stack(list(vectors)))
        result = []
        for row in scores:
            tags = [
                Tag(label=label.id, group=label.group, score=round(float(score), 4), start_s=start_s, end_s=end_s)
                for label, score, threshold in zip(self.taxonomy.labels, row, self._thresholds, strict=True)
                if score >= threshold
            ]
            tags.sort(key=lambda t: t.score, reverse=True)
            result.append(tuple(tags))
        return result
