"""The visual moderation signals from the real core: `Core.build` with the real models
(open_nsfw, PP-OCRv4, BlazeFace, the embedder) and the decoder sandbox, analysing a video
with a phone number shown on screen and a poster image. The signals are what the
moderation policy decides on; the gRPC surface is covered by tests/e2e/test_image.py."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import pytest

from tests.fixtures import images as fx
from understanding.config import Settings
from understanding.core.runtime import Core
from understanding.domain import AnalysisOptions, ImageOptions, MediaRequest, Modality, VideoOptions


@pytest.fixture(scope="module")
async def core(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Core]:
    settings = Settings(data_dir=str(tmp_path_factory.mktemp("core")), metrics_port="off")
    built = await asyncio.to_thread(Core.build, settings)
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


async def test_a_phone_number_on_screen_is_a_contact_phone_signal_with_its_frame_time(
    core: Core, tmp_path: pathlib.Path
) -> None:
    video = fx.onscreen_text_video(tmp_path / "caption.mp4")
    request = MediaRequest(Modality.VIDEO, "vid-caption", path=video, options=AnalysisOptions(video=VideoOptions()))
    analysis = await core.analyzer.analyze("it-visual", request)
    assert [round(s.start_s, 1) for s in analysis.shots] == [start for start, _, _ in fx.TEXT_SHOTS]
    start, end, _ = fx.TEXT_SHOTS[fx.PHONE_SHOT]
    phones = [s for s in analysis.signals if s.category == "contact.phone"]
    assert len(phones) == 1, analysis.signals
    phone = phones[0]
    evidence = phone.evidence
    assert evidence.modality is Modality.VIDEO and evidence.model.name == "pp-ocrv4-mobile"
    assert evidence.frame_s is not None and start <= evidence.frame_s < start + 0.6  # the shot's first sample
    assert (evidence.start_s, evidence.end_s) == pytest.approx((start, end), abs=0.15)
    assert evidence.box is not None
    x, y, w, h = evidence.box
    assert 20 <= x <= 80 and 260 <= y <= 300 and h < 60  # where the caption is drawn, in the video's pixels
    assert evidence.chunk_index == fx.PHONE_SHOT and evidence.span is not None
    chunk = analysis.chunks[fx.PHONE_SHOT]
    assert chunk.text[evidence.span[0] : evidence.span[1]] == evidence.text
    assert "".join(evidence.text.split()) == "+14155550132" and phone.score > 0.8
    shot = analysis.shots[fx.PHONE_SHOT]
    assert "WhatsApp" in shot.ocr_text and shot.text_lines[0].frame_s == evidence.frame_s
    assert "Harbour museum" in analysis.shots[2].ocr_text and "Harbour museum" in analysis.chunks[2].text
    assert [m.name for m in analysis.visual_models] == ["open-nsfw", "pp-ocrv4-mobile"]
    assert all(s.nudity_score < 0.5 for s in analysis.shots)  # ordinary pictures


async def test_an_image_gets_its_text_and_signals_and_skipping_ocr_reads_nothing(
    core: Core, tmp_path: pathlib.Path
) -> None:
    poster = fx.render_lines([*fx.POSTER_LINES, fx.PHONE_TEXT])
    path = tmp_path / "poster.webp"
    poster.save(path, "WEBP", quality=90)
    analysis = await core.analyzer.analyze("it-visual", MediaRequest(Modality.IMAGE, "img-poster", path=path))
    assert analysis.image is not None and analysis.image.format == "webp"
    assert "Lighthouse keepers of the northern coast" in analysis.image.ocr_text
    assert {s.category for s in analysis.signals} >= {"contact.phone"}
    phone = next(s for s in analysis.signals if s.category == "contact.phone").evidence
    assert phone.modality is Modality.IMAGE and phone.frame_s == 0.0 and phone.box is not None
    skipped = await core.analyzer.analyze(
        "it-visual",
        MediaRequest(
            Modality.IMAGE, "img-poster-2", path=path, options=AnalysisOptions(image=ImageOptions(skip_ocr=True))
        ),
    )
    assert skipped.image is not None and skipped.image.ocr_text == "" and len(skipped.chunks) == 1
    assert [m.name for m in skipped.visual_models] == ["open-nsfw"]
