"""probe_video / sample_frames on real H.264 video (tests/fixtures/video.py): facts,
sampling, efficiency, limits and every kind of bad input."""

from __future__ import annotations

import itertools
import pathlib
import subprocess
import threading

import numpy as np
import pytest

from tests.fixtures import video as fx
from understanding.domain import Cancelled, InvalidInput, LimitExceeded
from understanding.media.video import (
    DecodeStats,
    VideoLimits,
    analysis_size,
    audio_offset_s,
    probe_video,
    sample_frames,
)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("video")


@pytest.fixture(scope="module")
def shots(media: pathlib.Path) -> pathlib.Path:
    return fx.make_shots_video(media / "shots.mp4")


@pytest.fixture(scope="module")
def silent(media: pathlib.Path) -> pathlib.Path:
    return fx.make_shots_video(media / "silent.mp4", audio=False)


def sample(path: pathlib.Path, fps: float = 2.0, **kw) -> tuple[list, DecodeStats]:  # type: ignore[no-untyped-def, type-arg]
    stats = DecodeStats()
    return list(sample_frames(path, sample_fps=fps, width=320, stats=stats, **kw)), stats


# ---------------------------------------------------------------- facts


def test_probe_reads_container_facts(shots: pathlib.Path, silent: pathlib.Path, media: pathlib.Path) -> None:
    info = probe_video(shots)
    assert (info.width, info.height, info.codec) == (640, 360, "h264")
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(fx.DURATION_S, abs=0.05)
    assert info.has_audio
    assert not probe_video(silent).has_audio
    mkv = probe_video(fx.make_shots_video(media / "shots.mkv", audio=False, container="mkv"))
    assert (mkv.width, mkv.height, mkv.codec) == (640, 360, "h264")
    assert mkv.duration_s == pytest.approx(fx.DURATION_S, abs=0.1)


def test_content_decides_not_the_extension(shots: pathlib.Path, media: pathlib.Path) -> None:
    renamed = media / "clip.wav"
    renamed.write_bytes(shots.read_bytes())
    assert probe_video(renamed).codec == "h264"
    frames, _ = sample(renamed)
    assert len(frames) == 30


# ---------------------------------------------------------------- sampling


def test_samples_on_the_grid_downscaled(shots: pathlib.Path) -> None:
    frames, stats = sample(shots, 2.0)
    times = [f.t_s for f in frames]
    assert len(frames) == 30 == stats.frames_sampled
    assert not stats.truncated  # decoded to the end its index states
    # Each sample is the first decoded frame at or after its grid time; skipped
    # non-reference frames put it at most a few frames later.
    for i, t in enumerate(times):
        assert i * 0.5 - 1e-6 <= t <= i * 0.5 + 0.13, (i, t)
    for f in frames:
        assert f.image.shape == (180, 320, 3) and f.image.dtype == np.uint8 and f.image.flags.c_contiguous
    # BGR: the red stripes shot is red in channel 2.
    red = next(f for f in frames if 7.0 <= f.t_s < 12.0).image.reshape(-1, 3).mean(axis=0)
    assert red[2] > 100 > red[0]


def test_skips_frames_it_does_not_need(shots: pathlib.Path) -> None:
    _, sparse = sample(shots, 2.0)
    _, every = sample(shots, 25.0)
    total = int(fx.DURATION_S * fx.FPS)
    assert every.frames_decoded == every.frames_sampled == total
    assert not sparse.truncated and not every.truncated
    # 2 of 25 frames per second are wanted: non-reference frames are never decoded.
    assert sparse.frames_decoded < 0.7 * total, sparse


def test_low_rates_seek_past_whole_gops(shots: pathlib.Path) -> None:
    frames, stats = sample(shots, 0.1)  # one frame every 10 s; GOPs are 2 s
    assert [round(f.t_s, 2) for f in frames] == [0.0, 10.0]
    assert stats.seeks >= 1
    assert stats.frames_decoded < 120, stats  # instead of 375
    assert not stats.truncated  # seeking still reaches the end


def test_trail_covers_the_decoded_frames_between_samples(shots: pathlib.Path) -> None:
    frames, stats = sample(shots, 2.0)
    assert sum(len(f.trail) for f in frames) <= stats.frames_decoded
    for previous, current in itertools.pairwise(frames):
        times = [t for t, _ in current.trail]
        assert times == sorted(times) and times[-1] == current.t_s and times[0] > previous.t_s
        assert all(sig.shape == (18, 32) and sig.dtype == np.uint8 for _, sig in current.trail)


def test_never_upscales_and_honours_pixel_aspect(media: pathlib.Path) -> None:
    small = fx.make_color_video(media / "small.mp4", width=64, height=48, seconds=1.0)
    frames, _ = sample(small, 2.0)
    assert frames[0].image.shape == (48, 64, 3)
    assert analysis_size(64, 48, 320, 2.0) == (128, 48)  # anamorphic: displayed twice as wide
    assert analysis_size(1920, 1080, 320) == (320, 180)
    assert analysis_size(1080, 1920, 320) == (320, 568)


def test_rotation_metadata_is_applied(silent: pathlib.Path, media: pathlib.Path) -> None:
    rotated = media / "rotated.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-y",
            "-v",
            "error",
            "-i",
            str(silent),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
            str(rotated),
        ],
        check=True,
    )
    frames, _ = sample(rotated, 1.0)
    assert frames[0].image.shape == (568, 320, 3)  # portrait, as a player shows it


def test_cancel_stops_decoding(shots: pathlib.Path) -> None:
    cancelled = threading.Event()
    stats = DecodeStats()
    frames = sample_frames(shots, sample_fps=2.0, width=320, stats=stats, cancelled=cancelled)
    next(frames)
    cancelled.set()
    with pytest.raises(Cancelled):
        next(frames)
    assert stats.frames_decoded < 60


# ---------------------------------------------------------------- limits


def test_resolution_limit(shots: pathlib.Path) -> None:
    limits = VideoLimits(max_pixels=640 * 360 - 1)
    with pytest.raises(LimitExceeded) as err:
        probe_video(shots, limits)
    assert err.value.field == "video.resolution"
    assert "640x360 (230400 pixels)" in err.value.message and "230399" in err.value.message
    with pytest.raises(LimitExceeded) as err:  # the sampler checks again, without trusting a probe
        sample(shots, limits=limits)
    assert err.value.field == "video.resolution"
    probe_video(shots, VideoLimits(max_pixels=640 * 360))  # at the limit is fine


def test_huge_resolution_is_rejected_before_decoding(media: pathlib.Path) -> None:
    huge = fx.make_color_video(media / "huge.mp4", width=4096, height=4096, seconds=0.2, fps=5)
    with pytest.raises(LimitExceeded) as err:
        probe_video(huge, VideoLimits(max_pixels=3840 * 2160))
    assert err.value.field == "video.resolution" and "4096x4096" in err.value.message


def test_duration_limit(shots: pathlib.Path) -> None:
    with pytest.raises(LimitExceeded) as err:
        probe_video(shots, VideoLimits(max_duration_s=10.0))
    assert err.value.field == "video.duration" and "15.0 s" in err.value.message and "10 s" in err.value.message
    # A header that understates the length is caught while decoding.
    with pytest.raises(LimitExceeded) as err:
        sample(shots, limits=VideoLimits(max_duration_s=10.0))
    assert err.value.field == "video.duration"


def test_frame_limit(shots: pathlib.Path) -> None:
    with pytest.raises(LimitExceeded) as err:
        probe_video(shots, VideoLimits(max_frames=300))
    assert err.value.field == "video.frames" and "375 frames" in err.value.message
    with pytest.raises(LimitExceeded) as err:
        sample(shots, 25.0, limits=VideoLimits(max_frames=300))
    assert err.value.field == "video.frames"


# ---------------------------------------------------------------- bad input


def test_random_bytes_and_empty_files(media: pathlib.Path) -> None:
    garbage = media / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    empty = media / "empty.mp4"
    empty.write_bytes(b"")
    text = media / "notes.mp4"
    text.write_bytes(b"this is not a video\n" * 100)
    for path in (garbage, empty, text):
        with pytest.raises(InvalidInput) as err:
            probe_video(path)
        assert err.value.field == "chunk" and "not decodable video" in err.value.message, path


def test_audio_only_is_not_video(media: pathlib.Path) -> None:
    for path in (fx.make_audio_only(media / "speech.m4a"), fx.make_audio_only(media / "song.mp3", cover_art=True)):
        with pytest.raises(InvalidInput) as err:
            probe_video(path)
        assert err.value.message == "media has no video stream", path
        with pytest.raises(InvalidInput):
            sample(path)


def test_video_track_without_frames(media: pathlib.Path) -> None:
    headers = fx.make_headers_only(media / "headers.mp4")
    assert probe_video(headers).width == 640  # the header is fine
    with pytest.raises(InvalidInput) as err:
        sample(headers)
    assert err.value.message == "media contains no video frames"


def test_truncated_upload_keeps_the_frames_before_the_cut(shots: pathlib.Path, media: pathlib.Path) -> None:
    cut = fx.truncate(shots, media / "cut.mp4", 0.5)  # faststart: the index is up front
    frames, stats = sample(cut)
    assert 4 <= len(frames) < 30
    assert stats.last_t_s < fx.DURATION_S - 1
    # Cut between two packets, FFmpeg ends the stream without an error: the stream stopping short
    # of the end its index states is what says the upload was cut.
    assert stats.truncated
    # Without faststart the index is at the end, so half a file cannot even be opened.
    late = fx.make_shots_video(media / "late-index.mp4", audio=False, faststart=False)
    with pytest.raises(InvalidInput) as err:
        probe_video(fx.truncate(late, media / "late-cut.mp4", 0.5))
    assert "not decodable video" in err.value.message


def test_corrupt_middle_never_raises_a_raw_error(shots: pathlib.Path, media: pathlib.Path) -> None:
    damaged = fx.corrupt(shots, media / "damaged.mp4", start=0.4, length=0.2)
    try:
        frames, _ = sample(damaged)
    except InvalidInput:
        return
    assert frames  # the decoder conceals the damage: frames before and after survive


def test_missing_file_is_our_error_not_the_callers(media: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe_video(media / "nope.mp4")


def test_bad_sample_rate(shots: pathlib.Path) -> None:
    for fps in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidInput) as err:
            sample(shots, fps)
        assert err.value.field == "video.sample_fps"


def test_audio_offset_on_the_video_clock(shots: pathlib.Path, silent: pathlib.Path, media: pathlib.Path) -> None:
    assert abs(audio_offset_s(shots)) < 0.1
    assert audio_offset_s(silent) == 0.0  # no audio at all
    delayed = media / "delayed.mkv"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-v", "error", "-i", str(silent), "-itsoffset", "1.0", "-i", str(shots),
         "-map", "0:v", "-map", "1:a", "-c", "copy", str(delayed)],
        check=True,
    )  # fmt: skip
    assert audio_offset_s(delayed) == pytest.approx(1.0, abs=0.1)
