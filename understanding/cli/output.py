"""What every client command prints the same way: exit codes, JSON, errors with hints, progress bars, analyses.

rich and the SDK are imported where used, so `understanding --help` and
`understanding serve` do not pay for them.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console
    from rich.progress import Progress, ProgressColumn

    from understanding_client import Analysis, Language, ModelRef, UnderstandingError

EXIT_USAGE = 2
EXIT_RPC = 3
EXIT_JOB = 4  # a watched job ended FAILED or CANCELLED

_HINTS = {
    "UNAUTHENTICATED": "pass --api-key or set UNDERSTANDING_API_KEY.",
    "DEADLINE_EXCEEDED": "the server took too long; raise --timeout (or submit long media as a job: "
    "`understanding jobs submit FILE --watch`).",
    "INVALID_ARGUMENT": "the message names the field or option to fix.",
    "NOT_FOUND": "ids are per tenant: check --tenant / --api-key and the id (`understanding jobs list`).",
    "ALREADY_EXISTS": "that idempotency key was used for a different request: pick another --key.",
    "UNIMPLEMENTED": "this server does not offer that call yet: upgrade the server.",
}


def fail(message: str, *hints: str, code: int = EXIT_USAGE) -> int:
    """Print `error: message` and `hint: ...` lines on stderr; the exit code."""
    print(f"error: {message}", file=sys.stderr)
    for hint in hints:
        print(f"hint: {hint}", file=sys.stderr)
    return code


def report(error: UnderstandingError, target: str) -> int:
    """A failed call on stderr, with what to do about it; the exit code."""
    print(f"error: {error.code}: {error.details}", file=sys.stderr)
    if error.code == "RESOURCE_EXHAUSTED":
        if error.retry_after_s is not None:
            print(f"hint: the server is busy: retry in {error.retry_after_s:g} s.", file=sys.stderr)
        else:
            print("hint: a size or count limit was hit (`understanding config` lists the limits).", file=sys.stderr)
    if error.code == "UNAVAILABLE":
        print(
            f"hint: is the server running at {target}? Start it with `understanding serve` (or pass --server "
            "HOST:PORT); right after a start it may still be warming up: retry in a few seconds.",
            file=sys.stderr,
        )
    elif error.code in _HINTS:
        print(f"hint: {_HINTS[error.code]}", file=sys.stderr)
    return EXIT_RPC


def message_dict(message: Any) -> dict[str, Any]:
    """A protobuf message (a result's `.raw`) as the JSON the API reference documents."""
    from google.protobuf.json_format import MessageToDict

    as_dict: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return as_dict


def print_json(value: Any, *, indent: int | None = 2) -> None:
    print(json.dumps(value, indent=indent, ensure_ascii=False), flush=True)


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def status_bar(*columns: ProgressColumn | str, hidden: bool) -> Progress:
    """A transient progress display on stderr; hidden with --json, whose stdout must stay parseable."""
    from rich.progress import Progress

    return Progress(*columns, console=console(stderr=True), transient=True, disable=hidden)


class UploadBar:
    """An upload's progress bar, fed by the SDK's `progress(bytes_sent, total)` callback."""

    def __init__(self, name: str, *, hidden: bool) -> None:
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn

        columns = (TextColumn("uploading {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        self._progress = status_bar(*columns, hidden=hidden)
        self._task = self._progress.add_task(name, total=None)
        self.console = self._progress.console

    def __call__(self, sent: int, total: int | None) -> None:
        # The SDK starts every attempt at 0, so a re-sent upload starts the bar over.
        self._progress.update(self._task, completed=sent, total=total)

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()


def when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def language(value: Language | None) -> str:
    """`code (probability)`; an empty code when none was detected."""
    return f"{value.code if value else ''} ({value.probability if value else 0.0:.2f})"


def model_name(value: ModelRef | None) -> str:
    return value.name if value else ""


def print_analysis(analysis: Analysis) -> None:
    """A media's transcript as a table, then its video facts, shots and tags."""
    from rich.table import Table

    out = console()
    t = analysis.transcript
    segments = t.segments if t else ()
    spoken = t.language if t else None
    out.print(
        f"[bold]{analysis.media_id}[/bold]  language={(spoken.code if spoken else '') or 'none'} "
        f"({spoken.probability if spoken else 0.0:.2f})  duration={t.duration_s if t else 0.0:.1f}s  "
        f"segments={len(segments)}"
    )
    table = Table(show_header=True)
    table.add_column("start", justify="right")
    table.add_column("end", justify="right")
    table.add_column("text")
    for seg in segments:
        table.add_row(f"{seg.start_s:.2f}", f"{seg.end_s:.2f}", seg.text.strip())
    out.print(table)
    v = analysis.video
    if v is not None and v.duration_s:
        out.print(
            f"video: {v.width}x{v.height} {v.codec} {v.fps:.1f} fps, {v.duration_s:.1f}s, "
            f"{len(analysis.shots)} shot(s), audio={'yes' if v.has_audio else 'no'}"
        )
        for shot in analysis.shots:
            labels = ", ".join(tag.label for tag in shot.tags) or "-"
            out.print(f"  shot {shot.index}: {shot.start_s:.1f}-{shot.end_s:.1f}s  faces={shot.face_count}  {labels}")
    if analysis.tags:
        out.print("tags: " + ", ".join(f"{tag.label} ({tag.score:.2f})" for tag in analysis.tags))
