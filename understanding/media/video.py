"""Probe a video and sample downscaled frames from it, streaming.

Decoding dominates the cost of video analysis, so the sampler does as little
of it as the sample rate allows:

- only the frames on the sample grid are converted, and they are scaled to
  the analysis width by swscale in the same pass as the colour conversion
  (a full-size BGR copy of every frame costs more than decoding it);
- when samples are at least three frames apart, the decoder skips frames no
  other frame references (`skip_frame=NONREF`: B-frames, ~45% of an x264
  stream), so they are never reconstructed at all;
- when the next sample is more than a few GOPs ahead, it seeks instead of
  decoding its way there.

Frames are yielded one at a time and dropped by the caller, so memory does not
grow with the length of the video. Every decoder failure becomes
`InvalidInput`; limits become `LimitExceeded` naming the field.
"""

from __future__ import annotations

import math
import pathlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import av
import av.error
import cv2
import numpy as np
import numpy.typing as npt

from understanding.domain import Cancelled, InvalidInput, LimitExceeded, VideoInfo

__all__ = [
    "DecodeStats",
    "SampledFrame",
    "VideoLimits",
    "analysis_size",
    "audio_offset_s",
    "detail_size",
    "probe_video",
    "sample_frames",
]

# As in media/audio.py: damaged input surfaces as FFmpegError or, on some PyAV
# paths, as plain Python errors with the same cause.
_DECODE_ERRORS = (av.error.FFmpegError, ValueError, IndexError, EOFError, OverflowError)
# Skip non-reference frames only when samples are at least this many frames apart.
_NONREF_MIN_STRIDE = 3
# Seek rather than decode forward when the next sample is further than this many GOPs (and seconds).
_SEEK_MIN_GOPS = 2.0
_SEEK_MIN_S = 4.0
_SIG_SIZE = (32, 18)
# A video whose last decoded frame is this much (or two frames) before the end its index states
# was cut short (its last frames can be skipped non-reference frames, so not one frame).
_END_SLACK_S = 1.0
_TRAIL_MAX = 512  # signatures kept between two samples (a 0.05 fps sample rate on 25 fps video)
_LUMA8_FORMATS = frozenset(
    ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p",
     "yuv411p", "yuv410p", "nv12", "nv21", "gray")
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class VideoLimits:
    """Bounds on what a caller may make us decode; None means unbounded."""

    max_pixels: int | None = None
    max_duration_s: float | None = None
    max_frames: int | None = None


@dataclass(frozen=True, slots=True)
class SampledFrame:
    """One analysed frame: its time in seconds from the start of the media, the
    picture as BGR uint8 downscaled to the analysis size, and `trail`.

    `trail` holds (time, signature) for every frame decoded since the previous
    sample, this one last: a 32x18 grey thumbnail read straight from the luma
    plane (~0.05 ms, no conversion), so a cut seen between two samples can be
    placed on the frame where it happened, not somewhere in the gap.
    """

    t_s: float
    image: npt.NDArray[np.uint8]
    trail: tuple[tuple[float, npt.NDArray[np.uint8]], ...] = ()
    # The same frame at up to `detail_max_side` px (when asked for): what the moderation
    # models (OCR, nudity) look at, since on-screen text is unreadable at the analysis size.
    detail: npt.NDArray[np.uint8] | None = None


@dataclass(slots=True)
class DecodeStats:
    """Filled in by `sample_frames` as it goes (readable after the loop ends)."""

    frames_decoded: int = 0
    frames_sampled: int = 0
    seeks: int = 0
    last_t_s: float = 0.0
    # Damage after at least one good frame (a cut upload): the frames before it were kept.
    truncated: bool = False


def probe_video(path: pathlib.Path, limits: VideoLimits | None = None) -> VideoInfo:
    """Container facts without decoding a frame; raises early on any limit the header already breaks.

    Durations and frame counts are what the container states (estimates for
    some formats); `sample_frames` enforces the limits again on what it decodes.
    """
    container = _open(path)
    with container:
        stream = _video_stream(container)
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        fps = _fps(stream)
        duration = _duration(container, stream)
        has_audio = any(s.codec_context is not None for s in container.streams.audio)
        info = VideoInfo(
            duration_s=duration if duration is not None else 0.0,
            fps=fps,
            width=width,
            height=height,
            codec=ctx.codec.canonical_name if ctx.codec is not None else "",
            has_audio=has_audio,
        )
        stated_frames = int(stream.frames or 0) or (round(duration * fps) if duration and fps else 0)
    if limits is not None:
        _check_pixels(width, height, limits)
        if limits.max_duration_s is not None and duration is not None and duration > limits.max_duration_s:
            raise LimitExceeded(
                f"video is {duration:.1f} s long, over the limit of {limits.max_duration_s:g} s", field="video.duration"
            )
        if limits.max_frames is not None and stated_frames > limits.max_frames:
            raise LimitExceeded(
                f"video has {stated_frames} frames, over the limit of {limits.max_frames}", field="video.frames"
            )
    return info


def audio_offset_s(path: pathlib.Path) -> float:
    """Where the best audio stream starts on the video's clock (seconds from the container start).

    `decode_audio` counts samples from the first one, so transcript times are
    shifted by this to line up with frame times (MPEG-TS and some MP4s start
    the tracks apart). 0.0 when unknown.
    """
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            stream = container.streams.best("audio")
            if stream is None or stream.start_time is None or stream.time_base is None:
                return 0.0
            origin = (container.start_time or 0) / av.time_base
            return float(stream.start_time * stream.time_base) - origin
    except _DECODE_ERRORS:
        return 0.0


def detail_size(width: int, height: int, max_side: int, sample_aspect: float = 1.0) -> tuple[int, int]:
    """Display-aspect size whose long side is at most `max_side` (never upscaled), even dimensions."""
    display_w = width * (sample_aspect if sample_aspect > 0 else 1.0)
    if display_w <= 0 or height <= 0:
        return max(2, max_side), max(2, max_side)
    scale = min(1.0, max_side / max(display_w, height))
    out_w, out_h = round(display_w * scale), round(height * scale)
    return max(2, out_w - out_w % 2), max(2, out_h - out_h % 2)


def analysis_size(width: int, height: int, target_width: int, sample_aspect: float = 1.0) -> tuple[int, int]:
    """Display-aspect size at most `target_width` wide (never upscaled), even dimensions."""
    display_w = width * (sample_aspect if sample_aspect > 0 else 1.0)
    if display_w <= 0 or height <= 0:
        return max(2, target_width), max(2, target_width)
    out_w = min(target_width, round(display_w))
    out_h = round(height * out_w / display_w)
    return max(2, out_w - out_w % 2), max(2, out_h - out_h % 2)


def sample_frames(
    path: pathlib.Path,
    *,
    sample_fps: float,
    width: int,
    limits: VideoLimits | None = None,
    stats: DecodeStats | None = None,
    cancelled: threading.Event | None = None,
    detail_max_side: int = 0,
) -> Iterator[SampledFrame]:
    """Yield one downscaled BGR frame every `1 / sample_fps` seconds of the video, in order.

    With `detail_max_side`, each sample also carries the frame at up to that many pixels
    on its long side (`SampledFrame.detail`, converted straight from the decoded frame).

    Each sample is the first decoded frame at or after its grid time (with
    non-reference frames skipped, up to a couple of frames later). Raises
    `InvalidInput` when nothing decodes or the media has no video frames,
    `LimitExceeded` when the decoded frames break `limits` (whatever the
    header claimed), `Cancelled` as soon as `cancelled` is set.
    """
    if not (sample_fps > 0 and math.isfinite(sample_fps)):
        raise InvalidInput(
            f"must be a positive number of frames per second, got {sample_fps}", field="video.sample_fps"
        )
    stats = stats if stats is not None else DecodeStats()
    limits = limits or VideoLimits()
    interval = 1.0 / sample_fps
    container = _open(path)
    with container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"  # frame + slice threads: decoding is the bulk of the work
        fps = _fps(stream)
        if fps > 0 and interval * fps >= _NONREF_MIN_STRIDE:
            stream.codec_context.skip_frame = "NONREF"
        origin = (container.start_time or 0) / av.time_base
        sar = float(stream.sample_aspect_ratio) if stream.sample_aspect_ratio else 1.0
        _check_pixels(int(stream.codec_context.width or 0), int(stream.codec_context.height or 0), limits)
        next_t = 0.0  # grid time of the next sample
        last_key_t: float | None = None
        gop_s = 0.0
        size: tuple[int, int] | None = None
        detail: tuple[int, int] | None = None
        source: tuple[int, int, int] | None = None
        seekable = True
        seeked_from: float | None = None
        trail: list[tuple[float, npt.NDArray[np.uint8]]] = []
        try:
            while True:
                seek_to: float | None = None
                for frame in container.decode(stream):
                    if cancelled is not None and cancelled.is_set():
                        raise Cancelled("video analysis cancelled")
                    stats.frames_decoded += 1
                    if limits.max_frames is not None and stats.frames_decoded > limits.max_frames:
                        raise LimitExceeded(
                            f"video has more than {limits.max_frames} frames to decode", field="video.frames"
                        )
                    t = _frame_time(frame, origin, stats, fps)
                    if seeked_from is not None:
                        # The keyframe before the target is not past where we were: seeking
                        # cannot save decoding here, so decode straight on from now on.
                        seekable = t > seeked_from + 1e-6
                        seeked_from = None
                    if limits.max_duration_s is not None and t > limits.max_duration_s:
                        raise LimitExceeded(
                            f"video runs past the limit of {limits.max_duration_s:g} s", field="video.duration"
                        )
                    if stats.frames_sampled and t + 1e-6 < stats.last_t_s:
                        # Landed before where we were (a seek to an earlier keyframe): decode on, sample nothing.
                        continue
                    stats.last_t_s = t
                    if frame.key_frame:
                        if last_key_t is not None and t > last_key_t:
                            gop_s = max(gop_s, t - last_key_t)
                        last_key_t = t
                    trail.append((t, _signature(frame)))
                    if len(trail) > _TRAIL_MAX:
                        del trail[: len(trail) - _TRAIL_MAX]
                    if t + 1e-6 < next_t:
                        if seekable and gop_s and next_t - t > max(_SEEK_MIN_S, _SEEK_MIN_GOPS * gop_s):
                            seek_to = next_t
                            break
                        continue
                    _check_pixels(frame.width, frame.height, limits)
                    rotation = _rotation(frame)
                    if source != (frame.width, frame.height, rotation):  # the size may change midstream
                        source = (frame.width, frame.height, rotation)
                        if rotation in (90, 270):  # `width` is the displayed width: size the upright picture
                            upright = analysis_size(frame.height, frame.width, width, 1.0 / sar if sar else 1.0)
                            size = (upright[1], upright[0])
                            turned = detail_size(frame.height, frame.width, detail_max_side, 1.0 / sar if sar else 1.0)
                            detail = (turned[1], turned[0])
                        else:
                            size = analysis_size(frame.width, frame.height, width, sar)
                            detail = detail_size(frame.width, frame.height, detail_max_side, sar)
                    assert size is not None and detail is not None
                    bgr = frame.to_ndarray(width=size[0], height=size[1], format="bgr24", interpolation="AREA")
                    image = _rotate(cast("npt.NDArray[np.uint8]", bgr), rotation)
                    big: npt.NDArray[np.uint8] | None = None
                    if detail_max_side > 0:
                        big_bgr = frame.to_ndarray(
                            width=detail[0], height=detail[1], format="bgr24", interpolation="AREA"
                        )
                        big = _rotate(cast("npt.NDArray[np.uint8]", big_bgr), rotation)
                    stats.frames_sampled += 1
                    while next_t <= t + 1e-6:
                        next_t += interval
                    sample = SampledFrame(t, image, tuple(trail), big)
                    trail.clear()
                    yield sample
                if seek_to is None:
                    break
                seeked_from = stats.last_t_s
                trail.clear()  # frames across a seek are not neighbours
                last_key_t = None  # the gap across a seek is not a GOP
                assert stream.time_base is not None
                container.seek(int((seek_to + origin) / stream.time_base), stream=stream, backward=True)
                stats.seeks += 1
        except _DECODE_ERRORS as exc:
            if stats.frames_sampled == 0:
                raise InvalidInput(f"media is not decodable video: {_reason(exc)}", field="chunk") from exc
            stats.truncated = True  # damage after good frames (a cut upload): keep what decoded
        else:
            # A file cut between two packets ends without an error: the stream stopping well
            # before the end its index states is what tells a cut upload then.
            end = _stated_end(stream, origin)
            slack = max(_END_SLACK_S, 2.0 / fps if fps > 0 else 0.0)
            if stats.frames_sampled and end is not None and stats.last_t_s < end - slack:
                stats.truncated = True
    if stats.frames_sampled == 0:
        raise InvalidInput("media contains no video frames", field="chunk")


def _signature(frame: av.VideoFrame) -> npt.NDArray[np.uint8]:
    """32x18 grey thumbnail; from the luma plane directly when the format has an 8-bit one."""
    if frame.format.name in _LUMA8_FORMATS:
        plane = frame.planes[0]
        luma = np.frombuffer(memoryview(plane), np.uint8, count=plane.line_size * plane.height).reshape(
            plane.height, -1
        )
        # Point-sample down to ~4x the target first: averaging every pixel of a 4K frame is the slow part.
        step_y = max(1, frame.height // (_SIG_SIZE[1] * 4))
        step_x = max(1, frame.width // (_SIG_SIZE[0] * 4))
        small = np.ascontiguousarray(luma[: frame.height : step_y, : frame.width : step_x])
        return cast("npt.NDArray[np.uint8]", cv2.resize(small, _SIG_SIZE, interpolation=cv2.INTER_AREA))
    grey = frame.to_ndarray(width=_SIG_SIZE[0], height=_SIG_SIZE[1], format="gray", interpolation="AREA")
    return cast("npt.NDArray[np.uint8]", grey)


def _frame_time(frame: av.VideoFrame, origin: float, stats: DecodeStats, fps: float) -> float:
    if frame.time is not None:
        return max(0.0, float(frame.time) - origin)
    # No timestamps (raw streams): count frames.
    return (stats.frames_decoded - 1) / fps if fps > 0 else stats.last_t_s


def _rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise display rotation in degrees (0, 90, 180, 270): phones record portrait
    as landscape plus a display matrix."""
    try:
        return round(float(frame.rotation or 0) / 90.0) * 90 % 360
    except (AttributeError, TypeError, ValueError):
        return 0


def _rotate(image: npt.NDArray[np.uint8], rotation: int) -> npt.NDArray[np.uint8]:
    if rotation == 90:
        return np.ascontiguousarray(np.rot90(image, 1))
    if rotation == 180:
        return np.ascontiguousarray(image[::-1, ::-1])
    if rotation == 270:
        return np.ascontiguousarray(np.rot90(image, -1))
    return image


def _check_pixels(width: int, height: int, limits: VideoLimits) -> None:
    if limits.max_pixels is not None and width * height > limits.max_pixels:
        raise LimitExceeded(
            f"video resolution {width}x{height} ({width * height} pixels) is over the limit of "
            f"{limits.max_pixels} pixels",
            field="video.resolution",
        )


def _fps(stream: av.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if math.isfinite(value) and 0 < value <= 1000:
                return value
    return 0.0


def _stated_end(stream: av.VideoStream, origin: float) -> float | None:
    """Where the index says the video stream ends, on the decoded frames' clock (None when unstated)."""
    if stream.duration is None or stream.time_base is None or stream.duration <= 0:
        return None
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else origin
    return start - origin + float(stream.duration * stream.time_base)


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _open(path: pathlib.Path) -> av.container.InputContainer:
    if not path.is_file():
        # Our own storage lost it: not the caller's fault, so not InvalidInput.
        raise FileNotFoundError(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except _DECODE_ERRORS as exc:
        raise InvalidInput(f"media is not decodable video: {_reason(exc)}", field="chunk") from exc


def _video_stream(container: av.container.InputContainer) -> av.VideoStream:
    """The first real video stream: an album cover (attached picture) is not video."""
    for stream in container.streams.video:
        if stream.codec_context is None:
            continue
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        return stream
    raise InvalidInput("media has no video stream", field="chunk")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__
