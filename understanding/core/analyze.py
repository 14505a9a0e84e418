"""The analyze use case: one media in, one `Analysis` out, indexed and published.

The inline RPCs and the job runners call the same `Analyzer`, so a job runs
exactly what an inline call runs; only where the result goes differs (a Kafka
worker without the store hands it to the store owner instead of indexing).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from understanding.core.moderate import Moderator
from understanding.domain import Analysis, InvalidInput, MediaRequest, Modality, ModerationOptions
from understanding.pipelines.image import ImageInput, ImagePipeline
from understanding.pipelines.speech import SpeechInput, SpeechPipeline
from understanding.pipelines.text import TextInput, TextPipeline
from understanding.pipelines.video import VideoInput, VideoPipeline
from understanding.sinks.results import ResultSink

Progress = Callable[[str, float], None]


class Analyzer:
    def __init__(
        self,
        *,
        text: TextPipeline,
        speech: SpeechPipeline,
        video: VideoPipeline,
        sink: ResultSink | None,
        moderator: Moderator | None = None,
        image: ImagePipeline | None = None,
    ) -> None:
        self._text = text
        self._speech = speech
        self._video = video
        self._image = image
        self._sink = sink
        self.moderator = moderator

    def check(self, tenant: str, options: ModerationOptions) -> None:
        """Raise InvalidInput now for what would fail the analysis later (an unknown policy)."""
        if self.moderator is not None:
            self.moderator.policy(tenant, options)

    async def analyze(
        self,
        tenant: str,
        request: MediaRequest,
        *,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
        version: int | None = None,
    ) -> Analysis:
        """Run the modality's pipeline, then moderation. `version` pins the analysis version (a
        job's is derived from the job, so a re-run overwrites the same points and repeats the
        same event id)."""
        options = request.options.moderation
        policy = self.moderator.policy(tenant, options) if self.moderator is not None else None
        analysis = await self._run(tenant, request, progress, cancelled)
        if self.moderator is not None:
            if progress is not None:
                progress("moderate", 0.0)
            analysis = await self.moderator.moderate(analysis, options, policy)
        return analysis if version is None else dataclasses.replace(analysis, version=version)

    async def analyze_and_index(
        self,
        tenant: str,
        request: MediaRequest,
        *,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
        version: int | None = None,
        index: bool = True,
        trace_id: str = "",
    ) -> Analysis:
        """Analyze, then (unless `index` is false: a dry run) write vectors and queue the event."""
        analysis = await self.analyze(tenant, request, progress=progress, cancelled=cancelled, version=version)
        if index:
            if progress is not None:
                progress("index", 0.0)
            await self.index(analysis, trace_id=trace_id)
        return analysis

    async def index(self, analysis: Analysis, *, trace_id: str = "") -> None:
        if self._sink is None:
            raise RuntimeError("this process has no result sink (a worker without the store)")
        await self._sink.write(analysis, trace_id=trace_id)

    async def _run(
        self, tenant: str, request: MediaRequest, progress: Progress | None, cancelled: threading.Event | None
    ) -> Analysis:
        if request.modality is Modality.TEXT:
            if progress is not None:
                progress("embed", 0.1)
            return await self._text.analyze(tenant, TextInput(request.media_id, request.text, request.metadata))
        if request.path is None:
            raise InvalidInput("no media was given", field="spec")
        options = request.options
        if request.modality is Modality.SPEECH:
            return await self._speech.analyze(
                tenant,
                SpeechInput(request.media_id, request.path, options.speech, request.metadata),
                progress,
                cancelled,
            )
        if request.modality is Modality.VIDEO:
            return await self._video.analyze(
                tenant,
                VideoInput(
                    request.media_id, request.path, options.speech, options.video, request.metadata, options.image
                ),
                progress,
                cancelled,
            )
        if request.modality is Modality.IMAGE and self._image is not None:
            return await self._image.analyze(
                tenant, ImageInput(request.media_id, request.path, options.image, request.metadata), progress, cancelled
            )
        raise InvalidInput(f"modality {request.modality.value} cannot be analyzed", field="spec.modality")
