"""Speech understanding: decode, transcribe, then the transcript through the text path.

Consecutive transcript segments are grouped into windows (at most
`window_max_s` seconds and `window_max_words` words) so each indexed vector
carries enough context to match a paraphrase, yet a hit still points at a
seekable time range a few seconds long.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from understanding.domain import Analysis, Cancelled, Language, Modality, Segment, SpeechOptions, Transcript
from understanding.media.sandbox import MediaDecoder, SandboxSettings
from understanding.models.whisper import Transcriber
from understanding.pipelines.text import TextPipeline, Window, new_version

Progress = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class SpeechInput:
    media_id: str
    path: pathlib.Path
    options: SpeechOptions
    metadata: Mapping[str, str] = field(default_factory=dict)


def segment_windows(segments: Sequence[Segment], *, max_s: float, max_words: int) -> list[Window]:
    """Group consecutive segments into windows bounded in duration and words."""
    windows: list[Window] = []
    texts: list[str] = []
    start = end = 0.0
    words = 0
    for segment in segments:
        text = segment.text.strip()
        if not text:
            continue
        n = len(text.split())
        if texts and (segment.end_s - start > max_s or words + n > max_words):
            windows.append(Window(" ".join(texts), start, end))
            texts, words = [], 0
        if not texts:
            start = segment.start_s
        texts.append(text)
        words += n
        end = segment.end_s
    if texts:
        windows.append(Window(" ".join(texts), start, end))
    return windows


class SpeechPipeline:
    def __init__(
        self,
        *,
        transcriber: Transcriber,
        text: TextPipeline,
        max_duration_s: float,
        window_max_s: float = 15.0,
        window_max_words: int = 50,
        decoder: MediaDecoder | None = None,
    ) -> None:
        # Uploads are untrusted: the service passes a decoder that isolates them in a child process.
        self.decoder = decoder if decoder is not None else MediaDecoder(SandboxSettings(isolate=False))
        self._transcriber = transcriber
        self._text = text
        self._max_duration_s = max_duration_s
        self._window_max_s = window_max_s
        self._window_max_words = window_max_words

    async def decode(self, path: pathlib.Path, cancelled: threading.Event | None = None) -> npt.NDArray[np.float32]:
        return await asyncio.to_thread(
            self.decoder.decode_audio, path, max_duration_s=self._max_duration_s, cancelled=cancelled
        )

    async def transcribe(
        self,
        audio: npt.NDArray[np.float32],
        options: SpeechOptions,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
    ) -> Transcript:
        """Transcribe off the event loop; `cancelled` stops the decode between segments."""

        def on_segment(segment: Segment, fraction: float) -> None:
            if cancelled is not None and cancelled.is_set():
                raise Cancelled("transcription cancelled")
            if progress is not None:
                progress("transcribe", fraction)

        transcript = await asyncio.to_thread(self._transcriber.transcribe, audio, options, on_segment)
        return await asyncio.to_thread(self.with_segment_languages, transcript)

    def with_segment_languages(self, transcript: Transcript) -> Transcript:
        """Each segment with its own language (code-switching within a call; see
        `TextPipeline.own_language`), the transcript's where its text cannot tell."""
        segments = tuple(
            dataclasses.replace(s, language=self._text.own_language(s.text, transcript.language))
            for s in transcript.segments
        )
        return dataclasses.replace(transcript, segments=segments)

    async def analyze_transcript(
        self, tenant: str, media_id: str, transcript: Transcript, metadata: Mapping[str, str]
    ) -> Analysis:
        language: Language | None = transcript.language if transcript.segments else None
        windows = segment_windows(transcript.segments, max_s=self._window_max_s, max_words=self._window_max_words)
        chunks = await self._text.embed_windows(windows, fallback=language)
        return Analysis(
            tenant=tenant,
            media_id=media_id,
            modality=Modality.SPEECH,
            language=language,
            tags=self._text.overall_tags(chunks, end_s=transcript.duration_s),
            chunks=tuple(chunks),
            embedding_model=self._text.model,
            created_at=time.time(),
            version=new_version(),
            metadata=dict(metadata),
            transcript=transcript,
        )

    async def analyze(
        self,
        tenant: str,
        item: SpeechInput,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
    ) -> Analysis:
        if progress:
            progress("decode", 0.0)
        audio = await self.decode(item.path, cancelled)
        transcript = await self.transcribe(audio, item.options, progress, cancelled)
        del audio
        if progress:
            progress("embed", 0.0)
        return await self.analyze_transcript(tenant, item.media_id, transcript, item.metadata)
