"""Who spoke when: speaker turns from 16 kHz audio, and speakers for transcript segments and words.

Plain functions, no I/O. Two paths:

- One mixed channel (`diarize`): speech regions (Silero VAD, tighter settings
  than transcription's) are cut into overlapping windows, each window is
  embedded by a `SpeakerEncoder`, the windows are clustered (spectral
  clustering; the speaker count comes from the caller's hint or from the
  eigengap of a pruned cosine-affinity graph, then clusters whose centroids are
  near-identical voices are merged), and a frame-level re-segmentation scores
  every 20 ms of speech against the speaker centroids, so turn boundaries are
  finer than the window hop. Short flips are smoothed away.
- One participant per channel (`channel_layout`, `diarize_channels`): when the
  channels carry distinct participants (a call recorded per side), each channel
  is a speaker exactly and no model is needed.

Labels are stable within one media: `S1`, `S2`, ... in order of first speech
(`CH1`, `CH2`, ... by channel index for per-channel audio).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from faster_whisper.vad import VadOptions, get_speech_timestamps
from sklearn.cluster import KMeans, SpectralClustering

from understanding.domain import MAX_SPEAKERS, Cancelled, InvalidInput, ModelRef, Segment, validate_num_speakers
from understanding.models.speaker import SpeakerEncoder

__all__ = [
    "MAX_SPEAKERS",
    "ChannelLayout",
    "SAMPLE_RATE",
    "ChannelSpeech",
    "Diarization",
    "DiarizationOptions",
    "SegmentSpeakers",
    "SpeakerSummary",
    "SpeakerTurn",
    "assign_speakers",
    "channel_layout",
    "centroids",
    "cluster_embeddings",
    "detect_speech",
    "diarize",
    "diarize_channels",
    "diarize_windows",
    "level_gain",
    "reliable_window",
    "reliable_windows",
    "separate_channels",
    "speech_gain",
    "speech_windows",
    "validate_num_speakers",
]

SAMPLE_RATE = 16000
_FRAME_S = 0.02  # re-segmentation resolution
_VAD_BLOCK = 10 * 60 * SAMPLE_RATE
# Diarization needs pauses between turns, so it keeps shorter silences and pads
# less than transcription's VAD (2 s / 400 ms), which would glue turns together.
DIARIZATION_VAD = VadOptions(min_silence_duration_ms=300, speech_pad_ms=60, min_speech_duration_ms=120)
# Above this many windows, spectral clustering runs on k-means representatives
# (its eigen-decomposition is cubic in the number of items).
_MAX_CLUSTER_ITEMS = 600
# A detected speaker needs at least this many windows (~3 s of speech at the default hop).
_MIN_CLUSTER_ITEMS = 3
_EMBED_BATCH = 256  # windows per encoder call (more when one region has more)


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """One stretch of speech by one speaker (seconds from the start of the media)."""

    start_s: float
    end_s: float
    speaker: str


@dataclass(frozen=True, slots=True)
class SpeakerSummary:
    label: str
    speaking_s: float
    turns: int


@dataclass(frozen=True, slots=True)
class Diarization:
    """Speaker turns of one media, in time order, and per-speaker totals (most talkative first).

    `method` says how the speakers were found: "clustering" (speaker model),
    "channels" (one participant per channel), "single" (a hint of one speaker)
    or "none" (no speech). `model` is the speaker model, None when none ran.
    """

    turns: tuple[SpeakerTurn, ...]
    speakers: tuple[SpeakerSummary, ...]
    method: str
    model: ModelRef | None = None


@dataclass(frozen=True, slots=True)
class DiarizationOptions:
    """Knobs of `diarize`; defaults measured in benchmarks/diarization_bench.py.

    `num_speakers`: the caller's hint; the result then has exactly that many
    speakers (fewer only when there are fewer speech windows). Without it the
    count is detected within 1..`max_speakers`.
    `window_s` None takes the encoder's training window (1.6 s for GE2E,
    1.5 s for CAM++); `hop_s` None is half the window.
    `same_speaker_cosine`: clusters whose centroids are at least this similar
    are one voice (merged when the count is detected, never against a hint);
    None takes the encoder's calibrated value.
    """

    num_speakers: int | None = None
    max_speakers: int = 8
    window_s: float | None = None
    hop_s: float | None = None
    min_turn_s: float = 0.4
    same_speaker_cosine: float | None = None

    def __post_init__(self) -> None:
        if self.num_speakers is not None:
            validate_num_speakers(self.num_speakers)
        if not 1 <= self.max_speakers <= MAX_SPEAKERS:
            raise InvalidInput(f"max_speakers must be within 1..{MAX_SPEAKERS}, not {self.max_speakers}")
        if self.window_s is not None and not 0.5 <= self.window_s <= 10.0:
            raise InvalidInput(f"window_s must be within 0.5..10 s, not {self.window_s}")
        if self.hop_s is not None and not 0.05 <= self.hop_s <= 10.0:
            raise InvalidInput(f"hop_s must be within 0.05..10 s, not {self.hop_s}")


# --- speech regions -------------------------------------------------------------


def detect_speech(audio: npt.NDArray[np.float32], options: VadOptions = DIARIZATION_VAD) -> list[tuple[float, float]]:
    """Speech regions (start_s, end_s) of 16 kHz mono audio, by Silero VAD, 10 minutes at a time."""
    regions: list[tuple[float, float]] = []
    for offset in range(0, audio.size, _VAD_BLOCK):
        block = np.ascontiguousarray(audio[offset : offset + _VAD_BLOCK], dtype=np.float32)
        for chunk in get_speech_timestamps(block, options, sampling_rate=SAMPLE_RATE):
            start, end = (offset + int(chunk["start"])) / SAMPLE_RATE, (offset + int(chunk["end"])) / SAMPLE_RATE
            if regions and regions[-1][1] >= start:
                regions[-1] = (regions[-1][0], max(regions[-1][1], end))
            else:
                regions.append((start, end))
    return regions


# --- clustering ---------------------------------------------------------------------


def _pruned_affinity(embeddings: npt.NDArray[np.float32], keep: int) -> npt.NDArray[np.float64]:
    """Cosine affinity keeping each row's `keep` strongest links, symmetrised.

    Pruning weak links is what makes the graph's eigengap reveal the number of
    speakers (Park et al. 2019, "auto-tuning spectral clustering", NME-SC).
    """
    sim = np.clip(embeddings.astype(np.float64) @ embeddings.T.astype(np.float64), 0.0, 1.0)
    n = sim.shape[0]
    keep = max(1, min(keep, n - 1))
    weakest = np.argsort(sim, axis=1)[:, : n - keep]
    pruned = sim.copy()
    np.put_along_axis(pruned, weakest, 0.0, axis=1)
    return 0.5 * (pruned + pruned.T)


def _eigengap(affinity: npt.NDArray[np.float64], max_k: int) -> tuple[int, float]:
    """(k, normalised gap) from the Laplacian spectrum of `affinity`."""
    laplacian = np.diag(affinity.sum(axis=1)) - affinity
    values = np.linalg.eigvalsh(laplacian)[: max_k + 1]
    gaps = np.diff(values)
    k = int(np.argmax(gaps)) + 1
    return k, float(gaps[k - 1] / max(values[-1], 1e-10))


def _estimate_k(embeddings: npt.NDArray[np.float32], max_k: int) -> tuple[int, npt.NDArray[np.float64]]:
    """Speaker count and the affinity it was read from: the pruning with the clearest gap wins."""
    n = embeddings.shape[0]
    best: tuple[float, int, npt.NDArray[np.float64]] | None = None
    # Fewer links than ~10% of the items tear the graph into many components,
    # whose eigengap then counts fragments instead of voices.
    candidates = sorted({max(2, round(n * f)) for f in (0.2, 0.25, 0.3)})
    for keep in candidates:
        if keep >= n:
            continue
        affinity = _pruned_affinity(embeddings, keep)
        k, gap = _eigengap(affinity, min(max_k, n - 1))
        ratio = keep / n / max(gap, 1e-10)  # NME: few links and a wide gap
        if best is None or ratio < best[0]:
            best = (ratio, k, affinity)
    if best is None:
        return 1, np.ones((n, n))
    return best[1], best[2]


def _spectral_labels(affinity: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int64]:
    if k <= 1:
        return np.zeros(affinity.shape[0], dtype=np.int64)
    model = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=0, assign_labels="cluster_qr")
    return np.asarray(model.fit_predict(affinity + 1e-6), dtype=np.int64)


def centroids(embeddings: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.float32]:
    """The unit mean vector of each of the `k` clusters (zeros for an empty one)."""
    out = np.zeros((k, embeddings.shape[1]), dtype=np.float32)
    for c in range(k):
        members = embeddings[labels == c]
        if len(members):
            mean = members.mean(axis=0)
            out[c] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out


def _merge_similar(
    embeddings: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], threshold: float
) -> npt.NDArray[np.int64]:
    """Merge the two most similar clusters while their centroids are at least `threshold` alike."""
    labels = _compact(labels)
    while labels.max(initial=0) >= 1:
        k = int(labels.max()) + 1
        cent = centroids(embeddings, labels, k)
        sim = cent @ cent.T
        np.fill_diagonal(sim, -1.0)
        a, b = np.unravel_index(int(np.argmax(sim)), sim.shape)
        if sim[a, b] < threshold:
            break
        labels = _compact(np.where(labels == b, a, labels))
    return labels


def _absorb_small(
    embeddings: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], min_size: int
) -> npt.NDArray[np.int64]:
    """Clusters of fewer than `min_size` items join the nearest larger cluster (a few windows are not a voice).

    When every cluster is small (little speech), the largest one anchors the rest.
    """
    labels = _compact(labels)
    while True:
        sizes = np.bincount(labels)
        small = sizes < min_size
        if small.all():
            small[int(np.argmax(sizes))] = False
        if not small.any():
            return labels
        cent = centroids(embeddings, labels, sizes.size)
        candidates = np.flatnonzero(small)
        victim = int(candidates[np.argmin(sizes[candidates])])
        sim = cent[victim] @ cent.T
        sim[small] = -np.inf  # join a real cluster
        labels = _compact(np.where(labels == victim, int(np.argmax(sim)), labels))


def _compact(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    _, inverse = np.unique(labels, return_inverse=True)
    return np.asarray(inverse, dtype=np.int64)


def cluster_embeddings(
    embeddings: npt.NDArray[np.float32],
    *,
    num_speakers: int | None = None,
    max_speakers: int = 8,
    same_speaker_cosine: float = 0.9,
) -> npt.NDArray[np.int64]:
    """A cluster index per unit-vector embedding (0..k-1).

    With `num_speakers`, exactly min(num_speakers, N) clusters. Otherwise k is
    read from the eigengap, then clusters that are one voice are merged.
    Beyond `_MAX_CLUSTER_ITEMS` vectors, k-means representatives are clustered
    and each vector takes its representative's cluster.
    """
    n = embeddings.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1 or num_speakers == 1:
        return np.zeros(n, dtype=np.int64)
    items, owner = embeddings, np.arange(n)
    if n > _MAX_CLUSTER_ITEMS:
        km = KMeans(n_clusters=_MAX_CLUSTER_ITEMS, n_init=1, random_state=0, max_iter=50).fit(embeddings)
        items = centroids(embeddings, np.asarray(km.labels_, dtype=np.int64), _MAX_CLUSTER_ITEMS)
        owner = np.asarray(km.labels_)
    m = items.shape[0]
    if num_speakers is not None:
        k = min(num_speakers, m)
        affinity = _pruned_affinity(items, max(2, round(m * 0.2)))
        labels = _spectral_labels(affinity, k) if k < m else np.arange(m, dtype=np.int64)
        labels = _refine(items, labels, k)
    else:
        k, affinity = _estimate_k(items, min(max_speakers, m - 1))
        labels = _spectral_labels(affinity, min(k, max_speakers))
        labels = _refine(items, labels, int(labels.max()) + 1)
        labels = _absorb_small(items, labels, max(_MIN_CLUSTER_ITEMS, math.ceil(0.05 * m)))
        labels = _merge_similar(items, labels, same_speaker_cosine)
    return _compact(labels[owner])


def _refine(
    embeddings: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], k: int, rounds: int = 3
) -> npt.NDArray[np.int64]:
    """A few nearest-centroid passes (k-means style) that keep every cluster non-empty."""
    for _ in range(rounds):
        cent = centroids(embeddings, labels, k)
        new = np.argmax(embeddings @ cent.T, axis=1).astype(np.int64)
        if len(np.unique(new)) < len(np.unique(labels)) or np.array_equal(new, labels):
            break
        labels = new
    return labels


# --- diarization of one channel ---------------------------------------------------------


def _tiles(start: int, end: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Windows over [start, end): every `hop`, the last one ending at `end`; one short window if it is shorter."""
    if end - start <= window:
        return [(start, end)]
    count = math.ceil((end - start - window) / hop) + 1
    return [(min(start + i * hop, end - window), min(start + i * hop, end - window) + window) for i in range(count)]


def diarize(
    audio: npt.NDArray[np.float32],
    encoder: SpeakerEncoder,
    options: DiarizationOptions = DiarizationOptions(),
    *,
    speech: Sequence[tuple[float, float]] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Diarization:
    """Speaker turns of 16 kHz mono audio.

    `speech` are the speech regions (seconds); None runs `detect_speech`.
    Only speech is attributed: turns never cover silence the VAD dropped.
    `should_stop` is polled between embedding batches; when it says so,
    `Cancelled` is raised.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise InvalidInput(f"diarize takes mono audio, not shape {audio.shape} (see diarize_channels)")
    regions = [
        (max(0.0, s), min(e, audio.size / SAMPLE_RATE))
        for s, e in (speech if speech is not None else detect_speech(audio))
    ]
    regions = [(s, e) for s, e in regions if e - s >= _FRAME_S]
    if not regions:
        return Diarization((), (), "none", encoder.model_ref)
    if options.num_speakers == 1:
        turns = tuple(SpeakerTurn(s, e, "S1") for s, e in regions)
        return Diarization(turns, _summaries(turns), "single", None)
    window = int((options.window_s or encoder.window_s) * SAMPLE_RATE)
    hop = int(options.hop_s * SAMPLE_RATE) if options.hop_s else window // 2
    spans = speech_windows(regions, audio.size, window, hop)
    # GE2E saw speech normalised to -30 dBFS in training (resemblyzer.preprocess_wav);
    # one gain for the whole media keeps level differences between speakers.
    gain = speech_gain(np.concatenate([audio[a:b] for a, b in spans]))
    embeddings = np.empty((len(spans), encoder.dimension), dtype=np.float32)
    first = 0
    while first < len(spans):
        if should_stop is not None and should_stop():
            raise Cancelled("diarization cancelled")
        end = min(first + _EMBED_BATCH, len(spans))
        # The windows of one region go in one call, so an encoder can share work between them.
        while end < len(spans) and spans[end][0] <= spans[end - 1][1]:
            end += 1
        embeddings[first:end] = encoder.embed_spans(audio, spans[first:end], window, gain=gain)
        first = end
    return diarize_windows(
        regions,
        spans,
        embeddings,
        window=window,
        n_samples=audio.size,
        options=options,
        same_speaker_cosine=options.same_speaker_cosine or encoder.same_speaker_cosine,
        model=encoder.model_ref,
    )


def speech_windows(
    regions: Sequence[tuple[float, float]], n_samples: int, window: int, hop: int
) -> list[tuple[int, int]]:
    """The speaker model's windows (sample spans) over speech regions (seconds).

    Windows stay inside one speech region: no silence and no voice across a
    pause gets into them. A region shorter than a window is one short span
    (the encoder repeats it to fill the window; resemblyzer trims silence away
    for the same reason).
    """
    return [
        span
        for start_s, end_s in regions
        for span in _tiles(int(start_s * SAMPLE_RATE), min(int(end_s * SAMPLE_RATE), n_samples), window, hop)
    ]


def diarize_windows(
    regions: Sequence[tuple[float, float]],
    spans: Sequence[tuple[int, int]],
    embeddings: npt.NDArray[np.float32],
    *,
    window: int,
    n_samples: int,
    options: DiarizationOptions,
    same_speaker_cosine: float,
    model: ModelRef,
) -> Diarization:
    """Speaker turns from embedded windows (`speech_windows` of `regions`): clustering, then
    frame-level re-segmentation. What `diarize` does once the windows are embedded; a live
    stream embeds its windows as its segments come and calls this at its end."""
    if not spans:
        return Diarization((), (), "none", model)
    # Windows from speech shorter than half a window are unreliable voices: they
    # do not shape the clusters, they only take the nearest one.
    reliable = reliable_windows(spans, window)
    labels = cluster_embeddings(
        embeddings[reliable],
        num_speakers=options.num_speakers,
        max_speakers=options.max_speakers,
        same_speaker_cosine=same_speaker_cosine,
    )
    k = int(labels.max()) + 1
    means = centroids(embeddings[reliable], labels, k)
    frame_labels = _resegment(regions, spans, embeddings @ means.T, k, n_samples)
    turns = _turns(regions, frame_labels, options.min_turn_s)
    return Diarization(turns, _summaries(turns), "clustering", model)


def reliable_window(span: tuple[int, int], window: int) -> bool:
    """Whether a window holds enough speech (half the model's window) to shape the clusters."""
    return span[1] - span[0] >= window // 2


def reliable_windows(spans: Sequence[tuple[int, int]], window: int) -> npt.NDArray[np.bool_]:
    """`reliable_window` for each span (all of them when none is)."""
    reliable = np.array([reliable_window(span, window) for span in spans], dtype=bool)
    if not reliable.any():
        reliable[:] = True
    return reliable


def speech_gain(speech: npt.NDArray[np.float32]) -> float:
    return level_gain(math.sqrt(float(np.mean(speech.astype(np.float64) ** 2))) if speech.size else 0.0)


def level_gain(rms: float) -> float:
    """The gain that brings speech of this RMS level to -30 dBFS (never below 1)."""
    if rms <= 1e-6:
        return 1.0
    return max(1.0, 10 ** (-30 / 20) / rms)  # increase only, as resemblyzer does


def _resegment(
    regions: Sequence[tuple[float, float]],
    spans: Sequence[tuple[int, int]],
    scores: npt.NDArray[np.float32],
    k: int,
    n_samples: int,
) -> npt.NDArray[np.int64]:
    """Speaker index per 20 ms frame (-1 outside speech): Hann-weighted window scores per frame."""
    n_frames = math.ceil(n_samples / SAMPLE_RATE / _FRAME_S) + 1
    acc = np.zeros((n_frames, k), dtype=np.float64)
    weight = np.zeros(n_frames, dtype=np.float64)
    for (a, b), score in zip(spans, scores, strict=True):
        fa, fb = int(a / SAMPLE_RATE / _FRAME_S), min(math.ceil(b / SAMPLE_RATE / _FRAME_S), n_frames)
        w = np.hanning(fb - fa + 2)[1:-1]
        acc[fa:fb] += w[:, None] * score[None, :]
        weight[fa:fb] += w
    labels = np.full(n_frames, -1, dtype=np.int64)
    for s, e in regions:
        fa, fb = round(s / _FRAME_S), min(round(e / _FRAME_S), n_frames)
        best = np.argmax(acc[fa:fb], axis=1)
        covered = np.flatnonzero(weight[fa:fb] > 0)
        if covered.size and covered.size < fb - fa:  # a rounding frame at an edge: copy its neighbour
            best = best[covered[np.clip(np.searchsorted(covered, np.arange(fb - fa)), 0, covered.size - 1)]]
        labels[fa:fb] = best
    return labels


def _turns(
    regions: Sequence[tuple[float, float]], frame_labels: npt.NDArray[np.int64], min_turn_s: float
) -> tuple[SpeakerTurn, ...]:
    """Runs of one label inside each region; runs shorter than `min_turn_s` join a neighbour."""
    min_frames = max(1, round(min_turn_s / _FRAME_S))
    raw: list[tuple[float, float, int]] = []
    for s, e in regions:
        fa, fb = round(s / _FRAME_S), round(e / _FRAME_S)
        runs = _runs(frame_labels[fa:fb])
        # Absorb short runs into the longer neighbour, shortest first, until none is left.
        while len(runs) > 1:
            lengths = [b - a for a, b, _ in runs]
            i = int(np.argmin(lengths))
            if lengths[i] >= min_frames:
                break
            left = runs[i - 1] if i > 0 else None
            right = runs[i + 1] if i + 1 < len(runs) else None
            target = left if right is None or (left is not None and left[1] - left[0] >= right[1] - right[0]) else right
            assert target is not None
            a, b, _ = runs[i]
            runs[i] = (a, b, target[2])
            runs = _merge_runs(runs)
        for a, b, label in runs:
            start = s if a == 0 else (fa + a) * _FRAME_S
            end = e if b == fb - fa else (fa + b) * _FRAME_S
            raw.append((start, end, label))
    # Stable labels: S1 is whoever speaks first.
    order: dict[int, str] = {}
    for _, _, label in raw:
        order.setdefault(label, f"S{len(order) + 1}")
    turns: list[SpeakerTurn] = []
    for start, end, label in raw:
        name = order[label]
        if turns and turns[-1].speaker == name and start - turns[-1].end_s < 1e-6:
            turns[-1] = SpeakerTurn(turns[-1].start_s, end, name)
        else:
            turns.append(SpeakerTurn(round(start, 3), round(end, 3), name))
    return tuple(turns)


def _runs(labels: npt.NDArray[np.int64]) -> list[tuple[int, int, int]]:
    if labels.size == 0:
        return []
    change = np.flatnonzero(np.diff(labels)) + 1
    bounds = [0, *change.tolist(), int(labels.size)]
    return [(bounds[i], bounds[i + 1], int(labels[bounds[i]])) for i in range(len(bounds) - 1)]


def _merge_runs(runs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for a, b, label in runs:
        if out and out[-1][2] == label:
            out[-1] = (out[-1][0], b, label)
        else:
            out.append((a, b, label))
    return out


def _summaries(turns: Sequence[SpeakerTurn]) -> tuple[SpeakerSummary, ...]:
    totals: dict[str, list[float]] = {}
    for t in turns:
        entry = totals.setdefault(t.speaker, [0.0, 0.0])
        entry[0] += t.end_s - t.start_s
        entry[1] += 1
    summaries = [SpeakerSummary(label, round(total, 3), int(count)) for label, (total, count) in totals.items()]
    return tuple(sorted(summaries, key=lambda s: (-s.speaking_s, s.label)))


# --- one participant per channel ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelSpeech:
    index: int
    level_db: float  # RMS of the channel's loudest second-long stretch, dBFS
    active: bool  # carries sound above the silence floor
    speech: tuple[tuple[float, float], ...]  # regions where this channel's participant speaks


@dataclass(frozen=True, slots=True)
class ChannelLayout:
    """Whether the channels of a recording are distinct participants, and why.

    `distinct` False means: treat the audio as one mixed channel (downmix the
    active channels and cluster). `reason` is a short human-readable cause.
    """

    distinct: bool
    reason: str
    channels: tuple[ChannelSpeech, ...]


_LEVEL_FRAME_S = 0.05
_SILENT_DBFS = -55.0  # a channel never louder than this carries nothing
_DOMINANCE_DB = 10.0  # one side talking: its level exceeds every other channel's by this much
_MIN_DOMINANT_FRACTION = 0.5  # of the frames where anyone is active
_MIN_OWN_S = 1.0  # each participant must dominate at least this long
_LEAK_DB = 15.0  # VAD hits this far below the loudest channel are the other side's crosstalk


def _frame_levels(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """(channels, frames) RMS level in dBFS of 50 ms frames."""
    step = int(_LEVEL_FRAME_S * SAMPLE_RATE)
    n = audio.shape[1] // step
    power = np.empty((audio.shape[0], n), dtype=np.float64)
    block = 1200  # frames (a minute) at a time: a float64 copy of hours of audio would double its memory
    for c in range(audio.shape[0]):
        for a in range(0, n, block):
            b = min(n, a + block)
            frames = audio[c, a * step : b * step].astype(np.float64).reshape(b - a, step)
            power[c, a:b] = np.mean(frames * frames, axis=1)
    levels: npt.NDArray[np.float64] = 10.0 * np.log10(np.maximum(power, 1e-12))
    return levels


def channel_layout(
    audio: npt.NDArray[np.float32], *, vad: VadOptions = DIARIZATION_VAD, max_channels: int = MAX_SPEAKERS
) -> ChannelLayout:
    """Decide whether (channels, samples) 16 kHz audio has one participant per channel.

    Distinct when at least two channels are active and, most of the time
    someone is talking, one channel is much louder than all the others (each
    side of a call hears the other only as faint crosstalk), with every active
    channel dominating for a while. A silent channel is ignored; a mono signal
    copied into N channels (or a stereo room recording) never shows that
    dominance, so it is one mixed channel. Per-channel speech is Silero VAD on
    the channel minus stretches where it is crosstalk (far below the loudest).
    More than `max_channels` channels is refused (`InvalidInput`).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2 or audio.shape[0] < 1:
        raise InvalidInput(f"channel_layout takes (channels, samples) audio, not shape {audio.shape}")
    n_channels = audio.shape[0]
    if n_channels > max_channels:
        raise InvalidInput(
            f"audio has {n_channels} channels; at most {max_channels} participants (one per channel) are supported",
            field="speech.channels",
        )
    levels = _frame_levels(audio)
    if levels.shape[1] == 0:
        return ChannelLayout(
            False, "shorter than one level frame", tuple(ChannelSpeech(i, -120.0, False, ()) for i in range(n_channels))
        )
    peak_db, infos = _channel_peaks(levels)
    act = np.flatnonzero([c.active for c in infos])
    if act.size < 2:
        return ChannelLayout(False, f"{act.size} active channel(s)", tuple(infos))
    lv = levels[act]
    loudest = lv.max(axis=0)
    order = np.sort(lv, axis=0)
    margin = order[-1] - order[-2]  # loudest minus runner-up, per frame
    someone = loudest > np.maximum(peak_db[act].max() - 35.0, _SILENT_DBFS)
    if not someone.any():
        return ChannelLayout(False, "no frame above the silence floor", tuple(infos))
    dominant = someone & (margin >= _DOMINANCE_DB)
    fraction = float(dominant.sum() / someone.sum())
    owner = np.argmax(lv, axis=0)
    own_s = np.array([np.sum(dominant & (owner == j)) * _LEVEL_FRAME_S for j in range(act.size)])
    if fraction < _MIN_DOMINANT_FRACTION:
        return ChannelLayout(
            False,
            f"channels carry the same sound (one channel dominates {fraction:.0%} of active frames)",
            tuple(infos),
        )
    if own_s.min() < _MIN_OWN_S:
        weak = int(act[int(np.argmin(own_s))])
        return ChannelLayout(False, f"channel {weak} never dominates (a copy or crosstalk of another)", tuple(infos))
    _participant_speech(audio, levels, infos, vad)
    return ChannelLayout(True, f"one participant per channel ({act.size} active)", tuple(infos))


def separate_channels(
    audio: npt.NDArray[np.float32], *, vad: VadOptions = DIARIZATION_VAD, max_channels: int = MAX_SPEAKERS
) -> ChannelLayout:
    """One participant per active channel of (channels, samples) audio, as the caller says it is.

    No dominance test (see `channel_layout`): every channel louder than the
    silence floor is a participant, silent channels are skipped. Speech is
    found per channel as in `channel_layout` (crosstalk far below the loudest
    channel is not this participant's). `distinct` is False only when no
    channel carries sound.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2 or audio.shape[0] < 1:
        raise InvalidInput(f"separate_channels takes (channels, samples) audio, not shape {audio.shape}")
    if audio.shape[0] > max_channels:
        raise InvalidInput(
            f"audio has {audio.shape[0]} channels; at most {max_channels} can be one participant each",
            field="speech.channels",
        )
    levels = _frame_levels(audio)
    if levels.shape[1] == 0:
        silent = tuple(ChannelSpeech(i, -120.0, False, ()) for i in range(audio.shape[0]))
        return ChannelLayout(False, "shorter than one level frame", silent)
    _, infos = _channel_peaks(levels)
    active = sum(c.active for c in infos)
    if not active:
        return ChannelLayout(False, "no channel carries sound", tuple(infos))
    _participant_speech(audio, levels, infos, vad)
    return ChannelLayout(True, f"one participant per channel, as requested ({active} active)", tuple(infos))


def _channel_peaks(levels: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], list[ChannelSpeech]]:
    """Each channel's loudest second (dBFS) and whether it rises above the silence floor."""
    second = max(1, round(1.0 / _LEVEL_FRAME_S))
    smooth = (
        np.stack([np.convolve(10 ** (lv / 10), np.ones(second) / second, mode="valid") for lv in levels])
        if levels.shape[1] >= second
        else 10 ** (levels / 10)
    )
    peak_db: npt.NDArray[np.float64] = 10 * np.log10(np.maximum(smooth.max(axis=1), 1e-12))
    active = peak_db > _SILENT_DBFS
    return peak_db, [ChannelSpeech(i, round(float(peak_db[i]), 1), bool(active[i]), ()) for i in range(levels.shape[0])]


def _participant_speech(
    audio: npt.NDArray[np.float32], levels: npt.NDArray[np.float64], infos: list[ChannelSpeech], vad: VadOptions
) -> None:
    """Fill in each active channel's speech: its VAD regions minus the other side's crosstalk (in place)."""
    act = [c.index for c in infos if c.active]
    loudest = levels[act].max(axis=0)
    for ch in act:
        regions = detect_speech(np.ascontiguousarray(audio[ch]), vad)
        kept = _drop_leaks(regions, levels[ch], loudest)
        infos[ch] = ChannelSpeech(ch, infos[ch].level_db, True, tuple(kept))


def _drop_leaks(
    regions: Sequence[tuple[float, float]], own: npt.NDArray[np.float64], loudest: npt.NDArray[np.float64]
) -> list[tuple[float, float]]:
    """Trim speech regions to frames where this channel is within `_LEAK_DB` of the loudest channel."""
    near = own >= loudest - _LEAK_DB
    out: list[tuple[float, float]] = []
    for s, e in regions:
        fa, fb = int(s / _LEVEL_FRAME_S), min(math.ceil(e / _LEVEL_FRAME_S), near.size)
        for a, b, value in _runs(near[fa:fb].astype(np.int64)):
            if value and (b - a) * _LEVEL_FRAME_S >= 0.1:
                out.append((max(s, (fa + a) * _LEVEL_FRAME_S), min(e, (fa + b) * _LEVEL_FRAME_S)))
    return out


def diarize_channels(layout: ChannelLayout) -> Diarization:
    """Turns from a `ChannelLayout` with distinct participants: channel i is speaker `CH{i+1}`."""
    if not layout.distinct:
        raise ValueError("diarize_channels needs a layout with distinct participants")
    turns = sorted(
        (SpeakerTurn(round(s, 3), round(e, 3), f"CH{c.index + 1}") for c in layout.channels for s, e in c.speech),
        key=lambda t: (t.start_s, t.speaker),
    )
    return Diarization(tuple(turns), _summaries(turns), "channels", None)


# --- speakers of transcript segments and words ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentSpeakers:
    """The speaker of a transcript segment and of each of its words ("" when no turn is near)."""

    segment_index: int
    speaker: str
    words: tuple[str, ...]


def _speaker_at(
    turns: Sequence[SpeakerTurn], starts: npt.NDArray[np.float64], start: float, end: float, max_gap_s: float
) -> str:
    """The speaker overlapping [start, end] most; else the nearest turn within `max_gap_s`."""
    overlap: dict[str, float] = {}
    lo = max(0, int(np.searchsorted(starts, start, side="right")) - 1)
    # Turns may overlap each other (per-channel audio), so look back a little too.
    i = lo
    while i > 0 and turns[i - 1].end_s > start:
        i -= 1
    while i < len(turns) and turns[i].start_s < end:
        t = turns[i]
        o = min(end, t.end_s) - max(start, t.start_s)
        if o > 0:
            overlap[t.speaker] = overlap.get(t.speaker, 0.0) + o
        i += 1
    if overlap:
        return max(overlap.items(), key=lambda kv: (kv[1], kv[0]))[0]
    best, best_gap = "", max_gap_s
    for j in range(max(0, lo - 1), min(len(turns), lo + 2)):
        t = turns[j]
        gap = max(t.start_s - end, start - t.end_s, 0.0)
        if gap <= best_gap:
            best, best_gap = t.speaker, gap
    return best


def assign_speakers(
    segments: Sequence[Segment], turns: Sequence[SpeakerTurn], *, max_gap_s: float = 0.5
) -> list[SegmentSpeakers]:
    """Speakers for segments and words by time overlap with the turns.

    A word takes the speaker overlapping it most (the nearest turn within
    `max_gap_s` when none overlaps: Whisper's word times drift a little); a
    segment takes the speaker of most of its words' duration, or of its own
    span when it has no words.
    """
    ordered = sorted(turns, key=lambda t: (t.start_s, t.end_s))
    starts = np.array([t.start_s for t in ordered], dtype=np.float64)
    out: list[SegmentSpeakers] = []
    for seg in segments:
        words = tuple(_speaker_at(ordered, starts, w.start_s, w.end_s, max_gap_s) for w in seg.words)
        if words:
            talk: dict[str, float] = {}
            for w, spk in zip(seg.words, words, strict=True):
                if spk:
                    talk[spk] = talk.get(spk, 0.0) + max(w.end_s - w.start_s, 0.01)
            speaker = max(talk.items(), key=lambda kv: (kv[1], kv[0]))[0] if talk else ""
        else:
            speaker = _speaker_at(ordered, starts, seg.start_s, seg.end_s, max_gap_s)
        out.append(SegmentSpeakers(seg.index, speaker, words))
    return out
