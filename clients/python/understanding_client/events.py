"""Decode the service's Kafka events: `decode_event(record.value, record.headers)`.

Every event is a protobuf message from `protos/understanding/v1/events.proto`;
the record's `schema` header names its full message name:

    understanding.v1.AnalysisEvent      analysis topic, key = media id
    understanding.v1.MediaDeletedEvent  analysis topic, key = media id
    understanding.v1.JobEvent           job status topic, key = job id
    understanding.v1.ModerationEvent    moderation topic, key = media id (moderation.proto)

Other headers: `content-type` (application/x-protobuf), `tenant`, `trace-id`.
Deduplicate on `event_id`; order re-analyses of a media by `analysis.version`.

`consume(...)` (needs the `kafka` extra: aiokafka) reads topics and yields
decoded events with their record's coordinates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from understanding.v1 import events_pb2, moderation_pb2

from understanding_client.types import Analysis, Job, Modality, Moderation, timestamp

CONTENT_TYPE = "application/x-protobuf"
ANALYSIS_EVENT = "understanding.v1.AnalysisEvent"
MEDIA_DELETED_EVENT = "understanding.v1.MediaDeletedEvent"
JOB_EVENT = "understanding.v1.JobEvent"
MODERATION_EVENT = "understanding.v1.ModerationEvent"
DEFAULT_TOPICS = ("understanding.analysis.v1", "understanding.jobs.status.v1")
MODERATION_TOPIC = "understanding.moderation.v1"

Headers = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None


class UnknownEventSchema(ValueError):
    """The record's `schema` header names no event this SDK knows (or is missing)."""


@dataclass(frozen=True, slots=True)
class AnalysisEvent:
    event_id: str
    schema_version: int
    produced_at: dt.datetime | None
    analysis: Analysis
    # Qdrant collection the vectors were written to.
    collection: str
    raw: events_pb2.AnalysisEvent | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: events_pb2.AnalysisEvent) -> AnalysisEvent:
        return cls(
            m.event_id,
            m.schema_version,
            timestamp(m.produced_at, m.HasField("produced_at")),
            Analysis.from_pb(m.analysis),
            m.collection,
            raw=m,
        )


@dataclass(frozen=True, slots=True)
class MediaDeletedEvent:
    event_id: str
    schema_version: int
    produced_at: dt.datetime | None
    tenant: str
    media_id: str
    points_deleted: int
    raw: events_pb2.MediaDeletedEvent | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: events_pb2.MediaDeletedEvent) -> MediaDeletedEvent:
        return cls(
            m.event_id,
            m.schema_version,
            timestamp(m.produced_at, m.HasField("produced_at")),
            m.tenant,
            m.media_id,
            m.points_deleted,
            raw=m,
        )


@dataclass(frozen=True, slots=True)
class JobEvent:
    event_id: str
    schema_version: int
    produced_at: dt.datetime | None
    job: Job
    raw: events_pb2.JobEvent | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: events_pb2.JobEvent) -> JobEvent:
        return cls(
            m.event_id, m.schema_version, timestamp(m.produced_at, m.HasField("produced_at")), Job.from_pb(m.job), raw=m
        )


@dataclass(frozen=True, slots=True)
class ModerationEvent:
    """A moderation verdict: a media's final one, or (`partial`) a live window's."""

    event_id: str
    schema_version: int
    produced_at: dt.datetime | None
    tenant: str
    media_id: str
    modality: Modality
    version: int
    moderation: Moderation
    partial: bool
    window: tuple[float, float] | None
    metadata: Mapping[str, str]
    raw: moderation_pb2.ModerationEvent | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_pb(cls, m: moderation_pb2.ModerationEvent) -> ModerationEvent:
        return cls(
            m.event_id,
            m.schema_version,
            timestamp(m.produced_at, m.HasField("produced_at")),
            m.tenant,
            m.media_id,
            Modality.from_pb(m.modality),
            m.version,
            Moderation.from_pb(m.moderation),
            m.partial,
            (m.window_start_s, m.window_end_s) if m.partial else None,
            dict(m.metadata),
            raw=m,
        )


Event = AnalysisEvent | MediaDeletedEvent | JobEvent | ModerationEvent

_DECODERS: dict[str, tuple[Any, Any]] = {
    ANALYSIS_EVENT: (events_pb2.AnalysisEvent, AnalysisEvent),
    MEDIA_DELETED_EVENT: (events_pb2.MediaDeletedEvent, MediaDeletedEvent),
    JOB_EVENT: (events_pb2.JobEvent, JobEvent),
    MODERATION_EVENT: (moderation_pb2.ModerationEvent, ModerationEvent),
}


def header_map(headers: Headers) -> dict[str, str]:
    """Kafka headers (aiokafka/confluent list of pairs, or a mapping) as {name: str}."""
    if headers is None:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for key, value in pairs:
        if isinstance(value, (bytes, bytearray)):
            out[key] = bytes(value).decode("utf-8", errors="replace")
        else:
            out[key] = "" if value is None else str(value)
    return out


def decode_event(value: bytes, headers: Headers) -> Event:
    """The typed event in a record, chosen by its `schema` header."""
    schema = header_map(headers).get("schema", "")
    try:
        message_cls, event_cls = _DECODERS[schema]
    except KeyError:
        known = ", ".join(sorted(_DECODERS))
        raise UnknownEventSchema(f"schema header {schema!r} is not one of {known}") from None
    return event_cls.from_pb(message_cls.FromString(value))  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A decoded event with where it came from."""

    topic: str
    partition: int
    offset: int
    key: str
    timestamp_ms: int
    headers: Mapping[str, str]
    event: Event = field(repr=True)

    @property
    def tenant(self) -> str:
        return self.headers.get("tenant", "")

    @property
    def trace_id(self) -> str:
        return self.headers.get("trace-id", "")


async def consume(
    topics: Iterable[str] = DEFAULT_TOPICS,
    *,
    bootstrap_servers: str = "127.0.0.1:9092",
    group_id: str | None = None,
    from_beginning: bool = False,
    skip_unknown: bool = True,
    **consumer_options: Any,
) -> AsyncGenerator[EventRecord, None]:
    """Read `topics` with aiokafka and yield every event decoded.

    `group_id=None` reads without committing offsets (a tail for tools and
    tests); with a group id offsets are auto-committed as usual. Records
    without a known schema are skipped unless `skip_unknown=False`.
    Extra keyword arguments go to `aiokafka.AIOKafkaConsumer`.
    """
    try:
        from aiokafka import AIOKafkaConsumer
    except ImportError:
        raise ImportError("consume() needs aiokafka: pip install 'understanding-client[kafka]'") from None

    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "group_id": group_id,
        "auto_offset_reset": "earliest" if from_beginning else "latest",
        "enable_auto_commit": group_id is not None,
    }
    options.update(consumer_options)
    consumer = AIOKafkaConsumer(*topics, **options)
    await consumer.start()
    try:
        async for record in consumer:
            try:
                event = decode_event(record.value, record.headers)
            except UnknownEventSchema:
                if skip_unknown:
                    continue
                raise
            yield EventRecord(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=(record.key or b"").decode("utf-8", errors="replace"),
                timestamp_ms=record.timestamp,
                headers=header_map(record.headers),
                event=event,
            )
    finally:
        await consumer.stop()
