"""Speech real-time factor through the gRPC API versus faster-whisper called directly.

    python benchmarks/speech_rtf.py [--quick]

One run measures: the direct faster-whisper call (same packaged model, int8,
VAD on, beam 5) on a several-minute espeak-ng clip; the same clip uploaded to
a real server with Transcribe (decode + transcribe + embed + index + outbox);
two concurrent uploads versus the sum of their solo times; the server's peak
resident memory.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import result, start_server  # noqa: E402

SENTENCES = [
    "The weather today is sunny and warm, so we are going to the beach this afternoon.",
    "Please remember to water the tomato plants in the garden every evening.",
    "The quarterly report shows that sales grew by twelve percent in the northern region.",
    "Our flight to Tokyo was delayed by three hours because of the storm.",
    "The band announced a world tour to promote their new album next spring.",
    "Messi scored twice in the second half and the team won the league title.",
]


def make_clip(seconds: float, workdir: pathlib.Path) -> pathlib.Path:
    from tests.fixtures import speech

    parts: list[pathlib.Path | float] = []
    total = 0.0
    i = 0
    while total < seconds:
        wav = speech.make_speech_wav(SENTENCES[i % len(SENTENCES)], workdir / f"s{i % len(SENTENCES)}.wav")
        parts += [wav, 0.6]
        total += speech.wav_duration(wav) + 0.6
        i += 1
    out = workdir / f"clip-{int(seconds)}.wav"
    speech.concat_with_silence(parts, out)
    return out


def direct(path: pathlib.Path, cache: pathlib.Path) -> float:
    import faster_whisper

    from understanding.media.audio import decode_audio
    from understanding.models.whisper import resolve_whisper_model

    model = faster_whisper.WhisperModel(
        resolve_whisper_model("packaged", cache), device="cpu", compute_type="int8", local_files_only=True
    )
    audio = decode_audio(path)
    list(model.transcribe(audio[: 16000 * 5], beam_size=5, vad_filter=True)[0])  # warm up
    started = time.perf_counter()
    audio = decode_audio(path)
    segments, _ = model.transcribe(audio, beam_size=5, vad_filter=True)
    n = len(list(segments))
    elapsed = time.perf_counter() - started
    assert n > 0
    return elapsed


def upload(target: str, path: pathlib.Path, media_id: str) -> float:
    import grpc

    from tests.support.upload import upload_requests
    from understanding.v1 import understanding_pb2 as pb
    from understanding.v1 import understanding_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = understanding_pb2_grpc.UnderstandingStub(channel)
        started = time.perf_counter()
        response = stub.Transcribe(
            upload_requests(path, pb.UploadHeader(media_id=media_id, filename=path.name), chunk_size=256 * 1024),
            metadata=[("x-tenant-id", "bench")],
            timeout=3600,
        )
        assert response.analysis.transcript.segments
        return time.perf_counter() - started


class PeakRss:
    def __init__(self, pid: int) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._proc.memory_info().rss)
            except Exception:  # noqa: BLE001 - process gone
                return
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds = 20.0 if args.quick else 180.0
    from tests.fixtures import speech

    work = pathlib.Path(tempfile.mkdtemp(prefix="speech-bench-"))
    clip = make_clip(seconds, work)
    duration = speech.wav_duration(clip)
    cache = (
        pathlib.Path(os.environ.get("UNDERSTANDING_CACHE", pathlib.Path.home() / ".cache" / "understanding")) / "models"
    )
    direct_s = direct(clip, cache)

    server = start_server()
    meter = PeakRss(server.proc.pid)
    try:
        upload(server.target, clip, "warm")
        solo_a = upload(server.target, clip, "solo-a")
        solo_b = upload(server.target, clip, "solo-b")
        times: list[float] = []
        threads = [
            threading.Thread(target=lambda m=m: times.append(upload(server.target, clip, m)))
            for m in ("pair-a", "pair-b")
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pair = time.perf_counter() - started
    finally:
        peak = meter.stop()
        server.stop()
    service_rtf = min(solo_a, solo_b) / duration
    direct_rtf = direct_s / duration
    print(f"clip: {duration:.1f} s of espeak-ng speech")
    print(f"direct faster-whisper RTF    {direct_rtf:.4f}  ({direct_s:.1f} s)")
    print(f"service Transcribe RTF       {service_rtf:.4f}  (solo {solo_a:.1f} s, {solo_b:.1f} s)")
    print(f"two concurrent uploads       {pair:.1f} s  vs sum of solos {solo_a + solo_b:.1f} s")
    print(f"server peak RSS              {peak / 2**20:.0f} MiB")
    result("speech RTF service vs direct faster-whisper", service_rtf, direct_rtf, "<= 1.10")
    result("speech 2 concurrent uploads vs sum of solos (s)", pair, solo_a + solo_b, "< 1.00", "s")
    result("speech server peak RSS (MiB)", peak / 2**20, None, "report", "MiB")


if __name__ == "__main__":
    main()
