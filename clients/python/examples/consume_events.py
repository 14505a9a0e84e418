"""Print the service's Kafka events as they arrive.

    pip install 'understanding-client[kafka]'
    python consume_events.py --bootstrap 127.0.0.1:19092 --from-beginning

Reads the analysis and job status topics (or --topic, repeatable), decodes
each record by its `schema` header with `understanding_client.events`, and
prints one line per event (or one JSON object per line with --json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from understanding_client.events import (
    DEFAULT_TOPICS,
    AnalysisEvent,
    EventRecord,
    JobEvent,
    MediaDeletedEvent,
    consume,
)


def describe(record: EventRecord) -> str:
    event = record.event
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    if isinstance(event, AnalysisEvent):
        a = event.analysis
        tags = ", ".join(f"{t.label}:{t.score:.2f}" for t in a.tags) or "-"
        spoken = a.transcript.language if a.transcript else None
        language = a.language.code if a.language else (spoken.code if spoken else "-")
        text = a.transcript.text if a.transcript else (a.chunks[0].text if a.chunks else "")
        return (
            f"analysis  media={a.media_id} tenant={a.tenant} modality={a.modality.value} version={a.version} "
            f"language={language} chunks={len(a.chunks)} tags=[{tags}] text={text[:60]!r} ({where})"
        )
    if isinstance(event, MediaDeletedEvent):
        return f"deleted   media={event.media_id} tenant={event.tenant} points={event.points_deleted} ({where})"
    if isinstance(event, JobEvent):
        j = event.job
        error = f" error={j.error.code}: {j.error.message}" if j.error else ""
        return f"job       job={j.job_id} tenant={j.tenant} media={j.media_id} state={j.state.value}{error} ({where})"
    return f"{type(event).__name__} ({where})"  # pragma: no cover - every schema is handled above


def as_json(record: EventRecord) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        "schema": record.headers.get("schema", ""),
        "tenant": record.tenant,
        "trace_id": record.trace_id,
        "event": MessageToDict(raw, preserving_proto_field_name=True) if (raw := record.event.raw) is not None else {},
    }


async def run(args: argparse.Namespace) -> int:
    printed = 0

    async def loop() -> None:
        nonlocal printed
        events = consume(
            args.topic or DEFAULT_TOPICS,
            bootstrap_servers=args.bootstrap,
            group_id=args.group,
            from_beginning=args.from_beginning,
        )
        async with contextlib.aclosing(events):  # stops the consumer however the loop ends
            async for record in events:
                if args.key and record.key != args.key:
                    continue
                line = json.dumps(as_json(record), ensure_ascii=False) if args.json else describe(record)
                print(line, flush=True)
                printed += 1
                if args.max_events and printed >= args.max_events:
                    return

    try:
        await asyncio.wait_for(loop(), timeout=args.timeout_s)
    except asyncio.TimeoutError:
        print(f"stopped after {args.timeout_s:g} s with {printed} event(s)", file=sys.stderr)
        return 1 if args.max_events else 0
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print understanding events from Kafka as they arrive.")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092", help="Kafka bootstrap servers")
    parser.add_argument(
        "--topic", action="append", help=f"topic to read (repeatable; default: {', '.join(DEFAULT_TOPICS)})"
    )
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest retained event")
    parser.add_argument("--group", help="consumer group id (default: none, offsets are not committed)")
    parser.add_argument("--key", help="only events whose record key is this media id or job id")
    parser.add_argument("--max-events", type=int, default=0, help="exit after this many events (0: run forever)")
    parser.add_argument("--timeout-s", type=float, default=None, help="exit after this many seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
