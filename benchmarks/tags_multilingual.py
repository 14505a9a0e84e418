"""Tags in every language: calibrate the multilingual model's thresholds, then check them on held-out data.

    python benchmarks/tags_multilingual.py [--quick] [--languages ko,ja,...]

Labelled set (not written by us): Unicode's emoji subgroups mapped onto the
taxonomy's topics (benchmarks/_corpora.py `TOPIC_OF_SUBGROUP`: food, travel,
sports, gaming, music; every other subgroup is a negative) with CLDR's
human-curated emoji name and keywords in English and 9 languages (Debian's
unicode-cldr-core), e.g. "soccer ball: ball, football, soccer" / "축구공: 공,
축구, 축구공". Items are split in two halves by a hash of the emoji:
thresholds are calibrated on one, every figure is measured on the other.

Scoring: relative (see understanding/pipelines/tagging.py): a label's cosine
minus the mean of the text's cosines to every label, and a label also needs
its cosine to reach a floor, the 95th percentile of the English Firefox
sentences' best label cosine (UI text, topic-free: a text must look more like
some label than 95% of them do).

Calibration (printed as the taxonomy's `[scoring]` and `thresholds` entries):
  - a topic with labelled items: the threshold that maximises F0.5 pooled
    over all languages (English and its translations count alike, so a
    threshold does not sit where only English scores reach). F0.5 weighs
    precision twice as much as recall: tags filter searches and feed
    moderation, where a wrong tag costs more than a missing one, and a
    threshold in the dense middle of the scores flips between translations;
  - a label without labelled items (news, dating, safety.*): MiniLM's
    threshold carried over by standard scores on a neutral public corpus
    (the English Firefox UI sentences): the same number of standard
    deviations above the corpus mean under the new model (relative scores
    without the floor, which only filters).

Figures on the held-out half, with the thresholds of the taxonomy file the
service loads (`--taxonomy`, default the packaged one), and the agreement
with the halves swapped (topic thresholds calibrated on the held-out half):
  - per language, the share of items whose tag set (every label) equals the
    English original's: the target is >= 0.90 in every language;
  - per topic, F1 per language;
  - the Firefox sentences (mostly topic-free UI text): the share of
    translations whose tag set equals their English original's, and the
    share given any tag (nearly all of them wrong).

What more consistency would cost (`--tradeoffs`, held-out half):
  - every threshold raised by a margin: consistency against mean topic F1
    (fewer tags agree more often, mostly as empty sets);
  - per-language thresholds: each label's threshold per language fitted on
    the calibration half to agree with the English decisions (within 0.08 of
    the shared one), applied by the language py3langid detects, as the
    service would have to;
  - the scoring: plain cosines (before 2026-12) against relative scores,
    without and with the floor, each recalibrated on one half and measured
    on the other, with the share of Firefox sentences given any tag.
    (Language centring, each vector minus its language's mean, was measured
    here up to commit d603a1d: it helps only with the true language, which
    the service does not have.)
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import pathlib
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _corpora import (  # noqa: E402
    LANGUAGES,
    TOPIC_OF_SUBGROUP,
    LabelledItem,
    ParallelCorpus,
    labelled_emoji,
    parallel_sentences,
)
from _harness import result  # noqa: E402

from understanding.models.embedder import MINILM, MULTILINGUAL, TextEncoder, load_text_encoder, resolve_model  # noqa: E402
from understanding.pipelines.tagging import BELOW_FLOOR, Tagger, Taxonomy  # noqa: E402


def cache_root() -> pathlib.Path:
    base = os.environ.get("UNDERSTANDING_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "understanding")
    return pathlib.Path(base)


def load(spec: str) -> TextEncoder:
    return load_text_encoder(resolve_model(spec), backend="onnx", cache_dir=cache_root() / "models")


def encode(encoder: TextEncoder, texts: Sequence[str]) -> np.ndarray:
    """Unit vectors, cached on disk by model version and texts (re-runs are fast)."""
    digest = hashlib.sha256(f"{encoder.model_ref.name}|{encoder.model_ref.version}".encode())
    for text in texts:
        digest.update(text.encode() + b"\0")
    path = cache_root() / "bench" / f"tags-{digest.hexdigest()[:20]}.npy"
    if path.exists():
        return np.load(path)
    out = np.zeros((len(texts), encoder.dimension), dtype=np.float32)
    for start in range(0, len(texts), 256):
        out[start : start + 256] = np.stack(encoder.encode(list(texts[start : start + 256])))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def held_out(item: LabelledItem) -> bool:
    return int(hashlib.sha256(item.id.encode()).hexdigest(), 16) % 2 == 1


BETA = 0.5  # F-beta of the calibration: precision weighs 1/BETA times recall


def best_threshold(scores: np.ndarray, positive: np.ndarray, beta: float = BETA) -> tuple[float, float]:
    """(threshold, F-beta) maximising F-beta; the threshold halfway to the next lower score (a margin)."""
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    tp = np.cumsum(p)
    precision, recall = tp / np.arange(1, len(s) + 1), tp / max(1, int(p.sum()))
    f = (1 + beta**2) * precision * recall / np.maximum(beta**2 * precision + recall, 1e-12)
    i = int(np.argmax(f))
    below = s[i + 1] if i + 1 < len(s) else s[i] - 0.01
    return float(round((s[i] + below) / 2, 3)), float(f[i])


def f1(scores: np.ndarray, positive: np.ndarray, threshold: float) -> float:
    predicted = scores >= threshold
    tp = float((predicted & positive).sum())
    return 2 * tp / (predicted.sum() + positive.sum()) if tp else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--taxonomy", default="", help="taxonomy file to evaluate (default: the packaged one)")
    parser.add_argument("--quick", action="store_true", help="3 languages, 300 Firefox sentences (CI smoke)")
    parser.add_argument("--tradeoffs", action="store_true", help="what more consistency would cost (see above)")
    args = parser.parse_args()
    languages = ("ko", "ja", "de") if args.quick else tuple(args.languages.split(","))
    langs = ("en", *languages)

    taxonomy = Taxonomy.load(args.taxonomy or None)
    labels = [label.id for label in taxonomy.labels]
    topics = sorted(set(TOPIC_OF_SUBGROUP.values()))
    use = load(MULTILINGUAL)
    model = use.model_ref.name
    use_tagger = Tagger(taxonomy, use.encode, model=model)  # the file's scoring and thresholds

    items = [i for i in labelled_emoji(langs) if all(lang in i.texts for lang in langs)]
    split = np.array([held_out(i) for i in items])
    truth = {t: np.array([i.label == t for i in items]) for t in topics}
    vectors = {lang: encode(use, [i.texts[lang] for i in items]) for lang in langs}
    scores = {lang: use_tagger.scores(v) for lang, v in vectors.items()}
    column = {label: k for k, label in enumerate(labels)}
    n_cal, n_eval = int((~split).sum()), int(split.sum())
    print(f"{len(items)} emoji items in {len(langs)} languages ({n_cal} calibration, {n_eval} held out); model {model}")

    # ---------------------------------------------------------------- calibration
    sentences = parallel_sentences(languages, limit=300 if args.quick else 0)
    neutral = encode(use, list(sentences.english.values()))
    plain = Tagger(replace(taxonomy, relative={}), use.encode, model=model)
    floor = round(float(np.percentile(plain.scores(neutral).max(axis=1), 95)), 3)
    print(f"\nrelative scores; floor {floor:.3f}: the 95th percentile of the Firefox sentences' best label cosine")
    calibrating = Tagger(replace(taxonomy, relative={model: floor}), use.encode, model=model)
    cal_scores = {lang: calibrating.scores(v[~split]) for lang, v in vectors.items()}
    suggested: dict[str, float] = {}
    print(f"calibration half: thresholds maximising F{BETA} pooled over languages")
    for t in topics:
        pooled = np.concatenate([cal_scores[lang][:, column[t]] for lang in langs])
        positive = np.concatenate([truth[t][~split] for _ in langs])
        suggested[t], best = best_threshold(pooled, positive)
        print(f"  {t:18s} {suggested[t]:.3f}  pooled F{BETA} {best:.3f}")
    minilm = load(MINILM)
    minilm_tagger = Tagger(taxonomy, minilm.encode, model=minilm.model_ref.name)
    # Standard scores of the relative scores without the floor (which only filters).
    use_neutral = Tagger(replace(taxonomy, relative={model: BELOW_FLOOR}), use.encode, model=model).scores(neutral)
    mini_neutral = minilm_tagger.scores(encode(minilm, list(sentences.english.values())))
    print("\nlabels without labelled items: MiniLM's threshold carried over by standard scores (Firefox sentences)")
    mini_thresholds = np.array([label.threshold_for(minilm.model_ref.name) for label in taxonomy.labels])
    z, carried = carry_over(mini_thresholds, mini_neutral, use_neutral)
    for k, label in enumerate(taxonomy.labels):
        note = "" if label.id in suggested else "  <- used"
        suggested.setdefault(label.id, round(float(carried[k]), 3))
        print(f"  {label.id:18s} MiniLM {mini_thresholds[k]:.3f} = {z[k]:+.1f} sd -> {carried[k]:.3f}{note}")
    print(f'\nsuggested taxonomy entries ([scoring] relative = {{ "{model}" = {floor:.3f} }}; thresholds per label):')
    for label_id in labels:
        print(f'  {label_id:18s} "{model}" = {suggested[label_id]:.3f}')

    # ---------------------------------------------------------------- held-out figures
    thresholds = np.array([label.threshold_for(model) for label in taxonomy.labels], dtype=np.float32)
    print(f"\nheld-out half, thresholds of {args.taxonomy or 'the packaged taxonomy'} for {model}")
    print(f"  {'topic F1':18s} " + " ".join(f"{lang:>5s}" for lang in langs))
    for t in topics:
        row = [f1(scores[lang][split, column[t]], truth[t][split], thresholds[column[t]]) for lang in langs]
        print(f"  {t:18s} " + " ".join(f"{v:5.2f}" for v in row))

    def tag_sets(matrix: np.ndarray) -> list[frozenset[int]]:
        return [frozenset(np.flatnonzero(row >= thresholds).tolist()) for row in matrix]

    english = tag_sets(scores["en"][split])
    tagged = [k for k, tags in enumerate(english) if tags]
    en_sentences = tag_sets(use_tagger.scores(encode(use, list(sentences.english.values()))))
    index = {sid: k for k, sid in enumerate(sentences.english)}
    print("\nsame tag set as the English original (every label)")
    print(f"  {'lang':4s} {'emoji':>7s} {'tagged in en':>12s} {'firefox':>8s} {'firefox tagged':>15s}")
    worst = 1.0
    for lang in languages:
        tags = tag_sets(scores[lang][split])
        same = float(np.mean([a == b for a, b in zip(tags, english, strict=True)]))
        same_tagged = float(np.mean([tags[k] == english[k] for k in tagged])) if tagged else float("nan")
        pairs = sentences.translations[lang]
        translated = tag_sets(use_tagger.scores(encode(use, list(pairs.values()))))
        same_ff = float(np.mean([t == en_sentences[index[s]] for s, t in zip(pairs, translated, strict=True)]))
        worst = min(worst, same)
        spurious = float(np.mean([bool(t) for t in translated]))
        print(f"  {lang:4s} {same:7.3f} {same_tagged:12.3f} {same_ff:8.3f} {spurious:15.3f}")
        result(f"tags_same_as_english_{lang}", same, None, ">= 0.90")
    print(f"  {'en':4s} {'':7s} {'':12s} {'':8s} {np.mean([bool(t) for t in en_sentences]):15.3f}")
    print(
        f"  ({n_eval} held-out emoji items, {len(tagged)} tagged in English; {len(sentences.english)} Firefox sentences,"
        " 'firefox tagged': the share given any tag, all of them spurious or nearly)"
    )
    result("tags_same_as_english_worst_language", worst, None, ">= 0.90")
    other_fold(split, scores, thresholds, [labels.index(t) for t in topics], np.stack([truth[t] for t in topics], 1))
    if args.tradeoffs:
        tradeoffs(items, split, scores, thresholds, labels, topics, truth, languages)
        emoji_names = [i.texts["en"] for i in items]
        scorings(taxonomy, use, minilm, vectors, split, truth, topics, sentences, emoji_names, floor)


def carry_over(
    thresholds: np.ndarray, neutral_from: np.ndarray, neutral_to: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(standard scores, thresholds carried over): each label's `thresholds` under one scoring
    as the same number of standard deviations above the neutral corpus's mean under another
    (`neutral_from`, `neutral_to`: the corpus's (texts, labels) scores under each)."""
    z = (thresholds - neutral_from.mean(axis=0)) / neutral_from.std(axis=0)
    return z, neutral_to.mean(axis=0) + z * neutral_to.std(axis=0)


def other_fold(
    split: np.ndarray, scores: dict[str, np.ndarray], thresholds: np.ndarray, topics: list[int], truth: np.ndarray
) -> None:
    """The halves swapped: topic thresholds (`topics`: their columns; `truth`: their labels, per item)
    calibrated on the held-out half, agreement measured on the calibration half (how much the
    held-out figure owes to which half is which)."""
    other = thresholds.copy()
    for column, k in enumerate(topics):
        pooled = np.concatenate([m[split, k] for m in scores.values()])
        other[k], _ = best_threshold(pooled, np.concatenate([truth[split, column] for _ in scores]))
    english = scores["en"][~split] >= other
    same = {lang: agreement(scores[lang][~split], other, english) for lang in scores if lang != "en"}
    print("\nhalves swapped (topic thresholds from the held-out half, agreement on the calibration half)")
    print("  " + " ".join(f"{lang} {v:.3f}" for lang, v in same.items()) + f"  worst {min(same.values()):.3f}")
    result("tags_same_as_english_worst_language_halves_swapped", min(same.values()), None, ">= 0.90")


def agreement(scores: np.ndarray, thresholds: np.ndarray, english: np.ndarray) -> float:
    """Share of rows whose tag set equals the English one (`english`: the English decisions);
    `thresholds` per label, or per row and label."""
    return float(np.mean(np.all((scores >= thresholds) == english, axis=1)))


def fit_agreeing(scores: np.ndarray, english: np.ndarray, shared: float, reach: float = 0.08) -> float:
    """The threshold within `reach` of `shared` whose decisions agree most with English's (ties: nearest)."""
    candidates = sorted(
        np.unique(np.append(scores[np.abs(scores - shared) <= reach], shared)), key=lambda c: abs(c - shared)
    )
    return float(max(candidates, key=lambda c: int(((scores >= c) == english).sum())))


def tradeoffs(
    items: Sequence[LabelledItem],
    split: np.ndarray,
    scores: dict[str, np.ndarray],
    thresholds: np.ndarray,
    labels: Sequence[str],
    topics: Sequence[str],
    truth: dict[str, np.ndarray],
    languages: Sequence[str],
) -> None:
    from understanding.models.language import LanguageDetector

    held = {lang: m[split] for lang, m in scores.items()}
    print("\nheld-out: every threshold raised by a margin (same tag set as English; mean topic F1, all languages)")
    for margin in (0.0, 0.01, 0.02, 0.03, 0.05):
        raised = thresholds + margin
        english = held["en"] >= raised
        same = [agreement(held[lang], raised, english) for lang in languages]
        f1s = [
            f1(held[lang][:, labels.index(t)], truth[t][split], raised[labels.index(t)])
            for t in topics
            for lang in held
        ]
        print(f"  +{margin:.2f}: worst {min(same):.3f} mean {np.mean(same):.3f}  topic F1 {np.mean(f1s):.3f}")
    english_cal = scores["en"][~split] >= thresholds
    per_lang = {
        lang: np.array(
            [
                fit_agreeing(scores[lang][~split, k], english_cal[:, k], float(thresholds[k]))
                for k in range(len(labels))
            ],
            dtype=np.float32,
        )
        for lang in languages
    }
    detector = LanguageDetector()
    texts = [i.texts for i, h in zip(items, split, strict=True) if h]
    english = held["en"] >= thresholds
    print("\nheld-out: per-language thresholds fitted on the calibration half to agree with English")
    print(f"  {'lang':4s} {'shared':>7s} {'own':>7s} {'detected':>9s} {'detected right':>15s}")
    for lang in languages:
        shared = agreement(held[lang], thresholds, english)
        own = agreement(held[lang], per_lang[lang], english)
        codes = [detector.detect(t[lang]).code for t in texts]
        detected = agreement(held[lang], np.stack([per_lang.get(c, thresholds) for c in codes]), english)
        right = float(np.mean([c == lang for c in codes]))
        print(f"  {lang:4s} {shared:7.3f} {own:7.3f} {detected:9.3f} {right:15.2f}")


def scorings(
    taxonomy: Taxonomy,
    encoder: TextEncoder,
    minilm: TextEncoder,
    vectors: dict[str, np.ndarray],
    split: np.ndarray,
    truth: dict[str, np.ndarray],
    topics: Sequence[str],
    sentences: ParallelCorpus,
    emoji_names: Sequence[str],
    floor: float,
) -> None:
    """Plain cosines against relative scores, without and with the floor: each recalibrated
    on one half (topics by F0.5, the other labels carried from MiniLM by standard scores on
    a neutral corpus: the Firefox sentences, or those and the English emoji names as before
    2026-12) and measured on the other; also the share of Firefox sentences given any tag."""
    model = encoder.model_ref.name
    labels = [label.id for label in taxonomy.labels]
    langs = list(vectors)
    corpus = {"en": encode(encoder, list(sentences.english.values()))}
    corpus.update({lang: encode(encoder, list(pairs.values())) for lang, pairs in sentences.translations.items()})
    mini = Tagger(taxonomy, minilm.encode, model=minilm.model_ref.name)
    mini_thresholds = np.array([label.threshold_for(minilm.model_ref.name) for label in taxonomy.labels])
    names = encode(encoder, emoji_names)
    neutrals = {
        "firefox": (corpus["en"], mini.scores(encode(minilm, list(sentences.english.values())))),
        "firefox + emoji names": (
            np.concatenate([corpus["en"], names]),
            mini.scores(encode(minilm, [*sentences.english.values(), *emoji_names])),
        ),
    }
    print("\nscoring: plain cosine (before) or relative to the label mean, without and with the floor;")
    print("  unlabelled labels carried over on either neutral corpus")
    variants = (("cosine", {}), ("relative", {model: BELOW_FLOOR}), (f"relative, floor {floor}", {model: floor}))
    for (name, relative), (corpus_name, (neutral_vectors, mini_neutral)) in itertools.product(
        variants, neutrals.items()
    ):
        tagger = Tagger(replace(taxonomy, relative=relative), partial(encode, encoder), model=model)
        unfloored = {model: BELOW_FLOOR} if relative else {}
        neutral = Tagger(replace(taxonomy, relative=unfloored), partial(encode, encoder), model=model).scores(
            neutral_vectors
        )
        _, carried = carry_over(mini_thresholds, mini_neutral, neutral)
        scores = {lang: tagger.scores(v) for lang, v in vectors.items()}
        row = []
        for half, calibrate in (("held out", ~split), ("swapped", split)):
            measure = ~calibrate
            own = carried.astype(np.float32)
            for k, label in enumerate(labels):
                if label in topics:
                    pooled = np.concatenate([scores[lang][calibrate, k] for lang in langs])
                    own[k], _ = best_threshold(pooled, np.concatenate([truth[label][calibrate] for _ in langs]))
            english = scores["en"][measure] >= own
            same = [agreement(scores[lang][measure], own, english) for lang in langs[1:]]
            f1s = [
                f1(scores[lang][measure, labels.index(t)], truth[t][measure], own[labels.index(t)])
                for t in topics
                for lang in langs
            ]
            tagged = np.mean([np.any(tagger.scores(c) >= own, axis=1).mean() for c in corpus.values()])
            row.append(
                f"{half}: worst {min(same):.3f} mean {np.mean(same):.3f} topic F1 {np.mean(f1s):.3f}"
                f" firefox tagged {tagged:.3f}"
            )
        print(f"  {name}; carried on {corpus_name}\n    " + "\n    ".join(row))


if __name__ == "__main__":
    main()
