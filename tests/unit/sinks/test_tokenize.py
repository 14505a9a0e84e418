"""Lexical terms for unspaced languages: a keyword inside a sentence shares terms with it."""

from __future__ import annotations

import pytest

from understanding.sinks.tokenize import terms

SENTENCES = {
    "ja": ("東京への私たちのフライトは遅れました", "フライト"),
    "zh": ("我们飞往东京的航班延误了", "航班"),
    "ko": ("도쿄행 비행기가 지연되었습니다", "비행기"),
    "th": ("เที่ยวบินของเราไปโตเกียวล่าช้า", "โตเกียว"),
}


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_a_keyword_inside_the_sentence_shares_its_terms(lang: str) -> None:
    sentence, keyword = SENTENCES[lang]
    assert set(terms(keyword, lang, method="bigram")) <= set(terms(sentence, lang, method="bigram"))


def test_bigrams_keep_thai_marks_with_their_letter() -> None:
    assert terms("ล่า", "th", method="bigram") == ["ล่า"]  # one letter with its tone mark: a unigram
    assert all(t[0] not in "\u0e48\u0e49\u0e34\u0e35" for t in terms("เที่ยวบิน", "th", method="bigram"))


def test_other_scripts_are_folded_words() -> None:
    assert terms("Unser Flug XJ-4471 nach Ｔｏｋｉｏ", "de", method="bigram") == [
        "unser",
        "flug",
        "xj",
        "4471",
        "nach",
        "tokio",
    ]
    assert terms("Firefoxの設定", "ja", method="bigram") == ["firefox", "の設", "設定"]


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        terms("x", "en", method="mecab")
