"""Runs a job's pipeline: the same pipelines the inline RPCs use."""

from __future__ import annotations

import pathlib
import threading
from typing import Any, Callable

from understanding.domain import Analysis, InvalidInput, Modality
from understanding.jobs.model import Job
from understanding.models.whisper import TranscribeOptions
from understanding.pipelines.speech import SpeechInput, SpeechPipeline
from understanding.pipelines.text import TextInput, TextPipeline


class PipelineExecutor:
    def __init__(self, *, text: TextPipeline, speech: SpeechPipeline, video: Any | None = None) -> None:
        self._text = text
        self._speech = speech
        self._video = video

    async def __call__(
        self,
        job: Job,
        media: pathlib.Path | None,
        progress: Callable[[str, float], None],
        cancelled: threading.Event,
    ) -> Analysis:
        spec = job.spec
        metadata = dict(spec.options.get("metadata", {}))
        if spec.modality is Modality.TEXT:
            progress("embed", 0.1)
            return await self._text.analyze(job.tenant, TextInput(spec.media_id, spec.text, metadata))
        if media is None:
            raise InvalidInput("the job has no media", field="spec")
        speech = TranscribeOptions(**spec.options.get("speech", {}))
        if spec.modality is Modality.SPEECH:
            return await self._speech.analyze(
                job.tenant, SpeechInput(spec.media_id, media, speech, metadata), progress, cancelled
            )
        if self._video is None:
            raise InvalidInput("video analysis is not available on this worker", field="spec.modality")
        from understanding.pipelines.video import VideoInput

        video = spec.options.get("video", {})
        return await self._video.analyze(  # type: ignore[no-any-return]
            job.tenant,
            VideoInput(
                media_id=spec.media_id,
                path=media,
                speech_options=speech,
                sample_fps=video.get("sample_fps") or None,
                return_keyframes=bool(video.get("return_keyframes", False)),
                skip_audio=bool(video.get("skip_audio", False)),
                metadata=metadata,
            ),
            progress,
            cancelled,
        )
