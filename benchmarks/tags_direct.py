"""Topic tags in every language with USE-m3 called directly: separability, calibration, consistency.

    python benchmarks/tags_direct.py [--languages ko,ja,...] [--sentences N]

Labelled set (benchmarks/_corpora.py `labelled_emoji`): Unicode's emoji
subgroups mapped onto the taxonomy's topics (food, travel, sports, gaming,
music; everything else a negative), texts are CLDR's human-curated emoji name
and keywords in each language. Scores come from the packaged taxonomy's English
descriptions through the service's own `Tagger`. Figures:
  - per label, ROC AUC of its score on the English texts and on each language;
  - per label, the threshold that maximises F1 on English (calibrated on data
    we did not write), then F1 per language with those thresholds;
  - consistency: share of items whose tag set (topic labels) in a language
    equals their English tag set, over all items and over items tagged in
    English; the same on the Firefox parallel sentences (mostly untopical UI
    text: a translation must not gain tags its original lacks).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _corpora import LANGUAGES, TOPIC_OF_SUBGROUP, labelled_emoji, parallel_sentences  # noqa: E402
from _harness import result  # noqa: E402

from understanding.pipelines.tagging import Tagger, Taxonomy  # noqa: E402


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged)."""
    order = scores.argsort(kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1."""
    best = (1.0, 0.0)
    for t in np.unique(scores):
        predicted = scores >= t
        tp = float((predicted & positive).sum())
        f1 = 2 * tp / (predicted.sum() + positive.sum()) if tp else 0.0
        if f1 > best[1]:
            best = (float(t), f1)
    return best


def f1(scores: np.ndarray, positive: np.ndarray, threshold: float) -> float:
    predicted = scores >= threshold
    tp = float((predicted & positive).sum())
    return 2 * tp / (predicted.sum() + positive.sum()) if tp else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--sentences", type=int, default=1000, help="Firefox sentences for the consistency check")
    args = parser.parse_args()
    languages = tuple(args.languages.split(","))

    from understanding.models.use_embedder import load_use_encoder

    base = os.environ.get("UNDERSTANDING_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "understanding")
    encoder = load_use_encoder(backend="onnx", cache_dir=pathlib.Path(base) / "models")
    taxonomy = Taxonomy.load(None)
    tagger = Tagger(taxonomy, encoder.encode)
    topics = sorted(set(TOPIC_OF_SUBGROUP.values()))
    column = {label.id: i for i, label in enumerate(taxonomy.labels)}

    items = [i for i in labelled_emoji(("en", *languages)) if all(lang in i.texts for lang in ("en", *languages))]
    truth = {t: np.array([i.label == t for i in items]) for t in topics}
    scores = {lang: tagger.scores(encoder.encode_matrix([i.texts[lang] for i in items])) for lang in ("en", *languages)}
    print(f"{len(items)} emoji items; positives: " + ", ".join(f"{t} {int(truth[t].sum())}" for t in topics))

    print(f"\nROC AUC per label ({encoder.model_ref.name})")
    print(f"  {'label':14s} " + " ".join(f"{lang:>5s}" for lang in ("en", *languages)))
    for t in topics:
        row = [auc(scores[lang][:, column[t]], truth[t]) for lang in ("en", *languages)]
        print(f"  {t:14s} " + " ".join(f"{v:5.2f}" for v in row))

    thresholds = {t: best_threshold(scores["en"][:, column[t]], truth[t]) for t in topics}
    print("\nthresholds calibrated on English (max F1), F1 per language with them")
    print(f"  {'label':14s} {'thr':>5s} " + " ".join(f"{lang:>5s}" for lang in ("en", *languages)))
    for t in topics:
        row = [f1(scores[lang][:, column[t]], truth[t], thresholds[t][0]) for lang in ("en", *languages)]
        print(f"  {t:14s} {thresholds[t][0]:5.3f} " + " ".join(f"{v:5.2f}" for v in row))

    def tag_sets(matrix: np.ndarray) -> list[frozenset[str]]:
        return [frozenset(t for t in topics if row[column[t]] >= thresholds[t][0]) for row in matrix]

    english_tags = tag_sets(scores["en"])
    tagged = [i for i, tags in enumerate(english_tags) if tags]
    sentences = parallel_sentences(languages, limit=args.sentences)
    sids = list(sentences.english)
    sentence_tags = {"en": tag_sets(tagger.scores(encoder.encode_matrix([sentences.english[s] for s in sids])))}
    print("\nsame tag set as the English original (topic labels, English-calibrated thresholds)")
    print(f"  {'lang':4s} {'emoji all':>9s} {'emoji tagged':>12s} {'firefox':>8s}")
    for lang in languages:
        tags = tag_sets(scores[lang])
        same_all = float(np.mean([a == b for a, b in zip(tags, english_tags)]))
        same_tagged = float(np.mean([tags[i] == english_tags[i] for i in tagged])) if tagged else float("nan")
        pairs = sentences.translations[lang]
        translated = tag_sets(tagger.scores(encoder.encode_matrix(list(pairs.values()))))
        index = {s: i for i, s in enumerate(sids)}
        same_ff = float(np.mean([t == sentence_tags["en"][index[s]] for s, t in zip(pairs, translated)]))
        print(f"  {lang:4s} {same_all:9.3f} {same_tagged:12.3f} {same_ff:8.3f}")
        result(f"tags_same_as_english_{lang}", same_all, None, ">= 0.90")
    print(f"  ({len(tagged)} emoji items tagged in English; {len(sids)} Firefox sentences)")


if __name__ == "__main__":
    main()
