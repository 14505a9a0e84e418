"""Lexical terms in any language, and the gate that keeps them out of cross-lingual sentence queries."""

from __future__ import annotations

import pytest
import qdrant_edge as qe

from understanding.domain import Language
from understanding.sinks.lexical import AVERAGE_CHUNK_TERMS, SCOPE_MIN_TERMS, LexicalEncoder, scoped

ENGLISH = [
    "The quick brown foxes jumped over the lazy dogs, and the dogs barked at the foxes.",
    "Order XJ-4471 shipped to the café on 3 March; the naïve courier's van broke down.",
]
KEYWORD_IN_SENTENCE = {
    "ja": ("東京への私たちのフライトは遅れました", "フライト"),
    "zh": ("我们飞往东京的航班延误了", "航班"),
    "ko": ("도쿄행 비행기가 지연되었습니다", "비행기"),
    "th": ("เที่ยวบินของเราไปโตเกียวล่าช้า", "โตเกียว"),
}


@pytest.fixture(scope="module")
def lexical() -> LexicalEncoder:
    return LexicalEncoder()


@pytest.mark.parametrize("text", ENGLISH)
def test_english_terms_and_weights_are_qdrants_own_bm25(lexical: LexicalEncoder, text: str) -> None:
    """Words keep Qdrant's analysis and weights exactly, so English ranking is what it was."""
    reference = qe.Bm25(qe.Bm25Config(avg_len=AVERAGE_CHUNK_TERMS, ascii_folding=True))
    want = reference.embed_document(text)
    got = lexical.document(text)
    assert sorted(got.indices) == sorted(want.indices)
    weights = dict(zip(got.indices, got.values, strict=True))
    for index, value in zip(want.indices, want.values, strict=True):
        assert weights[index] == pytest.approx(value, rel=1e-5)
    assert sorted(lexical.query(text).indices) == sorted(reference.embed_query(text).indices)


@pytest.mark.parametrize("lang", sorted(KEYWORD_IN_SENTENCE))
def test_a_keyword_finds_the_unspaced_sentence_it_sits_in(lexical: LexicalEncoder, lang: str) -> None:
    sentence, keyword = KEYWORD_IN_SENTENCE[lang]
    query = lexical.query(keyword, Language(lang, 1.0))
    assert query and set(query.indices) <= set(lexical.document(sentence, lang).indices)
    # The word tokenizer alone kept the sentence as one or two tokens: the keyword missed it.
    words = qe.Bm25(qe.Bm25Config(avg_len=AVERAGE_CHUNK_TERMS, ascii_folding=True))
    assert not set(words.embed_query(keyword).indices) <= set(words.embed_document(sentence).indices)


def test_a_sentence_query_is_matched_only_in_its_own_language(lexical: LexicalEncoder) -> None:
    korean_doc = lexical.document("Firefox 동기화 설정에서 비밀번호를 저장할 수 있습니다", "ko")
    english_doc = lexical.document("Firefox can save your passwords in the sync settings", "en")
    sentence = "Firefox could not save the passwords of your account"
    unscoped = lexical.query(sentence)
    assert set(unscoped.indices) & set(korean_doc.indices)  # "firefox" would match the Korean document
    confident = lexical.query(sentence, Language("en", 0.99))
    assert len(confident.indices) >= SCOPE_MIN_TERMS
    assert not set(confident.indices) & set(korean_doc.indices)
    assert set(confident.indices) & set(english_doc.indices)


def test_keywords_and_unsure_languages_match_every_language(lexical: LexicalEncoder) -> None:
    korean_doc = lexical.document("Firefox 동기화 설정에서 비밀번호를 저장할 수 있습니다", "ko")
    short = lexical.query("Firefox sync", Language("en", 0.99))
    assert short == lexical.query("Firefox sync") and set(short.indices) & set(korean_doc.indices)
    unsure = lexical.query("Firefox could not save the passwords of your account", Language("en", 0.45))
    assert unsure == lexical.query("Firefox could not save the passwords of your account")
    assert lexical.query("Firefox could not save the passwords", Language("und", 0.0)) == lexical.query(
        "Firefox could not save the passwords"
    )


def test_scoped_terms_are_stable_32_bit_ids() -> None:
    assert scoped(639172133, "en") == scoped(639172133, "en") != scoped(639172133, "de")
    assert 0 <= scoped(639172133, "en") < 2**32
    # a Chinese sentence the detector calls Wu Chinese matches Chinese documents
    assert scoped(639172133, "wuu") == scoped(639172133, "zh") != scoped(639172133, "ja")


def test_documents_without_a_language_have_no_scoped_terms(lexical: LexicalEncoder) -> None:
    plain = lexical.document(ENGLISH[0])
    assert set(plain.indices) < set(lexical.document(ENGLISH[0], "en").indices)
    assert lexical.document(ENGLISH[0], "und") == plain
    assert not lexical.document("  ...  ")


def test_matched_terms_in_unspaced_scripts(lexical: LexicalEncoder) -> None:
    text = "東京行きの飛行機が遅れました。Our flights were delayed"
    assert lexical.matched_terms("東京 飛行機 flight 大阪", text) == ("flight", "東京", "飛行機")
    assert lexical.matched_terms("도쿄 비행기", "도쿄행 비행기가 늦었어요") == ("도쿄", "비행기")
