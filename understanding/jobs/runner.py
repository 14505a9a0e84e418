"""How the job runners reach the analyze use case.

`core.analyze.Analyzer` satisfies both protocols; the runners depend on the
protocols so they never import the composition above them.
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable
from typing import Protocol

from understanding.domain import Analysis, Job, MediaRequest

Progress = Callable[[str, float], None]


class Analyze(Protocol):
    """Analysis only: a Kafka worker hands the result on (results topic or direct sink)."""

    async def analyze(
        self,
        tenant: str,
        request: MediaRequest,
        *,
        progress: Progress | None = ...,
        cancelled: threading.Event | None = ...,
        version: int | None = ...,
    ) -> Analysis: ...


class AnalyzeAndIndex(Protocol):
    """Analysis, then the vectors and the event written: the embedded backend's runner."""

    async def analyze_and_index(
        self,
        tenant: str,
        request: MediaRequest,
        *,
        progress: Progress | None = ...,
        cancelled: threading.Event | None = ...,
        version: int | None = ...,
        index: bool = ...,
        trace_id: str = ...,
    ) -> Analysis: ...


def media_request(job: Job, media: pathlib.Path | None) -> MediaRequest:
    """What the job asks to analyse, with its media at `media` (None for text jobs)."""
    spec = job.spec
    return MediaRequest(
        modality=spec.modality,
        media_id=spec.media_id,
        text=spec.text,
        path=media,
        options=spec.options,
        metadata=spec.metadata,
    )
