"""Taxonomy loading (per-model thresholds) and zero-shot tagging on the real models.

The examples are sanity checks written here; the thresholds themselves are
calibrated on public data by benchmarks/tags_multilingual.py."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np
import pytest

from understanding.domain import InvalidInput
from understanding.models.embedder import (
    MULTILINGUAL,
    Embedder,
    TextEncoder,
    load_text_encoder,
    resolve_embedding_model,
    resolve_model,
)
from understanding.pipelines.tagging import BELOW_FLOOR, Tagger, Taxonomy


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(resolve_embedding_model("packaged"))


@pytest.fixture(scope="module")
def tagger(embedder: Embedder) -> Tagger:
    return Tagger(Taxonomy.load(), embedder.encode, model=embedder.model_ref.name)


@pytest.fixture(scope="module")
def use() -> TextEncoder:
    cache = os.environ.get("UNDERSTANDING_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "understanding")
    return load_text_encoder(resolve_model(MULTILINGUAL), backend="onnx", cache_dir=pathlib.Path(cache) / "models")


@pytest.fixture(scope="module")
def use_tagger(use: TextEncoder) -> Tagger:
    return Tagger(Taxonomy.load(), use.encode, model=use.model_ref.name)


CASES = {
    "topic.sports": "The Lakers lost in overtime after LeBron missed the final shot.",
    "topic.music": "Taylor Swift announced a world tour for her new album.",
    "topic.gaming": "Just beat the final boss in Elden Ring after 40 tries, streaming tonight on Twitch.",
    "topic.food": "This carbonara recipe uses eggs, pecorino and guanciale, no cream.",
    "topic.travel": "We landed in Tokyo and checked into our hotel near Shinjuku station.",
    "topic.news": "The parliament passed the budget bill after a long debate, the prime minister said.",
    "topic.dating": "Matched with someone cute on the app, we are going out for drinks on Friday.",
    "safety.harassment": "You are a pathetic idiot, everyone at school hates you, just disappear.",
    "safety.hate": "People of that religion are animals and do not deserve to live here.",
    "safety.self_harm": "I can't take it anymore, I want to kill myself tonight.",
    "safety.violence": "I'm going to beat you until you bleed and then stab you.",
    "safety.spam_scam": "Congratulations you won $1000! Click this link and enter your credit card to claim.",
    "safety.sexual": "Send me naked pics baby, I want to see you nude.",
}


@pytest.mark.parametrize("label", sorted(CASES))
def test_each_label_fires_on_its_example(tagger: Tagger, embedder: Embedder, label: str) -> None:
    vector = embedder.encode([CASES[label]])[0]
    labels = [t.label for t in tagger.tag([vector])[0]]
    assert label in labels, labels


def test_neutral_text_gets_no_tags(tagger: Tagger, embedder: Embedder) -> None:
    for text in (
        "The meeting is moved to Thursday at 3 pm in room 204, please bring the quarterly report.",
        "I bought a new lamp for the living room and it looks nice.",
        "hi",
    ):
        assert tagger.tag(embedder.encode([text]))[0] == (), text


# The issue's own examples, and the same topics in other languages.
MULTILINGUAL_CASES = [
    ("topic.sports", "오늘 축구 경기 정말 재미있었어"),
    ("topic.sports", "Das Spiel war fantastisch, Bayern hat 3:0 gewonnen"),
    ("topic.travel", "Our flight to Tokyo was delayed"),
    ("topic.travel", "東京行きの飛行機が三時間も遅れたので、空港近くのホテルに泊まりました。"),
    ("topic.food", "وصفة سهلة: نطبخ الأرز مع الدجاج والبصل والثوم"),
    ("topic.music", "La banda presentó su nuevo álbum en un concierto en Madrid."),
]


@pytest.mark.parametrize(("label", "text"), MULTILINGUAL_CASES)
def test_the_multilingual_model_tags_every_language(
    use_tagger: Tagger, use: TextEncoder, label: str, text: str
) -> None:
    labels = [t.label for t in use_tagger.tag(use.encode([text]))[0]]
    assert label in labels, labels


# Known misses of the multilingual model on these examples at thresholds calibrated on public data
# (not tuned to pass here): kept visible, strict, so a fix shows up.
USE_MISSES = {
    "safety.hate": "0.253 vs 0.293 (relative scores): the zero-shot hate description is weak in USE; issue 15's "
    "moderation models replace it",
}


@pytest.mark.parametrize(
    "label",
    [pytest.param(label, marks=pytest.mark.xfail(reason=USE_MISSES[label], strict=True)) if label in USE_MISSES else label
     for label in sorted(CASES)],
)  # fmt: skip
def test_the_multilingual_model_keeps_every_label_working(use_tagger: Tagger, use: TextEncoder, label: str) -> None:
    """Safety labels too (until the moderation models of issue 15 replace them)."""
    labels = [t.label for t in use_tagger.tag(use.encode([CASES[label]]))[0]]
    assert label in labels, labels


def test_neutral_text_gets_no_tags_with_the_multilingual_model(use_tagger: Tagger, use: TextEncoder) -> None:
    for text in (
        "The meeting is moved to Thursday at 3 pm in room 204, please bring the quarterly report.",
        "회의가 목요일 오후 3시로 옮겨졌습니다. 분기 보고서를 가져오세요.",
        "I bought a new lamp for the living room and it looks nice.",
        "hi",
    ):
        assert use_tagger.tag(use.encode([text]))[0] == (), text


PER_MODEL = """version = "x"
[defaults]
threshold = 0.3
[defaults.thresholds]
"model-b" = 0.2
[[label]]
id = "topic.cats"
descriptions = ["cats"]
thresholds = { "model-a" = 0.5 }
[[label]]
id = "topic.dogs"
descriptions = ["dogs"]
threshold = 0.4
"""


def test_thresholds_are_per_model(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(PER_MODEL)
    cats, dogs = Taxonomy.load(path).labels
    assert (cats.threshold_for("model-a"), cats.threshold_for("model-b"), cats.threshold_for("other")) == (
        0.5,
        0.2,
        0.3,
    )
    # A label's own `threshold` applies to every model it names no value for.
    assert (dogs.threshold_for("model-a"), dogs.threshold_for("model-b")) == (0.4, 0.4)
    vectors = {"cats": [1.0, 0.0], "dogs": [0.0, 1.0]}

    def encode(texts: Sequence[str]) -> list[np.ndarray]:
        return [np.asarray(vectors[t], dtype=np.float32) for t in texts]

    probe = [np.asarray([0.45, 0.0], dtype=np.float32)]
    assert [t.label for t in Tagger(Taxonomy.load(path), encode, model="model-b").tag(probe)[0]] == ["topic.cats"]
    assert Tagger(Taxonomy.load(path), encode, model="model-a").tag(probe)[0] == ()


RELATIVE = """version = "x"
[scoring]
relative = { "model-r" = 0.2 }
[[label]]
id = "topic.cats"
descriptions = ["cats"]
threshold = 0.1
[[label]]
id = "topic.dogs"
descriptions = ["dogs"]
threshold = 0.1
[[label]]
id = "topic.birds"
descriptions = ["birds"]
threshold = 0.1
"""


def _axes(texts: Sequence[str]) -> list[np.ndarray]:
    axis = {"cats": 0, "dogs": 1, "birds": 2}
    return [np.eye(3, dtype=np.float32)[axis[t]] for t in texts]


def test_relative_scores_ignore_a_shift_of_every_similarity(tmp_path: pathlib.Path) -> None:
    """What a language does to a text's similarities (all up or down together) does not move
    its relative scores; a label whose cosine stays under the floor scores BELOW_FLOOR."""
    path = tmp_path / "t.toml"
    path.write_text(RELATIVE)
    taxonomy = Taxonomy.load(path)
    assert taxonomy.relative == {"model-r": 0.2}
    relative = Tagger(taxonomy, _axes, model="model-r")
    plain = Tagger(taxonomy, _axes, model="other")
    assert relative.relative and not plain.relative
    original = np.asarray([[0.5, 0.3, 0.3]], dtype=np.float32)
    shifted = original - 0.05  # the same text in a language whose similarities all sit lower
    assert np.allclose(relative.scores(original), relative.scores(shifted))
    assert np.allclose(relative.scores(original), [[0.5 - 11 / 30, 0.3 - 11 / 30, 0.3 - 11 / 30]])
    assert not np.allclose(plain.scores(original), plain.scores(shifted))
    # cats is 0.133 over the mean either way: tagged in both; plain cosines see different values.
    assert [t.label for t in relative.tag(list(original))[0]] == ["topic.cats"]
    assert [t.label for t in relative.tag(list(shifted))[0]] == ["topic.cats"]
    # Unlike every label (all under the floor): nothing, however it stands against the mean.
    weak = np.asarray([[0.19, 0.0, 0.0]], dtype=np.float32)
    assert relative.scores(weak)[0, 0] == BELOW_FLOOR
    assert relative.tag(list(weak))[0] == ()
    assert [t.label for t in plain.tag(list(weak))[0]] == ["topic.cats"]


@pytest.mark.parametrize(
    "scoring",
    ['relative = ["model-r"]', 'relative = { "model-r" = "high" }', 'relative = { "model-r" = 2.0 }'],
)
def test_a_bad_scoring_table_is_refused(tmp_path: pathlib.Path, scoring: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(RELATIVE.replace('relative = { "model-r" = 0.2 }', scoring))
    with pytest.raises(InvalidInput, match="scoring.relative"):
        Taxonomy.load(path)


def test_scoring_must_be_a_table(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("scoring = 1\n" + RELATIVE.replace('[scoring]\nrelative = { "model-r" = 0.2 }\n', ""))
    with pytest.raises(InvalidInput, match="scoring must be a table"):
        Taxonomy.load(path)


def test_the_packaged_taxonomy_scores_the_multilingual_model_relative() -> None:
    assert set(Taxonomy.load().relative) == {"universal-sentence-encoder-multilingual-3"}


def test_packaged_taxonomy_has_thresholds_for_both_packaged_models() -> None:
    for label in Taxonomy.load().labels:
        assert set(label.thresholds) >= {"all-MiniLM-L6-v2", "universal-sentence-encoder-multilingual-3"}, label.id


def test_custom_taxonomy_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "t.toml"
    path.write_text(
        'version = "x"\n[[label]]\nid = "topic.cats"\ngroup = "topic"\nthreshold = 0.3\ndescriptions = ["cats, kittens and pets"]\n'
    )
    taxonomy = Taxonomy.load(path)
    assert [label.id for label in taxonomy.labels] == ["topic.cats"]
    assert taxonomy.labels[0].threshold == 0.3


BAD_THRESHOLD = '[[label]]\nid="a"\ndescriptions=["x"]\nthreshold="high"\n'
BAD_PER_MODEL = '[[label]]\nid="a"\ndescriptions=["x"]\nthresholds={ m = 2.0 }\n'


@pytest.mark.parametrize(
    "body",
    [
        '[[label]]\nid = "a"\ndescriptions = []\n',
        "not toml [",
        '[[label]]\nid="a"\ndescriptions=["x"]\n[[label]]\nid="a"\ndescriptions=["y"]\n',
        "",
        BAD_THRESHOLD,
        BAD_PER_MODEL,
    ],
)
def test_bad_taxonomy_is_rejected(tmp_path, body: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(InvalidInput):
        Taxonomy.load(path)
