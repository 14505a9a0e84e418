"""The core both clients share: every operation described once, without I/O.

A `Call` says which unary or client-streaming RPC to send, with which request,
whether a retry is safe, and how the answer becomes a typed result; a
`StreamCall` does the same for a server stream (job watch, reindex progress).
`Attempts` makes the retry decisions from the error's data. The sync shell
(client.py) and the asyncio shell (aio.py) only send calls: they own the
channel, the waiting and the iteration, and build every call here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from understanding.v1 import admin_pb2
from understanding.v1 import understanding_pb2 as pb

from understanding_client import _requests as rq
from understanding_client.errors import from_rpc_error
from understanding_client.retry import RetryPolicy
from understanding_client.types import (
    Analysis,
    Job,
    JobPage,
    JobState,
    Media,
    Modality,
    ModerationOptions,
    ReindexProgress,
    SearchResults,
    Upload,
)
from understanding_client.upload import ProgressCallback, UploadSource

R = TypeVar("R")


def _never(_item: Any) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """A unary or client-streaming RPC, ready to send."""

    #: The RPC's name on the service stub, e.g. "GetJob".
    method: str
    #: The response message -> the typed result.
    convert: Callable[[Any], R]
    #: Whether sending it twice does no harm (only such calls are retried).
    idempotent: bool
    #: The request message of a unary call.
    request: Any = None
    #: A client stream's messages, made afresh for every attempt so a retry re-sends the upload from the start.
    requests: Callable[[], Iterator[Any]] | None = None

    @property
    def streaming(self) -> bool:
        return self.requests is not None

    def messages(self) -> Any:
        """What the stub takes: the request, or a new iterator of the stream's messages."""
        return self.requests() if self.requests is not None else self.request


@dataclass(frozen=True, slots=True)
class StreamCall(Generic[R]):
    """A server-streaming RPC, ready to open."""

    method: str
    request: Any
    #: One streamed message -> one typed item.
    convert: Callable[[Any], R]
    #: Stop after an item for which this is true, even if the server keeps the stream open.
    last: Callable[[R], bool] = _never
    #: Re-open a dropped stream per the retry policy; only for RPCs that start with the current state.
    resumable: bool = False


class Attempts:
    """Retry decisions for one call or stream: after each failure, the delay before the next try, or the error.

    `retry=False` (a call that is not idempotent) raises the first error.
    A stream that delivered something starts counting afresh (`progressed`).
    """

    def __init__(self, method: str, policy: RetryPolicy, *, retry: bool) -> None:
        self.method = method
        self.policy = policy
        self.retry = retry
        self.count = 0

    def started(self) -> None:
        self.count += 1

    def progressed(self) -> None:
        self.count = 0

    def failed(self, rpc_error: grpc.RpcError) -> float:
        """Seconds to wait before trying again; raises the SDK's error when the call must not be retried."""
        error = from_rpc_error(rpc_error, self.method)
        attempt = max(self.count, 1)
        if not (self.retry and self.policy.should_retry(error, attempt)):
            raise error from rpc_error
        return self.policy.delay_s(error, attempt)


class Deadline:
    """A time budget over several attempts: what is left of `timeout_s` (None: no deadline)."""

    def __init__(self, timeout_s: float | None) -> None:
        self._end = None if timeout_s is None else time.monotonic() + timeout_s

    def remaining(self) -> float | None:
        return None if self._end is None else max(0.0, self._end - time.monotonic())


# ---------------------------------------------------------------- converters
def _analyses(response: Any) -> list[Analysis]:
    return [Analysis.from_pb(a) for a in response.results]


def _analysis(response: Any) -> Analysis:
    return Analysis.from_pb(response.analysis)


def _points_deleted(response: Any) -> int:
    return int(response.points_deleted)


# ---------------------------------------------------------------- Understanding service
def analyze_text(
    texts: rq.TextLike | Iterable[rq.TextLike],
    *,
    media_id: str,
    metadata: Mapping[str, str] | None,
    return_embeddings: bool,
    dry_run: bool,
    moderation: ModerationOptions | None = None,
) -> Call[list[Analysis]]:
    request = rq.analyze_text_request(
        texts,
        media_id=media_id,
        metadata=metadata,
        return_embeddings=return_embeddings,
        dry_run=dry_run,
        moderation=moderation,
    )
    return Call("AnalyzeText", _analyses, idempotent=True, request=request)


def _upload(
    method: str,
    header: pb.UploadHeader,
    source: UploadSource,
    progress: ProgressCallback | None,
    convert: Callable[[Any], R],
) -> Call[R]:
    # A pipe cannot be read twice, so its upload cannot be retried.
    return Call(
        method, convert, idempotent=source.rewindable, requests=lambda: rq.upload_requests(header, source, progress)
    )


def transcribe(
    source: UploadSource,
    *,
    media_id: str,
    language: str,
    translate: bool,
    word_timestamps: bool,
    vad: bool,
    initial_prompt: str,
    hotwords: str,
    beam_size: int,
    diarize: bool,
    num_speakers: int | None,
    channels: str,
    metadata: Mapping[str, str] | None,
    filename: str | None,
    mime_type: str,
    return_embeddings: bool,
    dry_run: bool,
    progress: ProgressCallback | None,
    moderation: ModerationOptions | None = None,
) -> Call[Analysis]:
    speech = rq.SpeechOptions(
        language, translate, word_timestamps, vad, initial_prompt, hotwords, beam_size, diarize, num_speakers, channels
    )
    header = rq.upload_header(
        source,
        media_id=media_id,
        filename=filename,
        mime_type=mime_type,
        metadata=metadata,
        speech=speech,
        return_embeddings=return_embeddings,
        dry_run=dry_run,
        moderation=moderation,
    )
    return _upload("Transcribe", header, source, progress, _analysis)


def analyze_video(
    source: UploadSource,
    *,
    media_id: str,
    sample_fps: float,
    return_keyframes: bool,
    skip_audio: bool,
    speech: rq.SpeechOptions | None,
    metadata: Mapping[str, str] | None,
    filename: str | None,
    mime_type: str,
    return_embeddings: bool,
    dry_run: bool,
    progress: ProgressCallback | None,
    moderation: ModerationOptions | None = None,
) -> Call[Analysis]:
    header = rq.upload_header(
        source,
        media_id=media_id,
        filename=filename,
        mime_type=mime_type,
        metadata=metadata,
        speech=speech,
        video=rq.VideoOptions(sample_fps, return_keyframes, skip_audio),
        return_embeddings=return_embeddings,
        dry_run=dry_run,
        moderation=moderation,
    )
    return _upload("AnalyzeVideo", header, source, progress, _analysis)


def upload_media(
    source: UploadSource, *, filename: str | None, mime_type: str, media_id: str, progress: ProgressCallback | None
) -> Call[Upload]:
    header = rq.upload_header(source, media_id=media_id, filename=filename, mime_type=mime_type)
    return _upload("UploadMedia", header, source, progress, Upload.from_pb)


def submit_job(
    *,
    text: str | None,
    source: UploadSource | None,
    upload_id: str,
    modality: Modality | str | None,
    media_id: str,
    idempotency_key: str | None,
    speech: rq.SpeechOptions | None,
    video: rq.VideoOptions | None,
    metadata: Mapping[str, str] | None,
    filename: str | None,
    mime_type: str,
    progress: ProgressCallback | None,
    moderation: ModerationOptions | None = None,
) -> Call[Job]:
    """Without a key one is made up, so a retried submit can never create a second job; "" sends none."""
    key = idempotency_key if idempotency_key is not None else f"sdk-{uuid.uuid4().hex}"
    spec = rq.job_spec(
        text=text,
        source=source,
        upload_id=upload_id,
        modality_=modality,
        media_id=media_id,
        idempotency_key=key,
        filename=filename,
        mime_type=mime_type,
        metadata=metadata,
        speech=speech,
        video=video,
        moderation=moderation,
    )
    return Call(
        "SubmitJob",
        Job.from_pb,
        idempotent=bool(key) and (source is None or source.rewindable),
        requests=lambda: rq.job_requests(spec, source, progress),
    )


def get_job(job_id: str) -> Call[Job]:
    return Call("GetJob", Job.from_pb, idempotent=True, request=pb.GetJobRequest(job_id=job_id))


def cancel_job(job_id: str) -> Call[Job]:
    return Call("CancelJob", Job.from_pb, idempotent=True, request=pb.CancelJobRequest(job_id=job_id))


def list_jobs(states: Iterable[JobState | str] | None, page_size: int, page_token: str) -> Call[JobPage]:
    request = rq.list_jobs_request(states, page_size, page_token)
    return Call("ListJobs", JobPage.from_pb, idempotent=True, request=request)


def watch_job(job_id: str) -> StreamCall[Job]:
    # WatchJob answers with the current state first, so a re-opened stream loses nothing.
    return StreamCall(
        "WatchJob", pb.WatchJobRequest(job_id=job_id), Job.from_pb, last=lambda job: job.done, resumable=True
    )


def search(
    text: str | None,
    *,
    vector: Sequence[float] | None,
    example: str | tuple[str, int] | None,
    top_k: int,
    filters: Mapping[str, Any],
) -> Call[SearchResults]:
    request = rq.search_request(text=text, vector=vector, example=example, top_k=top_k, **filters)
    return Call("Search", SearchResults.from_pb, idempotent=True, request=request)


def get_media(media_id: str) -> Call[Media]:
    return Call("GetMedia", Media.from_pb, idempotent=True, request=pb.GetMediaRequest(media_id=media_id))


def delete_media(media_id: str) -> Call[int]:
    # Not idempotent: a repeat answers NOT_FOUND, hiding that the first one worked.
    return Call("DeleteMedia", _points_deleted, idempotent=False, request=pb.DeleteMediaRequest(media_id=media_id))


# ---------------------------------------------------------------- Admin service
def reindex(model_path: str, *, batch_size: int, no_switch: bool) -> StreamCall[ReindexProgress]:
    # Not resumable: after a server restart a new call would start the work over.
    return StreamCall("Reindex", rq.reindex_request(model_path, batch_size, no_switch), ReindexProgress.from_pb)


def get_reindex() -> Call[ReindexProgress]:
    return Call("GetReindex", ReindexProgress.from_pb, idempotent=True, request=admin_pb2.GetReindexRequest())
