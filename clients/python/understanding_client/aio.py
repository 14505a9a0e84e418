"""asyncio clients (grpc.aio): `AsyncClient` and `AsyncAdminClient`, the same surface as client.py.

The same thin shell as client.py over `_calls`, with `await asyncio.sleep`
between retries, `async for` over streams, and upload files read in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio

from understanding_client import _calls
from understanding_client import _requests as rq
from understanding_client import live as _live
from understanding_client._calls import Attempts, Call, Deadline, StreamCall
from understanding_client._channel import _DEFAULT, _Base
from understanding_client.client import _ADMIN_STUB, _UNDERSTANDING_STUB
from understanding_client.errors import from_rpc_error
from understanding_client.live import AudioChunk, Frame, LiveEvent
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
_END = object()


async def _threaded(requests: Iterator[Any]) -> AsyncIterator[Any]:
    """Drive a blocking request iterator (file reads) in a thread, one item at a time."""
    while True:
        item = await asyncio.to_thread(next, requests, _END)
        if item is _END:
            return
        yield item


async def _send_live(call: Any, requests: AsyncIterator[Any]) -> None:
    """Write the config, wait until the server admits the stream, then write the rest.

    The server answers the config at once: the `x-live-admitted` header, or
    the end of the call (RESOURCE_EXHAUSTED with retry-after when it runs its
    limit of streams). Media is written only after the header: a grpc.aio
    write that fails because the server has already ended the call replaces
    the server's status with INTERNAL "Internal error from Core"
    (grpc/grpc#36066), so a refused client would not see its retry-after.
    A write that fails because the call ended is not an error here: the
    reader reports the call's status. A source that fails cancels the call.
    """
    try:
        admitted = False
        async for request in requests:
            if call.done():
                return
            await call.write(request)
            if not admitted:
                headers = await call.initial_metadata()
                if not any(key == "x-live-admitted" for key, _ in headers or ()):
                    return  # refused: the call ends with the server's status
                admitted = True
        if not call.done():
            await call.done_writing()
    except (grpc.RpcError, asyncio.InvalidStateError):
        return
    except Exception:
        call.cancel()
        raise


class _Async(_Base):
    """The asyncio shell: one grpc.aio channel, calls awaited with retries, streams iterated."""

    _stub_class: Any = None

    def __init__(self, target: str | None = None, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        cfg = self.config
        if cfg.secure:
            self._channel = grpc.aio.secure_channel(cfg.target, cfg.credentials(), options=cfg.options())
        else:
            self._channel = grpc.aio.insecure_channel(cfg.target, options=cfg.options())
        self._stub: Any = self._stub_class(self._channel)
        self._closed = False

    async def close(self) -> None:
        """Close the channel (safe to call twice)."""
        if not self._closed:
            self._closed = True
            await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_ready(self, timeout_s: float) -> bool:
        """Whether the server accepts a connection within `timeout_s` seconds."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    async def _run(self, call: Call[R], timeout: float | None) -> R:
        send = getattr(self._stub, call.method)
        deadline = self._timeout(timeout)
        attempts = Attempts(call.method, self.retry, retry=call.idempotent)
        while True:
            attempts.started()
            messages = _threaded(call.messages()) if call.streaming else call.messages()
            try:
                return call.convert(await send(messages, metadata=self._metadata, timeout=deadline))
            except grpc.RpcError as rpc_error:
                delay = attempts.failed(rpc_error)
            await asyncio.sleep(delay)

    async def _stream(self, call: StreamCall[R], timeout: float | None) -> AsyncIterator[R]:
        open_stream = getattr(self._stub, call.method)
        attempts = Attempts(call.method, self.retry, retry=call.resumable)
        deadline = Deadline(timeout)
        while True:
            stream = open_stream(call.request, metadata=self._metadata, timeout=deadline.remaining())
            attempts.started()
            try:
                async for message in stream:
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
            await asyncio.sleep(delay)


class AsyncClient(_Async):
    """Non-blocking client: `async with AsyncClient(...) as client: await client.search(...)`.

    Same arguments, methods, retries and errors as `Client`; methods are
    coroutines, `watch_job` and `iter_jobs` are async iterators. Create it
    inside the event loop that uses it.
    """

    _stub_class = _UNDERSTANDING_STUB

    # ------------------------------------------------------------ text
    async def analyze_text(
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
        """See `Client.analyze_text`."""
        call = _calls.analyze_text(
            texts,
            media_id=media_id,
            metadata=metadata,
            return_embeddings=return_embeddings,
            dry_run=dry_run,
            moderation=moderation,
        )
        return await self._run(call, timeout)

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
        """See `Client.transcribe`."""
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
        return await self._run(call, timeout)

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
        moderation: ModerationOptions | None = None,
        timeout: float | None = _DEFAULT,
    ) -> Analysis:
        """See `Client.analyze_video`."""
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
        return await self._run(call, timeout)

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
        call = _calls.upload_media(
            self._source(source), filename=filename, mime_type=mime_type, media_id=media_id, progress=progress
        )
        return await self._run(call, timeout)

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
        moderation: ModerationOptions | None = None,
        timeout: float | None = _DEFAULT,
    ) -> Job:
        """See `Client.submit_job`."""
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
        return await self._run(call, timeout)

    async def get_job(self, job_id: str, *, timeout: float | None = _DEFAULT) -> Job:
        """See `Client.get_job`."""
        return await self._run(_calls.get_job(job_id), timeout)

    async def cancel_job(self, job_id: str, *, timeout: float | None = _DEFAULT) -> Job:
        """See `Client.cancel_job`."""
        return await self._run(_calls.cancel_job(job_id), timeout)

    async def list_jobs(
        self,
        *,
        states: Iterable[JobState | str] | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = _DEFAULT,
    ) -> JobPage:
        """See `Client.list_jobs`."""
        return await self._run(_calls.list_jobs(states, page_size, page_token), timeout)

    async def iter_jobs(
        self, *, states: Iterable[JobState | str] | None = None, page_size: int = 0, timeout: float | None = _DEFAULT
    ) -> AsyncIterator[Job]:
        """See `Client.iter_jobs`."""
        states = list(states or ())
        token = ""
        while True:
            page = await self.list_jobs(states=states, page_size=page_size, page_token=token, timeout=timeout)
            for job in page.jobs:
                yield job
            token = page.next_page_token
            if not token:
                return

    def watch_job(self, job_id: str, *, timeout: float | None = None) -> AsyncIterator[Job]:
        """See `Client.watch_job`."""
        return self._stream(_calls.watch_job(job_id), timeout)

    async def wait_job(self, job_id: str, *, timeout: float | None = None) -> Job:
        """See `Client.wait_job`."""
        last: Job | None = None
        async for job in self.watch_job(job_id, timeout=timeout):
            last = job
        assert last is not None, "WatchJob ended without a single update"
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
        call = _calls.search(text, vector=vector, example=example, top_k=top_k, filters=filters)
        return await self._run(call, timeout)

    async def get_media(self, media_id: str, *, timeout: float | None = _DEFAULT) -> Media:
        """See `Client.get_media`."""
        return await self._run(_calls.get_media(media_id), timeout)

    async def delete_media(self, media_id: str, *, timeout: float | None = _DEFAULT) -> int:
        """See `Client.delete_media`."""
        return await self._run(_calls.delete_media(media_id), timeout)

    # ------------------------------------------------------------ live
    async def live(
        self,
        source: AsyncIterable[AudioChunk | Frame],
        *,
        media_id: str,
        language: str = "",
        opus: bool = False,
        signals: Sequence[str] = (),
        policy: str = "",
        metadata: Mapping[str, str] | None = None,
        partials: bool = True,
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[LiveEvent]:
        """Stream `source` (audio chunks and frames, e.g. a `FileSource`) to AnalyzeLive and yield the
        events as they arrive, the `LiveSummary` last. Never retried: a live stream cannot be replayed.
        Leaving the loop early cancels the stream (the server still indexes what it analysed)."""
        config = _live.config_request(
            media_id=media_id,
            language=language,
            opus=opus,
            signals=signals,
            policy=policy,
            metadata=metadata,
            partials=partials,
            dry_run=dry_run,
        )
        call = self._stub.AnalyzeLive(metadata=self._metadata, timeout=timeout)
        writer = asyncio.create_task(_send_live(call, _live.live_requests(config, source)), name="live-writer")
        try:
            async for message in call:
                event = _live.live_event(message)
                if event is not None:
                    yield event
                if isinstance(event, _live.LiveSummary):
                    return  # the last event: whatever the writer still does cannot matter now
        except grpc.RpcError as rpc_error:
            raise from_rpc_error(rpc_error, "AnalyzeLive") from rpc_error
        except asyncio.CancelledError:
            failure = writer.exception() if writer.done() and not writer.cancelled() else None
            if failure is not None:
                raise failure from None  # the source failed: the writer cancelled the call
            raise
        finally:
            call.cancel()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)


class AsyncAdminClient(_Async):
    """See `AdminClient`: the same calls as coroutines and async iterators."""

    _admin = True
    _stub_class = _ADMIN_STUB

    def reindex(
        self, model_path: str, *, batch_size: int = 0, no_switch: bool = False, timeout: float | None = None
    ) -> AsyncIterator[ReindexProgress]:
        """See `AdminClient.reindex`."""
        return self._stream(_calls.reindex(model_path, batch_size=batch_size, no_switch=no_switch), timeout)

    async def get_reindex(self, *, timeout: float | None = _DEFAULT) -> ReindexProgress:
        """See `AdminClient.get_reindex`."""
        return await self._run(_calls.get_reindex(), timeout)
