"""asyncio client for `understanding.v1.Understanding` (grpc.aio), same surface as Client."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import grpc
import grpc.aio

from understanding.v1 import understanding_pb2 as pb, understanding_pb2_grpc
from understanding_client import _requests as rq
from understanding_client.client import _DEFAULT, _Base
from understanding_client.errors import UnderstandingError, from_rpc_error
from understanding_client.types import Analysis, Job, JobPage, JobState, Media, Modality, SearchResults, Upload
from understanding_client.upload import MediaSource, ProgressCallback, UploadSource

T = TypeVar("T")
_END = object()


async def _threaded(requests: Iterator[Any]) -> AsyncIterator[Any]:
    """Drive a blocking request iterator (file reads) in a thread, one item at a time."""
    while True:
        item = await asyncio.to_thread(next, requests, _END)
        if item is _END:
            return
        yield item


class AsyncClient(_Base):
    """Non-blocking client: `async with AsyncClient(...) as client: await client.search(...)`.

    Same arguments, methods, retries and errors as `Client`; methods are
    coroutines, `watch_job` and `iter_jobs` are async iterators. Create it
    inside the event loop that uses it.
    """

    def __init__(self, target: str | None = None, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        cfg = self.config
        if cfg.secure:
            self._channel = grpc.aio.secure_channel(cfg.target, cfg.credentials(), options=cfg.options())
        else:
            self._channel = grpc.aio.insecure_channel(cfg.target, options=cfg.options())
        self._stub = understanding_pb2_grpc.UnderstandingStub(self._channel)
        self._closed = False

    async def close(self) -> None:
        """Close the channel (safe to call twice)."""
        if not self._closed:
            self._closed = True
            await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ plumbing
    async def _call(
        self, method: str, send: Callable[[float | None], Awaitable[T]], *, idempotent: bool, timeout: float | None
    ) -> T:
        deadline = self._timeout(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await send(deadline)
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error, method)
                if not (idempotent and self.retry.should_retry(error, attempt)):
                    raise error from rpc_error
            await asyncio.sleep(self.retry.delay_s(error, attempt))

    async def _unary(self, method: str, request: Any, *, idempotent: bool, timeout: float | None) -> Any:
        fn = getattr(self._stub, method)
        return await self._call(
            method, lambda t: fn(request, metadata=self._metadata, timeout=t), idempotent=idempotent, timeout=timeout
        )

    async def _upload(
        self, method: str, header: pb.UploadHeader, source: UploadSource, progress: ProgressCallback | None,
        timeout: float | None,
    ) -> Any:
        fn = getattr(self._stub, method)
        return await self._call(
            method,
            lambda t: fn(_threaded(rq.upload_requests(header, source, progress)), metadata=self._metadata, timeout=t),
            idempotent=source.rewindable,
            timeout=timeout,
        )

    # ------------------------------------------------------------ text
    async def analyze_text(
        self,
        texts: rq.TextLike | Iterable[rq.TextLike],
        *,
        media_id: str = "",
        metadata: Mapping[str, str] | None = None,
        return_embeddings: bool = False,
        dry_run: bool = False,
        timeout: float | None = _DEFAULT,
    ) -> list[Analysis]:
        """See `Client.analyze_text`."""
        request = rq.analyze_text_request(
            texts, media_id=media_id, metadata=metadata, return_embeddings=return_embeddings, dry_run=dry_run
        )
        response = await self._unary("AnalyzeText", request, idempotent=True, timeout=timeout)
        return [Analysis.from_pb(a) for a in response.results]

    # ------------------------------------------------------------ uploads
    async def transcribe(
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
        """See `Client.transcribe`."""
        src = self._source(source)
        speech = rq.SpeechOptions(language, translate, word_timestamps, vad, initial_prompt, hotwords, beam_size)
        header = rq.upload_header(
            src, media_id=media_id, filename=filename, mime_type=mime_type, metadata=metadata, speech=speech,
            return_embeddings=return_embeddings, dry_run=dry_run,
        )
        return Analysis.from_pb((await self._upload("Transcribe", header, src, progress, timeout)).analysis)

    async def analyze_video(
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
        """See `Client.analyze_video`."""
        src = self._source(source)
        header = rq.upload_header(
            src, media_id=media_id, filename=filename, mime_type=mime_type, metadata=metadata, speech=speech,
            video=rq.VideoOptions(sample_fps, return_keyframes, skip_audio),
            return_embeddings=return_embeddings, dry_run=dry_run,
        )
        return Analysis.from_pb((await self._upload("AnalyzeVideo", header, src, progress, timeout)).analysis)

    async def upload_media(
        self,
        source: MediaSource,
        *,
        filename: str | None = None,
        mime_type: str = "",
        media_id: str = "",
        progress: ProgressCallback | None = None,
        timeout: float | None = _DEFAULT,
    ) -> Upload:
        """See `Client.upload_media`."""
        src = self._source(source)
        header = rq.upload_header(src, media_id=media_id, filename=filename, mime_type=mime_type)
        return Upload.from_pb(await self._upload("UploadMedia", header, src, progress, timeout))

    # ------------------------------------------------------------ jobs
    async def submit_job(
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
        """See `Client.submit_job`."""
        src = self._source(source) if source is not None else None
        key = idempotency_key if idempotency_key is not None else f"sdk-{uuid.uuid4().hex}"
        spec = rq.job_spec(
            text=text, source=src, upload_id=upload_id, modality_=modality, media_id=media_id, idempotency_key=key,
            filename=filename, mime_type=mime_type, metadata=metadata, speech=speech, video=video,
        )
        response = await self._call(
            "SubmitJob",
            lambda t: self._stub.SubmitJob(
                _threaded(rq.job_requests(spec, src, progress)), metadata=self._metadata, timeout=t
            ),
            idempotent=bool(key) and (src is None or src.rewindable),
            timeout=timeout,
        )
        return Job.from_pb(response)

    async def get_job(self, job_id: str, *, timeout: float | None = _DEFAULT) -> Job:
        return Job.from_pb(await self._unary("GetJob", pb.GetJobRequest(job_id=job_id), idempotent=True, timeout=timeout))

    async def cancel_job(self, job_id: str, *, timeout: float | None = _DEFAULT) -> Job:
        request = pb.CancelJobRequest(job_id=job_id)
        return Job.from_pb(await self._unary("CancelJob", request, idempotent=True, timeout=timeout))

    async def list_jobs(
        self,
        *,
        states: Iterable[JobState | str] | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = _DEFAULT,
    ) -> JobPage:
        request = rq.list_jobs_request(states, page_size, page_token)
        return JobPage.from_pb(await self._unary("ListJobs", request, idempotent=True, timeout=timeout))

    async def iter_jobs(
        self, *, states: Iterable[JobState | str] | None = None, page_size: int = 0, timeout: float | None = _DEFAULT
    ) -> AsyncIterator[Job]:
        states = list(states or ())
        token = ""
        while True:
            page = await self.list_jobs(states=states, page_size=page_size, page_token=token, timeout=timeout)
            for job in page.jobs:
                yield job
            token = page.next_page_token
            if not token:
                return

    async def watch_job(self, job_id: str, *, timeout: float | None = None) -> AsyncIterator[Job]:
        """See `Client.watch_job`."""
        attempt = 0
        started = time.monotonic()
        while True:
            remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            call = self._stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=self._metadata, timeout=remaining)
            attempt += 1
            try:
                async for message in call:
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
            await asyncio.sleep(self.retry.delay_s(error, max(attempt, 1)))

    async def wait_job(self, job_id: str, *, timeout: float | None = None) -> Job:
        last: Job | None = None
        async for last in self.watch_job(job_id, timeout=timeout):
            pass
        assert last is not None
        return last

    # ------------------------------------------------------------ search and media
    async def search(
        self,
        text: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        example: str | tuple[str, int] | None = None,
        top_k: int = 10,
        timeout: float | None = _DEFAULT,
        **filters: Any,
    ) -> SearchResults:
        """See `Client.search`."""
        request = rq.search_request(text=text, vector=vector, example=example, top_k=top_k, **filters)
        return SearchResults.from_pb(await self._unary("Search", request, idempotent=True, timeout=timeout))

    async def get_media(self, media_id: str, *, timeout: float | None = _DEFAULT) -> Media:
        request = pb.GetMediaRequest(media_id=media_id)
        return Media.from_pb(await self._unary("GetMedia", request, idempotent=True, timeout=timeout))

    async def delete_media(self, media_id: str, *, timeout: float | None = _DEFAULT) -> int:
        request = pb.DeleteMediaRequest(media_id=media_id)
        response = await self._unary("DeleteMedia", request, idempotent=False, timeout=timeout)
        return int(response.points_deleted)
