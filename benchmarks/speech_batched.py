"""faster-whisper's BatchedInferencePipeline versus sequential transcribe, on this machine.

    python benchmarks/speech_batched.py [--quick]

Same packaged Whisper base (int8, 2 threads, beam 5, VAD on), same clip, the
two paths measured in alternation. Batched inference cuts the audio at VAD
pauses and runs several 30 s windows through the encoder and decoder at once;
the sequential path conditions each window on the previous text. Reports the
real-time factor, CPU seconds per audio second, and each path's word error
rate against the script the clip was spoken from; then the service's
Transcribe RTF with `whisper_batch_size` 0 (sequential) and N, against the
direct sequential call measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import result  # noqa: E402
from speech_rtf import SENTENCES, make_clip  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    import faster_whisper
    import jiwer

    from tests.fixtures import speech
    from understanding.media.audio import decode_audio
    from understanding.models.whisper import resolve_whisper_model

    work = pathlib.Path(tempfile.mkdtemp(prefix="speech-batched-"))
    clip = make_clip(20.0 if args.quick else 75.0, work)
    duration = speech.wav_duration(clip)
    cache = (
        pathlib.Path(os.environ.get("UNDERSTANDING_CACHE", pathlib.Path.home() / ".cache" / "understanding")) / "models"
    )
    model = faster_whisper.WhisperModel(
        resolve_whisper_model("packaged", cache),
        device="cpu",
        compute_type="int8",
        cpu_threads=2,
        local_files_only=True,
    )
    batched = faster_whisper.BatchedInferencePipeline(model=model)
    audio = decode_audio(clip)
    list(model.transcribe(audio[: 16000 * 5], beam_size=5, vad_filter=True)[0])  # warm up

    def sequential() -> str:
        segments, _ = model.transcribe(audio, beam_size=5, vad_filter=True)
        return " ".join(s.text for s in segments)

    def in_batches() -> str:
        segments, _ = batched.transcribe(audio, beam_size=5, vad_filter=True, batch_size=args.batch_size)
        return " ".join(s.text for s in segments)

    # The clip repeats the script; the reference is the script in clip order.
    reference = " ".join(SENTENCES[i % len(SENTENCES)] for i in range(_count_sentences(duration, work)))
    runs: dict[str, list[tuple[float, float, str]]] = {"sequential": [], "batched": []}
    for _ in range(1 if args.quick else 2):
        for name, fn in (("sequential", sequential), ("batched", in_batches)):
            wall, cpu = time.perf_counter(), time.process_time()
            text = fn()
            runs[name].append((time.perf_counter() - wall, time.process_time() - cpu, text))

    def norm(s: str) -> str:
        return " ".join("".join(c.lower() if c.isalnum() else " " for c in s).split())

    figures = {}
    for name, measured in runs.items():
        wall = min(r[0] for r in measured)
        cpu = min(r[1] for r in measured)
        wer = jiwer.wer(norm(reference), norm(measured[-1][2]))
        figures[name] = (wall / duration, cpu / duration, wer)
        print(f"{name:10} RTF {wall / duration:.4f}  CPU s per audio s {cpu / duration:.4f}  WER {wer:.3f}")
    # The service path: Transcribe through a real server, sequential and batched decoding.
    from _harness import start_server
    from speech_rtf import upload

    service = {}
    for size in (0, args.batch_size):
        server = start_server({"UNDERSTANDING_WHISPER_BATCH_SIZE": str(size)})
        try:
            upload(server.target, clip, "warm")
            service[size] = min(upload(server.target, clip, f"run-{i}") for i in range(1 if args.quick else 2))
        finally:
            server.stop()
        print(f"service Transcribe, whisper_batch_size={size}: RTF {service[size] / duration:.4f}")
    print(f"clip {duration:.1f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    result(
        f"speech RTF batched (bs {args.batch_size}) vs sequential",
        figures["batched"][0],
        figures["sequential"][0],
        "report",
    )
    result(
        "speech RTF service (sequential) vs direct sequential",
        service[0] / duration,
        figures["sequential"][0],
        "<= 1.10",
    )
    result(
        f"speech RTF service (batch {args.batch_size}) vs direct sequential",
        service[args.batch_size] / duration,
        figures["sequential"][0],
        "<= 1.10",
    )
    result("speech WER batched vs sequential", figures["batched"][2], figures["sequential"][2] or None, "report")


def _count_sentences(duration: float, work: pathlib.Path) -> int:
    """Sentences in the clip: make_clip appends sentences (+0.6 s pause) until it is long enough."""
    from tests.fixtures import speech

    total, n = 0.0, 0
    while total < duration - 0.5:
        wav = work / f"s{n % len(SENTENCES)}.wav"
        if not wav.exists():
            break
        total += speech.wav_duration(wav) + 0.6
        n += 1
    return max(n, 1)


if __name__ == "__main__":
    main()
