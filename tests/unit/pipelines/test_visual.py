"""Visual signals, faces, shot detection and keyframes on real pictures
(scikit-image's photographs) and on the four-shot fixture video."""

from __future__ import annotations

import hashlib
import pathlib
import threading

import cv2
import numpy as np
import pytest
from skimage import data

from tests.fixtures import video as fx
from understanding.domain import (
    Cancelled,
    InvalidInput,
    Language,
    LimitExceeded,
    Modality,
    ModelRef,
    Segment,
    SpeechOptions,
    Transcript,
    VideoOptions,
    Word,
)
from understanding.media.video import DecodeStats, probe_video, sample_frames
from understanding.models.language import LanguageDetector
from understanding.pipelines.speech import SpeechPipeline
from understanding.pipelines.tagging import Tagger, Taxonomy
from understanding.pipelines.text import TextPipeline
from understanding.pipelines.video import VideoInput, VideoPipeline, VideoSettings, align_transcript, shift_transcript
from understanding.pipelines.visual import (
    COLOR_NAMES,
    FaceDetector,
    ShotDetector,
    ShotSignals,
    VisualResult,
    analyze_frames,
    describe,
    encode_jpeg,
    frame_signals,
    motion_between,
    motion_thumbnail,
    refine_cut,
    visual_tags,
)

Image = np.ndarray


def bgr(rgb: np.ndarray) -> Image:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def fit(image: Image, width: int = 320) -> Image:
    h, w = image.shape[:2]
    return cv2.resize(image, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def faces() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def shots_result(tmp_path_factory: pytest.TempPathFactory, faces: FaceDetector) -> tuple[VisualResult, DecodeStats]:
    path = fx.make_shots_video(tmp_path_factory.mktemp("visual") / "shots.mp4")
    stats = DecodeStats()
    result = analyze_frames(
        sample_frames(path, sample_fps=2.0, width=320, stats=stats),
        faces=faces,
        sample_fps=2.0,
        end_s=probe_video(path).duration_s,
        keyframes=True,
    )
    return result, stats


# ---------------------------------------------------------------- faces


def test_finds_the_real_face_where_it_is(faces: FaceDetector) -> None:
    photo = fit(bgr(data.astronaut()))  # 320x320; her face spans about x 110-170, y 40-110
    found = faces.detect(photo)
    assert len(found) == 1
    face = found[0]
    assert face.score > 0.8
    cx, cy = face.x + face.w / 2, face.y + face.h / 2
    assert 120 < cx < 170 and 50 < cy < 100, face
    assert 30 < face.w < 90


def test_counts_faces_and_finds_small_ones(faces: FaceDetector) -> None:
    portrait = fit(bgr(data.astronaut()), 160)
    pair = np.concatenate([portrait, cv2.flip(portrait, 1)], axis=1)
    assert len(faces.detect(pair)) == 2
    # A face ~20 px wide in a 320x240 frame (about the size of a person across a room).
    small = cv2.copyMakeBorder(
        fit(bgr(data.astronaut()), 120), 60, 60, 100, 100, cv2.BORDER_CONSTANT, value=(40, 40, 40)
    )
    assert len(faces.detect(small)) == 1


@pytest.mark.parametrize(
    "name", ["coffee", "chelsea", "rocket", "black", "noise"], ids=["coffee", "cat", "rocket", "black", "noise"]
)
def test_no_faces_where_there_are_none(faces: FaceDetector, name: str) -> None:
    if name == "black":
        image = np.zeros((180, 320, 3), np.uint8)
    elif name == "noise":
        image = np.random.default_rng(3).integers(0, 256, (180, 320, 3), dtype=np.uint8)
    else:
        image = fit(bgr(getattr(data, name)()))
    assert faces.detect(image) == ()


# ---------------------------------------------------------------- per-frame signals


def test_brightness_contrast_and_colors() -> None:
    black = frame_signals(np.zeros((90, 160, 3), np.uint8), t_s=0.0, faces=(), motion=None)
    white = frame_signals(np.full((90, 160, 3), 255, np.uint8), t_s=0.0, faces=(), motion=None)
    assert black.brightness == 0.0 and white.brightness == 1.0
    assert black.blur is None and white.blur is None  # flat: no verdict on sharpness
    assert black.colors[COLOR_NAMES.index("black")] == 1.0
    assert white.colors[COLOR_NAMES.index("white")] == 1.0
    for bgr_value, name in (
        ((0, 0, 230), "red"),
        ((230, 0, 0), "blue"),
        ((0, 200, 0), "green"),
        ((0, 230, 230), "yellow"),
    ):
        signals = frame_signals(np.full((90, 160, 3), bgr_value, np.uint8), t_s=0.0, faces=(), motion=None)
        assert signals.colors[COLOR_NAMES.index(name)] == 1.0, name
    assert sum(frame_signals(fit(bgr(data.astronaut())), t_s=0, faces=(), motion=None).colors) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_blur_separates_sharp_from_blurred(name: str) -> None:
    sharp = fit(bgr(getattr(data, name)()))
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    sharp_blur = frame_signals(sharp, t_s=0, faces=(), motion=None).blur
    blurred_blur = frame_signals(blurred, t_s=0, faces=(), motion=None).blur
    assert sharp_blur is not None and blurred_blur is not None
    assert sharp_blur < 0.2 and blurred_blur > 0.8, (sharp_blur, blurred_blur)
    # A dim but sharp picture is not blurry: blur is measured relative to contrast.
    dim = (sharp.astype(np.float32) * 0.3).astype(np.uint8)
    assert (frame_signals(dim, t_s=0, faces=(), motion=None).blur or 0) < 0.2


def test_motion_is_the_share_that_changed() -> None:
    photo = fit(bgr(data.coffee()))
    assert motion_between(motion_thumbnail(photo), motion_thumbnail(photo)) == 0.0
    noisy = np.clip(photo.astype(np.int16) + np.random.default_rng(0).integers(-6, 7, photo.shape), 0, 255).astype(
        np.uint8
    )
    assert motion_between(motion_thumbnail(photo), motion_thumbnail(noisy)) < 0.02  # grain is not motion
    shifted = np.roll(photo, 24, axis=1)
    assert motion_between(motion_thumbnail(photo), motion_thumbnail(shifted)) > 0.3


def _signals(**kw: object) -> ShotSignals:
    base: dict[str, object] = {
        "samples": 6,
        "brightness": 0.5,
        "blur": 0.0,
        "motion": 0.1,
        "face_presence": 0.0,
        "face_count": 0,
        "colors": (0.0,) * len(COLOR_NAMES),
    }
    base.update(kw)
    return ShotSignals(**base)  # type: ignore[arg-type]


def test_tags_have_scores_in_range_and_the_shot_span() -> None:
    blue = tuple(0.8 if n == "blue" else 0.2 if n == "black" else 0.0 for n in COLOR_NAMES)
    s = _signals(brightness=0.08, motion=0.0, face_presence=0.9, face_count=2, colors=blue)
    tags = {t.label: t for t in visual_tags(s, start_s=3.0, end_s=7.5)}
    assert set(tags) == {
        "visual.dark",
        "visual.static",
        "visual.faces",
        "visual.faces.multiple",
        "visual.color.blue",
        "visual.color.black",
    }
    assert all(
        0.0 <= t.score <= 1.0 and t.group == "visual" and (t.start_s, t.end_s) == (3.0, 7.5) for t in tags.values()
    )
    assert tags["visual.color.blue"].score == pytest.approx(0.8)
    assert describe(s) == "a dark scene with two faces (people), a still picture, mostly blue and black"
    bright = {t.label for t in visual_tags(_signals(brightness=0.92, motion=0.7, blur=0.9), start_s=0, end_s=1)}
    assert bright == {"visual.bright", "visual.motion_high", "visual.blurry"}
    assert describe(_signals(brightness=0.5, motion=None)) == "a scene"
    assert visual_tags(_signals(face_presence=0.1, face_count=0), start_s=0, end_s=1) == ()  # a lone false positive


# ---------------------------------------------------------------- shots


def _pan(image: Image, frames: int, step: int) -> list[Image]:
    h, w = image.shape[:2]
    crop_w, crop_h = w * 2 // 3, (w * 2 // 3) * 9 // 16
    return [
        cv2.resize(image[(h - crop_h) // 2 : (h + crop_h) // 2, i * step : i * step + crop_w], (320, 180))
        for i in range(frames)
    ]


def _cuts(images: list[Image]) -> list[int]:
    detector = ShotDetector(sample_fps=2.0)
    return [i for i, image in enumerate(images) if detector.push(image) and i > 0]


def test_cuts_between_pictures_not_within_pans() -> None:
    # Pans fast enough that ContentDetector alone scores them as cuts (24-29 over threshold 27).
    images = _pan(bgr(data.coffee()), 6, 30) + _pan(bgr(data.astronaut()), 5, 25) + _pan(bgr(data.chelsea()), 6, 20)
    assert _cuts(images) == [6, 11]


def test_cuts_within_one_scene() -> None:
    # Mirror and reframing cuts of the same photo: same colours, same histogram.
    a = bgr(data.astronaut())
    wide = cv2.resize(a[0:288, 0:512], (320, 180))
    close = cv2.resize(a[40:184, 100:356], (320, 180))
    images = [wide] * 3 + [cv2.flip(wide, 1)] * 3 + [close] * 3
    assert _cuts(images) == [3, 6]


def test_refine_cut_finds_the_frame_of_the_jump() -> None:
    a, b = np.zeros((18, 32), np.uint8), np.full((18, 32), 200, np.uint8)
    trail = [(0.54, a), (0.58, a), (0.62, b), (0.66, b), (1.0, b)]
    assert refine_cut((0.5, a), trail, (0.5, 1.0)) == pytest.approx(0.60)
    assert refine_cut(None, [], (0.5, 1.0)) == pytest.approx(0.75)


def test_the_fixture_shots(shots_result: tuple[VisualResult, DecodeStats]) -> None:
    result, stats = shots_result
    assert result.frames_analyzed == stats.frames_sampled == 30
    bounds = [t for s in result.shots for t in (s.start_s, s.end_s)]
    assert bounds == pytest.approx([t for spec in fx.SHOTS for t in (spec.start_s, spec.end_s)], abs=0.1)
    for shot, spec in zip(result.shots, fx.SHOTS, strict=True):
        labels = {t.label for t in shot.tags}
        assert shot.face_count == spec.faces, (spec.kind, shot.signals)
        assert ("visual.faces" in labels) == bool(spec.faces), spec.kind
        assert ("visual.dark" in labels) == spec.dark, spec.kind
        assert ("visual.motion_high" in labels) == spec.moving, spec.kind
        assert ("visual.static" in labels) == spec.static, spec.kind
        if spec.color:
            assert f"visual.color.{spec.color}" in labels
        assert all(t.start_s == shot.start_s and t.end_s == shot.end_s for t in shot.tags)
        assert shot.start_s + 0.4 <= shot.keyframe_s < shot.end_s  # not the transition frame
    assert result.shots[1].description == "a dark scene, little motion, mostly black"
    video_tags = {t.label: t for t in result.tags}
    assert video_tags["visual.faces"].start_s == 0.0 and video_tags["visual.faces"].end_s == fx.DURATION_S
    assert video_tags["visual.faces.multiple"].start_s == pytest.approx(fx.SHOTS[3].start_s, abs=0.1)
    assert "visual.color.red" in video_tags


def test_keyframes_are_small_jpegs_of_the_shot(shots_result: tuple[VisualResult, DecodeStats]) -> None:
    result, _ = shots_result
    for shot in result.shots:
        assert shot.keyframe_jpeg[:3] == b"\xff\xd8\xff" and len(shot.keyframe_jpeg) < 40_000
        image = cv2.imdecode(np.frombuffer(shot.keyframe_jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (180, 320, 3)
    dark = cv2.imdecode(np.frombuffer(result.shots[1].keyframe_jpeg, np.uint8), cv2.IMREAD_COLOR)
    red = cv2.imdecode(np.frombuffer(result.shots[2].keyframe_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert dark.mean() < 40 and red[..., 2].mean() > 120 > red[..., 0].mean()


def test_keyframes_only_on_request(tmp_path: pathlib.Path, faces: FaceDetector) -> None:
    path = fx.make_shots_video(tmp_path / "s.mp4", audio=False)
    result = analyze_frames(sample_frames(path, sample_fps=1.0, width=320), faces=faces, sample_fps=1.0)
    assert result.shots and all(s.keyframe_jpeg == b"" for s in result.shots)


def test_encode_jpeg_fits_the_box() -> None:
    portrait = np.zeros((1000, 500, 3), np.uint8)
    image = cv2.imdecode(np.frombuffer(encode_jpeg(portrait, max_px=320), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (320, 160)


# ---------------------------------------------------------------- transcript to shots


def _transcript(segments: list[Segment]) -> Transcript:
    return Transcript(tuple(segments), Language("en", 1.0), 20.0, "transcribe", ModelRef("whisper", "base"))


def test_align_transcript_by_overlap_and_by_word() -> None:
    shots = [(0.0, 3.5), (3.5, 6.0), (6.0, 12.5), (12.5, 15.0)]
    segments = [
        Segment(0, 6.8, 11.8, " The red train is leaving.", -0.1, 0.01),
        Segment(1, 3.0, 4.5, " Hello there.", -0.1, 0.01),  # mostly in shot 1
        Segment(2, 16.0, 17.0, " After the end.", -0.1, 0.01),  # audio longer than video: last shot
    ]
    assert align_transcript(shots, _transcript(segments)) == [
        "",
        "Hello there.",
        "The red train is leaving.",
        "After the end.",
    ]
    words = (Word("Stand", 12.0, 12.3, 0.9), Word("back", 12.3, 12.45, 0.9), Word("now.", 12.7, 13.0, 0.9))
    across = Segment(0, 12.0, 13.0, " Stand back now.", -0.1, 0.01, words)
    assert align_transcript(shots, _transcript([across])) == ["", "", "Stand back", "now."]
    assert align_transcript(shots, None) == ["", "", "", ""]


# ---------------------------------------------------------------- VideoPipeline orchestration
# Real decoding, shots and faces; Whisper and the embedder replaced by fakes so
# these run in seconds (tests/e2e/test_video.py runs the real models).


def _embed_vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeTranscriber:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0

    def transcribe(self, audio: np.ndarray, options: SpeechOptions, on_segment=None) -> Transcript:  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.error is not None:
            raise self.error
        segment = Segment(0, 6.8, 11.8, " The red train is leaving the station.", -0.2, 0.01)
        if on_segment is not None:
            on_segment(segment, 1.0)
        return Transcript((segment,), Language("en", 0.97), audio.size / 16000, "transcribe", ModelRef("fake", "1"))


def _pipeline(faces: FaceDetector, transcriber: FakeTranscriber, **settings: object) -> VideoPipeline:
    async def embed(texts):  # type: ignore[no-untyped-def]
        return [_embed_vector(t) for t in texts]

    text = TextPipeline(
        embed=embed,
        tagger=Tagger(Taxonomy.load(), lambda texts: [_embed_vector(t) for t in texts]),
        language=LanguageDetector(),
        model=ModelRef("fake-embedder", "1"),
        chunk_max_words=96,
        chunk_overlap_words=16,
    )
    speech = SpeechPipeline(transcriber=transcriber, text=text, max_duration_s=3600)  # type: ignore[arg-type]
    return VideoPipeline(speech=speech, text=text, settings=VideoSettings(**settings), faces=faces)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("pipeline")
    return {
        "shots": fx.make_shots_video(root / "shots.mp4"),
        "silent": fx.make_shots_video(root / "silent.mp4", audio=False),
    }


async def test_pipeline_builds_shots_chunks_and_transcript(
    faces: FaceDetector, videos: dict[str, pathlib.Path]
) -> None:
    transcriber = FakeTranscriber()
    stages: list[tuple[str, float]] = []
    item = VideoInput(
        "vid-1", videos["shots"], SpeechOptions(), VideoOptions(return_keyframes=True), metadata={"k": "v"}
    )
    a = await _pipeline(faces, transcriber).analyze("t1", item, progress=lambda s, f: stages.append((s, f)))
    assert a.modality is Modality.VIDEO and a.metadata == {"k": "v"} and a.language == Language("en", 0.97)
    assert a.video is not None and a.video.has_audio and a.video.frames_analyzed == 30
    assert a.transcript is not None and transcriber.calls == 1
    assert [s.transcript_text for s in a.shots] == ["", "", "The red train is leaving the station.", ""]
    assert [c.index for c in a.chunks] == [0, 1, 2, 3]
    assert a.chunks[2].text == "The red train is leaving the station."
    # A confident chunk keeps its own detected language (code-switching), else the media's.
    assert a.chunks[2].language is not None and a.chunks[2].language.code == "en"
    assert a.chunks[1].text.startswith("a dark scene")
    assert a.chunks[1].language is None
    assert a.chunks[3].extra == {"keyframe_s": a.shots[3].keyframe_s, "face_count": 2}
    assert all(s.keyframe_jpeg for s in a.shots)
    assert all(abs(float(np.linalg.norm(c.embedding)) - 1) < 1e-5 for c in a.chunks)
    assert {t.label for t in a.tags} >= {"visual.faces", "visual.color.red"}
    assert stages[0] == ("probe", 0.0) and stages[-1] == ("embed", 0.9)
    fractions = [f for s, f in stages if s == "analyze"]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(0.9)


async def test_pipeline_without_audio_or_when_skipped(faces: FaceDetector, videos: dict[str, pathlib.Path]) -> None:
    transcriber = FakeTranscriber()
    pipeline = _pipeline(faces, transcriber)
    silent = await pipeline.analyze("t1", VideoInput("vid-2", videos["silent"], SpeechOptions()))
    skipped = await pipeline.analyze(
        "t1", VideoInput("vid-3", videos["shots"], SpeechOptions(), VideoOptions(skip_audio=True))
    )
    for a in (silent, skipped):
        assert a.transcript is None and a.language is None and len(a.shots) == 4
        assert all(s.keyframe_jpeg == b"" and s.transcript_text == "" for s in a.shots)
    assert transcriber.calls == 0
    assert skipped.video is not None and skipped.video.has_audio


async def test_pipeline_limits_and_sample_rate(faces: FaceDetector, videos: dict[str, pathlib.Path]) -> None:
    item = VideoInput("vid-4", videos["shots"], SpeechOptions())
    with pytest.raises(LimitExceeded) as err:
        await _pipeline(faces, FakeTranscriber(), max_pixels=640 * 360 - 1).analyze("t1", item)
    assert err.value.field == "video.resolution"
    with pytest.raises(LimitExceeded) as err:
        await _pipeline(faces, FakeTranscriber(), max_duration_s=10.0).analyze("t1", item)
    assert err.value.field == "video.duration"
    for fps in (31.0, -1.0, float("nan")):
        with pytest.raises(InvalidInput) as bad:
            VideoOptions(sample_fps=fps)
        assert bad.value.field == "video.sample_fps"
    one = await _pipeline(faces, FakeTranscriber()).analyze(
        "t1", VideoInput("v", videos["silent"], SpeechOptions(), VideoOptions(sample_fps=1.0))
    )
    assert one.video is not None and one.video.frames_analyzed == 15


async def test_a_failing_half_stops_the_other(faces: FaceDetector, videos: dict[str, pathlib.Path]) -> None:
    failing = FakeTranscriber(error=LimitExceeded("too long", field="duration"))
    with pytest.raises(LimitExceeded) as err:
        await _pipeline(faces, failing).analyze("t1", VideoInput("vid-5", videos["shots"], SpeechOptions()))
    assert err.value.field == "duration"


async def test_cancel_stops_the_analysis(faces: FaceDetector, videos: dict[str, pathlib.Path]) -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled):
        await _pipeline(faces, FakeTranscriber()).analyze(
            "t1", VideoInput("vid-6", videos["silent"], SpeechOptions()), cancelled=cancelled
        )


def test_shift_transcript_moves_segments_and_words() -> None:
    words = (Word("Stand", 0.1, 0.3, 0.9), Word("back", 0.4, 0.6, 0.9))
    shifted = shift_transcript(_transcript([Segment(0, 0.1, 0.6, " Stand back", -0.1, 0.01, words)]), 1.0)
    segment = shifted.segments[0]
    assert (segment.start_s, segment.end_s) == pytest.approx((1.1, 1.6))
    assert [t for w in segment.words for t in (w.start_s, w.end_s)] == pytest.approx([1.1, 1.3, 1.4, 1.6])
    assert shift_transcript(shifted, -5.0).segments[0].start_s == 0.0  # never before the start
