"""Protobuf request builders and their validation (no I/O here); `_calls` turns them into calls."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp
from understanding.v1 import admin_pb2
from understanding.v1 import understanding_pb2 as pb

from understanding_client.types import Decision, JobState, Modality, ModerationOptions, TextItem
from understanding_client.upload import ProgressCallback, UploadSource

TextLike = str | TextItem
Instant = dt.datetime | float | int


@dataclass(frozen=True, slots=True)
class SpeechOptions:
    """How to transcribe speech (server defaults when left as they are)."""

    #: Force a language (ISO 639-1, e.g. "en"); empty means detect.
    language: str = ""
    #: Translate to English instead of transcribing.
    translate: bool = False
    word_timestamps: bool = False
    #: Voice activity detection drops silence (and text invented for it).
    vad: bool = True
    initial_prompt: str = ""
    hotwords: str = ""
    #: 0 means the server default.
    beam_size: int = 0
    #: Label segments, words and indexed windows with their speaker.
    diarize: bool = True
    #: The number of speakers when known (1..32); None detects it.
    num_speakers: int | None = None
    #: "auto" (one participant per channel when the channels say so), "mix" or "separate".
    channels: str = "auto"

    def to_pb(self) -> pb.SpeechOptions:
        if self.channels not in _CHANNELS:
            raise ValueError(f"channels must be one of {sorted(_CHANNELS)}, not {self.channels!r}")
        msg = pb.SpeechOptions(
            language=self.language,
            task=pb.SPEECH_TASK_TRANSLATE if self.translate else pb.SPEECH_TASK_TRANSCRIBE,
            word_timestamps=self.word_timestamps,
            disable_vad=not self.vad,
            initial_prompt=self.initial_prompt,
            hotwords=self.hotwords,
            beam_size=self.beam_size,
            disable_diarization=not self.diarize,
            channels=_CHANNELS[self.channels],
        )
        if self.num_speakers is not None:
            msg.num_speakers = self.num_speakers  # the server checks the range (INVALID_ARGUMENT)
        return msg


_CHANNELS: dict[str, pb.ChannelMode] = {
    "auto": pb.CHANNEL_MODE_AUTO,
    "mix": pb.CHANNEL_MODE_MIX,
    "separate": pb.CHANNEL_MODE_SEPARATE,
}


@dataclass(frozen=True, slots=True)
class VideoOptions:
    #: Frames analysed per second (0 = server default).
    sample_fps: float = 0.0
    #: Return each shot's keyframe as a small JPEG.
    return_keyframes: bool = False
    #: Skip the audio track.
    skip_audio: bool = False

    def to_pb(self) -> pb.VideoOptions:
        return pb.VideoOptions(
            sample_fps=self.sample_fps, return_keyframes=self.return_keyframes, skip_audio=self.skip_audio
        )


def text_items(
    texts: TextLike | Iterable[TextLike], media_id: str = "", metadata: Mapping[str, str] | None = None
) -> list[pb.TextItem]:
    if media_id or metadata:
        if not isinstance(texts, str):
            raise ValueError("media_id= and metadata= go with a single str; use TextItem(...) for several texts")
        texts = TextItem(texts, media_id=media_id, metadata=dict(metadata or {}))
    if isinstance(texts, (str, TextItem)):
        texts = [texts]
    items = []
    for t in texts:
        if isinstance(t, str):
            items.append(pb.TextItem(text=t))
        elif isinstance(t, TextItem):
            items.append(t.to_pb())
        else:
            raise TypeError(f"analyze_text takes str or TextItem items, not {type(t).__name__}")
    return items


def analyze_text_request(
    texts: TextLike | Iterable[TextLike],
    *,
    media_id: str = "",
    metadata: Mapping[str, str] | None = None,
    return_embeddings: bool,
    dry_run: bool,
    moderation: ModerationOptions | None = None,
) -> pb.AnalyzeTextRequest:
    options = pb.TextOptions(return_embeddings=return_embeddings, dry_run=dry_run)
    if moderation is not None:
        options.moderation.CopyFrom(moderation.to_pb())
    return pb.AnalyzeTextRequest(items=text_items(texts, media_id, metadata), options=options)


def upload_header(
    source: UploadSource | None,
    *,
    media_id: str = "",
    filename: str | None = None,
    mime_type: str = "",
    metadata: Mapping[str, str] | None = None,
    speech: SpeechOptions | None = None,
    video: VideoOptions | None = None,
    return_embeddings: bool = False,
    dry_run: bool = False,
    moderation: ModerationOptions | None = None,
) -> pb.UploadHeader:
    header = pb.UploadHeader(
        media_id=media_id,
        filename=filename if filename is not None else (source.name if source else ""),
        mime_type=mime_type,
        size_bytes=(source.total or 0) if source else 0,
        metadata=dict(metadata or {}),
    )
    if speech is not None:
        header.speech.CopyFrom(speech.to_pb())
    if video is not None:
        header.video.CopyFrom(video.to_pb())
    if return_embeddings or dry_run:
        header.text.CopyFrom(pb.TextOptions(return_embeddings=return_embeddings, dry_run=dry_run))
    if moderation is not None:
        header.moderation.CopyFrom(moderation.to_pb())
    return header


def upload_requests(
    header: pb.UploadHeader, source: UploadSource, progress: ProgressCallback | None
) -> Iterator[pb.UploadRequest]:
    """header, chunks, end(sha256): the stream Transcribe/AnalyzeVideo/UploadMedia take."""
    yield pb.UploadRequest(header=header)
    for chunk in source.chunks(progress):
        yield pb.UploadRequest(chunk=chunk)
    yield pb.UploadRequest(end=pb.UploadEnd(sha256=source.sha256))


def job_requests(
    spec: pb.JobSpec, source: UploadSource | None, progress: ProgressCallback | None
) -> Iterator[pb.SubmitJobRequest]:
    """spec, then (for uploaded media) chunks and end(sha256): the SubmitJob stream."""
    yield pb.SubmitJobRequest(spec=spec)
    if source is None:
        return
    for chunk in source.chunks(progress):
        yield pb.SubmitJobRequest(chunk=chunk)
    yield pb.SubmitJobRequest(end=pb.UploadEnd(sha256=source.sha256))


def modality(value: Modality | str) -> Modality:
    try:
        return value if isinstance(value, Modality) else Modality(str(value).lower())
    except ValueError:
        raise ValueError(f"unknown modality {value!r}: use text, speech or video") from None


def job_spec(
    *,
    text: str | None,
    source: UploadSource | None,
    upload_id: str,
    modality_: Modality | str | None,
    media_id: str,
    idempotency_key: str,
    filename: str | None,
    mime_type: str,
    metadata: Mapping[str, str] | None,
    speech: SpeechOptions | None,
    video: VideoOptions | None,
    moderation: ModerationOptions | None = None,
) -> pb.JobSpec:
    given = sum(x is not None and x != "" for x in (text, source, upload_id))
    if given != 1:
        raise ValueError("submit_job takes exactly one of text=, source= (path, file or bytes) or upload_id=")
    if modality_ is None:
        if text is not None:
            kind = Modality.TEXT
        else:
            raise ValueError("submit_job with media needs modality='speech' or 'video'")
    else:
        kind = modality(modality_)
    header = upload_header(
        source,
        media_id=media_id,
        filename=filename,
        mime_type=mime_type,
        metadata=metadata,
        speech=speech,
        video=video,
        moderation=moderation,
    )
    return pb.JobSpec(
        idempotency_key=idempotency_key,
        modality=kind.to_pb(),
        media=header,
        text=text or "",
        upload_id=upload_id,
    )


def _timestamp(value: Instant) -> Timestamp:
    ts = Timestamp()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("use an aware datetime (e.g. tzinfo=datetime.timezone.utc)")
        ts.FromDatetime(value.astimezone(dt.timezone.utc))
    else:
        ts.FromNanoseconds(int(float(value) * 1e9))
    return ts


_MODES: dict[str, pb.SearchMode] = {
    "auto": pb.SEARCH_MODE_UNSPECIFIED,
    "dense": pb.SEARCH_MODE_DENSE,
    "hybrid": pb.SEARCH_MODE_HYBRID,
}


def search_request(
    *,
    text: str | None = None,
    vector: Sequence[float] | None = None,
    example: str | tuple[str, int] | None = None,
    top_k: int = 10,
    score_threshold: float | None = None,
    offset: int = 0,
    cursor: str | None = None,
    modalities: Iterable[Modality | str] | None = None,
    media_ids: Iterable[str] | None = None,
    tags_any: Iterable[str] | None = None,
    tags_all: Iterable[str] | None = None,
    min_tag_score: float | None = None,
    languages: Iterable[str] | None = None,
    time_range: tuple[float, float] | None = None,
    created_after: Instant | None = None,
    created_before: Instant | None = None,
    metadata: Mapping[str, str] | None = None,
    speakers: Iterable[str] | None = None,
    group_by_media: bool = False,
    mode: str = "auto",
    with_vectors: bool = False,
    decisions: Iterable[Decision | str] | None = None,
    moderation_categories: Iterable[str] | None = None,
) -> pb.SearchRequest:
    if sum(q is not None for q in (text, vector, example)) != 1:
        raise ValueError("search takes exactly one of text=, vector= or example=")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}")
    request = pb.SearchRequest(
        top_k=top_k,
        score_threshold=score_threshold or 0.0,
        offset=offset,
        cursor=cursor or "",
        group_by_media=group_by_media,
        mode=_MODES[mode],
        with_vectors=with_vectors,
    )
    if text is not None:
        request.text = text
    elif vector is not None:
        request.vector.values.extend(float(x) for x in vector)
    elif isinstance(example, str):
        request.example.CopyFrom(pb.Example(media_id=example))
    elif example is not None:
        request.example.CopyFrom(pb.Example(media_id=example[0], chunk_index=example[1]))
    f = request.filter
    f.modalities.extend(modality(m).to_pb() for m in modalities or ())
    f.media_ids.extend(media_ids or ())
    if tags_any or tags_all or min_tag_score is not None:  # touching `tags` would send an empty filter
        f.tags.any.extend(tags_any or ())
        f.tags.all.extend(tags_all or ())
        if min_tag_score is not None:
            f.tags.min_score = min_tag_score
    f.languages.extend(languages or ())
    if time_range is not None:
        f.time_range.CopyFrom(pb.TimeRange(start_s=time_range[0], end_s=time_range[1]))
    if created_after is not None:
        f.created_after.CopyFrom(_timestamp(created_after))
    if created_before is not None:
        f.created_before.CopyFrom(_timestamp(created_before))
    f.metadata.update(dict(metadata or {}))
    f.decisions.extend((d if isinstance(d, Decision) else Decision(str(d).lower())).to_pb() for d in decisions or ())
    f.moderation_categories.extend(moderation_categories or ())
    f.speakers.extend(speakers or ())
    if f.ByteSize() == 0:
        request.ClearField("filter")
    return request


def list_jobs_request(states: Iterable[JobState | str] | None, page_size: int, page_token: str) -> pb.ListJobsRequest:
    values = []
    for s in states or ():
        state = s if isinstance(s, JobState) else JobState(str(s).lower())
        values.append(state.to_pb())
    return pb.ListJobsRequest(page_size=page_size, page_token=page_token, states=values)


def reindex_request(model_path: str, batch_size: int, no_switch: bool) -> admin_pb2.ReindexRequest:
    if batch_size < 0:
        raise ValueError("batch_size must be 0 (the server's default) or positive")
    return admin_pb2.ReindexRequest(model_path=model_path, batch_size=batch_size, no_switch=no_switch)
