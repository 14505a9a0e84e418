"""Video end to end over gRPC: a real server, real Whisper, BlazeFace and
PySceneDetect, the embedded store and real Kafka, on the four-shot fixture
(tests/fixtures/video.py: a portrait, a dark shot, red stripes with speech,
two portraits)."""

from __future__ import annotations

import pathlib
import re

import cv2
import grpc
import jiwer
import numpy as np
import pytest

from tests.fixtures import video as fx
from tests.support.kafka import collect
from tests.support.server import ServerProcess
from tests.support.upload import upload_requests
from understanding.v1 import common_pb2, events_pb2
from understanding.v1 import understanding_pb2 as pb

MD = [("x-tenant-id", "e2e-video")]
BAD_MD = [("x-tenant-id", "e2e-video-bad")]  # kept apart so bad-input uploads never show up in searches above
MEDIA_ID = "vid-shots-1"
BOUNDARY_TOLERANCE_S = 0.15  # cuts are placed on the decoded frame (25 fps, some frames skipped)
MAX_WER = 0.3  # espeak-ng through AAC; Whisper base hears "now leaving the" as "our leaving"


def normalize(text: str) -> str:
    return re.sub(r"[^\w\s]", "", text.lower()).strip()


def analyze(
    server: ServerProcess, path: pathlib.Path, *, media_id: str = "", metadata=MD, filename: str = "", **video
) -> pb.AnalyzeVideoResponse:  # type: ignore[no-untyped-def]
    header = pb.UploadHeader(
        media_id=media_id,
        filename=filename or path.name,
        video=pb.VideoOptions(**video),
        speech=pb.SpeechOptions(word_timestamps=True),
    )
    return server.stub.AnalyzeVideo(upload_requests(path, header), metadata=metadata, timeout=300)


def spool_files(server: ServerProcess) -> list[pathlib.Path]:
    spool = server.data_dir / "spool"
    return list(spool.iterdir()) if spool.exists() else []


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("video-e2e")


@pytest.fixture(scope="module")
def shots_mp4(media: pathlib.Path) -> pathlib.Path:
    return fx.make_shots_video(media / "shots.mp4")


@pytest.fixture(scope="module")
def silent_mp4(media: pathlib.Path) -> pathlib.Path:
    return fx.make_shots_video(media / "silent.mp4", audio=False)


@pytest.fixture(scope="module")
def result(server: ServerProcess, shots_mp4: pathlib.Path) -> pb.AnalyzeVideoResponse:
    return analyze(server, shots_mp4, media_id=MEDIA_ID, return_keyframes=True)


def tags_of(shot: common_pb2.Shot) -> set[str]:
    return {t.label for t in shot.tags}


# ---------------------------------------------------------------- the fixture video


def test_facts_and_shot_boundaries(result: pb.AnalyzeVideoResponse) -> None:
    a = result.analysis
    assert a.modality == common_pb2.MODALITY_VIDEO and a.media_id == MEDIA_ID and a.tenant == "e2e-video"
    v = a.video
    assert (v.width, v.height, v.codec, v.has_audio) == (640, 360, "h264", True)
    assert v.fps == pytest.approx(25.0) and v.duration_s == pytest.approx(fx.DURATION_S, abs=0.1)
    assert v.frames_analyzed == 30  # 2 per second by default
    assert v.frames_analyzed <= v.frames_decoded < fx.DURATION_S * fx.FPS  # never every frame
    assert len(a.shots) == len(fx.SHOTS)
    for shot, spec in zip(a.shots, fx.SHOTS, strict=True):
        assert abs(shot.start_s - spec.start_s) <= BOUNDARY_TOLERANCE_S, (spec.kind, shot.start_s)
        assert abs(shot.end_s - spec.end_s) <= BOUNDARY_TOLERANCE_S, (spec.kind, shot.end_s)
        assert shot.start_s < shot.keyframe_s < shot.end_s
    assert [s.index for s in a.shots] == [0, 1, 2, 3]


def test_visual_signals_where_they_are(result: pb.AnalyzeVideoResponse) -> None:
    shots = result.analysis.shots
    for shot, spec in zip(shots, fx.SHOTS, strict=True):
        labels = tags_of(shot)
        assert shot.face_count == spec.faces, spec.kind
        assert ("visual.faces" in labels) == bool(spec.faces), (spec.kind, labels)
        assert ("visual.dark" in labels) == spec.dark, (spec.kind, labels)
        assert ("visual.motion_high" in labels) == spec.moving, (spec.kind, labels)
        assert ("visual.static" in labels) == spec.static, (spec.kind, labels)
        for tag in shot.tags:
            assert 0.0 <= tag.score <= 1.0 and tag.group in ("visual", tag.label.split(".")[0])
            assert (tag.start_s, tag.end_s) == pytest.approx((shot.start_s, shot.end_s), abs=1e-3)
    assert "visual.color.red" in tags_of(shots[2])
    dark = next(t for t in shots[1].tags if t.label == "visual.dark")
    assert dark.score > 0.8
    overall = {t.label: t for t in result.analysis.tags}
    assert "visual.faces" in overall and overall["visual.faces"].end_s == pytest.approx(fx.DURATION_S, abs=0.1)
    assert "visual.faces.multiple" in overall


def test_transcript_is_aligned_to_its_shot(result: pb.AnalyzeVideoResponse) -> None:
    a = result.analysis
    text = " ".join(s.text for s in a.transcript.segments)
    assert jiwer.wer(normalize(fx.SPEECH_TEXT), normalize(text)) <= MAX_WER, text
    assert a.language.code == "en"
    spoken = [s.transcript_text for s in a.shots]
    assert "train" in spoken[fx.SPEECH_SHOT].lower() and "edge" in spoken[fx.SPEECH_SHOT].lower()
    assert [bool(t) for t in spoken] == [i == fx.SPEECH_SHOT for i in range(len(fx.SHOTS))]
    first = a.transcript.segments[0]
    assert fx.SPEECH_START_S - 0.5 <= first.start_s <= fx.SPEECH_START_S + 0.8


def test_one_chunk_per_shot(result: pb.AnalyzeVideoResponse) -> None:
    a = result.analysis
    assert [c.index for c in a.chunks] == [s.index for s in a.shots]
    for chunk, shot in zip(a.chunks, a.shots, strict=True):
        assert (chunk.start_s, chunk.end_s) == pytest.approx((shot.start_s, shot.end_s), abs=1e-3)
        assert chunk.point_id
    assert "train" in a.chunks[fx.SPEECH_SHOT].text.lower()
    # Shots nobody speaks in are indexed by a description of what they look like.
    assert a.chunks[1].text.startswith("a dark scene")
    assert "two faces" in a.chunks[3].text


def test_keyframes_are_small_jpegs(result: pb.AnalyzeVideoResponse) -> None:
    for shot in result.analysis.shots:
        assert shot.keyframe_jpeg[:3] == b"\xff\xd8\xff"
        image = cv2.imdecode(np.frombuffer(shot.keyframe_jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and max(image.shape[:2]) <= 320
    dark = cv2.imdecode(np.frombuffer(result.analysis.shots[1].keyframe_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert dark.mean() < 40


async def test_event_on_kafka(result: pb.AnalyzeVideoResponse, kafka_bootstrap: str, analysis_topic: str) -> None:
    key = MEDIA_ID.encode()
    records = await collect(kafka_bootstrap, analysis_topic, until=lambda rs: any(r.key == key for r in rs))
    event = events_pb2.AnalysisEvent.FromString(next(r for r in records if r.key == key).value)
    a = event.analysis
    assert a.modality == common_pb2.MODALITY_VIDEO and a.media_id == MEDIA_ID
    assert [(round(s.start_s, 2), round(s.end_s, 2)) for s in a.shots] == [
        (round(s.start_s, 2), round(s.end_s, 2)) for s in result.analysis.shots
    ]
    assert a.video.duration_s == pytest.approx(fx.DURATION_S, abs=0.1)
    assert "train" in a.shots[fx.SPEECH_SHOT].transcript_text.lower()


def test_search_finds_the_shot_by_what_is_said(server: ServerProcess, result: pb.AnalyzeVideoResponse) -> None:
    hits = server.stub.Search(pb.SearchRequest(text="a train departing from the platform", top_k=3), metadata=MD).hits
    top = hits[0]
    shot = result.analysis.shots[fx.SPEECH_SHOT]
    assert top.media_id == MEDIA_ID and top.modality == common_pb2.MODALITY_VIDEO, top
    assert top.chunk_index == fx.SPEECH_SHOT
    assert (top.start_s, top.end_s) == pytest.approx((shot.start_s, shot.end_s), abs=1e-3)
    assert top.keyframe_s == pytest.approx(shot.keyframe_s, abs=1e-3)


def test_search_finds_a_silent_shot_by_its_look(server: ServerProcess, result: pb.AnalyzeVideoResponse) -> None:
    def top(text: str, **filters) -> pb.SearchHit:  # type: ignore[no-untyped-def]
        flt = pb.SearchFilter(media_ids=[MEDIA_ID], **filters)
        hits = server.stub.Search(pb.SearchRequest(text=text, top_k=1, filter=flt), metadata=MD).hits
        assert hits, text
        return hits[0]

    assert top("a dark night scene").chunk_index == 1
    assert top("two people").chunk_index == 3
    # Visual tags are in the payload: filter by them.
    assert top("anything", tags=pb.TagFilter(any=["visual.static"])).chunk_index == 3
    faces = top("anything", tags=pb.TagFilter(all=["visual.faces"]))
    assert faces.chunk_index in (0, 3) and faces.keyframe_s > 0


# ---------------------------------------------------------------- variants


def test_video_without_audio_track(server: ServerProcess, silent_mp4: pathlib.Path) -> None:
    a = analyze(server, silent_mp4, media_id="vid-silent-1").analysis
    assert not a.video.has_audio and not a.HasField("transcript") and not a.HasField("language")
    assert len(a.shots) == len(fx.SHOTS) and len(a.chunks) == len(fx.SHOTS)
    assert all(s.transcript_text == "" and s.keyframe_jpeg == b"" for s in a.shots)  # keyframes not asked for
    assert a.shots[0].face_count == 1 and a.shots[3].face_count == 2


def test_skip_audio_and_sample_rate(server: ServerProcess, shots_mp4: pathlib.Path) -> None:
    a = analyze(server, shots_mp4, media_id="vid-skip-audio", skip_audio=True, sample_fps=4.0).analysis
    assert a.video.has_audio and not a.HasField("transcript")
    assert a.video.frames_analyzed == 60
    assert len(a.shots) == len(fx.SHOTS)
    assert abs(a.shots[2].start_s - fx.SHOTS[2].start_s) <= BOUNDARY_TOLERANCE_S


def test_content_decides_not_the_extension(server: ServerProcess, silent_mp4: pathlib.Path) -> None:
    a = analyze(server, silent_mp4, media_id="vid-renamed", metadata=BAD_MD, filename="notes.txt").analysis
    assert a.video.codec == "h264" and len(a.shots) == len(fx.SHOTS)


def test_truncated_upload(server: ServerProcess, shots_mp4: pathlib.Path, media: pathlib.Path) -> None:
    cut = fx.truncate(shots_mp4, media / "cut.mp4", 0.5)  # index up front: the first half decodes
    try:
        a = analyze(server, cut, media_id="vid-cut", metadata=BAD_MD).analysis
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    else:
        assert 1 <= len(a.shots) <= len(fx.SHOTS)
        assert a.video.duration_s < fx.DURATION_S - 1
        assert a.shots[-1].end_s == pytest.approx(a.video.duration_s, abs=0.1)
    assert spool_files(server) == []
    assert server.health_status() == 1


# ---------------------------------------------------------------- bad input


def test_bad_videos(server: ServerProcess, shots_mp4: pathlib.Path, media: pathlib.Path) -> None:
    garbage = media / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(5).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    late_index = fx.make_shots_video(media / "late-index.mp4", audio=False, faststart=False)
    cases = [
        ("audio only", fx.make_audio_only(media / "speech.m4a"), {}, grpc.StatusCode.INVALID_ARGUMENT, "media has no video stream"),
        ("mp3 with cover art", fx.make_audio_only(media / "song.mp3", cover_art=True), {}, grpc.StatusCode.INVALID_ARGUMENT, "media has no video stream"),
        ("random bytes", garbage, {}, grpc.StatusCode.INVALID_ARGUMENT, "not decodable video"),
        ("no frames", fx.make_headers_only(media / "headers.mp4"), {}, grpc.StatusCode.INVALID_ARGUMENT, "media contains no video frames"),
        ("cut before its index", fx.truncate(late_index, media / "late-cut.mp4", 0.5), {}, grpc.StatusCode.INVALID_ARGUMENT, "not decodable video"),
        ("4096x4096", fx.make_color_video(media / "huge.mp4", width=4096, height=4096, seconds=0.2, fps=5), {},
         grpc.StatusCode.RESOURCE_EXHAUSTED, "video.resolution: video resolution 4096x4096"),
        ("4.1 hours", fx.make_color_video(media / "long.mp4", width=16, height=16, seconds=4.1 * 3600, fps=1), {},
         grpc.StatusCode.RESOURCE_EXHAUSTED, "video.duration"),
        ("sample rate too high", shots_mp4, {"sample_fps": 120.0}, grpc.StatusCode.INVALID_ARGUMENT, "sample_fps"),
    ]  # fmt: skip
    for name, path, video, code, needle in cases:
        with pytest.raises(grpc.RpcError) as err:
            analyze(server, path, metadata=BAD_MD, **video)
        assert err.value.code() == code, (name, err.value.details())
        assert needle in err.value.details(), (name, err.value.details())
        assert spool_files(server) == [], name
    with pytest.raises(grpc.RpcError) as err:
        server.stub.AnalyzeVideo(upload_requests(b"", pb.UploadHeader(filename="x.mp4")), metadata=BAD_MD, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "zero-length" in err.value.details()
    assert server.health_status() == 1
