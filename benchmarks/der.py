"""Diarization error rate (NIST md-eval definition), with a forgiveness collar, and RTTM parsing.

DER = (missed speech + false alarm + speaker confusion) / total reference speech,
over the scored time: the collar (`collar_s` on EACH side of every reference
turn boundary, md-eval's `-c 0.25`; pyannote.metrics calls the same thing
`collar=0.5`, the total width) is removed, overlapping speech is scored.
Reference and hypothesis speakers are paired one-to-one to maximise their
overlap (Hungarian algorithm), as md-eval does. Cross-checked against
pyannote.metrics 4.2.0 (`benchmarks/diarization_bench.py --cross-check`).
"""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

Turn = tuple[float, float, str]  # (start_s, end_s, speaker)


@dataclass(frozen=True, slots=True)
class DerResult:
    total_s: float  # scored reference speech (speaker-weighted: two overlapping speakers count twice)
    missed_s: float
    false_alarm_s: float
    confusion_s: float

    @property
    def der(self) -> float:
        return (self.missed_s + self.false_alarm_s + self.confusion_s) / self.total_s if self.total_s else 0.0

    def rates(self) -> dict[str, float]:
        t = self.total_s or 1.0
        return {
            "der": self.der,
            "missed": self.missed_s / t,
            "false_alarm": self.false_alarm_s / t,
            "confusion": self.confusion_s / t,
        }


def read_rttm(path: pathlib.Path, uri: str | None = None) -> list[Turn]:
    """SPEAKER lines of an RTTM file (optionally of one recording) as (start, end, speaker)."""
    turns: list[Turn] = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[0] != "SPEAKER" or (uri is not None and fields[1] != uri):
            continue
        start, duration = float(fields[3]), float(fields[4])
        turns.append((start, start + duration, fields[7]))
    return turns


def _merge(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        elif e > s:
            out.append((s, e))
    return out


def _by_speaker(turns: Sequence[Turn]) -> dict[str, list[tuple[float, float]]]:
    speakers: dict[str, list[tuple[float, float]]] = {}
    for s, e, spk in turns:
        speakers.setdefault(spk, []).append((s, e))
    return {spk: _merge(iv) for spk, iv in speakers.items()}


def _clip(intervals: list[tuple[float, float]], keep: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Intersection of two sorted disjoint interval lists."""
    out, i, j = [], 0, 0
    while i < len(intervals) and j < len(keep):
        s, e = max(intervals[i][0], keep[j][0]), min(intervals[i][1], keep[j][1])
        if e > s:
            out.append((s, e))
        if intervals[i][1] < keep[j][1]:
            i += 1
        else:
            j += 1
    return out


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    return sum(e - s for s, e in _clip(a, b))


def diarization_error(
    reference: Sequence[Turn], hypothesis: Sequence[Turn], *, collar_s: float = 0.25, end_s: float | None = None
) -> DerResult:
    """Missed, false alarm and confusion seconds of `hypothesis` against `reference`.

    The scored region is [0, end_s] (default: the end of the last turn of
    either) minus `collar_s` on each side of every reference boundary.
    """
    ref = _by_speaker(reference)
    hyp = _by_speaker(hypothesis)
    end = end_s if end_s is not None else max([e for _, e, _ in [*reference, *hypothesis]], default=0.0)
    boundaries = sorted({t for iv in ref.values() for s, e in iv for t in (s, e)})
    collars = _merge((max(0.0, t - collar_s), t + collar_s) for t in boundaries) if collar_s > 0 else []
    scored: list[tuple[float, float]] = []
    cursor = 0.0
    for s, e in collars:
        if s > cursor:
            scored.append((cursor, min(s, end)))
        cursor = max(cursor, e)
    if cursor < end:
        scored.append((cursor, end))
    scored = [(s, e) for s, e in scored if e > s]
    ref = {k: _clip(v, scored) for k, v in ref.items()}
    hyp = {k: _clip(v, scored) for k, v in hyp.items()}
    # Elementary intervals: counts of active reference and hypothesis speakers.
    points = sorted({t for d in (ref, hyp) for iv in d.values() for s, e in iv for t in (s, e)})
    total = missed = false_alarm = 0.0
    n_ref_hyp_min = 0.0
    for a, b in itertools.pairwise(points):
        mid = 0.5 * (a + b)
        n_ref = sum(any(s <= mid < e for s, e in iv) for iv in ref.values())
        n_hyp = sum(any(s <= mid < e for s, e in iv) for iv in hyp.values())
        d = b - a
        total += d * n_ref
        missed += d * max(0, n_ref - n_hyp)
        false_alarm += d * max(0, n_hyp - n_ref)
        n_ref_hyp_min += d * min(n_ref, n_hyp)
    ref_names, hyp_names = list(ref), list(hyp)
    matched = 0.0
    if ref_names and hyp_names:
        cost = np.array([[_overlap(ref[r], hyp[h]) for h in hyp_names] for r in ref_names])
        rows, cols = linear_sum_assignment(-cost)
        matched = float(cost[rows, cols].sum())
    confusion = n_ref_hyp_min - matched
    return DerResult(total, missed, false_alarm, confusion)
