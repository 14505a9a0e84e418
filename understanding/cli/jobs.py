"""`understanding jobs submit|get|watch|cancel|list`: asynchronous jobs on a running server."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from understanding.cli import connect, output
from understanding.cli.detect import detect_modality

if TYPE_CHECKING:
    from rich.table import Table

    from understanding.cli import Subcommands
    from understanding_client import Client, Job

_STATE_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "queued": "dim"}


def register(sub: Subcommands) -> None:
    jobs = sub.add_parser(
        "jobs",
        help="asynchronous jobs: submit, get, watch, cancel, list",
        description="Long media is processed as a job: submit it, then watch its progress or poll it.",
        epilog="example: understanding jobs submit lecture.mp4 --watch",
    )
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="{submit,get,watch,cancel,list}")
    submit = jobs_sub.add_parser(
        "submit",
        help="submit a file, a text or an uploaded media as a job",
        description="Create a job from FILE (modality detected from its content), --text or --upload-id.",
    )
    submit.add_argument("file", nargs="?", help="media or text file to upload with the job")
    submit.add_argument("--text", help="text to analyze as a job")
    submit.add_argument("--upload-id", help="media stored earlier with `understanding upload`")
    submit.add_argument("--modality", choices=("text", "speech", "video"), help="override the detected modality")
    submit.add_argument("--media-id", help="media id for the result (default: derived from the content)")
    submit.add_argument("--key", help="idempotency key: submitting the same key again returns the same job")
    submit.add_argument("--language", help="force the spoken language (ISO 639-1), default: detect")
    submit.add_argument("--translate", action="store_true", help="translate speech to English")
    submit.add_argument("--words", action="store_true", help="word timestamps")
    submit.add_argument("--sample-fps", type=float, help="video frames analysed per second (default: server's)")
    submit.add_argument("--watch", action="store_true", help="follow the job with a progress bar until it ends")
    connect.add_client_arguments(submit)
    submit.set_defaults(fn=run_submit)
    for name, fn, text in (
        ("get", run_get, "show a job (with its result once it succeeded)"),
        ("watch", run_watch, "follow a job's progress until it ends (exit 4 if it failed or was cancelled)"),
        ("cancel", run_cancel, "cancel a queued or running job"),
    ):
        p = jobs_sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("job_id")
        connect.add_client_arguments(p)
        if name == "watch":
            p.set_defaults(timeout=None)
        p.set_defaults(fn=fn)
    jobs_list = jobs_sub.add_parser(
        "list", help="list your jobs, newest first", description="List your jobs, newest first."
    )
    jobs_list.add_argument(
        "--state",
        action="append",
        choices=("queued", "running", "succeeded", "failed", "cancelled"),
        help="only jobs in this state (repeatable)",
    )
    jobs_list.add_argument("--page-size", type=int, default=50, help="jobs per page (1-500)")
    jobs_list.add_argument("--page-token", help="continue from a previous listing")
    jobs_list.add_argument("--all", action="store_true", help="follow every page")
    connect.add_client_arguments(jobs_list)
    jobs_list.set_defaults(fn=run_list)


# ---------------------------------------------------------------- commands
def run_submit(args: argparse.Namespace) -> int:
    from understanding_client import SpeechOptions, UnderstandingError, VideoOptions

    given = [x for x in (args.file, args.text, args.upload_id) if x]
    if len(given) != 1:
        return output.fail("give exactly one of FILE, --text TEXT or --upload-id ID")
    if args.file and not os.path.isfile(args.file):
        return output.fail(f"{args.file}: no such file")
    if args.text:
        kind = "text"
    elif args.modality:
        kind = args.modality
    elif args.file:
        kind = detect_modality(args.file)
    else:
        return output.fail("--upload-id needs --modality speech or video")
    path, text = args.file, args.text
    if kind == "text" and path:
        with open(path, encoding="utf-8") as fh:
            path, text = None, fh.read()
    speech = SpeechOptions(language=args.language or "", translate=args.translate, word_timestamps=args.words)
    with connect.client(args) as client:
        try:
            # The bar shows only while a file is uploaded (a text or an upload id sends one message).
            with output.UploadBar(os.path.basename(path or ""), hidden=args.json or not path) as bar:
                job = client.submit_job(
                    text=text,
                    source=path,
                    upload_id=args.upload_id or "",
                    modality=kind,
                    media_id=args.media_id or "",
                    idempotency_key=args.key or "",
                    speech=speech,
                    video=VideoOptions(sample_fps=args.sample_fps or 0.0),
                    progress=bar if path else None,
                )
        except ValueError as error:  # checked by the SDK before anything is sent, e.g. an empty text file
            return output.fail(str(error))
        except UnderstandingError as error:
            return output.report(error, client.target)
        if args.watch:
            if not args.json:
                print(f"submitted {job.job_id} ({kind})", file=sys.stderr)
            return _watch(args, client, job.job_id, None)
    if args.json:
        output.print_json(output.message_dict(job.raw))
        return 0
    print(job.job_id)
    print(f"follow it: understanding jobs watch {job.job_id}", file=sys.stderr)
    return 0


def run_get(args: argparse.Namespace) -> int:
    from understanding_client import UnderstandingError

    with connect.client(args) as client:
        try:
            job = client.get_job(args.job_id)
        except UnderstandingError as error:
            return output.report(error, client.target)
    _show(args, job)
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from understanding_client import UnderstandingError

    with connect.client(args) as client:
        try:
            job = client.cancel_job(args.job_id)
        except UnderstandingError as error:
            return output.report(error, client.target)
    _show(args, job)
    return 0


def run_watch(args: argparse.Namespace) -> int:
    with connect.client(args) as client:
        return _watch(args, client, args.job_id, args.timeout)


def run_list(args: argparse.Namespace) -> int:
    from understanding_client import UnderstandingError

    jobs: list[Job] = []
    token = args.page_token or ""
    with connect.client(args) as client:
        try:
            while True:
                page = client.list_jobs(states=args.state, page_size=args.page_size, page_token=token)
                jobs += page.jobs
                token = page.next_page_token
                if not token or not args.all:
                    break
        except UnderstandingError as error:
            return output.report(error, client.target)
    if args.json:
        output.print_json({"jobs": [output.message_dict(j.raw) for j in jobs], "next_page_token": token})
        return 0
    console = output.console()
    console.print(_job_table(jobs, title=f"{len(jobs)} job(s)"))
    if token:
        console.print(f"more: understanding jobs list --page-token {token}  (or --all)")
    return 0


# ---------------------------------------------------------------- following and printing jobs
def _watch(args: argparse.Namespace, client: Client, job_id: str, timeout: float | None) -> int:
    """Follow a job until it is terminal: a progress bar, or JSON lines with --json."""
    from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from understanding_client import JobState, UnderstandingError

    last: Job | None = None
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    try:
        with output.status_bar(*columns, hidden=args.json) as progress:
            task = progress.add_task(job_id, total=1.0)
            for job in client.watch_job(job_id, timeout=timeout):
                last = job
                if args.json:
                    output.print_json(output.message_dict(job.raw), indent=None)
                stage = f" {job.progress.stage}" if job.progress.stage else ""
                description = f"{job_id} {job.state.value}{stage}"
                progress.update(task, completed=job.progress.fraction, description=description)
    except UnderstandingError as error:
        return output.report(error, client.target)
    if last is None:
        return output.EXIT_RPC
    if not args.json:
        _print_job(last)
    return 0 if last.state is JobState.SUCCEEDED else output.EXIT_JOB


def _show(args: argparse.Namespace, job: Job) -> None:
    if args.json:
        output.print_json(output.message_dict(job.raw))
    else:
        _print_job(job)


def _styled(state: str) -> str:
    return f"[{_STATE_STYLE.get(state, '')}]{state}[/]"


def _job_table(jobs: Sequence[Job], title: str = "") -> Table:
    from rich.table import Table

    table = Table(title=title or None)
    # The job id is for copying: never cut or folded; the other columns give way.
    table.add_column("job", no_wrap=True, min_width=max((len(j.job_id) for j in jobs), default=3))
    table.add_column("state", no_wrap=True, min_width=9)
    table.add_column("media", overflow="fold")
    table.add_column("done", justify="right", no_wrap=True)
    for job in jobs:
        state = job.state.value
        stage = f" {job.progress.stage}" if job.progress.stage and state == "running" else ""
        table.add_row(
            job.job_id, _styled(state), f"{job.media_id} ({job.modality.value})", f"{job.progress.fraction:.0%}{stage}"
        )
    return table


def _print_job(job: Job) -> None:
    console = output.console()
    console.print(f"[bold]{job.job_id}[/bold]  {_styled(job.state.value)}")
    rows = [
        ("modality", job.modality.value),
        ("media", job.media_id),
        ("progress", f"{job.progress.fraction:.0%} {job.progress.stage}".strip()),
        ("attempts", str(job.attempts)),
        ("created", output.when(job.created_at)),
        ("started", output.when(job.started_at)),
        ("finished", output.when(job.finished_at)),
        ("idempotency key", job.idempotency_key),
    ]
    for name, value in rows:
        if value:
            console.print(f"  {name:<16}{value}", highlight=False)
    if job.error is not None:
        retried = " (retried)" if job.error.retriable else ""
        console.print(f"[red]error[/red] {job.error.code}: {job.error.message}{retried}")
    result = job.result
    if result is not None and result.media_id:
        if result.transcript is not None and result.transcript.segments:
            output.print_analysis(result)
        else:
            tags = ", ".join(f"{t.label} ({t.score:.2f})" for t in result.tags) or "(none)"
            console.print(f"result: {result.media_id}  {len(result.chunks)} chunk(s)  tags: {tags}")
