"""Live path latency, cadence, concurrency and accuracy, over gRPC against a real server.

    python benchmarks/live_bench.py           # 1, 2, 4, 8 concurrent streams, then one over the limit
    python benchmarks/live_bench.py --quick   # one stream of 15 s (CI)
    python benchmarks/live_bench.py --levels 1 --pauses 1.5 --trace   # the speaker stops 13 times; every final

Each stream plays the pyannote.audio sample (30 s of a real two-speaker phone
call, not written by the project; tests/fixtures/real_speech.py fetches it)
at real time in 100 ms PCM chunks, with a 640x360 JPEG frame every second.
Per stream, on the client's clock (audio at media time t is sent at start + t):

- final latency: when a final segment arrives minus when its last word's end
  was sent (the speaker stopped; segments cut inside a long turn count too);
- partial cadence: the gaps between consecutive hypotheses (partials and the
  final) of one utterance, while it is being spoken;
- frame latency: when a frame's signals arrive minus when the frame was sent;
  on a moderated stream (the default) they are sent after the picture models
  (open_nsfw, PP-OCRv4 on the frame's digits) judged it: the frame's moderation result.

With `--pauses S`, each of the reference transcript's 13 segments is played
followed by S seconds of the recording's own room tone (its first 1.5 s, before
anyone speaks): every segment end is then a moment the speaker stops and the
endpointer can hear it (the call as recorded has no 500 ms pause: its finals
come from the 12 s cut and the end of the stream).

WER: the live finals and the batch `Transcribe` of the same file (same
server, same model) against the recording's reference transcript.

Speakers (as recorded only): the share of word time whose speaker is right
(reference: the recording's speaker-labelled segments; each label mapped to
the reference speaker that maximises the share), for the live summary's
analysis (labelled at the end of the stream), the live finals' own labels
(with `--set UNDERSTANDING_LIVE_SPEAKER_LABELS=true`) and the batch
`Transcribe` of the same file.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import re
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field

import cv2
import grpc
import jiwer
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks._harness import percentile, result, start_server  # noqa: E402
from tests.fixtures.real_speech import Recording, conversation  # noqa: E402
from understanding.v1 import common_pb2, live_pb2, understanding_pb2, understanding_pb2_grpc  # noqa: E402

MD = [("x-tenant-id", "bench-live")]
CHUNK = 3200  # 100 ms of s16 mono 16 kHz


def words(text: str) -> str:
    return " ".join(re.sub(r"[^\w' ]", " ", text.lower()).split())


def with_pauses(recording: Recording, pause_s: float) -> bytes:
    """The recording's reference segments with `pause_s` of room tone after each."""
    with wave.open(str(recording.wav)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    tone = audio[: int(1.5 * rate)]
    pause = np.resize(tone, int(pause_s * rate))
    spans = [(start, end) for start, end, _ in recording.segments]
    parts = [pause]
    for i, (start, end) in enumerate(spans):
        # The reference times are tight: up to 0.1 s more on each side, never into a neighbour.
        before = min(0.1, (start - spans[i - 1][1]) / 2) if i else 0.1
        after = min(0.1, (spans[i + 1][0] - end) / 2) if i + 1 < len(spans) else 0.1
        parts += [audio[int((start - before) * rate) : int((end + after) * rate)], pause]
    return np.concatenate(parts).astype(np.int16).tobytes()


def frame_jpeg(t: int) -> bytes:
    image = np.full((360, 640, 3), (40 + 6 * t) % 256, np.uint8)
    cv2.circle(image, (320, 180), 90, (0, 0, 255), -1)
    cv2.putText(image, f"{t:02d}", (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    return bytes(cv2.imencode(".jpg", image)[1].tobytes())


@dataclass
class StreamFigures:
    final_latency: list[float] = field(default_factory=list)
    finals: list[tuple[float, float, str]] = field(default_factory=list)  # (segment start, end, text)
    partial_gaps: list[float] = field(default_factory=list)
    frame_latency: list[float] = field(default_factory=list)
    max_behind_s: float = 0.0
    drops: dict[str, float] = field(default_factory=dict)
    text: str = ""
    speakers: list[tuple[float, float, str]] = field(default_factory=list)  # the summary's words
    final_speakers: list[tuple[float, float, str]] = field(default_factory=list)  # each final's label
    code: str = "OK"
    details: str = ""


async def play(target: str, pcm: bytes, media_id: str) -> StreamFigures:
    figures = StreamFigures()
    frames = {t: frame_jpeg(t) for t in range(len(pcm) // 32000)}
    started = 0.0

    async def requests():  # type: ignore[no-untyped-def]
        nonlocal started
        yield live_pb2.LiveRequest(
            config=live_pb2.LiveConfig(media_id=media_id, audio_format=live_pb2.LIVE_AUDIO_FORMAT_PCM_S16LE_16K_MONO)
        )
        started = time.perf_counter()
        for offset in range(0, len(pcm), CHUNK):
            t = offset / 32000
            delay = started + t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if offset % 32000 == 0 and int(t) in frames:
                yield live_pb2.LiveRequest(
                    frame=live_pb2.LiveFrame(jpeg=frames[int(t)], capture_time_us=1 + int(t * 1e6))
                )
            yield live_pb2.LiveRequest(
                audio=live_pb2.LiveAudio(data=pcm[offset : offset + CHUNK], capture_time_us=1 + int(t * 1e6))
            )
        yield live_pb2.LiveRequest(end=live_pb2.LiveEnd())

    finals: list[str] = []
    last_hypothesis: dict[int, float] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        call = understanding_pb2_grpc.UnderstandingStub(channel).AnalyzeLive(requests(), metadata=MD)
        try:
            async for event in call:
                now = time.perf_counter()
                kind = event.WhichOneof("event")
                if kind == "partial":
                    index = event.partial.segment_index
                    if index in last_hypothesis:
                        figures.partial_gaps.append(now - last_hypothesis[index])
                    last_hypothesis[index] = now
                elif kind == "final":
                    segment = event.final.segment
                    if segment.index in last_hypothesis:
                        figures.partial_gaps.append(now - last_hypothesis[segment.index])
                    figures.final_latency.append(now - (started + segment.end_s))
                    figures.finals.append((segment.start_s, segment.end_s, segment.text))
                    figures.final_speakers.append((segment.start_s, segment.end_s, event.final.speaker))
                    finals.append(segment.text)
                elif kind == "summary":
                    figures.speakers = spoken_by(event.summary.analysis.transcript)
                elif kind == "signals" and event.signals.source == "frame":
                    figures.frame_latency.append(now - (started + event.signals.frame_s))
                elif kind == "status":
                    figures.max_behind_s = max(figures.max_behind_s, event.status.behind_s)
                    for drop in event.status.drops:
                        name = live_pb2.LiveDropReason.Name(drop.reason)
                        figures.drops[name] = drop.frames or round(drop.audio_s, 2)
        except grpc.RpcError as error:
            figures.code, figures.details = error.code().name, error.details() or ""
    figures.text = " ".join(finals)
    return figures


async def refused(target: str) -> str:
    """One stream more than the limit: what the client gets."""

    async def requests():  # type: ignore[no-untyped-def]
        yield live_pb2.LiveRequest(
            config=live_pb2.LiveConfig(
                media_id="bench-extra", audio_format=live_pb2.LIVE_AUDIO_FORMAT_PCM_S16LE_16K_MONO
            )
        )
        yield live_pb2.LiveRequest(end=live_pb2.LiveEnd())

    async with grpc.aio.insecure_channel(target) as channel:
        call = understanding_pb2_grpc.UnderstandingStub(channel).AnalyzeLive(requests(), metadata=MD)
        try:
            async for _ in call:
                pass
        except grpc.RpcError as error:
            trailers = dict(await call.trailing_metadata() or ())
            return f"{error.code().name} ({error.details()}; retry-after-ms={trailers.get('retry-after-ms')})"
        return "admitted"


def spoken_by(transcript: common_pb2.Transcript) -> list[tuple[float, float, str]]:
    """(start, end, speaker) of every word (of the segment when it comes without its words)."""
    said = []
    for s in transcript.segments:
        said += [(w.start_s, w.end_s, w.speaker) for w in s.words] or [(s.start_s, s.end_s, s.speaker)]
    return said


def batch_text(target: str, path: pathlib.Path) -> tuple[str, float, list[tuple[float, float, str]]]:
    channel = grpc.insecure_channel(target)
    stub = understanding_pb2_grpc.UnderstandingStub(channel)

    def upload():  # type: ignore[no-untyped-def]
        yield understanding_pb2.UploadRequest(
            header=understanding_pb2.UploadHeader(media_id="bench-batch", filename=path.name)
        )
        yield understanding_pb2.UploadRequest(chunk=path.read_bytes())

    started = time.perf_counter()
    response = stub.Transcribe(upload(), metadata=MD, timeout=600)
    channel.close()
    transcript = response.analysis.transcript
    return " ".join(s.text for s in transcript.segments), time.perf_counter() - started, spoken_by(transcript)


async def run_level(target: str, pcm: bytes, n: int) -> list[StreamFigures]:
    return list(await asyncio.gather(*(play(target, pcm, f"bench-live-{n}-{i}") for i in range(n))))


def summarise(n: int, streams: list[StreamFigures]) -> dict[str, float]:
    finals = [x for s in streams for x in s.final_latency]
    gaps = [x for s in streams for x in s.partial_gaps]
    frames = [x for s in streams for x in s.frame_latency]
    row = {
        "final_p50": percentile(finals, 50),
        "final_p95": percentile(finals, 95),
        "partial_gap_p95": percentile(gaps, 95),
        "frame_p95": percentile(frames, 95),
        "max_behind_s": max(s.max_behind_s for s in streams),
    }
    drops: dict[str, float] = {}
    for s in streams:
        for name, value in s.drops.items():
            drops[name] = drops.get(name, 0) + value
    errors = [f"{s.code}: {s.details}" for s in streams if s.code != "OK"]
    print(
        f"{n:>3} streams  final p50 {row['final_p50']:6.2f} s  p95 {row['final_p95']:6.2f} s  "
        f"partial gap p95 {row['partial_gap_p95']:5.2f} s  frame p95 {row['frame_p95'] * 1000:7.0f} ms  "
        f"max behind {row['max_behind_s']:5.1f} s  drops {drops or '-'}  {'errors ' + str(errors) if errors else ''}",
        flush=True,
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one stream of 15 s")
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument(
        "--no-picture-models", action="store_true", help="frames without nudity/OCR (the baseline of their cost)"
    )
    parser.add_argument("--set", action="append", default=[], help="a server setting, KEY=VALUE (repeatable)")
    parser.add_argument(
        "--pauses", type=float, default=0.0, help="seconds of room tone after each reference segment (0: as recorded)"
    )
    parser.add_argument("--trace", action="store_true", help="print every final of the single stream, with its latency")
    args = parser.parse_args()
    recording = conversation()
    with wave.open(str(recording.wav)) as w:
        pcm = w.readframes(w.getnframes())
    if args.pauses > 0:
        pcm = with_pauses(recording, args.pauses)
    levels = [1] if args.quick else [int(x) for x in args.levels.split(",")]
    if levels[0] != 1:
        parser.error("--levels must start with 1: the single stream gives the WER and the other levels' baseline")
    if args.quick:
        pcm = pcm[: 15 * 32000]
    limit = max(levels)
    env = {"UNDERSTANDING_LIVE_MAX_STREAMS": str(limit), "UNDERSTANDING_LIVE_RETRY_AFTER_S": "10"}
    if args.no_picture_models:
        env.update({"UNDERSTANDING_NUDITY_MODEL": "off", "UNDERSTANDING_OCR_MODEL": "off"})
    env.update(dict(item.split("=", 1) for item in args.set))
    server = start_server(env)
    try:
        print(f"server ready in {server.serving_after_s:.1f} s; {len(pcm) / 32000:.0f} s of real speech per stream")
        rows = {}
        single: list[StreamFigures] = []
        for n in levels:
            streams = asyncio.run(run_level(server.target, pcm, n))
            rows[n] = summarise(n, streams)
            if n == 1:
                single = streams
                if args.trace:
                    trace(streams[0])
        if not args.quick:
            print(f"stream {limit + 1} while {limit} run: {asyncio.run(_over_limit(server.target, pcm, limit))}")
        reference = words(recording.reference)
        live_wer = jiwer.wer(reference, words(single[0].text)) if not args.quick else float("nan")
        played = recording.wav
        if args.pauses > 0:  # the batch side transcribes the same audio as the live one
            played = pathlib.Path(tempfile.mkdtemp()) / "paused.wav"
            with wave.open(str(played), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(16000)
                w.writeframes(pcm)
        text, batch_s, batch_speakers = batch_text(server.target, played)
        batch_wer = jiwer.wer(reference, words(text))
        print(f"WER on the full recording: live {live_wer:.3f}  batch Transcribe {batch_wer:.3f} ({batch_s:.1f} s)")
        if args.pauses == 0 and not args.quick:
            live_end = recording.speaker_share(single[0].speakers)
            live_finals = recording.speaker_share(single[0].final_speakers)
            batch_share = recording.speaker_share(batch_speakers)
            print(
                f"word time with the right speaker: live analysis (end of stream) {live_end:.3f}  "
                f"live finals {live_finals:.3f}  batch Transcribe {batch_share:.3f}"
            )
            result("live analysis: word time with the right speaker", live_end, batch_share, "report")
        one = rows[1]
        result("live final latency p95, 1 stream (s)", one["final_p95"], None, "<= 1.5", "s")
        result("live partial gap p95, 1 stream (s)", one["partial_gap_p95"], None, "<= 1.0", "s")
        result("live frame result p95 at 1 fps (s)", one["frame_p95"], None, "<= 0.3", "s")
        if not args.quick:
            result("live WER vs batch Transcribe (real speech)", live_wer, batch_wer, "<= +0.02 abs")
            for n in levels[1:]:
                result(
                    f"live final latency p95, {n} streams (s)", rows[n]["final_p95"], one["final_p95"], "report", "s"
                )
    finally:
        server.stop()
    return 0


def trace(stream: StreamFigures) -> None:
    """What the single stream's final latency is made of: each segment, when it ended, how late its final came."""
    for (start_s, end_s, text), late in zip(stream.finals, stream.final_latency, strict=True):
        print(f"    final {start_s:5.2f}-{end_s:5.2f} s  +{late:4.2f} s  {text[:70]}")


async def _over_limit(target: str, pcm: bytes, limit: int) -> str:
    players = [asyncio.create_task(play(target, pcm[: 8 * 32000], f"bench-hold-{i}")) for i in range(limit)]
    await asyncio.sleep(3.0)  # let them be admitted (this is a benchmark: a fixed wait only shapes the scenario)
    answer = await refused(target)
    await asyncio.gather(*players)
    return answer


if __name__ == "__main__":
    raise SystemExit(main())
