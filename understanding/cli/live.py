"""`understanding live FILE`: play a media file to a running server as a live source, print events as they come.

The file plays at real time (`--speed` to change): its audio as 16 kHz PCM in
100 ms chunks and, for a video, one JPEG frame a second (`--fps`). Partials
overwrite one status line; finals, signals and drops print as lines; the
summary ends it. `--json` prints one JSON object per event instead.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import json
import pathlib
from typing import TYPE_CHECKING, Any

from understanding.cli import connect, output

if TYPE_CHECKING:
    from understanding.cli import Subcommands


def register(sub: Subcommands) -> None:
    live = sub.add_parser("live", help="play a media file as a live source and print the events as they arrive")
    live.add_argument("file", type=pathlib.Path)
    live.add_argument("--media-id", default="", help="id of the stream (default: live-<file name>)")
    live.add_argument("--language", default="", help="ISO 639-1 code; default: detect from the first utterance")
    live.add_argument("--speed", type=float, default=1.0, help="playback speed (1 = real time)")
    live.add_argument("--fps", type=float, default=1.0, help="video frames sent per second (0: audio only)")
    live.add_argument(
        "--signal", action="append", choices=("safety", "topics", "visual"), help="only these signals (repeatable)"
    )
    live.add_argument("--policy", default="", help="moderation policy (default: the tenant's)")
    live.add_argument("--no-partials", action="store_true", help="finals, signals and status only")
    live.add_argument("--dry-run", action="store_true", help="do not index the stream")
    connect.add_client_arguments(live)
    live.set_defaults(fn=run, timeout=None)


def _plain(value: Any) -> Any:
    """An SDK result as JSON-ready values (the protobuf `.raw` fields left out)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "raw"}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def run(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        return output.fail(f"{args.file}: no such file")
    try:
        return asyncio.run(_play(args))
    except KeyboardInterrupt:
        return 130


async def _play(args: argparse.Namespace) -> int:
    from understanding_client import (
        NO_RETRY,
        AsyncClient,
        FileSource,
        LiveFinal,
        LiveModeration,
        LivePartial,
        LiveSignals,
        LiveStatus,
        LiveSummary,
        UnderstandingError,
    )

    media_id = args.media_id or "live-" + "".join(c if c.isalnum() or c in "._-" else "-" for c in args.file.stem)[:100]
    source = FileSource(args.file, speed=args.speed, fps=args.fps)
    console = output.console()
    last_drops: dict[str, float] = {}
    async with AsyncClient(
        args.server or None, api_key=args.api_key or None, tenant=args.tenant or None, retry=NO_RETRY
    ) as client:
        try:
            async for event in client.live(
                source,
                media_id=media_id,
                language=args.language,
                signals=args.signal or (),
                policy=args.policy,
                partials=not args.no_partials,
                dry_run=args.dry_run,
                timeout=args.timeout,
            ):
                if args.json:
                    print(json.dumps({"event": type(event).__name__, **_plain(event)}, ensure_ascii=False), flush=True)
                    continue
                if isinstance(event, LivePartial):
                    console.print(f"[dim]… {event.stable_text}[/dim] {event.text[len(event.stable_text) :]}", end="\r")
                elif isinstance(event, LiveFinal):
                    s = event.segment
                    console.print(f"[bold]{s.start_s:7.2f}-{s.end_s:7.2f}[/bold] {s.text}" + " " * 20)
                elif isinstance(event, LiveSignals) and event.tags:
                    where = (
                        f"frame {event.frame_s:.1f}s" if event.source == "frame" else f"segment {event.segment_index}"
                    )
                    tags = ", ".join(f"{t.label} {t.score:.2f}" for t in event.tags)
                    console.print(f"  [cyan]{where}[/cyan]: {tags}")
                elif isinstance(event, LiveModeration):
                    m = event.moderation
                    console.print(
                        f"  [red]{m.decision.value.upper()}[/red] {event.start_s:.2f}-{event.end_s:.2f}s "
                        f"({m.policy} {m.policy_version}): {', '.join(m.flagged)}"
                    )
                elif isinstance(event, LiveStatus):
                    for drop in event.drops:
                        counted = drop.frames or round(drop.audio_s, 1)
                        if last_drops.get(drop.reason.value) != counted:
                            last_drops[drop.reason.value] = counted
                            console.print(f"  [yellow]dropped[/yellow] {drop.reason.value}: {counted}")
                elif isinstance(event, LiveSummary):
                    a = event.analysis
                    console.print(
                        f"ended ({event.reason}): {a.modality.value}, {len(a.transcript.segments) if a.transcript else 0} "
                        f"segments, {event.points} points indexed, version {a.version}"
                    )
        except UnderstandingError as error:
            return output.report(error, args.server or "the server")
    return 0
