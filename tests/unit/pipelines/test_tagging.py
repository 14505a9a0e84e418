"""Taxonomy loading and zero-shot tagging calibrated on the real model."""

from __future__ import annotations

import pytest

from understanding.domain import InvalidInput
from understanding.models.embedder import Embedder, resolve_embedding_model
from understanding.pipelines.tagging import Taxonomy, Tagger


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(resolve_embedding_model("packaged"))


@pytest.fixture(scope="module")
def tagger(embedder: Embedder) -> Tagger:
    return Tagger(Taxonomy.load(), embedder.encode)


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


def test_custom_taxonomy_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "t.toml"
    path.write_text('version = "x"\n[[label]]\nid = "topic.cats"\ngroup = "topic"\nthreshold = 0.3\ndescriptions = ["cats, kittens and pets"]\n')
    taxonomy = Taxonomy.load(path)
    assert [label.id for label in taxonomy.labels] == ["topic.cats"]
    assert taxonomy.labels[0].threshold == 0.3


@pytest.mark.parametrize(
    "body",
    ['[[label]]\nid = "a"\ndescriptions = []\n', "not toml [", '[[label]]\nid="a"\ndescriptions=["x"]\n[[label]]\nid="a"\ndescriptions=["y"]\n', ""],
)
def test_bad_taxonomy_is_rejected(tmp_path, body: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(InvalidInput):
        Taxonomy.load(path)
