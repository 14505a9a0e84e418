"""Live stream events and config: domain <-> `understanding.v1` live messages."""

from __future__ import annotations

from understanding.codec import analysis_pb, language_pb, model_pb, moderation_pb, segment_pb, tags_pb
from understanding.domain import (
    AudioFormat,
    DropReason,
    EndReason,
    LiveEvent,
    LiveFinal,
    LiveModeration,
    LivePartial,
    LiveSignals,
    LiveStatus,
    LiveSummary,
    SignalKind,
)
from understanding.v1 import live_pb2

__all__ = ["AUDIO_FORMAT_FROM_PROTO", "SIGNAL_FROM_PROTO", "live_event_pb", "status_pb"]

AUDIO_FORMAT_FROM_PROTO = {
    live_pb2.LIVE_AUDIO_FORMAT_PCM_S16LE_16K_MONO: AudioFormat.PCM_S16LE_16K_MONO,
    live_pb2.LIVE_AUDIO_FORMAT_OPUS: AudioFormat.OPUS,
}
SIGNAL_FROM_PROTO = {
    live_pb2.LIVE_SIGNAL_SAFETY: SignalKind.SAFETY,
    live_pb2.LIVE_SIGNAL_TOPICS: SignalKind.TOPICS,
    live_pb2.LIVE_SIGNAL_VISUAL: SignalKind.VISUAL,
}
_DROP_TO_PROTO = {
    DropReason.FRAME_BEHIND: live_pb2.LIVE_DROP_REASON_FRAME_BEHIND,
    DropReason.FRAME_RATE: live_pb2.LIVE_DROP_REASON_FRAME_RATE,
    DropReason.FRAME_UNDECODABLE: live_pb2.LIVE_DROP_REASON_FRAME_UNDECODABLE,
    DropReason.FRAME_OUT_OF_ORDER: live_pb2.LIVE_DROP_REASON_FRAME_OUT_OF_ORDER,
    DropReason.AUDIO_BEHIND: live_pb2.LIVE_DROP_REASON_AUDIO_BEHIND,
    DropReason.AUDIO_UNDECODABLE: live_pb2.LIVE_DROP_REASON_AUDIO_UNDECODABLE,
}
_END_TO_PROTO = {
    EndReason.CLIENT: live_pb2.LIVE_END_REASON_CLIENT,
    EndReason.IDLE_TIMEOUT: live_pb2.LIVE_END_REASON_IDLE_TIMEOUT,
    EndReason.MAX_DURATION: live_pb2.LIVE_END_REASON_MAX_DURATION,
    EndReason.SERVER_SHUTDOWN: live_pb2.LIVE_END_REASON_SERVER_SHUTDOWN,
    EndReason.CLIENT_GONE: live_pb2.LIVE_END_REASON_UNSPECIFIED,  # never sent: nobody is listening
}


def status_pb(status: LiveStatus) -> live_pb2.LiveStatus:
    drops = [
        live_pb2.LiveDrop(
            reason=_DROP_TO_PROTO[reason],
            frames=status.dropped_frames.get(reason, 0),
            audio_s=status.dropped_audio_s.get(reason, 0.0),
        )
        for reason in DropReason
        if reason in status.dropped_frames or reason in status.dropped_audio_s
    ]
    return live_pb2.LiveStatus(
        received_s=status.received_s,
        transcribed_s=status.transcribed_s,
        behind_s=status.behind_s,
        ahead_s=status.ahead_s,
        paced=status.paced,
        frames_received=status.frames_received,
        frames_analyzed=status.frames_analyzed,
        drops=drops,
    )


def _signals_pb(signals: LiveSignals) -> live_pb2.LiveSignals:
    return live_pb2.LiveSignals(
        source=signals.source,
        start_s=signals.start_s,
        end_s=signals.end_s,
        frame_s=signals.frame_s or 0.0,
        segment_index=signals.segment_index or 0,
        tags=tags_pb(signals.tags),
        text=signals.text,
        models=[model_pb(m) for m in signals.models],
    )


def live_event_pb(event: LiveEvent) -> live_pb2.LiveEvent | None:
    """The wire form of an event (None: an event the client does not get)."""
    if isinstance(event, LivePartial):
        return live_pb2.LiveEvent(
            partial=live_pb2.LivePartial(
                segment_index=event.segment_index,
                text=event.text,
                stable_text=event.stable_text,
                start_s=event.start_s,
                end_s=event.end_s,
            )
        )
    if isinstance(event, LiveFinal):
        return live_pb2.LiveEvent(
            final=live_pb2.LiveFinal(
                segment=segment_pb(event.segment), language=language_pb(event.language), speaker=event.speaker or ""
            )
        )
    if isinstance(event, LiveSignals):
        return live_pb2.LiveEvent(signals=_signals_pb(event))
    if isinstance(event, LiveStatus):
        return live_pb2.LiveEvent(status=status_pb(event))
    if isinstance(event, LiveSummary):
        return live_pb2.LiveEvent(
            summary=live_pb2.LiveSummary(
                reason=_END_TO_PROTO[event.reason],
                analysis=analysis_pb(event.analysis, with_embeddings=False),
                points=event.points,
                indexed=event.indexed,
                status=status_pb(event.status),
            )
        )
    if isinstance(event, LiveModeration):
        return live_pb2.LiveEvent(
            moderation=live_pb2.LiveModeration(
                source=event.source,
                start_s=event.start_s,
                end_s=event.end_s,
                segment_index=event.segment_index or 0,
                frame_s=event.frame_s or 0.0,
                moderation=moderation_pb(event.moderation),
            )
        )
    raise TypeError(f"not a live event: {type(event).__name__}")
