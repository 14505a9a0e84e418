"""The analyze use case (one path for inline calls and jobs) and the embedding switch."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from understanding.core.analyze import Analyzer
from understanding.core.embedding import EmbeddingSwitch
from understanding.domain import (
    AnalysisOptions,
    ImageOptions,
    InvalidInput,
    Job,
    JobSpec,
    JobState,
    MediaRequest,
    Modality,
    SpeechOptions,
    VideoOptions,
)
from understanding.jobs.runner import media_request


@dataclass(frozen=True)
class Marker:
    kind: str
    media_id: str
    version: int = 1


class Recorder:
    """Stands in for a pipeline: records what it was asked, returns a marker analysis."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[Any] = []

    async def analyze(self, tenant: str, item: Any, progress: Any = None, cancelled: Any = None) -> Any:
        self.calls.append((tenant, item))
        return Marker(self.name, item.media_id)


class Sink:
    def __init__(self) -> None:
        self.written: list[Any] = []

    async def write(self, analysis: Any, *, trace_id: str = "") -> str:
        self.written.append((analysis, trace_id))
        return "event"


def analyzer(sink: Sink | None = None) -> tuple[Analyzer, dict[str, Recorder]]:
    pipelines = {name: Recorder(name) for name in ("text", "speech", "video", "image")}
    return Analyzer(sink=sink, **pipelines), pipelines  # type: ignore[arg-type]


async def test_each_modality_reaches_its_pipeline_with_its_typed_options(tmp_path: pathlib.Path) -> None:
    use_case, pipelines = analyzer(Sink())
    options = AnalysisOptions(SpeechOptions(language="ko"), VideoOptions(sample_fps=1.0, skip_audio=True))
    media = tmp_path / "clip"
    text = await use_case.analyze("t", MediaRequest(Modality.TEXT, "m1", text="hello", metadata={"k": "v"}))
    speech = await use_case.analyze("t", MediaRequest(Modality.SPEECH, "m2", path=media, options=options))
    video = await use_case.analyze("t", MediaRequest(Modality.VIDEO, "m3", path=media, options=options))
    assert (text.kind, speech.kind, video.kind) == ("text", "speech", "video")
    assert pipelines["text"].calls[0][1].metadata == {"k": "v"}
    assert pipelines["speech"].calls[0][1].options == SpeechOptions(language="ko")
    item = pipelines["video"].calls[0][1]
    assert item.speech_options.language == "ko" and item.options == VideoOptions(sample_fps=1.0, skip_audio=True)
    skip_ocr = AnalysisOptions(image=ImageOptions(skip_ocr=True))
    image = await use_case.analyze("t", MediaRequest(Modality.IMAGE, "m4", path=media, options=skip_ocr))
    assert image.kind == "image" and pipelines["image"].calls[0][1].options == ImageOptions(skip_ocr=True)
    await use_case.analyze("t", MediaRequest(Modality.VIDEO, "m5", path=media, options=skip_ocr))
    assert pipelines["video"].calls[1][1].image_options == ImageOptions(
        skip_ocr=True
    )  # frames follow the image options


async def test_indexing_is_skipped_for_a_dry_run_and_the_version_can_be_pinned() -> None:
    sink = Sink()
    use_case, _ = analyzer(sink)
    request = MediaRequest(Modality.TEXT, "m1", text="hello")
    await use_case.analyze_and_index("t", request, index=False)
    assert sink.written == []
    pinned = await use_case.analyze_and_index("t", request, version=777, trace_id="job-1")
    assert pinned.version == 777 and sink.written == [(pinned, "job-1")]


async def test_media_modalities_need_a_file_and_a_worker_without_a_sink_cannot_index() -> None:
    use_case, _ = analyzer(None)
    with pytest.raises(InvalidInput):
        await use_case.analyze("t", MediaRequest(Modality.SPEECH, "m"))
    with pytest.raises(RuntimeError):
        await use_case.analyze_and_index("t", MediaRequest(Modality.TEXT, "m", text="x"))


def test_a_job_asks_for_what_its_spec_says(tmp_path: pathlib.Path) -> None:
    spec = JobSpec(
        Modality.VIDEO, "vid-1", options=AnalysisOptions(video=VideoOptions(return_keyframes=True)), metadata={"a": "b"}
    )
    job = Job(job_id="job-1", tenant="t", spec=spec, state=JobState.QUEUED, created_at=1.0)
    request = media_request(job, tmp_path / "blob")
    assert request == MediaRequest(
        Modality.VIDEO, "vid-1", path=tmp_path / "blob", options=spec.options, metadata={"a": "b"}
    )


def test_a_swap_moves_every_consumer_in_one_step() -> None:
    seen: list[tuple[str, str]] = []
    old, new = SimpleNamespace(name="old"), SimpleNamespace(name="new")
    switch = EmbeddingSwitch(old)  # type: ignore[arg-type]
    switch.subscribe(lambda unit: seen.append(("text", unit.name)))  # type: ignore[attr-defined]
    switch.subscribe(lambda unit: seen.append(("search", unit.name)))  # type: ignore[attr-defined]
    assert switch.swap(new) is old  # type: ignore[arg-type]
    assert switch.current is new and seen == [("text", "new"), ("search", "new")]
