"""Video throughput: seconds of video analysed per second of wall time.

    python benchmarks/video_throughput.py [--quick]

One run, on a 720p 25 fps H.264 clip with speech (60 s; 12 s with --quick),
each mode in its own process so peak memory is its own:

- visual: the pipeline's frame pass (sample 2 fps, skip non-reference frames,
  downscale in the decoder's converter, shots, faces, signals, keyframes);
- naive: the baseline: decode every frame, convert it at full size, run the
  same per-frame analysis (shot detector, faces, signals) on every frame;
- analyze: the whole VideoPipeline in-process (picture and Whisper at once,
  embeddings);
- AnalyzeVideo through a real server (upload, analyze, index, outbox), with
  moderation on (the default: open_nsfw and PP-OCRv4 on sampled frames, the
  text signals and the policy) and off (`UNDERSTANDING_MODERATION_ENABLED=false`,
  `UNDERSTANDING_NUDITY_MODEL=off`, `UNDERSTANDING_OCR_MODEL=off`): the cost of
  moderation as a ratio of real-time factors measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import result, start_server


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def mode_visual(clip: pathlib.Path) -> dict[str, float]:
    from understanding.media.video import DecodeStats, probe_video, sample_frames
    from understanding.pipelines.visual import FaceDetector, analyze_frames

    faces = FaceDetector()
    faces.warm_up()
    base_rss = _peak_rss_mb()
    started = time.perf_counter()
    info = probe_video(clip)
    stats = DecodeStats()
    frames = sample_frames(clip, sample_fps=2.0, width=320, stats=stats)
    out = analyze_frames(frames, faces=faces, sample_fps=2.0, end_s=info.duration_s, keyframes=True)
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "duration_s": info.duration_s,
        "frames_decoded": stats.frames_decoded,
        "frames_analyzed": out.frames_analyzed,
        "shots": len(out.shots),
        "peak_rss_mb": _peak_rss_mb(),
        "base_rss_mb": base_rss,
    }


def mode_naive(clip: pathlib.Path) -> dict[str, float]:
    """Every frame decoded and converted at full size, the same analysis on each."""
    import av

    from understanding.pipelines.visual import (
        FaceDetector,
        ShotDetector,
        frame_signals,
        motion_between,
        motion_thumbnail,
    )

    faces = FaceDetector()
    faces.warm_up()
    base_rss = _peak_rss_mb()
    started = time.perf_counter()
    decoded = 0
    shots = 1
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or 25)
        detector = ShotDetector(sample_fps=fps)
        previous = None
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="bgr24")
            decoded += 1
            if detector.push(image):
                shots += 1
                previous = None
            thumb = motion_thumbnail(image)
            motion = motion_between(previous, thumb) if previous is not None else None
            frame_signals(image, t_s=float(frame.time or 0.0), faces=faces.detect(image), motion=motion)
            previous = thumb
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "duration_s": duration,
        "frames_decoded": decoded,
        "frames_analyzed": decoded,
        "shots": shots,
        "peak_rss_mb": _peak_rss_mb(),
        "base_rss_mb": base_rss,
    }


def mode_analyze(clip: pathlib.Path) -> dict[str, float]:
    from understanding.batching import MicroBatcher
    from understanding.config import Settings
    from understanding.domain import SpeechOptions
    from understanding.models.embedder import load_text_encoder, resolve_model
    from understanding.models.language import LanguageDetector
    from understanding.models.whisper import Transcriber, resolve_whisper_model
    from understanding.pipelines.speech import SpeechPipeline
    from understanding.pipelines.tagging import Tagger, Taxonomy
    from understanding.pipelines.text import TextPipeline
    from understanding.pipelines.video import VideoInput, VideoPipeline, VideoSettings

    async def run() -> dict[str, float]:
        settings = Settings()
        embedder = load_text_encoder(
            resolve_model(settings.embedding_model), backend="onnx", cache_dir=settings.cache_path / "models"
        )
        embedder.warm_up()
        batcher = MicroBatcher(
            lambda texts: embedder.encode(texts), name="embed", max_batch_size=32, max_wait_ms=4, max_queue=4096
        )
        await batcher.start()
        text = TextPipeline(
            embed=batcher.submit_many,
            tagger=Tagger(Taxonomy.load(None), embedder.encode, model=embedder.model_ref.name),
            language=LanguageDetector(),
            model=embedder.model_ref,
            chunk_max_words=settings.chunk_max_words,
            chunk_overlap_words=settings.chunk_overlap_words,
        )
        transcriber = Transcriber(
            model_path=resolve_whisper_model(settings.whisper_model, settings.cache_path / "models"),
            compute_type=settings.whisper_compute_type,
            cpu_threads=settings.whisper_cpu_threads,
            num_workers=settings.whisper_workers,
        )
        transcriber.warm_up()
        speech = SpeechPipeline(transcriber=transcriber, text=text, max_duration_s=settings.max_media_duration_s)
        video = VideoPipeline(speech=speech, text=text, settings=VideoSettings())
        base_rss = _peak_rss_mb()
        started = time.perf_counter()
        analysis = await video.analyze("bench", VideoInput("bench-720p", clip, SpeechOptions()))
        elapsed = time.perf_counter() - started
        await batcher.stop()
        assert analysis.video is not None and analysis.transcript is not None
        return {
            "seconds": elapsed,
            "duration_s": analysis.video.duration_s,
            "frames_decoded": analysis.video.frames_decoded,
            "frames_analyzed": analysis.video.frames_analyzed,
            "shots": len(analysis.shots),
            "segments": len(analysis.transcript.segments),
            "peak_rss_mb": _peak_rss_mb(),
            "base_rss_mb": base_rss,
        }

    return asyncio.run(run())


MODES = {"visual": mode_visual, "naive": mode_naive, "analyze": mode_analyze}


def in_child(mode: str, clip: pathlib.Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--mode", mode, "--clip", str(clip)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"mode {mode} failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("MODE "))
    return json.loads(line[len("MODE ") :])  # type: ignore[no-any-return]


MODERATION_OFF = {
    "UNDERSTANDING_MODERATION_ENABLED": "false",
    "UNDERSTANDING_NUDITY_MODEL": "off",
    "UNDERSTANDING_OCR_MODEL": "off",
}


def through_grpc(clip: pathlib.Path, env: dict[str, str] | None = None) -> tuple[float, float] | None:
    """(seconds, server peak RSS MB) for one AnalyzeVideo, or None when the server lacks the RPC."""
    import grpc
    import psutil

    from tests.support.upload import upload_requests
    from understanding.v1 import understanding_pb2 as pb
    from understanding.v1 import understanding_pb2_grpc

    server = start_server({"UNDERSTANDING_MAX_UPLOAD_BYTES": str(1024 * 1024 * 1024), **(env or {})})
    peak = 0.0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        process = psutil.Process(server.proc.pid)
        while not done.is_set():
            try:
                peak = max(peak, process.memory_info().rss / 2**20)
            except psutil.Error:
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = understanding_pb2_grpc.UnderstandingStub(channel)
            header = pb.UploadHeader(media_id="bench-720p", filename=clip.name)
            started = time.perf_counter()
            try:
                stub.AnalyzeVideo(
                    upload_requests(clip, header, chunk_size=1024 * 1024),
                    metadata=(("x-tenant-id", "bench"),),
                    timeout=1800,
                )
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return None
                raise
            return time.perf_counter() - started, peak
    finally:
        done.set()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run for CI smoke")
    parser.add_argument("--mode", choices=sorted(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--clip", type=pathlib.Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print("MODE " + json.dumps(MODES[args.mode](args.clip)), flush=True)
        return

    from tests.fixtures.video import make_clip_720p

    seconds = 12.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip_720p(pathlib.Path(tmp) / "clip.mp4", seconds=seconds)
        visual = in_child("visual", clip)
        naive = in_child("naive", clip)
        full = in_child("analyze", clip)
        grpc_run = through_grpc(clip)
        grpc_off = through_grpc(clip, MODERATION_OFF) if grpc_run is not None else None
    duration = visual["duration_s"]

    def speed(run: dict[str, float]) -> float:
        return run["duration_s"] / run["seconds"]

    print(f"clip: {duration:.0f} s of 1280x720 25 fps H.264 + AAC speech")
    print(f"{'mode':44} {'wall s':>8} {'x realtime':>10} {'decoded':>8} {'analysed':>8} {'peak MB':>8} {'+MB':>6}")
    for name, run in (
        ("visual pass (2 fps, skip, downscale)", visual),
        ("naive: every frame, full size", naive),
        ("VideoPipeline.analyze (picture + Whisper)", full),
    ):
        print(
            f"{name:44} {run['seconds']:8.2f} {speed(run):10.1f} {int(run['frames_decoded']):8d} "
            f"{int(run['frames_analyzed']):8d} {run['peak_rss_mb']:8.0f} {run['peak_rss_mb'] - run['base_rss_mb']:6.0f}"
        )
    if grpc_run is not None:
        print(
            f"{'AnalyzeVideo via gRPC (server process)':44} {grpc_run[0]:8.2f} {duration / grpc_run[0]:10.1f} {'':8} {'':8} {grpc_run[1]:8.0f}"
        )
    if grpc_off is not None:
        print(
            f"{'AnalyzeVideo via gRPC, moderation off':44} {grpc_off[0]:8.2f} {duration / grpc_off[0]:10.1f} {'':8} {'':8} {grpc_off[1]:8.0f}"
        )
    if grpc_run is None:
        print("AnalyzeVideo via gRPC: not served by this build (UNIMPLEMENTED)")
    result("video x realtime, visual pass vs naive every-frame loop", speed(visual), speed(naive), ">= 3", "x")
    result(
        "video frames decoded, sampled pass vs every frame",
        visual["frames_decoded"],
        naive["frames_decoded"],
        "< 1",
        "frames",
    )
    result(
        "video frames analysed, sampled pass vs every frame",
        visual["frames_analyzed"],
        naive["frames_analyzed"],
        "report",
        "frames",
    )
    result("video peak RSS MB, visual pass vs naive", visual["peak_rss_mb"], naive["peak_rss_mb"], "<= 1", "MB")
    result("video x realtime, full analyze (picture + Whisper)", speed(full), None, ">= 1", "x")
    if grpc_run is not None:
        result("video x realtime, AnalyzeVideo via gRPC", duration / grpc_run[0], speed(full), ">= 0.85", "x")
    if grpc_run is not None and grpc_off is not None:
        result(
            "video x realtime, AnalyzeVideo moderation on vs off",
            duration / grpc_run[0],
            duration / grpc_off[0],
            "report",
            "x",
        )
        result("video server peak RSS MB, moderation on vs off", grpc_run[1], grpc_off[1], "report", "MB")
        result("video server peak RSS MB during AnalyzeVideo", grpc_run[1], None, "report", "MB")


if __name__ == "__main__":
    main()
