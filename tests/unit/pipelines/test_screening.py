"""Which frames the picture models see, the per-shot cache, and the signals made from what
they found; on small fakes of the models (the real ones: tests/integration, tests/e2e)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from understanding.domain import BodyPart, Box, ImageOptions, Modality, ModelRef, TextLine
from understanding.media.video import SampledFrame
from understanding.models.nudity import BodyPart as DetectedPart
from understanding.models.nudity import NudityResult
from understanding.models.ocr import OcrResult
from understanding.models.ocr import TextLine as ReadLine
from understanding.pipelines.screening import (
    FrameFindings,
    FrameScreener,
    ScreeningSettings,
    VisualModels,
    contact_signals,
    look,
    nudity_signals,
    shot_findings,
)

NSFW = ModelRef("open-nsfw", "1")
OCR = ModelRef("pp-ocrv4-mobile", "1")


class FakeModels:
    """Counts calls; OCR reads one line at a fixed place, nudity scores the mean red level."""

    def __init__(self) -> None:
        self.nudity_calls: list[tuple[int, ...]] = []
        self.ocr_calls: list[tuple[int, ...]] = []

    async def nudity(self, image: np.ndarray) -> NudityResult:
        self.nudity_calls.append(image.shape)
        score = float(image[:, :, 2].mean()) / 255.0
        return NudityResult(score, (DetectedPart("FEMALE_BREAST_EXPOSED", score, 10, 20, 30, 40),), NSFW)

    async def ocr(self, image: np.ndarray) -> OcrResult:
        self.ocr_calls.append(image.shape)
        quad = ((100.0, 50.0), (300.0, 50.0), (300.0, 80.0), (100.0, 80.0))
        return OcrResult((ReadLine("CALL +1 415 555 0132", 0.9, quad, 0.0),), 1, 0, OCR)

    def models(self) -> VisualModels:
        return VisualModels(self.nudity, self.ocr, NSFW, OCR)


def frame(t: float, value: int, *, side: int = 640) -> SampledFrame:
    small = np.full((90, 160, 3), value, np.uint8)
    detail = np.full((side * 9 // 16, side, 3), value, np.uint8)
    return SampledFrame(t, small, (), detail)


async def screen(models: VisualModels, frames: list[tuple[SampledFrame, bool]], **settings: float) -> FrameScreener:
    screener = FrameScreener(
        models,
        ScreeningSettings(**settings),  # type: ignore[arg-type]
        ImageOptions(),
        asyncio.get_running_loop(),
        scale=lambda image: image.shape[1] / 1280,
    )

    def feed() -> None:  # the frame pass runs in a worker thread
        for sample, new_shot in frames:
            screener.offer(sample, new_shot)

    await asyncio.to_thread(feed)
    return screener


async def test_first_frame_of_every_shot_then_one_per_interval() -> None:
    fake = FakeModels()
    # 2 samples/s; shot 1 from 0 to 4.5 s (changing picture), shot 2 from 5 s.
    frames = [(frame(i / 2, 10 + 17 * i), i in (0, 10)) for i in range(14)]
    screener = await screen(fake.models(), frames, nudity_interval_s=1.0, ocr_interval_s=2.0)
    found = await screener.results()
    nudity_times = [f.t_s for f in found if f.nudity is not None]
    read_times = [f.t_s for f in found if f.lines is not None]
    assert nudity_times == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert read_times == [0.0, 2.0, 4.0, 5.0]  # the cut at 5 s reads at once, not at 6 s
    assert all(shape == (360, 640, 3) for shape in fake.ocr_calls)  # the detail frame, not the 160 px copy


async def test_a_still_shot_is_read_once() -> None:
    fake = FakeModels()
    frames = [(frame(i / 2, 80), i == 0) for i in range(20)]  # ten seconds of the same slide
    screener = await screen(fake.models(), frames, nudity_interval_s=5.0, ocr_interval_s=2.0)
    found = await screener.results()
    assert len(fake.ocr_calls) == 1 and screener.reused == 4
    assert [f.t_s for f in found] == [0.0, 5.0]  # nudity still looks every interval


async def test_skipped_models_and_frames_without_detail_cost_nothing() -> None:
    fake = FakeModels()
    off = FrameScreener(
        fake.models(), ScreeningSettings(), ImageOptions(skip_ocr=True, skip_nudity=True), asyncio.get_running_loop(),
        scale=lambda image: 1.0,
    )  # fmt: skip
    assert not off.enabled
    only_nudity = await screen(VisualModels(fake.nudity, None, NSFW, None), [(frame(0.0, 1), True)])
    assert only_nudity.enabled and [f.lines for f in await only_nudity.results()] == [None]
    await screen(fake.models(), [(SampledFrame(0.0, np.zeros((9, 16, 3), np.uint8)), True)])
    assert fake.ocr_calls == []


async def test_boxes_come_back_in_the_media_pixels() -> None:
    fake = FakeModels()
    found = await look(fake.models(), np.zeros((360, 640, 3), np.uint8), t_s=2.5, scale=0.5, nudity=True, ocr=True)
    assert found.lines is not None and found.lines[0].box == Box(200, 100, 400, 60)
    assert found.lines[0].frame_s == 2.5 and found.text == "CALL +1 415 555 0132"
    assert found.parts[0].box == Box(20, 40, 60, 80)


def test_shots_keep_distinct_lines_in_order_and_their_best_nudity_frame() -> None:
    def line(text: str, t: float) -> TextLine:
        return TextLine(text, 0.9, Box(0, 0, 10, 10), t)

    findings = [
        FrameFindings(0.0, 0.1, (), (line("Harbour museum", 0.0),)),
        FrameFindings(1.0, 0.7, (BodyPart("BUTTOCKS_EXPOSED", 0.7, Box(1, 1, 1, 1), 1.0),), None),
        FrameFindings(2.0, 0.2, (), (line("Harbour rnuseum", 2.0), line("Thursday at seven", 2.0))),
        FrameFindings(6.0, None, (), (line("Evening lecture", 6.0),)),
    ]
    first, second = shot_findings(findings, [(0.0, 5.0), (5.0, 9.0)])
    assert first.ocr_text == "Harbour museum\nThursday at seven"  # the misread repeat is the same line
    assert [x.frame_s for x in first.text_lines] == [0.0, 2.0]
    assert (first.nudity_score, first.nudity_frame_s, first.frames_checked) == (0.7, 1.0, 3)
    assert first.nudity_parts[0].label == "BUTTOCKS_EXPOSED"
    assert second.ocr_text == "Evening lecture" and second.nudity_score == 0.0 and second.frames_checked == 1


def test_nudity_signals_per_exposed_part_or_for_the_whole_picture() -> None:
    parts = [
        BodyPart("FACE_FEMALE", 0.9, Box(0, 0, 5, 5), 3.0),
        BodyPart("FEMALE_BREAST_EXPOSED", 0.6, Box(10, 20, 30, 40), 3.0),
        BodyPart("BUTTOCKS_EXPOSED", 0.05, Box(1, 1, 1, 1), 3.0),
    ]
    detector = nudity_signals(0.6, parts, frame_s=3.0, modality=Modality.VIDEO, model=NSFW, min_score=0.1,
                              start_s=2.0, end_s=4.0, chunk_index=1)  # fmt: skip
    assert [(s.category, s.score, s.evidence.detail, s.evidence.box) for s in detector] == [
        ("nudity", 0.6, "FEMALE_BREAST_EXPOSED", (10, 20, 30, 40))
    ]
    assert detector[0].evidence.frame_s == 3.0 and detector[0].evidence.chunk_index == 1
    classifier = nudity_signals(0.35, [], frame_s=0.0, modality=Modality.IMAGE, model=NSFW, min_score=0.1)
    assert [(s.score, s.evidence.box, s.evidence.detail) for s in classifier] == [(0.35, None, "nsfw")]
    assert nudity_signals(0.05, [], frame_s=0.0, modality=Modality.IMAGE, model=NSFW, min_score=0.1) == []


def test_contact_details_in_ocr_text_carry_the_line_box_frame_and_chunk_span() -> None:
    lines = (
        TextLine("Harbour museum", 0.95, Box(10, 10, 200, 20), 4.0),
        TextLine("Text me +1 415 555 0132", 0.8, Box(10, 300, 320, 30), 4.5),
        TextLine("or anna.k@example.org", 0.9, Box(10, 340, 260, 30), 4.5),
    )
    text = "\n".join(line.text for line in lines)
    chunk = "what she says\n" + text
    signals = contact_signals(
        lines,
        text,
        modality=Modality.VIDEO,
        model=OCR,
        chunks=[(2, len("what she says\n"), chunk)],
        start_s=3.0,
        end_s=9.0,
    )
    by_category = {s.category: s for s in signals}
    assert set(by_category) == {"contact.phone", "contact.email"}
    phone = by_category["contact.phone"]
    assert phone.score == 0.8 and phone.evidence.frame_s == 4.5 and phone.evidence.box == (10, 300, 320, 30)
    assert phone.evidence.chunk_index == 2 and phone.evidence.span is not None
    begin, end = phone.evidence.span
    assert chunk[begin:end] == phone.evidence.text == "+1 415 555 0132"
    assert phone.evidence.model == OCR and phone.evidence.modality is Modality.VIDEO
    assert (phone.evidence.start_s, phone.evidence.end_s) == (3.0, 9.0)
    assert by_category["contact.email"].evidence.detail == "email"
    # A span that only a later chunk holds whole is attributed to that chunk.
    pieces = [(1, 0, text[:20]), (2, -15, text[15:])]
    moved = contact_signals(lines, text, modality=Modality.IMAGE, model=OCR, chunks=pieces)
    assert {s.category: s.evidence.chunk_index for s in moved} == {"contact.phone": 2, "contact.email": 2}
    assert contact_signals(lines[:1], lines[0].text, modality=Modality.IMAGE, model=OCR, chunks=[]) == []


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        ScreeningSettings(ocr_interval_s=0)
    with pytest.raises(ValueError):
        ScreeningSettings(detail_max_side=10)


# ---------------------------------------------------------------- live frames
async def test_live_frames_follow_the_video_schedule_and_become_signals() -> None:
    from understanding.pipelines.live import LivePictures

    fake = FakeModels()
    pictures = LivePictures(
        fake.models(), ScreeningSettings(nudity_interval_s=1.0, ocr_interval_s=2.0), detect_language=lambda _: "en"
    )
    assert pictures.enabled and pictures.models == (NSFW, OCR)
    checks = []
    for i in range(4):  # 1 frame/s of a changing picture, one shot; encoded at 1280x720, detail at 640x360
        checks.append(await pictures(frame(float(i), 200 + 10 * i), new_shot=i == 0, width=1280, height=720))
    assert all(c is not None for c in checks)
    assert [c.findings.lines is not None for c in checks if c is not None] == [True, False, True, False]
    assert [c.models for c in checks if c is not None] == [(NSFW, OCR), (NSFW,), (NSFW, OCR), (NSFW,)]
    first = checks[0]
    assert first is not None
    by_category = {s.category: s for s in first.signals}
    assert set(by_category) == {"nudity", "contact.phone"}
    phone = by_category["contact.phone"].evidence
    assert phone.text == "+1 415 555 0132" and phone.frame_s == 0.0 and phone.modality is Modality.VIDEO
    assert phone.box == pytest.approx((200.0, 100.0, 400.0, 60.0))  # in the encoded frame's pixels (x2)
    nude = by_category["nudity"]
    assert nude.score == pytest.approx(200 / 255, abs=1e-3) and nude.evidence.frame_s == 0.0
    assert pictures.checked == 4


async def test_a_live_frame_without_detail_or_not_due_is_not_checked() -> None:
    from understanding.pipelines.live import LivePictures

    fake = FakeModels()
    pictures = LivePictures(fake.models(), ScreeningSettings(nudity_interval_s=2.0, ocr_interval_s=2.0))
    assert await pictures(SampledFrame(0.0, np.zeros((9, 16, 3), np.uint8)), new_shot=True, width=16, height=9) is None
    assert await pictures(frame(0.0, 50), new_shot=True, width=640, height=360) is not None
    assert await pictures(frame(1.0, 50), new_shot=False, width=640, height=360) is None  # within both intervals
    assert await pictures(frame(1.5, 90), new_shot=True, width=640, height=360) is not None  # a cut: at once
    assert not LivePictures(VisualModels(), ScreeningSettings()).enabled


async def test_text_read_on_a_live_frame_goes_to_the_text_detectors() -> None:
    from understanding.domain import Evidence, Signal
    from understanding.pipelines.live import LivePictures

    asked: list[tuple[str, float, str | None]] = []

    async def shown_text(text: str, t_s: float, language: str | None) -> list[Signal]:
        asked.append((text, t_s, language))
        evidence = Evidence(Modality.VIDEO, ModelRef("alt-profanity-check", "1"), t_s, t_s, frame_s=t_s, text=text)
        return [Signal("offensive", 0.9, evidence)]

    fake = FakeModels()
    pictures = LivePictures(fake.models(), ScreeningSettings(), detect_language=lambda _: "en", shown_text=shown_text)
    check = await pictures(frame(3.0, 40), new_shot=True, width=1280, height=720)
    assert check is not None and asked == [("CALL +1 415 555 0132", 3.0, "en")]
    assert {s.category for s in check.signals} == {"nudity", "contact.phone", "offensive"}
    no_text = LivePictures(VisualModels(fake.nudity, None, NSFW, None), ScreeningSettings(), shown_text=shown_text)
    await no_text(frame(4.0, 40), new_shot=True, width=1280, height=720)
    assert len(asked) == 1  # nothing read, nothing asked
