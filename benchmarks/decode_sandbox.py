"""What isolating untrusted media in a decoder child costs on a normal clip.

    python benchmarks/decode_sandbox.py [--quick]

Decodes the same speech clip (WAV and MP3) and probes + samples a video, both
in-process (baseline) and through `MediaDecoder` (a forkserver child with
resource limits; audio handed back through a temp file). Reports the median
time of each and the overhead in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import result  # noqa: E402


def median_s(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    reps = 5 if args.quick else 20

    from benchmarks.speech_rtf import make_clip
    from tests.fixtures import speech
    from tests.fixtures import video as fx
    from understanding.media import video
    from understanding.media.audio import decode_audio
    from understanding.media.sandbox import MediaDecoder, SandboxSettings

    work = pathlib.Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    wav = make_clip(30.0, work)
    mp3 = speech.convert(wav, "mp3", work / "clip.mp3")
    shots = fx.make_shots_video(work / "shots.mp4")
    isolated = MediaDecoder(SandboxSettings(work_dir=work / "spool"))
    started = time.perf_counter()
    isolated.warm_up()
    warm_s = time.perf_counter() - started

    rows = []
    for name, path in (("30 s speech WAV", wav), ("30 s speech MP3", mp3)):
        base = median_s(lambda: decode_audio(path), reps)
        sand = median_s(lambda: isolated.decode_audio(path), reps)
        rows.append((f"decode {name}", base, sand))

    def frames_direct() -> None:
        video.probe_video(shots)
        for _ in video.sample_frames(shots, sample_fps=2.0, width=320):
            pass

    def frames_isolated() -> None:
        isolated.probe_video(shots)
        for _ in isolated.sample_frames(shots, sample_fps=2.0, width=320):
            pass

    rows.append(("probe + sample 15 s 640x360 video", median_s(frames_direct, reps), median_s(frames_isolated, reps)))
    noop = median_s(lambda: isolated._run("noop", (), {}), reps)

    print(f"forkserver start (once per process): {warm_s * 1e3:.0f} ms; an empty child: {noop * 1e3:.1f} ms")
    print(f"{'':40} {'in-process':>11} {'isolated':>10} {'overhead':>10}")
    for name, base, sand in rows:
        print(f"{name:40} {base * 1e3:9.1f}ms {sand * 1e3:8.1f}ms {(sand - base) * 1e3:8.1f}ms")
    for name, base, sand in rows:
        result(f"sandbox: {name} (ms)", sand * 1e3, base * 1e3, "overhead < 50 ms", "ms")
    result("sandbox: empty child round trip (ms)", noop * 1e3, None, "< 30 ms", "ms")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
