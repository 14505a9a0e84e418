"""AnalyzeLive at the edge: validate and convert messages, apply the limits, move events to the client.

Three things run per stream: the reader (requests -> session, paced to real
time, with the idle timeout and the maximum duration), the writer (session
events -> `context.write`, each write bounded by the stall timeout) and the
session itself (core/live.py, pipelines/live). The session decides what to
analyse and what to drop; this module only decides when the stream ends:

- `end` from the client, the idle timeout, the maximum duration, SIGTERM:
  the session finishes, its analysis is indexed and the summary is the last
  event; the RPC ends OK.
- a bad message: INVALID_ARGUMENT naming the field; what was analysed is
  still indexed (in the background).
- the client cancels or disconnects (the RPC is cancelled), or stops reading
  for the stall timeout (RESOURCE_EXHAUSTED): the stream is finished and
  indexed in the background, nobody gets a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from understanding.api import validation
from understanding.api.server import Call
from understanding.codec.live import AUDIO_FORMAT_FROM_PROTO, SIGNAL_FROM_PROTO, live_event_pb
from understanding.core.live import LiveLimits, LiveStreams
from understanding.domain import EndReason, InvalidInput, LimitExceeded, LiveConfig, SignalKind, language_code
from understanding.domain.options import SPEECH_LANGUAGES
from understanding.pipelines.live import LiveSession
from understanding.v1 import live_pb2

__all__ = ["ADMITTED", "analyze_live", "live_config"]

log = logging.getLogger(__name__)

ADMITTED = (("x-live-admitted", "1"),)  # initial metadata of an admitted stream


class _Stalled(Exception):
    """The client did not take an event for the stall timeout (or let too many pile up)."""


def live_config(msg: live_pb2.LiveConfig) -> LiveConfig:
    """A `LiveConfig` message as the domain's, every field checked and named when wrong."""
    media_id = validation.media_id(msg.media_id, "config.media_id")
    if msg.audio_format not in AUDIO_FORMAT_FROM_PROTO:
        raise InvalidInput(
            "must be LIVE_AUDIO_FORMAT_PCM_S16LE_16K_MONO or LIVE_AUDIO_FORMAT_OPUS", field="config.audio_format"
        )
    language = language_code(msg.language)
    if language is not None and language not in SPEECH_LANGUAGES:
        raise InvalidInput(f"unsupported language code {language!r}", field="config.language")
    signals = set()
    for i, value in enumerate(msg.signals):
        if value not in SIGNAL_FROM_PROTO:
            raise InvalidInput(f"unknown signal {value}", field=f"config.signals[{i}]")
        signals.add(SIGNAL_FROM_PROTO[value])
    policy = msg.policy.strip() or None
    if policy is not None and (len(policy) > 128 or not policy.isprintable()):
        raise InvalidInput("must be at most 128 printable characters", field="config.policy")
    return LiveConfig(
        media_id=media_id,
        audio_format=AUDIO_FORMAT_FROM_PROTO[msg.audio_format],
        language=language,
        signals=frozenset(signals) if signals else frozenset(SignalKind),
        policy=policy,
        metadata=validation.metadata(msg.metadata, "config.metadata"),
        partials=not msg.disable_partials,
        index=not msg.dry_run,
    )


async def analyze_live(live: LiveStreams, requests: AsyncIterator[Any], call: Call) -> None:
    limits = live.limits
    first = await _next(requests, limits.idle_timeout_s)
    if first is None:
        raise InvalidInput("the stream must start with `config`", field="config")
    kind = first.WhichOneof("payload")
    if kind != "config":
        raise InvalidInput(f"the first message must be `config`, not `{kind}`", field="config")
    session = live.open(call.tenant, live_config(first.config), trace_id=call.trace_id)
    live.rpc_started()
    try:
        await _serve(live, session, requests, call)
    finally:
        live.rpc_done()


async def _serve(live: LiveStreams, session: LiveSession, requests: AsyncIterator[Any], call: Call) -> None:
    limits = live.limits
    # Admitted: say so at once (a refused stream ends with RESOURCE_EXHAUSTED and no header). Clients
    # wait for it before they send media: a grpc.aio client whose write fails because the server has
    # already ended the call reports INTERNAL instead of the server's status (grpc/grpc#36066).
    try:
        await call.grpc.send_initial_metadata(ADMITTED)
    except asyncio.CancelledError:  # gone before it sent anything: nothing to index
        await live.abort(session)
        raise
    reader = asyncio.create_task(_read(session, requests, live), name="live-reader")
    writer = asyncio.create_task(_write(session, call, limits.stall_timeout_s), name="live-writer")
    handed_off = False
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done and reader.exception() is None:
            summary = await live.finish(session, trace_id=call.trace_id)
            handed_off = True
            session.events.put(summary)
            session.events.close()
            await writer
            return
        # The reader failed (a bad message), or the writer ended first (the client stopped
        # reading, or the session failed): stop reading, let the writer send what is queued
        # (cancelling a write in flight would break the call's status), index what was analysed.
        reader.cancel()
        session.events.close()
        await asyncio.wait({writer}, timeout=min(limits.stall_timeout_s, 5.0))
        writer.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
        error = session.error
        if error is not None:
            handed_off = True
            await live.abort(session)
            raise error
        handed_off = True
        if session.received_anything:
            live.finish_in_background(session, EndReason.CLIENT_GONE, trace_id=call.trace_id)
        else:  # refused before any media: nothing to index, free the slot now
            await live.abort(session)
        failure = reader.exception() if reader.done() and not reader.cancelled() else None
        if failure is not None:
            raise failure
        if writer.done() and not writer.cancelled() and isinstance(writer.exception(), _Stalled):
            raise LimitExceeded(
                f"the client read no event for {limits.stall_timeout_s:g} s; the stream was ended and what was "
                "analysed is indexed",
                field="events",
            )
        raise LimitExceeded("the client stopped reading events; the stream was ended and indexed", field="events")
    except asyncio.CancelledError:  # the client cancelled or went away
        for task in (reader, writer):
            task.cancel()
        if not handed_off:
            live.finish_in_background(session, EndReason.CLIENT_GONE, trace_id=call.trace_id)
        raise


async def _next(requests: AsyncIterator[Any], timeout_s: float) -> Any:
    """The next request; None when the client half-closed. TimeoutError after `timeout_s`."""
    try:
        return await asyncio.wait_for(anext(requests), timeout_s)
    except StopAsyncIteration:
        return None


async def _read(session: LiveSession, requests: AsyncIterator[Any], live: LiveStreams) -> None:
    """Feed the session until `end`, a half-close, the idle timeout, the maximum duration or shutdown."""
    limits = live.limits
    ended = asyncio.ensure_future(session.ended_event.wait())
    try:
        while session.ended is None:
            wait = session.pace_wait_s()
            if wait > 0:  # the client is ahead of real time: let flow control slow it down
                session.paced = True
                await asyncio.wait({ended}, timeout=min(wait, 0.5))
                continue
            session.paced = False
            waiter = asyncio.ensure_future(anext(requests))
            await asyncio.wait({waiter, ended}, timeout=limits.idle_timeout_s, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():  # idle, or the session ended meanwhile (shutdown)
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await waiter
                session.end(EndReason.IDLE_TIMEOUT)  # no-op when it already ended
                return
            try:
                request = waiter.result()
            except StopAsyncIteration:  # half-closed without `end`: the same
                session.end(EndReason.CLIENT)
                return
            await _apply(session, request, limits)
            if session.duration_s >= limits.max_duration_s:
                session.end(EndReason.MAX_DURATION)
    finally:
        ended.cancel()


async def _apply(session: LiveSession, request: Any, limits: LiveLimits) -> None:
    kind = request.WhichOneof("payload")
    if kind == "audio":
        if len(request.audio.data) > limits.max_audio_bytes:
            raise LimitExceeded(f"at most {limits.max_audio_bytes} bytes per audio chunk", field="audio.data")
        await session.audio(request.audio.data, request.audio.capture_time_us)
    elif kind == "frame":
        if len(request.frame.jpeg) > limits.max_frame_bytes:
            raise LimitExceeded(f"at most {limits.max_frame_bytes} bytes per frame", field="frame.jpeg")
        session.frame(request.frame.jpeg, request.frame.capture_time_us)
    elif kind == "end":
        session.end(EndReason.CLIENT)
    elif kind == "config":
        raise InvalidInput("the stream already has its config: send it once, first", field="config")
    else:
        raise InvalidInput("one of config, audio, frame or end is required", field="payload")


async def _write(session: LiveSession, call: Call, stall_timeout_s: float) -> None:
    """Send events in order; a write that waits `stall_timeout_s` means the client stopped reading."""
    while True:
        event = await session.events.get()
        if event is None:
            return
        if session.events.overflowed:
            raise _Stalled()
        message = live_event_pb(event)
        if message is None:
            continue
        try:
            await asyncio.wait_for(call.grpc.write(message), stall_timeout_s)
        except TimeoutError:
            raise _Stalled() from None
