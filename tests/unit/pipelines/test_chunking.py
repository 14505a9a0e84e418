from __future__ import annotations

import pytest

from understanding.pipelines.chunking import chunk_text


def test_short_text_is_one_chunk_verbatim() -> None:
    spans = chunk_text("  hello   world  ", max_words=10, overlap_words=2)
    assert [s.text for s in spans] == ["hello   world"]


def test_long_text_windows_overlap_and_cover_everything() -> None:
    words = [f"w{i}" for i in range(250)]
    spans = chunk_text(" ".join(words), max_words=100, overlap_words=20)
    assert [len(s.text.split()) for s in spans] == [100, 100, 90]
    assert spans[1].text.split()[0] == "w80"
    covered = {w for s in spans for w in s.text.split()}
    assert covered == set(words)
    assert [s.index for s in spans] == [0, 1, 2]


def test_empty_and_invalid() -> None:
    assert chunk_text(" \n\t", max_words=5, overlap_words=1) == []
    with pytest.raises(ValueError):
        chunk_text("x", max_words=0, overlap_words=0)
    # overlap >= window would never advance: it is clamped.
    assert len(chunk_text("a b c d e f", max_words=2, overlap_words=5)) == 5


def test_unspaced_scripts_are_windowed_by_character_units() -> None:
    """A long Japanese text (no spaces) is cut into windows like a long English one, not kept whole."""
    text = "東京行きの飛行機が遅れました。" * 40  # 600 characters, no space
    spans = chunk_text(text, max_words=96, overlap_words=16)
    assert len(spans) > 1 and all(len(s.text) <= 2 * 96 for s in spans)
    assert spans[0].text == text[: len(spans[0].text)] and text.endswith(spans[-1].text)
    thai = chunk_text("เที่ยวบินของเราไปโตเกียวล่าช้า" * 20, max_words=10, overlap_words=0)
    assert len(thai) > 1 and all(len(s.text) <= 40 for s in thai)
    # Mixed text: Latin words stay words, Han/kana count two characters per unit.
    assert [s.text for s in chunk_text("Firefoxの設定を開く", max_words=3, overlap_words=0)] == [
        "Firefoxの設定を",
        "開く",
    ]
