"""The live recogniser's schedule, replayed offline: what a policy change does to latency and WER.

    python benchmarks/live_schedule.py [--pauses 1.5] [--decode-s 1.25] [--trace]

The live path's own pieces (the streamed Silero VAD, `StreamingAsr`, the
`WhisperRecognizer` on the packaged Whisper) hear the pyannote call
(tests/fixtures/real_speech.py, not written by the project) in 100 ms chunks,
on a simulated clock: one decode at a time, as a stream's decode loop runs
them, each taking the time it took here or, with `--decode-s`, exactly that
long. No server, no frames, no other stream: with a fixed decode time the
schedule is the same on every run and every CPU, so two endpointing or
scheduling policies can be compared without the noise of `live_bench.py`
(which measures the real thing, over gRPC, and is where the issue's figures
come from).

Prints the live WER against the reference and the final latency (when the
final came out minus its last word's end, as live_bench.py measures it) with
the number of decodes. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
import wave

import jiwer
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks._harness import percentile, result  # noqa: E402
from benchmarks.live_bench import with_pauses, words  # noqa: E402
from tests.fixtures.real_speech import conversation  # noqa: E402
from understanding.domain import LiveFinal, LivePartial, Segment, Transcript  # noqa: E402
from understanding.models.vad import StreamingVad  # noqa: E402
from understanding.models.whisper import Transcriber, resolve_whisper_model  # noqa: E402
from understanding.pipelines.live.asr import DecodeJob, StreamingAsr  # noqa: E402
from understanding.pipelines.live.recognizer import WhisperRecognizer  # noqa: E402

CHUNK = 1600  # 100 ms at 16 kHz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pauses", type=float, default=1.5, help="room tone after each reference segment (0: as recorded)"
    )
    parser.add_argument("--decode-s", type=float, default=0.0, help="charge every decode this long (0: as measured)")
    parser.add_argument("--trace", action="store_true", help="print every decode and final")
    args = parser.parse_args()

    recording = conversation()
    pcm = with_pauses(recording, args.pauses) if args.pauses > 0 else _pcm(recording.wav)
    audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
    cache = pathlib.Path(os.environ.get("UNDERSTANDING_CACHE", pathlib.Path.home() / ".cache" / "understanding"))
    transcriber = Transcriber(model_path=resolve_whisper_model("packaged", cache / "models"), cpu_threads=2)
    transcriber.warm_up()
    recognize = WhisperRecognizer(transcriber)
    asr, vad = StreamingAsr(), StreamingVad()

    finals: list[tuple[float, Segment]] = []  # (when it came out, the segment)
    decodes = 0
    running: tuple[DecodeJob, Transcript, float] | None = None  # the decode in flight and when it returns

    def emit(events: list[LivePartial | LiveFinal], at: float) -> None:
        for event in events:
            if isinstance(event, LiveFinal):
                finals.append((at, event.segment))
                if args.trace:
                    s = event.segment
                    print(f"  {at:6.2f} final {s.start_s:5.2f}-{s.end_s:5.2f} +{at - s.end_s:.2f} s  {s.text}")

    fed, now = 0, 0.0
    while fed < audio.size or running is not None or asr.next_job() is not None:
        if fed < audio.size:
            chunk = audio[fed : fed + CHUNK]
            fed += chunk.size
            now = fed / 16000
            asr.push(chunk, vad.push(chunk))
            if fed >= audio.size:
                asr.finish()
        elif running is not None:
            now = max(now, running[2])
        if running is not None and running[2] <= now:
            job, transcript, done = running
            running = None
            emit(asr.on_result(job, transcript), done)
        if running is None:
            emit(asr.settle(), now)
            job = asr.next_job()
            if job is not None:
                started = time.perf_counter()
                transcript = recognize(job)
                took = args.decode_s or time.perf_counter() - started
                decodes += 1
                running = (job, transcript, now + took)
                if args.trace:
                    kind = "final" if job.final else "pause" if job.closing else "partial"
                    print(f"  {now:6.2f} decode {kind:7s} {job.offset_s:5.2f}-{job.end_s:5.2f} ({took:.2f} s)")

    reference = words(" ".join(text for _, _, text in recording.segments))
    wer = jiwer.wer(reference, words(" ".join(s.text for _, s in finals)))
    latency = [at - s.end_s for at, s in finals]
    how = f"decodes charged {args.decode_s:.2f} s" if args.decode_s else "decodes as measured"
    print(
        f"pauses {args.pauses} s, {how}: {len(finals)} finals, {decodes} decodes, final p50 "
        f"{percentile(latency, 50):.2f} s p95 {percentile(latency, 95):.2f} s, live WER {wer:.3f}"
    )
    result("live schedule final latency p95 (s)", percentile(latency, 95), None, "report", "s")
    result("live schedule WER", wer, None, "report")
    return 0


def _pcm(path: pathlib.Path) -> bytes:
    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes())


if __name__ == "__main__":
    raise SystemExit(main())
