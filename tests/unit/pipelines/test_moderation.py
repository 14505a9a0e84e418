"""The decision (pure), the text signals (real offensive model and contact parsers), redaction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from understanding.domain import (
    Analysis,
    Chunk,
    Decision,
    Evidence,
    Language,
    Modality,
    ModelRef,
    Segment,
    Shot,
    Signal,
    Transcript,
    Vector,
    Word,
)
from understanding.models.offensive import ProfanityCheckModel
from understanding.pipelines.moderation import MAX_EVIDENCE, decide
from understanding.pipelines.policy import Policy, Rule, load_policy
from understanding.pipelines.redaction import MASK, mask, redact_analysis
from understanding.pipelines.tagging import Label, Tagger, Taxonomy
from understanding.pipelines.text_signals import TextSignals, text_units, zero_shot_score

MODEL = ModelRef("m", "1")
POLICY = Policy("p", "v1", {"offensive": Rule(0.5, 0.9), "hate": Rule(0.5, 0.9), "contact.phone": Rule(0.5)})


def signal(category: str, score: float, *, zero_shot: bool = False, chunk: int = 0) -> Signal:
    return Signal(category, score, Evidence(Modality.TEXT, MODEL, chunk_index=chunk), zero_shot=zero_shot)


def test_decision_is_the_most_severe_category() -> None:
    assert decide([], POLICY).decision is Decision.ALLOW
    result = decide(
        [signal("offensive", 0.6), signal("offensive", 0.95, chunk=3), signal("contact.phone", 1.0)], POLICY
    )
    assert result.decision is Decision.BLOCK
    assert (result.policy, result.policy_version) == ("p", "v1")
    offensive = result.categories[0]
    assert offensive.category == "offensive" and offensive.severity is Decision.BLOCK and offensive.score == 0.95
    assert [e.chunk_index for e in offensive.evidence] == [3, 0]  # strongest first
    assert [e.score for e in offensive.evidence] == [0.95, 0.6]
    assert result.categories[1].category == "contact.phone" and result.categories[1].severity is Decision.REVIEW
    assert result.flagged() == ("offensive", "contact.phone")


def test_zero_shot_alone_is_capped_and_unknown_categories_allowed() -> None:
    result = decide([signal("hate", 0.99, zero_shot=True), signal("minors", 0.99)], POLICY)
    assert [(c.category, c.severity) for c in result.categories] == [
        ("hate", Decision.REVIEW),
        ("minors", Decision.ALLOW),
    ]
    assert result.categories[0].evidence[0].zero_shot
    # A trained model's score in the same category still blocks.
    assert decide([signal("hate", 0.99, zero_shot=True), signal("hate", 0.92)], POLICY).decision is Decision.BLOCK


def test_evidence_is_bounded() -> None:
    result = decide([signal("contact.phone", 1.0, chunk=i) for i in range(100)], POLICY)
    assert len(result.categories[0].evidence) == MAX_EVIDENCE


# ---------------------------------------------------------------- text signals


@pytest.fixture(scope="module")
def detector() -> TextSignals:
    model = ProfanityCheckModel()
    model.warm_up()
    return TextSignals(offensive=model)


def _axis(i: int, dim: int = 8) -> Vector:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


def fake_tagger() -> Tagger:
    """Descriptions on orthogonal axes, so a chunk's similarity to a label is set by hand."""
    labels = (
        Label("safety.hate", "safety", 0.4, ("hate",)),
        Label("topic.food", "topic", 0.3, ("food",)),
        Label("safety.unknown_thing", "safety", 0.4, ("x",)),
    )
    axes = {"hate": 0, "food": 1, "x": 2}

    def encode(texts: Sequence[str]) -> list[Vector]:
        return [_axis(axes[t]) for t in texts]

    return Tagger(Taxonomy("t", labels), encode)


def text_analysis(texts: Sequence[str], embeddings: Sequence[Vector] | None = None, **extra: object) -> Analysis:
    chunks = tuple(
        Chunk(index=i, text=t, embedding=embeddings[i] if embeddings else _axis(7)) for i, t in enumerate(texts)
    )
    return Analysis(
        tenant="t", media_id="m", modality=Modality.TEXT, language=Language("en", 0.9), tags=(), chunks=chunks,
        embedding_model=MODEL, created_at=0.0, version=1, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def test_offensive_and_contact_signals_with_spans(detector: TextSignals) -> None:
    texts = ["You are a fucking idiot and a piece of shit.", "Lovely weather. Call me on +1 415 555 0132 tonight!"]
    found = detector.detect(text_units(text_analysis(texts)), tagger=None, embedding_model=None)
    offensive = [s for s in found if s.category == "offensive"]
    assert len(offensive) == 1 and offensive[0].score >= 0.9
    assert offensive[0].evidence.chunk_index == 0 and offensive[0].evidence.model.name == "alt-profanity-check"
    assert "idiot" in offensive[0].evidence.detail or "fucking" in offensive[0].evidence.detail
    phone = [s for s in found if s.category == "contact.phone"]
    assert len(phone) == 1 and phone[0].score == 1.0
    start, end = phone[0].evidence.span or (0, 0)
    assert texts[1][start:end] == "+1 415 555 0132" == phone[0].evidence.text
    assert phone[0].evidence.chunk_index == 1
    verdict = decide(found, load_policy().resolve("t"))
    assert verdict.decision is Decision.BLOCK and {"offensive", "contact.phone"} <= set(verdict.flagged())


def test_ordinary_text_has_no_signal_over_the_floor(detector: TextSignals) -> None:
    found = detector.detect(
        text_units(text_analysis(["The meeting moved to Thursday at 3 pm, please bring the report."])),
        tagger=None,
        embedding_model=None,
    )
    assert found == []


def test_zero_shot_scores_follow_the_label_threshold(detector: TextSignals) -> None:
    tagger = fake_tagger()
    similar = np.asarray([0.5, 0.0, 0.9, 0, 0, 0, 0, 0], dtype=np.float32)  # hate 0.5, an unknown safety label 0.9
    far = np.asarray([0.2, 0.9, 0, 0, 0, 0, 0, 0], dtype=np.float32)
    analysis = text_analysis(["some text", "other text"], [similar, far])
    found = detector.detect(text_units(analysis), tagger=tagger, embedding_model=MODEL)
    assert [(s.category, s.zero_shot, s.evidence.chunk_index) for s in found] == [("hate", True, 0)]
    assert found[0].score == pytest.approx(zero_shot_score(0.5, 0.4)) == pytest.approx(0.75)
    assert found[0].evidence.span == (0, len("some text"))
    assert zero_shot_score(0.4, 0.4) == 0.5 and zero_shot_score(0.9, 0.4) == 1.0 and zero_shot_score(0.1, 0.4) == 0.0


def test_transcript_windows_locate_the_segment_and_speaker(detector: TextSignals) -> None:
    segments = (
        Segment(0, 0.0, 2.0, " Hello there.", -0.1, 0.0),
        Segment(1, 2.0, 5.5, " My number is +44 7700 900123.", -0.1, 0.0),
    )
    text = "Hello there. My number is +44 7700 900123."
    analysis = Analysis(
        tenant="t", media_id="call", modality=Modality.SPEECH, language=Language("en", 0.9), tags=(),
        chunks=(Chunk(index=0, text=text, embedding=_axis(7), start_s=0.0, end_s=5.5),), embedding_model=MODEL,
        created_at=0.0, version=1, transcript=Transcript(segments, Language("en", 0.9), 5.5, "transcribe", MODEL),
    )  # fmt: skip
    phone = [
        s
        for s in detector.detect(text_units(analysis), tagger=None, embedding_model=None)
        if s.category == "contact.phone"
    ]
    assert len(phone) == 1
    evidence = phone[0].evidence
    assert evidence.modality is Modality.SPEECH and (evidence.start_s, evidence.end_s) == (2.0, 5.5)


# ---------------------------------------------------------------- redaction


def test_mask_keeps_length_and_spaces() -> None:
    assert mask("call +1 415 555 0132 now", [(5, 20)]) == f"call {MASK * 2} {MASK * 3} {MASK * 3} {MASK * 4} now"


def test_redaction_masks_every_text_and_keeps_the_evidence(detector: TextSignals) -> None:
    number = "+44 7700 900123"
    segments = (
        Segment(0, 0.0, 2.0, " Text me on +44 7700", -0.1, 0.0, words=(Word(" Text", 0, 0.5, 1), Word(" me", 0.5, 1, 1), Word(" on", 1, 1.2, 1), Word(" +44", 1.2, 1.5, 1), Word(" 7700", 1.5, 2, 1))),
        Segment(1, 2.0, 3.0, " 900123 or mail jo@example.org", -0.1, 0.0, words=(Word(" 900123", 2, 2.5, 1), Word(" or", 2.5, 2.6, 1), Word(" mail", 2.6, 2.8, 1), Word(" jo@example.org", 2.8, 3, 1))),
    )  # fmt: skip
    text = f"Text me on {number} or mail jo@example.org"
    analysis = Analysis(
        tenant="t", media_id="call", modality=Modality.SPEECH, language=Language("en", 0.9), tags=(),
        chunks=(Chunk(index=0, text=text, embedding=_axis(7), start_s=0.0, end_s=3.0),), embedding_model=MODEL,
        created_at=0.0, version=1, transcript=Transcript(segments, Language("en", 0.9), 3.0, "transcribe", MODEL),
    )  # fmt: skip
    found = detector.detect(text_units(analysis), tagger=None, embedding_model=None)
    moderated = redact_analysis(
        Analysis(
            **{
                **{f: getattr(analysis, f) for f in analysis.__dataclass_fields__},
                "signals": tuple(found),
                "moderation": decide(found, load_policy().resolve("t")),
            }
        )  # fmt: skip
    )
    chunk = moderated.chunks[0].text
    assert (
        len(chunk) == len(text) and "7700" not in chunk and "example" not in chunk and chunk.startswith("Text me on ")
    )
    assert moderated.transcript is not None
    joined = " ".join(s.text for s in moderated.transcript.segments) + " ".join(
        w.text for s in moderated.transcript.segments for w in s.words
    )
    assert "7700" not in joined and "900123" not in joined and "jo@" not in joined, joined
    assert moderated.transcript.segments[0].words[0].text == " Text"
    assert moderated.moderation is not None
    kinds = {c.category: c for c in moderated.moderation.categories}
    assert {"contact.phone", "contact.email"} <= set(kinds)
    for category in ("contact.phone", "contact.email"):
        evidence = kinds[category].evidence[0]
        assert evidence.text == "" and evidence.redacted and evidence.span is not None and evidence.detail
    phone_span = kinds["contact.phone"].evidence[0].span
    assert phone_span is not None and set(chunk[phone_span[0] : phone_span[1]]) <= {MASK, " "}
    assert all(not s.evidence.text for s in moderated.signals if s.category.startswith("contact."))


def test_zero_shot_uses_the_threshold_of_the_model_that_embedded(detector: TextSignals) -> None:
    """Per-model thresholds (taxonomy `thresholds`): the embedding model's own one scores the signal."""
    labels = (Label("safety.hate", "safety", 0.4, ("hate",), thresholds={MODEL.name: 0.6}),)
    tagger = Tagger(Taxonomy("t", labels), lambda texts: [_axis(0) for _ in texts])
    analysis = text_analysis(["some text"], [np.asarray([0.7, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32)])
    (found,) = detector.detect(text_units(analysis), tagger=tagger, embedding_model=MODEL)
    assert found.score == pytest.approx(zero_shot_score(0.7, 0.6))
    other = detector.detect(text_units(analysis), tagger=tagger, embedding_model=ModelRef("other", "1"))
    assert other[0].score == pytest.approx(zero_shot_score(0.7, 0.4))


def test_picture_text_is_looked_at_once(detector: TextSignals) -> None:
    """A shot's on-screen text and an image's OCR text carry their contact details from the picture
    pipelines (with boxes): the text detectors look at what is said, and at OCR text for the rest."""
    said, shown = "Nice to meet you.", "WhatsApp +44 7700 900123"
    video = Analysis(
        tenant="t", media_id="v", modality=Modality.VIDEO, language=Language("en", 0.9), tags=(),
        chunks=(Chunk(index=0, text=f"{said}\n{shown}", embedding=_axis(7)), Chunk(index=1, text=shown, embedding=_axis(7))),
        embedding_model=MODEL, created_at=0.0, version=1,
        shots=(Shot(0, 0.0, 2.0, 1.0, transcript_text=said, ocr_text=shown), Shot(1, 2.0, 4.0, 3.0, ocr_text=shown)),
    )  # fmt: skip
    units = text_units(video)
    assert [(u.chunk_index, u.text, u.modality, u.contacts, u.offset) for u in units] == [
        (0, said, Modality.SPEECH, True, 0),
        (0, shown, Modality.VIDEO, False, len(said) + 1),  # the on-screen text: no contacts, its place in the chunk
        (1, shown, Modality.VIDEO, False, 0),
    ]
    assert units[0].embedding is not None and units[1].embedding is None and units[2].embedding is not None
    assert not [
        s for s in detector.detect(units, tagger=None, embedding_model=None) if s.category.startswith("contact.")
    ]
    # An insult shown on screen is found, its span in the shot's chunk text.
    insult = "You are a fucking idiot"
    rude = Analysis(
        tenant="t", media_id="v2", modality=Modality.VIDEO, language=Language("en", 0.9), tags=(),
        chunks=(Chunk(index=0, text=f"{said}\n{insult}", embedding=_axis(7)),),
        embedding_model=MODEL, created_at=0.0, version=1,
        shots=(Shot(0, 0.0, 2.0, 1.0, transcript_text=said, ocr_text=insult),),
    )  # fmt: skip
    (offensive,) = [
        s for s in detector.detect(text_units(rude), tagger=None, embedding_model=None) if s.category == "offensive"
    ]
    evidence = offensive.evidence
    assert evidence.modality is Modality.VIDEO and evidence.span is not None and offensive.score >= 0.5
    assert rude.chunks[0].text[evidence.span[0] : evidence.span[1]] == evidence.text and "idiot" in evidence.text
    image = Analysis(
        tenant="t", media_id="i", modality=Modality.IMAGE, language=Language("en", 0.9), tags=(),
        chunks=(Chunk(index=0, text="a bright picture", embedding=_axis(7)), Chunk(index=1, text=shown, embedding=_axis(7))),
        embedding_model=MODEL, created_at=0.0, version=1,
    )  # fmt: skip
    units = text_units(image)
    assert [(u.chunk_index, u.modality, u.contacts) for u in units] == [(1, Modality.IMAGE, False)]
    assert not [
        s for s in detector.detect(units, tagger=None, embedding_model=None) if s.category.startswith("contact.")
    ]


def test_evidence_names_the_speaker_who_said_it(detector: TextSignals) -> None:
    """Diarized transcripts: the evidence of a window names the speaker of the segments its span covers."""
    segments = (
        Segment(0, 0.0, 2.0, " Hello there.", -0.1, 0.0, speaker="S1"),
        Segment(1, 2.0, 5.5, " My number is +44 7700 900123.", -0.1, 0.0, speaker="S2"),
    )
    text = "Hello there. My number is +44 7700 900123."
    analysis = Analysis(
        tenant="t", media_id="call", modality=Modality.SPEECH, language=Language("en", 0.9), tags=(),
        chunks=(Chunk(index=0, text=text, embedding=_axis(7), start_s=0.0, end_s=5.5),), embedding_model=MODEL,
        created_at=0.0, version=1, transcript=Transcript(segments, Language("en", 0.9), 5.5, "transcribe", MODEL),
    )  # fmt: skip
    (phone,) = [
        s
        for s in detector.detect(text_units(analysis), tagger=None, embedding_model=None)
        if s.category == "contact.phone"
    ]
    assert phone.evidence.speaker == "S2" and (phone.evidence.start_s, phone.evidence.end_s) == (2.0, 5.5)
