"""Speaker diarization: error rate on a public reference recording, and its cost through the speech pipeline.

    bash scripts/fetch_spk_eval_data.sh      # once: the reference recording (pyannote.audio 4.0.7 wheel)
    python benchmarks/diarization_bench.py [--quick] [--models campplus,ge2e] [--loops 4] [--cross-check]

Reference: pyannote.audio 4.0.7's sample (PyPI wheel, MIT): 30 s of a
two-speaker telephone conversation with an RTTM annotation and an STM
transcript made by its authors. Figures:

- DER (NIST definition, 0.25 s collar on each side of reference boundaries,
  overlap scored; benchmarks/der.py) with missed speech, false alarm and
  confusion, for: the speaker count detected, the count given (2), and the
  reference speech regions given (oracle VAD, isolating the clustering).
  CAM++ is also measured per window (each 1.5 s window through the whole
  network, as 3D-Speaker's recipe does) next to the service's pooled windows
  (the frame-level network run once per block of speech, windows pooled).
- Speaker count detected on each side of the call alone (one speaker muted).
- A stereo call built from the same recording (each speaker on a channel, the
  other side leaking at -30 dB): `channel_layout` must call it distinct, and
  its DER; the same mono audio copied into 2 and 8 channels, and a silent
  second channel, must not be called distinct.
- Word-level speaker accuracy: the service's transcript (Whisper base words,
  segments cut at speaker changes) against the STM's speaker of each word.
- Cost, through the service's speech pipeline (`SpeechPipeline.transcript`:
  sandboxed decode, Whisper base int8 with VAD and beam 5, the speaker model
  beside it, attribution), on the recording looped `--loops` times, in the same
  run: diarization off, then on with each model, alternating. Wall-clock
  real-time factor (what a caller waits) and process CPU seconds (what the
  machine pays; the CPU is shared, so this is the steadier figure). Target:
  diarization adds <= 30%. Threads as the service's defaults: Whisper 2,
  speaker model 1 (torch's thread count is process-wide).

`--quick` (CI, run_all.py): the default model only, detected count and hint,
one cost round on the recording x2. `--cross-check` recomputes every DER with
pyannote.metrics (collar=0.5, its total-width convention) when that package is
importable, e.g. in a scratch venv.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import wave

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import result  # noqa: E402
from der import DerResult, Turn, diarization_error, read_rttm  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SR = 16000


def reference_dir() -> pathlib.Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch_spk_eval_data.sh")], check=True, capture_output=True, text=True
    )
    return pathlib.Path(out.stdout.strip().splitlines()[-1])


def read_wav(path: pathlib.Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == SR and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def write_wav(path: pathlib.Path, audio: np.ndarray) -> pathlib.Path:
    data = np.atleast_2d(audio)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[0])
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(data.T.ravel(), -1, 1) * 32767).astype("<i2").tobytes())
    return path


def read_stm(path: pathlib.Path) -> list[tuple[float, float, str]]:
    rows = []
    for line in path.read_text().splitlines():
        _, _, speaker, start, end, *_ = line.split()
        rows.append((float(start), float(end), speaker))
    return rows


def turns_of(diarization) -> list[Turn]:  # type: ignore[no-untyped-def]
    return [(t.start_s, t.end_s, t.speaker) for t in diarization.turns]


def fmt(r: DerResult) -> str:
    x = r.rates()
    return (
        f"DER {x['der']:6.1%}  (missed {x['missed']:5.1%}, false alarm {x['false_alarm']:5.1%}, "
        f"confusion {x['confusion']:5.1%})"
    )


def pyannote_der(ref: list[Turn], hyp: list[Turn], end_s: float) -> float | None:
    try:
        from pyannote.core import Annotation, Segment, Timeline
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError:
        return None

    def ann(turns: list[Turn]) -> Annotation:
        a = Annotation()
        for i, (s, e, k) in enumerate(turns):
            a[Segment(s, e), i] = k
        return a

    metric = DiarizationErrorRate(collar=0.5, skip_overlap=False)  # 0.25 s each side
    return float(metric(ann(ref), ann(hyp), uem=Timeline([Segment(0, end_s)])))


def mute_others(audio: np.ndarray, ref: list[Turn], keep: str) -> np.ndarray:
    """The audio with every stretch where `keep` is not speaking set to zero (one side of the call)."""
    mask = np.zeros(audio.size, dtype=bool)
    for s, e, k in ref:
        if k == keep:
            mask[int(s * SR) : int(e * SR)] = True
    return np.where(mask, audio, 0.0).astype(np.float32)


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def word_accuracy(transcript, stm) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Share of words whose speaker maps to the STM speaker of the utterance holding the word's middle."""
    from scipy.optimize import linear_sum_assignment

    pairs = []
    for seg in transcript.segments:
        for w in seg.words:
            mid = 0.5 * (w.start_s + w.end_s)
            truth = next((k for s, e, k in stm if s - 0.1 <= mid <= e + 0.1), None)
            if truth is not None:
                pairs.append((truth, w.speaker))
    if not pairs:
        return 0.0, 0
    truths = sorted({t for t, _ in pairs})
    labels = sorted({h for _, h in pairs})
    counts = np.array([[sum(1 for t, h in pairs if t == a and h == b) for b in labels] for a in truths])
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(pairs)), len(pairs)


def channel_checks(audio: np.ndarray, ref: list[Turn], end_s: float, names: list[str]) -> None:
    from understanding.pipelines import diarization as D

    sides = [mute_others(audio, ref, n) for n in names]
    leak = 10 ** (-30 / 20)
    stereo = np.stack([sides[0] + leak * sides[1], sides[1] + leak * sides[0]]).astype(np.float32)
    layout = D.channel_layout(stereo)
    print(
        f"\nchannels: stereo call (one speaker per channel, -30 dB crosstalk): distinct={layout.distinct} ({layout.reason})"
    )
    if layout.distinct:
        r = diarization_error(ref, turns_of(D.diarize_channels(layout)), collar_s=0.25, end_s=end_s)
        print(f"  per-channel turns: {fmt(r)}  (channels were cut at the reference turns: this checks the logic)")
        result("diarization_der_stereo_channels", r.der, None, "<= 0.15")
    for label, multi in [
        ("mono copied to 2 channels", np.stack([audio, audio])),
        ("mono copied to 8 channels", np.stack([audio] * 8)),
        ("mono + silent channel", np.stack([audio, np.zeros_like(audio)])),
        ("mono, 2nd channel at -20 dB", np.stack([audio, 0.1 * audio])),
    ]:
        lay = D.channel_layout(multi.astype(np.float32))
        print(f"  {label:28s} distinct={lay.distinct} ({lay.reason})")


def quality(model_name: str, encoder, audio, ref, stm, end_s, names, args) -> None:  # type: ignore[no-untyped-def]
    from understanding.pipelines import diarization as D

    speech = D.detect_speech(audio)
    oracle = _merge([(s, e) for s, e, _ in ref])
    print(
        f"\n=== speaker model {encoder.model_ref.name} {encoder.model_ref.version} "
        f"(window {encoder.window_s} s, same-voice cosine {encoder.same_speaker_cosine})"
    )
    cases = [
        ("detected count, VAD", D.DiarizationOptions(), speech),
        ("hint 2 speakers, VAD", D.DiarizationOptions(num_speakers=2), speech),
    ]
    if not args.quick:
        cases += [
            ("detected count, oracle speech", D.DiarizationOptions(), oracle),
            ("hint 2 speakers, oracle speech", D.DiarizationOptions(num_speakers=2), oracle),
        ]
    variants: list[tuple[str, float | None]] = [("", None)]
    if model_name == "campplus" and not args.quick:
        # Block 1.5 s = one window per block: every window through the whole network on its own.
        variants = [("per window", encoder.window_s), *[(f"pooled, {b:g} s blocks", b) for b in (3.0, 6.0, 12.0)]]
    print("DER, collar 0.25 s each side, overlap scored")
    default_block = getattr(encoder, "block_s", None)
    for variant, block in variants:
        if block is not None:
            encoder.block_s = block
            print(f"  -- {variant}{' (the service default)' if block == default_block else ''}")
        for name, options, regions in cases:
            d = D.diarize(audio, encoder, options, speech=regions)
            hyp = turns_of(d)
            r = diarization_error(ref, hyp, collar_s=0.25, end_s=end_s)
            extra = ""
            if args.cross_check:
                other = pyannote_der(ref, hyp, end_s)
                extra = (
                    f"  pyannote.metrics {other:.1%}" if other is not None else "  (pyannote.metrics not importable)"
                )
            print(f"  {name:32s} speakers {len(d.speakers)}  {fmt(r)}{extra}")
            if block is None or block == default_block:
                key = name.replace(", ", "_").replace(" ", "_")
                result(f"diarization_der_{model_name}_{key}", r.der, None, "<= 0.15 (two speakers)")
                x = r.rates()
                for part in ("missed", "false_alarm", "confusion"):
                    result(f"diarization_{part}_{model_name}_{key}", x[part], None, "part of DER")
    if default_block is not None:
        encoder.block_s = default_block
    if not args.quick:
        print("speaker count on one side of the call (the other side muted), detected:")
        for name in names:
            d = D.diarize(mute_others(audio, ref, name), encoder, D.DiarizationOptions())
            print(f"  only {name}: {len(d.speakers)} speaker(s) found (want 1)")
            result(f"diarization_solo_count_{model_name}_{name}", float(len(d.speakers)), None, "== 1")


def pipeline(transcriber, encoder, work: pathlib.Path):  # type: ignore[no-untyped-def]
    """The service's speech pipeline (sandboxed decode, as `understanding serve` builds it)."""
    from understanding.media.sandbox import MediaDecoder, SandboxSettings
    from understanding.pipelines.speakers import SpeakerSettings
    from understanding.pipelines.speech import SpeechPipeline

    decoder = MediaDecoder(SandboxSettings(isolate=True, work_dir=work))
    decoder.warm_up()
    # `transcript` only asks the text pipeline for each segment's own language, the same work with or
    # without speakers: left out of this comparison (segments keep the transcript's language).
    return SpeechPipeline(
        transcriber=transcriber, text=_TranscriptLanguage(), max_duration_s=4 * 3600.0, decoder=decoder,  # type: ignore[arg-type]
        speakers=SpeakerSettings(encoder=encoder),
    )  # fmt: skip


class _TranscriptLanguage:
    """Stands in for the text pipeline in `SpeechPipeline.transcript`: no per-segment detection."""

    def own_language(self, text: str, fallback: object) -> object:
        return fallback


def timed(speech, path: pathlib.Path, options) -> tuple[float, float, object]:  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    transcript = asyncio.run(speech.transcript(path, options))
    return time.perf_counter() - wall, time.process_time() - cpu, transcript


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI: default model, fewer cases, one short cost round")
    parser.add_argument(
        "--models", default=None, help="speaker models to measure (default: campplus,ge2e; quick: campplus)"
    )
    parser.add_argument(
        "--loops", type=int, default=None, help="times the 30 s recording is repeated for the cost (default 4)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="cost rounds, best kept (default 2)")
    parser.add_argument(
        "--speaker-threads", type=int, default=1, help="torch threads of the speaker model (service: 1)"
    )
    parser.add_argument("--whisper-threads", type=int, default=2, help="CTranslate2 threads of Whisper (service: 2)")
    parser.add_argument("--cross-check", action="store_true", help="DER by pyannote.metrics too (if importable)")
    args = parser.parse_args()
    models = [
        m.strip() for m in (args.models or ("campplus" if args.quick else "campplus,ge2e")).split(",") if m.strip()
    ]
    loops = args.loops or (2 if args.quick else 4)
    rounds = args.rounds or (1 if args.quick else 2)

    from understanding.domain import SpeechOptions
    from understanding.models.speaker import load_speaker_encoder
    from understanding.models.whisper import Transcriber, resolve_whisper_model

    ref_dir = reference_dir()
    audio = read_wav(ref_dir / "sample.wav")
    ref = read_rttm(ref_dir / "sample.rttm")
    stm = read_stm(ref_dir / "sample.stm")
    end_s = audio.size / SR
    names = sorted({k for *_, k in ref})
    print(
        f"reference: pyannote.audio 4.0.7 sample.wav ({end_s:.1f} s, {len(names)} speakers, "
        f"{sum(e - s for s, e, _ in ref):.1f} s of speaker time)"
    )
    channel_checks(audio, ref, end_s, names)

    encoders = {}
    for name in models:
        encoder = load_speaker_encoder(name, threads=args.speaker_threads)
        encoder.warm_up()
        encoders[name] = encoder
        quality(name, encoder, audio, ref, stm, end_s, names, args)

    cache = pathlib.Path(os.environ.get("UNDERSTANDING_CACHE", pathlib.Path.home() / ".cache/understanding"))
    whisper = Transcriber(
        model_path=resolve_whisper_model("packaged", cache / "models"), cpu_threads=args.whisper_threads, num_workers=1
    )
    whisper.warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        one = write_wav(work / "call.wav", audio)
        looped = write_wav(work / f"call-x{loops}.wav", np.tile(audio, loops))
        seconds = loops * end_s
        pipelines = {name: pipeline(whisper, enc, work) for name, enc in encoders.items()}
        off = pipeline(whisper, None, work)

        print("\nwords with the right speaker (the service's transcript: Whisper base words, segments cut at changes):")
        for name, speech in pipelines.items():
            _, _, t = timed(speech, one, SpeechOptions(language="en", word_timestamps=True))
            accuracy, n = word_accuracy(t, stm)
            print(f"  {name}: {accuracy:.1%} of {n} words, {len(t.speakers)} speakers, {len(t.segments)} segments")
            result(f"diarization_word_accuracy_{name}", accuracy, None, "high")

        options = SpeechOptions(language="en")
        off_options = dataclasses.replace(options, diarize=False)
        times: dict[str, list[tuple[float, float]]] = {"off": [], **{n: [] for n in pipelines}}
        der_of: dict[str, str] = {}
        for _ in range(rounds):  # alternate, so every mode sees the same machine load
            wall, cpu, _ = timed(off, looped, off_options)
            times["off"].append((wall, cpu))
            for name, speech in pipelines.items():
                wall, cpu, t = timed(speech, looped, options)
                times[name].append((wall, cpu))
                der_of[name] = f"{len(t.speakers)} speakers"  # type: ignore[attr-defined]
        base_wall = min(w for w, _ in times["off"])
        base_cpu = min(c for _, c in times["off"])
        print(
            f"\ncost through the speech pipeline on {seconds:.0f} s (the recording x{loops}), best of {rounds}, "
            f"Whisper {args.whisper_threads} thread(s), speaker model {args.speaker_threads}, "
            f"load avg {os.getloadavg()[0]:.1f}:"
        )
        print(f"  diarization off:        wall RTF {base_wall / seconds:.3f}   CPU {base_cpu / seconds:.3f} s per s")
        result("speech_rtf_diarization_off", base_wall / seconds, None, "baseline")
        for name in pipelines:
            wall = min(w for w, _ in times[name])
            cpu = min(c for _, c in times[name])
            print(
                f"  diarization {name:10s} wall RTF {wall / seconds:.3f} (adds {wall / base_wall - 1:+.0%})   "
                f"CPU {cpu / seconds:.3f} s per s (adds {cpu / base_cpu - 1:+.0%})  [{der_of[name]}]"
            )
            result(f"speech_rtf_diarization_{name}_wall", wall / seconds, base_wall / seconds, "ratio <= 1.30")
            result(f"speech_cpu_diarization_{name}", cpu / seconds, base_cpu / seconds, "ratio <= 1.30")


if __name__ == "__main__":
    main()
