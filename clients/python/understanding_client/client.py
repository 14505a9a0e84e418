"""Synchronous client for `understanding.v1.Understanding`."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import grpc

from understanding.v1 import understanding_pb2 as pb, understanding_pb2_grpc
from understanding_client import _requests as rq
from understanding_client._channel import ConnectionConfig, PemSource
from understanding_client.errors import UnderstandingError, from_rpc_error
from understanding_client.retry import RetryPolicy
from understanding_client.types import Analysis, Job, JobPage, JobState, Media, Modality, SearchResults, Upload
from understanding_client.upload import MediaSource, ProgressCallback, UploadSource

T = TypeVar("T")
_DEFAULT: Any = object()  # "use the client's timeout_s" (None means no deadline)


class _Base:
    def __init__(
        self,
        target: str | None = None,
        *,
        api_key: str | None = None,
        tenant: str | None = None,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        certificate_chain: PemSource | None = None,
        private_key: PemSource | None = None,
        server_name: str | None = None,
        timeout_s: float | None = 60.0,
        retry: RetryPolicy | None = None,
        chunk_size: int | None = None,
        metadata: Mapping[str, str] | None = None,
        channel_options: Sequence[tuple[str, Any]] | None = None,
    ) -> None:
        self.config = ConnectionConfig.from_env(
            target=target,
            api_key=api_key,
            tenant=tenant,
            tls=tls,
            root_certificates=root_certificates,
            certificate_chain=certificate_chain,
            private_key=private_key,
            server_name=server_name,
            timeout_s=timeout_s,
            retry=retry,
            chunk_size=chunk_size,
            metadata=metadata,
            channel_options=channel_options,
        )
        self._metadata = self.config.call_metadata()

    @property
    def target(self) -> str:
        return self.config.target

    @property
    def retry(self) -> RetryPolicy:
        return self.config.retry

    def _timeout(self, timeout: float | None) -> float | None:
        return self.config.timeout_s if timeout is _DEFAULT else timeout

    def _source(self, source: MediaSource) -> UploadSource:
        return UploadSource(source, chunk_size=self.config.chunk_size)


class Client(_Base):
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

    def __init__(self, target: str | None = None, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        cfg = self.config
        if cfg.secure:
            self._channel = grpc.secure_channel(cfg.target, cfg.credentials(), options=cfg.options())
        else:
            self._channel = grpc.insecure_channel(cfg.target, options=cfg.options())
        self._stub = understanding_pb2_grpc.UnderstandingStub(self._channel)

    def close(self) -> None:
        """Close the channel (safe to call twice)."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing
    def _call(self, method: str, send: Callable[[float | None], T], *, idempotent: bool, timeout: float | None) -> T:
        deadline = self._timeout(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                return send(deadline)
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error, method)
                if not (idempotent and self.retry.should_retry(error, attempt)):
                    raise error from rpc_error
            time.sleep(self.retry.delay_s(error, attempt))

    def _unary(self, method: str, request: Any, *, idempotent: bool, timeout: float | None) -> Any:
        fn = getattr(self._stub, method)
        return self._call(
            method, lambda t: fn(request, metadata=self._metadata, timeout=t), idempotent=idempotent, timeout=timeout
        )

    # ------------------------------------------------------------ text
    def analyze_text(
        self,
        texts: rq.TextLike | Iterable[rq.TextLike],
        *,
        media_id: str = "",
        metadata: Mapping[str, str] | None = None,
        return_embeddings: bool = False,
        dry_run: bool = False,
        timeout: float | None = _DEFAULT,
    ) -> list[Analysis]:
        """Embed, tag and index one or many texts; one Analysis per item, in request order.

        `texts` is a str, a TextItem or an iterable of them; `media_id=` and
        `metadata=` apply to a single str (use TextItem for several). An empty
        media id lets the server derive one from the content.
        """
        request = rq.analyze_text_request(
            texts, media_id=media_id, metadata=metadata, return_embeddings=return_embeddings, dry_run=dry_run
        )
        response = self._unary("AnalyzeText", request, idempotent=True, timeout=timeout)
        return [Analysis.from_pb(a) for a in response.results]

    # ------------------------------------------------------------ uploads
    def _upload(
        self, method: str, header: pb.UploadHeader, source: UploadSource, progress: ProgressCallback | None,
        timeout: float | None, idempotent: bool = True,
    ) -> Any:
        fn = getattr(self._stub, method)
        return self._call(
            method,
            lambda t: fn(rq.upload_requests(header, source, progress), metadata=self._metadata, timeout=t),
            idempotent=idempotent and source.rewindable,
            timeout=timeout,
        )

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
        metadata: Mapping[str, str] | None = None,
        filename: str | None = None,
        mime_type: str = "",
        return_embeddings: bool = False,
        dry_run: bool = False,
        progress: ProgressCallback | None = None,
        timeout: float | None = _DEFAULT,
    ) -> Analysis:
        """Upload audio (or a video, for its audio track) in chunks and transcribe it inline.

        `source` is a path, bytes or a binary file object; `progress(bytes_sent, total)`
        is called per chunk. For long media prefer `submit_job`.
        """
        src = self._source(source)
        speech = rq.SpeechOptions(language, translate, word_timestamps, vad, initial_prompt, hotwords, beam_size)
        header = rq.upload_header(
            src, media_id=media_id, filename=filename, mime_type=mime_type, metadata=metadata, speech=speech,
            return_embeddings=return_embeddings, dry_run=dry_run,
        )
        return Analysis.from_pb(self._upload("Transcribe", header, src, progress, timeout).analysis)

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
        timeout: float | None = _DEFAULT,
    ) -> Analysis:
        """Upload a video in chunks and analyze it inline: facts, shots, keyframes, tags, transcript."""
        src = self._source(source)
        header = rq.upload_header(
            src, media_id=media_id, filename=filename, mime_type=mime_type, metadata=metadata, speech=speech,
            video=rq.VideoOptions(sample_fps, return_keyframes, skip_audio),
            return_embeddings=return_embeddings, dry_run=dry_run,
        )
        return Analysis.from_pb(self._upload("AnalyzeVideo", header, src, progress, timeout).analysis)

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
        src = self._source(source)
        header = rq.upload_header(src, media_id=media_id, filename=filename, mime_type=mime_type)
        return Upload.from_pb(self._upload("UploadMedia", header, src, progress, timeout))

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
        timeout: float | None = _DEFAULT,
    ) -> Job:
        """Create an asynchronous job (state QUEUED) from `text=`, `source=` or `upload_id=`.

        Media jobs need `modality="speech"` or `"video"`. Without an
        `idempotency_key` the SDK makes one up, so a retried submit can never
        create a second job; pass your own to make re-submissions idempotent too.
        """
        src = self._source(source) if source is not None else None
        key = idempotency_key if idempotency_key is not None else f"sdk-{uuid.uuid4().hex}"
        spec = rq.job_spec(
            text=text, source=src, upload_id=upload_id, modality_=modality, media_id=media_id, idempotency_key=key,
            filename=filename, mime_type=mime_type, metadata=metadata, speech=speech, video=video,
        )
        response = self._call(
            "SubmitJob",
            lambda t: self._stub.SubmitJob(rq.job_requests(spec, src, progress), metadata=self._metadata, timeout=t),
            idempotent=bool(key) and (src is None or src.rewindable),
            timeout=timeout,
        )
        return Job.from_pb(response)

    def get_job(self, job_id: str, *, timeout: float | None = _DEFAULT) -> Job:
        return Job.from_pb(self._unary("GetJob", pb.GetJobRequest(job_id=job_id), idempotent=True, timeout=timeout))

    def cancel_job(self, job_id: str, *, timeout: float | None = _DEFAULT) -> Job:
        """Cancel a queued or running job; FailedPrecondition once it is terminal."""
        return Job.from_pb(self._unary("CancelJob", pb.CancelJobRequest(job_id=job_id), idempotent=True, timeout=timeout))

    def list_jobs(
        self,
        *,
        states: Iterable[JobState | str] | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = _DEFAULT,
    ) -> JobPage:
        """One page of the caller's jobs (newest first); see `iter_jobs` for all of them."""
        request = rq.list_jobs_request(states, page_size, page_token)
        return JobPage.from_pb(self._unary("ListJobs", request, idempotent=True, timeout=timeout))

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
        attempt = 0
        started = time.monotonic()
        while True:
            remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            call = self._stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=self._metadata, timeout=remaining)
            attempt += 1
            try:
                for message in call:
                    attempt = 0
                    job = Job.from_pb(message)
                    yield job
                    if job.done:
                        return
                return
            except grpc.RpcError as rpc_error:
                error: UnderstandingError = from_rpc_error(rpc_error, "WatchJob")
                if not self.retry.should_retry(error, max(attempt, 1)):
                    raise error from rpc_error
            finally:
                call.cancel()
            time.sleep(self.retry.delay_s(error, max(attempt, 1)))

    def wait_job(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Block until the job is terminal and return it (see `watch_job`)."""
        last: Job | None = None
        for last in self.watch_job(job_id, timeout=timeout):
            pass
        assert last is not None
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
        request = rq.search_request(text=text, vector=vector, example=example, top_k=top_k, **filters)
        return SearchResults.from_pb(self._unary("Search", request, idempotent=True, timeout=timeout))

    def get_media(self, media_id: str, *, timeout: float | None = _DEFAULT) -> Media:
        return Media.from_pb(self._unary("GetMedia", pb.GetMediaRequest(media_id=media_id), idempotent=True, timeout=timeout))

    def delete_media(self, media_id: str, *, timeout: float | None = _DEFAULT) -> int:
        """Remove every point of the media; returns how many. Not retried: a repeat answers NOT_FOUND."""
        response = self._unary("DeleteMedia", pb.DeleteMediaRequest(media_id=media_id), idempotent=False, timeout=timeout)
        return int(response.points_deleted)
