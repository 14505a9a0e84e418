"""Who speaks in a live stream: the whole stream's speakers at its end, and optionally a label per final.

The batch diarizer's method (pipelines/diarization.py), fed as the stream
goes: after each final segment, the audio since the previous one up to just
after it is searched for speech (the diarization VAD) and cut into the
speaker model's windows, which are embedded once and kept (the audio is
not). So every stretch of the stream's speech is embedded once, as `diarize`
would embed the whole recording. At the end, `attribute` labels the stream's
transcript as the batch path labels a recording (clustering of every window,
frame-level re-segmentation, a speaker per word, the speaker list), keeping
the segments and their indexes, which the live events refer to.

Online labels (`online`, off by default): after each final, the recent
windows are clustered again with the batch settings (count from the
eigengap, the model's calibrated same-voice cosine: nothing tuned on live
data) and the final takes the label its windows hold most. Labels stay
stable across re-clusterings: a cluster takes the label most of its windows
had (largest overlap first); one with none takes the label whose voice (mean
vector) it matches by the same-voice cosine, else the next new label. A
final with no window of at least half the model's window (~0.75 s of speech
for CAM++) gets "" (not known). With few windows, the clustering often
cannot tell two voices apart yet: on the only labelled call here, online
labels were right for ~0.7 of the word time against ~0.93 at the end
(benchmarks/live_bench.py), which is why they are off unless asked for.

Not thread-safe: one caller at a time (the stream's decode loop, then its end).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from understanding.domain import Segment, Transcript
from understanding.models.speaker import SpeakerEncoder
from understanding.pipelines.attribution import attribute
from understanding.pipelines.diarization import (
    SAMPLE_RATE,
    DiarizationOptions,
    centroids,
    cluster_embeddings,
    detect_speech,
    diarize_windows,
    level_gain,
    reliable_window,
    speech_windows,
)

__all__ = ["LiveSpeakers"]

_EDGE_S = 0.2  # audio after a segment's last word time searched with it (word times drift)


class LiveSpeakers:
    """`hear` the audio of each final as it comes (then `label` it, when `online`);
    `attribute` the whole transcript at the end.

    `recent_windows` bounds the online re-clustering (its cost grows with the
    windows; ~4 minutes of speech at the default): older windows keep their
    labels and their voices' mean vectors, so a voice coming back after that
    is matched by its mean. `detect` finds speech in a segment's audio (the
    diarization VAD).
    """

    def __init__(
        self,
        encoder: SpeakerEncoder,
        *,
        max_speakers: int = 8,
        recent_windows: int = 300,
        online: bool = False,
        detect: Callable[[npt.NDArray[np.float32]], list[tuple[float, float]]] = detect_speech,
    ) -> None:
        self._encoder = encoder
        self.online = online
        self._detect = detect
        self._options = DiarizationOptions(max_speakers=max_speakers)
        self._window = int(encoder.window_s * SAMPLE_RATE)
        self._hop = self._window // 2
        self._recent = recent_windows
        self._regions: list[tuple[float, float]] = []  # speech (stream seconds)
        self._spans: list[tuple[int, int]] = []  # windows (stream samples)
        self._embeddings: list[npt.NDArray[np.float32]] = []
        self._labels: list[str] = []  # online label per window ("" until clustered)
        self._voices: dict[str, npt.NDArray[np.float32]] = {}  # label -> unit mean vector
        self._named = 0  # labels given so far
        self._done_s = 0.0  # stream time up to which the audio has been searched for speech
        self._square_sum = 0.0
        self._speech_samples = 0

    @property
    def windows(self) -> int:
        return len(self._spans)

    def span(self, segment: Segment) -> tuple[float, float]:
        """The stream time `label` wants audio for: from where the previous call's audio ended
        to just after this segment (so all the stream's speech is embedded once, pauses too)."""
        return self._done_s, max(self._done_s, segment.end_s + _EDGE_S)

    def hear(self, audio: npt.NDArray[np.float32], offset_s: float) -> None:
        """Embed the speech in the stream's `audio` from `offset_s`, as `span` asked (less when the
        stream no longer had all of it)."""
        self._done_s = max(self._done_s, offset_s + audio.size / SAMPLE_RATE)
        found = [(s, e) for s, e in self._detect(audio) if e > s]
        local = speech_windows(found, audio.size, self._window, self._hop)
        if not local:
            return
        # One gain for the stream (as `diarize` has one per media), from all its speech so far.
        for a, b in local:
            piece = audio[a:b].astype(np.float64)
            self._square_sum += float(np.sum(piece * piece))
            self._speech_samples += piece.size
        gain = level_gain(float(np.sqrt(self._square_sum / max(self._speech_samples, 1))))
        embeddings = self._encoder.embed_spans(audio, local, self._window, gain=gain)
        shift = int(round(offset_s * SAMPLE_RATE))
        self._regions.extend((s + offset_s, e + offset_s) for s, e in found)
        self._spans.extend((a + shift, b + shift) for a, b in local)
        self._embeddings.extend(embeddings)
        self._labels.extend([""] * len(local))

    def label(self, segment: Segment) -> str:
        """The speaker of a final `segment` whose audio has been heard, "" when not known."""
        self._recluster()
        return self._majority(segment)

    def attribute(self, transcript: Transcript) -> Transcript:
        """`transcript` (the stream's finals) with speakers from all its windows, as the batch path does."""
        if not self._spans:
            return transcript
        n_samples = max(int(transcript.duration_s * SAMPLE_RATE), self._spans[-1][1])
        diarization = diarize_windows(
            self._regions,
            self._spans,
            np.stack(self._embeddings),
            window=self._window,
            n_samples=n_samples,
            options=self._options,
            same_speaker_cosine=self._encoder.same_speaker_cosine,
            model=self._encoder.model_ref,
        )
        return attribute(transcript, diarization, split=False)

    # ------------------------------------------------------------ internals
    def _reliable(self, i: int) -> bool:
        return reliable_window(self._spans[i], self._window)

    def _recluster(self) -> None:
        recent = [i for i in range(max(0, len(self._spans) - self._recent), len(self._spans)) if self._reliable(i)]
        if not recent:
            return
        vectors = np.stack([self._embeddings[i] for i in recent])
        clusters = cluster_embeddings(
            vectors,
            max_speakers=self._options.max_speakers,
            same_speaker_cosine=self._encoder.same_speaker_cosine,
        )
        means = centroids(vectors, clusters, int(clusters.max()) + 1)
        names = self._name(recent, clusters, means)
        for i, c in zip(recent, clusters, strict=True):
            self._labels[i] = names[int(c)]
        for c, mean in enumerate(means):
            self._voices[names[c]] = mean
        for i in range(max(0, len(self._spans) - self._recent), len(self._spans)):
            if not self._reliable(i):  # a short window takes the nearest voice, as in `diarize`
                self._labels[i] = names[int(np.argmax(means @ self._embeddings[i]))]

    def _name(
        self, members: list[int], clusters: npt.NDArray[np.int64], means: npt.NDArray[np.float32]
    ) -> dict[int, str]:
        """A stable label per cluster (`means`: their unit mean vectors; see the module docstring)."""
        overlap: dict[tuple[int, str], int] = {}
        first: dict[tuple[int, str], int] = {}  # its earliest window: a tie goes to the longer-standing voice
        for i, c in zip(members, clusters, strict=True):
            if self._labels[i]:
                key = (int(c), self._labels[i])
                overlap[key] = overlap.get(key, 0) + 1
                first.setdefault(key, i)
        names: dict[int, str] = {}
        taken: set[str] = set()
        for (c, name), _ in sorted(overlap.items(), key=lambda kv: (-kv[1], first[kv[0]])):
            if c not in names and name not in taken:
                names[c] = name
                taken.add(name)
        for c, mean in enumerate(means):
            if c in names:
                continue
            free = [(float(voice @ mean), name) for name, voice in self._voices.items() if name not in taken]
            best = max(free, default=None)
            if best is not None and best[0] >= self._encoder.same_speaker_cosine:
                names[c] = best[1]
            else:
                self._named += 1
                names[c] = f"S{self._named}"
            taken.add(names[c])
        return names

    def _majority(self, segment: Segment) -> str:
        """The label holding most of the segment's time among the recent windows long enough to
        shape the clusters ("" when none overlaps it)."""
        lo, hi = int(segment.start_s * SAMPLE_RATE), int(segment.end_s * SAMPLE_RATE)
        held: dict[str, int] = {}
        for i in range(max(0, len(self._spans) - self._recent), len(self._spans)):
            a, b = self._spans[i]
            overlap = min(b, hi) - max(a, lo)
            if overlap > 0 and self._labels[i] and self._reliable(i):
                held[self._labels[i]] = held.get(self._labels[i], 0) + overlap
        return max(held.items(), key=lambda kv: (kv[1], kv[0]))[0] if held else ""
