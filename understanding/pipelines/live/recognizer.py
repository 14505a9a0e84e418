"""Whisper as the live recogniser: one utterance buffer in, a transcript with word times out."""

from __future__ import annotations

import dataclasses
import logging
import zlib

from understanding.domain import Language, SpeechOptions, Transcript
from understanding.models.whisper import SAMPLE_RATE, Transcriber
from understanding.pipelines.live.asr import DecodeJob

__all__ = ["WhisperRecognizer"]

_MIN_AUDIO_S = 0.1  # Whisper on less than this only invents words
# Whisper's own test for a decode stuck in a loop ("I'm not sure. I'm not sure. ..."): its text
# compresses more than this (gzip ratio). Such loops come with a high log-probability, so no
# confidence threshold catches them.
_MAX_COMPRESSION = 2.4
# Whisper's own mark of an invented word (its hallucination check scores words below this
# probability as anomalous): on the silence that ends a pause it adds "I'm sorry." or "Thank you."
# with ~0.1. Only a hypothesis's trailing run of such words is dropped.
_INVENTED_TAIL_P = 0.15

log = logging.getLogger(__name__)


class WhisperRecognizer:
    """Decodes a `DecodeJob` with the shared `Transcriber` (its worker slots are shared with uploads).

    No VAD pass of its own: the stream's endpointing already bounds each
    utterance. Word timestamps are always on: LocalAgreement and the buffer
    trimming work on word times.

    A decode that may be the utterance's final (`DecodeJob.closing`) uses
    `beam_size`, a partial `partial_beam_size` (both greedy by default).
    Partials come every decode while someone speaks, so their cost is the
    partial cadence and the wait of the final decode behind the partial in
    flight when the speaker pauses; a wider beam for the final buys accuracy
    with latency and with streams per process.

    No prompt by default (`AsrSettings.prompt_chars`): with the stream's
    recent finals as prompt, Whisper base goes on past the end of the audio
    ("I'm just a little bit more ...", dropped as an invented tail, below)
    and every decode took twice as long, sometimes the whole token budget.

    A decode that invents words is not a hypothesis. On a short or unclear
    utterance a prompt can pull decoding into a loop for the whole token
    budget, and a looped final would be the next prompt; the prompt also makes
    Whisper skip words it has just seen (the other speaker repeating "from
    Chicago"), leaving only words it is unsure of. Such a decode is retried
    once without the prompt; if that fails too, this decode gives the
    utterance no words (nothing is committed).
    """

    def __init__(self, transcriber: Transcriber, *, beam_size: int = 1, partial_beam_size: int = 1) -> None:
        self._transcriber = transcriber
        self._beam_size = beam_size
        self._partial_beam_size = partial_beam_size

    def __call__(self, job: DecodeJob) -> Transcript:
        if job.audio.size < _MIN_AUDIO_S * SAMPLE_RATE:
            return self._nothing(job)
        heard = self._heard(job, job.prompt)
        if heard is None and job.prompt is not None:
            heard = self._heard(job, None)
        return heard if heard is not None else self._nothing(job)

    def _nothing(self, job: DecodeJob) -> Transcript:
        language = Language(job.language or "", 1.0 if job.language else 0.0)
        return Transcript((), language, job.audio.size / SAMPLE_RATE, "transcribe", self._transcriber.model_ref)

    def _heard(self, job: DecodeJob, prompt: str | None) -> Transcript | None:
        """The decode without its invented tail, or None if it loops or keeps no word."""
        transcript = self._decode(job, prompt)
        if _loops(transcript):
            log.info(
                "a live decode (%.1f s, prompt: %s) loops: discarded", job.end_s - job.offset_s, prompt is not None
            )
            return None
        transcript = _without_invented_tail(transcript)
        return transcript if any(segment.words for segment in transcript.segments) else None

    def _decode(self, job: DecodeJob, prompt: str | None) -> Transcript:
        options = SpeechOptions(
            language=job.language,
            word_timestamps=True,
            vad=False,
            initial_prompt=prompt,
            beam_size=self._beam_size if job.closing else self._partial_beam_size,
            fallback=False,
        )
        return self._transcriber.transcribe(job.audio, options)


def _loops(transcript: Transcript) -> bool:
    text = transcript.text.encode()
    return bool(text) and len(text) / len(zlib.compress(text)) > _MAX_COMPRESSION


def _without_invented_tail(transcript: Transcript) -> Transcript:
    """The transcript without its trailing words under `_INVENTED_TAIL_P` (segments left empty go too)."""
    segments = list(transcript.segments)
    while segments:
        last = segments[-1]
        keep = len(last.words)
        while keep and last.words[keep - 1].probability < _INVENTED_TAIL_P:
            keep -= 1
        if keep == len(last.words):
            break
        if keep:
            words = last.words[:keep]
            segments[-1] = dataclasses.replace(last, words=words, text=" ".join(w.text for w in words))
            break
        segments.pop()
    if tuple(segments) == transcript.segments:
        return transcript
    return dataclasses.replace(transcript, segments=tuple(segments))
