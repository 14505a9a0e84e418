"""Blocking clients: `Client` (the Understanding service) and `AdminClient` (the Admin service).

A thin shell over `_calls`: every method builds its call there and sends it
here; this module owns only the channel, the waiting between retries and the
iteration of streams. aio.py is the same shell for asyncio.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from understanding.v1 import admin_pb2_grpc, understanding_pb2_grpc

from understanding_client import _calls
from understanding_client import _requests as rq
from understanding_client._calls import Attempts, Call, Deadline, StreamCall
from understanding_client._channel import _DEFAULT, _Base
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
from understanding_client.upload import MediaSource, ProgressCallback

if TYPE_CHECKING:
    from typing_extensions import Self  # only in annotations: no runtime dependency (Python 3.10)

R = TypeVar("R")

# The generated stub classes carry no annotations.
_UNDERSTANDING_STUB: Any = understanding_pb2_grpc.UnderstandingStub
_ADMIN_STUB: Any = admin_pb2_grpc.AdminStub


class _Blocking(_Base):
    """The sync shell: one channel, calls sent with retries, streams iterated."""

    _stub_class: Any = None

    def __init__(self, target: str | None = None, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        cfg = self.config
        if cfg.secure:
            self._channel = grpc.secure_channel(cfg.target, cfg.credentials(), options=cfg.options())
        else:
            self._channel = grpc.insecure_channel(cfg.target, options=cfg.options())
        self._stub: Any = self._stub_class(self._channel)

    def close(self) -> None:
        """Close the channel (safe to call twice)."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether the server accepts a connection within `timeout_s` seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            return False
        return True

    def _run(self, call: Call[R], timeout: float | None) -> R:
        send = getattr(self._stub, call.method)
        deadline = self._timeout(timeout)
        attempts = Attempts(call.method, self.retry, retry=call.idempotent)
        while True:
            attempts.started()
            try:
                return call.convert(send(call.messages(), metadata=self._metadata, timeout=deadline))
            except grpc.RpcError as rpc_error:
                delay = attempts.failed(rpc_error)
            time.sleep(delay)

    def _stream(self, call: StreamCall[R], timeout: float | None) -> Iterator[R]:
        open_stream = getattr(self._stub, call.method)
        attempts = Attempts(call.method, self.retry, retry=call.resumable)
        deadline = Deadline(timeout)
        while True:
            stream = open_stream(call.request, metadata=self._metadata, timeout=deadline.remaining())
            attempts.started()
            try:
                for message in stream:
                    attempts.progressed()
                    item = call.convert(message)
                    yield item
                    if call.last(item):
                        return
                return
            except grpc.RpcError as rpc_error:
                delay = attempts.failed(rpc_error)
            finally:
                stream.cancel()
            time.sleep(delay)


class Client(_Blocking):
    """Blocking client. One per process is enough: it holds one HTTP/2 channel.

    Identity: `api_key` (sent as `x-api-key`) when the server has API keys, or
    `tenant` (`x-tenant-id`) when it runs without. Target, key and tenant
    default to UNDERSTANDING_SERVER, UNDERSTANDING_API_KEY, UNDERSTANDING_TENANT.
    TLS: `tls=True` (system roots), or `root_certificates=` and for mutual TLS
    `certificate_chain=` + `private_key=` (PEM bytes or file paths).

    Every method takes `timeout` (seconds per attempt; None = no deadline;
    default `timeout_s`). Idempotent calls are retried on UNAVAILABLE and on
    RESOURCE_EXHAUSTED with a server back-off hint, per `retry`. Failures raise
    `understanding_client.errors.UnderstandingError` subclasses.
    """

    _stub_class = _UNDERSTANDING_STUB

    # ------------------------------------------------------------ text
    def analyze_text(
        self,
        texts: rq.TextLike | Iterable[rq.TextLike],
        *,
        media_id: str = "",
        metadata: Mapping[str, str] | None = None,
        return_embeddings: bool = False,
        dry_run: bool = False,
        moderation: ModerationOptions | None = None,
        timeout: float | None = _DEFAULT,
    ) -> list[Analysis]:
        """Embed, tag and index one or many texts; one Analysis per item, in request order.

        `texts` is a str, a TextItem or an iterable of them; `media_id=` and
        `metadata=` apply to a single str (use TextItem for several). An empty
        media id lets the server derive one from the content.
        """
        call = _calls.analyze_text(
            texts,
            media_id=media_id,
            metadata=metadata,
            return_embeddings=return_embeddings,
            dry_run=dry_run,
            moderation=moderation,
        )
        return self._run(call, timeout)

    # ------------------------------------------------------------ uploads
    def transcribe(
        self,
        source: MediaSource,
        *,
        media_id: str = "",
        language: str = "",
        translate: bool = False,
        word_timestamps: bool = False,
        vad: bool = True,
        initial_prompt: str = "",
        hotwords: str = "",
        beam_size: int = 0,
        diarize: bool = True,
        num_speakers: int | None = None,
        channels: str = "auto",
        metadata: Mapping[str, str] | None = None,
        filename: str | None = None,
        mime_type: str = "",
        return_embeddings: bool = False,
        dry_run: bool = False,
        progress: ProgressCallback | None = None,
        moderation: ModerationOptions | None = None,
        timeout: float | None = _DEFAULT,
    ) -> Analysis:
        """Upload audio (or a video, for its audio track) in chunks and transcribe it inline.

        `source` is a path, bytes or a binary file object; `progress(bytes_sent, total)`
        is called per chunk. For long media prefer `submit_job`. Speakers: `diarize`
        labels segments and words ("S1", "S2"... or "CH1", "CH2"... per channel),
        `num_speakers` is a hint, `channels` "auto" | "mix" | "separate".
        """
        call = _calls.transcribe(
            self._source(source),
            media_id=media_id,
            language=language,
            translate=translate,
            word_timestamps=word_timestamps,
            vad=vad,
            initial_prompt=initial_prompt,
            hotwords=hotwords,
            beam_size=beam_size,
            diarize=diarize,
            num_speakers=num_speakers,
            channels=channels,
            metadata=metadata,
            filename=filename,
            mime_type=mime_type,
            return_embeddings=return_embeddings,
            dry_run=dry_run,
            progress=progress,
            moderation=moderation,
        )
        return self._run(call, timeout)

    def analyze_video(
        self,
        source: MediaSource,
        *,
        media_id: str = "",
        sample_fps: float = 0.0,
        return_keyframes: bool = False,
        skip_audio: bool = False,
        speech: rq.SpeechOptions | None = None,
        metadata: Mapping[str, str] | None = None,
        filename: str | None = None,
        mime_type: str = "",
        return_embeddings: bool = False,
        dry_run: bool = False,
        progress: ProgressCallback | None = None,
        moderation: ModerationOptions | None = None,
        timeout: float | None = _DEFAULT,
    ) -> Analysis:
        """Upload a video in chunks and analyze it inline: facts, shots, keyframes, tags, transcript."""
        call = _calls.analyze_video(
            self._source(source),
            media_id=media_id,
            sample_fps=sample_fps,
            return_keyframes=return_keyframes,
            skip_audio=skip_audio,
            speech=speech,
            metadata=metadata,
            filename=filename,
            mime_type=mime_type,
            return_embeddings=return_embeddings,
            dry_run=dry_run,
            progress=progress,
            moderation=moderation,
        )
        return self._run(call, timeout)

    def upload_media(
        self,
        source: MediaSource,
        *,
        filename: str | None = None,
        mime_type: str = "",
        media_id: str = "",
        progress: ProgressCallback | None = None,
        timeout: float | None = _DEFAULT,
    ) -> Upload:
        """Store media on the server for a later `submit_job(upload_id=...)`."""
        call = _calls.upload_media(
            self._source(source), filename=filename, mime_type=mime_type, media_id=media_id, progress=progress
        )
        return self._run(call, timeout)

    # ------------------------------------------------------------ jobs
    def submit_job(
        self,
        *,
        text: str | None = None,
        source: MediaSource | None = None,
        upload_id: str = "",
        modality: Modality | str | None = None,
        media_id: str = "",
        idempotency_key: str | None = None,
        speech: rq.SpeechOptions | None = None,
        video: rq.VideoOptions | None = None,
        metadata: Mapping[str, str] | None = None,
        filename: str | None = None,
        mime_type: str = "",
        progress: ProgressCallback | None = None,
        moderation: ModerationOptions | None = None,
        timeout: float | None = _DEFAULT,
    ) -> Job:
        """Create an asynchronous job (state QUEUED) from `text=`, `source=` or `upload_id=`.

        Media jobs need `modality="speech"` or `"video"`. Without an
        `idempotency_key` the SDK makes one up, so a retried submit can never
        create a second job; pass your own to make re-submissions idempotent too.
        """
        call = _calls.submit_job(
            text=text,
            source=self._source(source) if source is not None else None,
            upload_id=upload_id,
            modality=modality,
            media_id=media_id,
            idempotency_key=idempotency_key,
            speech=speech,
            video=video,
            metadata=metadata,
            filename=filename,
            mime_type=mime_type,
            progress=progress,
            moderation=moderation,
        )
        return self._run(call, timeout)

    def get_job(self, job_id: str, *, timeout: float | None = _DEFAULT) -> Job:
        """The job's state and progress (with `result` once it succeeded)."""
        return self._run(_calls.get_job(job_id), timeout)

    def cancel_job(self, job_id: str, *, timeout: float | None = _DEFAULT) -> Job:
        """Cancel a queued or running job; FailedPrecondition once it is terminal."""
        return self._run(_calls.cancel_job(job_id), timeout)

    def list_jobs(
        self,
        *,
        states: Iterable[JobState | str] | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = _DEFAULT,
    ) -> JobPage:
        """One page of the caller's jobs (newest first); see `iter_jobs` for all of them."""
        return self._run(_calls.list_jobs(states, page_size, page_token), timeout)

    def iter_jobs(
        self, *, states: Iterable[JobState | str] | None = None, page_size: int = 0, timeout: float | None = _DEFAULT
    ) -> Iterator[Job]:
        """Every job of the caller, page after page."""
        states = list(states or ())
        token = ""
        while True:
            page = self.list_jobs(states=states, page_size=page_size, page_token=token, timeout=timeout)
            yield from page.jobs
            token = page.next_page_token
            if not token:
                return

    def watch_job(self, job_id: str, *, timeout: float | None = None) -> Iterator[Job]:
        """Yield the job on every state or progress change until it is terminal.

        The last item is the terminal job (with `result` when it succeeded). A
        dropped stream is re-opened per the retry policy. `timeout` bounds the
        whole watch (default: none).
        """
        return self._stream(_calls.watch_job(job_id), timeout)

    def wait_job(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Block until the job is terminal and return it (see `watch_job`)."""
        last: Job | None = None
        for job in self.watch_job(job_id, timeout=timeout):
            last = job
        assert last is not None, "WatchJob ended without a single update"
        return last

    # ------------------------------------------------------------ search and media
    def search(
        self,
        text: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        example: str | tuple[str, int] | None = None,
        top_k: int = 10,
        timeout: float | None = _DEFAULT,
        **filters: Any,
    ) -> SearchResults:
        """Search by `text`, `vector` or `example` (a media id, or (media id, chunk index)).

        Filters and options: modalities, media_ids, tags_any, tags_all,
        min_tag_score, languages, time_range=(start_s, end_s), created_after,
        created_before (aware datetime or epoch seconds), metadata={k: v},
        score_threshold, offset, cursor, group_by_media, mode ("auto", "dense",
        "hybrid"), with_vectors.
        """
        call = _calls.search(text, vector=vector, example=example, top_k=top_k, filters=filters)
        return self._run(call, timeout)

    def get_media(self, media_id: str, *, timeout: float | None = _DEFAULT) -> Media:
        """Every stored point of a media, in chunk order."""
        return self._run(_calls.get_media(media_id), timeout)

    def delete_media(self, media_id: str, *, timeout: float | None = _DEFAULT) -> int:
        """Remove every point of the media; returns how many. Not retried: a repeat answers NOT_FOUND."""
        return self._run(_calls.delete_media(media_id), timeout)


class AdminClient(_Blocking):
    """Blocking client of the Admin service: operator calls that act on every tenant's data.

    Same arguments as `Client`; the key defaults to UNDERSTANDING_ADMIN_API_KEY
    (else UNDERSTANDING_API_KEY) and must be one of the server's admin keys.
    """

    _admin = True
    _stub_class = _ADMIN_STUB

    def reindex(
        self, model_path: str, *, batch_size: int = 0, no_switch: bool = False, timeout: float | None = None
    ) -> Iterator[ReindexProgress]:
        """Switch the server to another embedding model while it keeps serving; yields progress until it ends.

        `model_path` is a sentence-transformers directory as the server sees it,
        or "packaged". The last item has phase DONE or NOTHING_TO_DO; a failed
        reindex yields FAILED, then raises the server's error. A second call for
        the reindex already running follows it. Not retried. `timeout` bounds
        the whole reindex (default: none).
        """
        return self._stream(_calls.reindex(model_path, batch_size=batch_size, no_switch=no_switch), timeout)

    def get_reindex(self, *, timeout: float | None = _DEFAULT) -> ReindexProgress:
        """The running or last reindex of the server process; NotFound when there was none."""
        return self._run(_calls.get_reindex(), timeout)
