"""Whisper as the live recogniser: one utterance buffer in, a transcript with word times out."""

from __future__ import annotations

from understanding.domain import Language, SpeechOptions, Transcript
from understanding.models.whisper import SAMPLE_RATE, Transcriber
from understanding.pipelines.live.asr import DecodeJob

__all__ = ["WhisperRecognizer"]

_MIN_AUDIO_S = 0.1  # Whisper on less than this only invents words


class WhisperRecognizer:
    """Decodes a `DecodeJob` with the shared `Transcriber` (its worker slots are shared with uploads).

    No VAD pass of its own: the stream's endpointing already bounds each
    utterance. Word timestamps are always on: LocalAgreement and the buffer
    trimming work on word times.
    """

    def __init__(self, transcriber: Transcriber, *, beam_size: int = 1) -> None:
        self._transcriber = transcriber
        self._beam_size = beam_size

    def __call__(self, job: DecodeJob) -> Transcript:
        if job.audio.size < _MIN_AUDIO_S * SAMPLE_RATE:
            language = Language(job.language or "", 1.0 if job.language else 0.0)
            return Transcript((), language, job.audio.size / SAMPLE_RATE, "transcribe", self._transcriber.model_ref)
        options = SpeechOptions(
            language=job.language,
            word_timestamps=True,
            vad=False,
            initial_prompt=job.prompt,
            beam_size=self._beam_size,
            fallback=False,
        )
        return self._transcriber.transcribe(job.audio, options)
