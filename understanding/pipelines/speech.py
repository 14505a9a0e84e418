"""Speech understanding: decode, transcribe with speakers, then the transcript through the text path.

Speakers (pipelines/speakers.py): a recording whose channels are one
participant each (a call recorder's sides) is transcribed channel by channel,
each channel's segments belonging to its participant; any other audio is
mixed to mono and the speaker model labels the transcript, running next to
Whisper rather than after it.

Consecutive transcript segments are grouped into windows (at most
`window_max_s` seconds and `window_max_words` words, one speaker) so each
indexed vector carries enough context to match a paraphrase, yet a hit still
points at a seekable time range a few seconds long.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from understanding.domain import (
    Analysis,
    Cancelled,
    Language,
    LimitExceeded,
    Modality,
    ModelRef,
    PreconditionFailed,
    Segment,
    SpeechOptions,
    Transcript,
)
from understanding.media.sandbox import MediaDecoder, SandboxSettings
from understanding.models.whisper import Transcriber
from understanding.pipelines.attribution import attribute, merge_channels
from understanding.pipelines.diarization import SAMPLE_RATE, ChannelLayout, ChannelSpeech, diarize_channels
from understanding.pipelines.speakers import (
    SpeakerSettings,
    channel_budget_exceeded,
    channel_budget_s,
    channel_speakers,
    find_speakers,
    mask_to_speech,
)
from understanding.pipelines.text import TextPipeline, Window, new_version

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class SpeechInput:
    media_id: str
    path: pathlib.Path
    options: SpeechOptions
    metadata: Mapping[str, str] = field(default_factory=dict)


def segment_windows(segments: Sequence[Segment], *, max_s: float, max_words: int) -> list[Window]:
    """Group consecutive segments into windows bounded in duration and words.

    A window never spans two speakers: it also ends where the segments'
    speaker changes, so each indexed window names the one person who said it.
    """
    windows: list[Window] = []
    texts: list[str] = []
    start = end = 0.0
    words = 0
    speaker = ""

    def close() -> None:
        windows.append(Window(" ".join(texts), start, end, (speaker,) if speaker else ()))

    for segment in segments:
        text = segment.text.strip()
        if not text:
            continue
        n = len(text.split())
        if texts and (segment.end_s - start > max_s or words + n > max_words or segment.speaker != speaker):
            close()
            texts, words = [], 0
        if not texts:
            start = segment.start_s
            speaker = segment.speaker
        texts.append(text)
        words += n
        end = segment.end_s
    if texts:
        close()
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
        speakers: SpeakerSettings | None = None,
    ) -> None:
        # Uploads are untrusted: the service passes a decoder that isolates them in a child process.
        self.decoder = decoder if decoder is not None else MediaDecoder(SandboxSettings(isolate=False))
        self._transcriber = transcriber
        self._text = text
        self._max_duration_s = max_duration_s
        self._window_max_s = window_max_s
        self._window_max_words = window_max_words
        # Without settings there is no speaker model: per-channel participants only.
        self._speakers = speakers if speakers is not None else SpeakerSettings()

    @property
    def speakers(self) -> SpeakerSettings:
        """The speaker model and its bounds (live streams label their speakers with the same)."""
        return self._speakers

    @property
    def speaker_model(self) -> ModelRef | None:
        encoder = self._speakers.encoder
        return encoder.model_ref if encoder is not None else None

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

        if progress is not None:
            # Visible at once: the first segment can take as long as the whole audio (a 30 s
            # window decoded again at higher temperatures), and a watcher must see the stage.
            progress("transcribe", 0.0)
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

    async def transcript(
        self,
        path: pathlib.Path,
        options: SpeechOptions,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
    ) -> Transcript:
        """Decode `path` and transcribe it with its speakers (unless `options.diarize` is off).

        Channels that are one participant each are transcribed one by one
        (each segment then belongs to its channel's speaker, exactly); anything
        else is mixed to mono, transcribed, and the speaker model labels it.
        """
        if options.num_speakers is not None and self._speakers.encoder is None:
            raise PreconditionFailed(
                "this server runs without a speaker model (UNDERSTANDING_SPEAKER_MODEL=off): leave num_speakers out",
                field="speech.num_speakers",
            )
        apart = await self._channels_apart(path, options, cancelled)
        if apart is not None:
            audio, layout = apart
            return await self._per_channel(audio, layout, options, progress, cancelled)
        audio = await self.decode(path, cancelled)
        return await self._mixed(audio, options, progress, cancelled)

    async def _channels_apart(
        self, path: pathlib.Path, options: SpeechOptions, cancelled: threading.Event | None
    ) -> tuple[npt.NDArray[np.float32], ChannelLayout] | None:
        """The channels and their participants when they are one participant each, else None (mix)."""
        if not options.diarize or options.channels == "mix":
            return None
        info = await asyncio.to_thread(self.decoder.probe_audio, path, cancelled=cancelled)
        budget = channel_budget_s(info.channels, info.duration_s, options, self._speakers)
        if budget is None:
            return None
        try:
            audio = await asyncio.to_thread(
                self.decoder.decode_channels,
                path,
                max_duration_s=min(budget, self._max_duration_s),
                cancelled=cancelled,
            )
        except LimitExceeded as exc:
            if exc.field != "duration" or budget >= self._max_duration_s:
                raise  # over the media limit itself, or a decompression bomb
            if options.channels == "separate":  # the container understated its duration
                raise channel_budget_exceeded(info.channels, self._speakers) from None
            return None
        layout = await asyncio.to_thread(channel_speakers, audio, options)
        if not layout.distinct:
            log.debug("channels mixed", extra={"reason": layout.reason})
            return None
        return audio, layout

    async def _per_channel(
        self,
        audio: npt.NDArray[np.float32],
        layout: ChannelLayout,
        options: SpeechOptions,
        progress: Progress | None,
        cancelled: threading.Event | None,
    ) -> Transcript:
        """Each participant's channel transcribed on its own, silenced outside their speech."""
        diarization = diarize_channels(layout)
        labels = {f"CH{c.index + 1}": c.index + 1 for c in layout.channels}
        talking = [c for c in layout.channels if c.active and c.speech]
        done = [0.0] * len(talking)

        def part(i: int) -> Progress:
            def report(stage: str, fraction: float) -> None:
                done[i] = fraction
                if progress is not None:
                    progress(stage, sum(done) / len(done))

            return report

        async def one(i: int, channel: ChannelSpeech) -> tuple[str, Transcript]:
            masked = await asyncio.to_thread(mask_to_speech, audio[channel.index], channel.speech)
            return f"CH{channel.index + 1}", await self.transcribe(masked, options, part(i), cancelled)

        # The transcriber bounds how many run at once (its workers); the rest wait their turn.
        parts = await asyncio.gather(*(one(i, c) for i, c in enumerate(talking)))
        if not parts:
            # Participants on their channels, none of them speaking: no speech, as Whisper's own VAD would say.
            return Transcript(
                segments=(),
                language=Language(options.language or "", 1.0 if options.language else 0.0),
                duration_s=audio.shape[1] / SAMPLE_RATE,
                task=options.task,
                model=self._transcriber.model_ref,
                speaker_method=diarization.method,
            )
        return merge_channels(parts, diarization, labels)

    async def _mixed(
        self,
        audio: npt.NDArray[np.float32],
        options: SpeechOptions,
        progress: Progress | None,
        cancelled: threading.Event | None,
    ) -> Transcript:
        """Transcription and the speaker model run side by side on the same mono audio."""
        encoder = self._speakers.encoder
        if not options.diarize or encoder is None:
            return await self.transcribe(audio, options, progress, cancelled)
        # Word times are what lets a segment be cut where the speaker changes.
        whisper_options = dataclasses.replace(options, word_timestamps=True)
        transcribing = self.transcribe(audio, whisper_options, progress, cancelled)
        diarizing = asyncio.to_thread(find_speakers, audio, options, self._speakers, cancelled)
        transcript, diarization = await asyncio.gather(transcribing, diarizing)
        if diarization is not None:
            transcript = attribute(transcript, diarization)
        if not options.word_timestamps:
            transcript = dataclasses.replace(
                transcript, segments=tuple(dataclasses.replace(s, words=()) for s in transcript.segments)
            )
        return transcript

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
        transcript = await self.transcript(item.path, item.options, progress, cancelled)
        if progress:
            progress("embed", 0.0)
        return await self.analyze_transcript(tenant, item.media_id, transcript, item.metadata)
