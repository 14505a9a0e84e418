"""`understanding` command line: run the service, or call a running one."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from understanding import __version__

EXIT_USAGE = 2
EXIT_RPC = 3


def _channel_target(args: argparse.Namespace) -> str:
    return args.server or os.environ.get("UNDERSTANDING_SERVER", "127.0.0.1:50051")


def _metadata(args: argparse.Namespace) -> list[tuple[str, str]]:
    md = []
    key = args.api_key or os.environ.get("UNDERSTANDING_API_KEY", "")
    if key:
        md.append(("x-api-key", key))
    tenant = args.tenant or os.environ.get("UNDERSTANDING_TENANT", "")
    if tenant:
        md.append(("x-tenant-id", tenant))
    return md


def _stub(args: argparse.Namespace) -> Any:
    import grpc

    from understanding.v1 import understanding_pb2_grpc

    channel = grpc.insecure_channel(_channel_target(args))
    return understanding_pb2_grpc.UnderstandingStub(channel)


def _to_json(message: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(message, preserving_proto_field_name=True)


def _rpc_error(error: Any, args: argparse.Namespace) -> int:
    code = error.code().name
    hints = {
        "UNAVAILABLE": f"is the server running at {_channel_target(args)}? Start it with `understanding serve` "
        "(or pass --server HOST:PORT); right after a start it may still be warming up: retry in a few seconds.",
        "UNAUTHENTICATED": "pass --api-key or set UNDERSTANDING_API_KEY.",
        "DEADLINE_EXCEEDED": "the server took too long; raise --timeout (or submit long media as a job: "
        "`understanding jobs submit FILE --watch`).",
        "INVALID_ARGUMENT": "the message names the field or option to fix.",
        "NOT_FOUND": "ids are per tenant: check --tenant / --api-key and the id (`understanding jobs list`).",
        "ALREADY_EXISTS": "that idempotency key was used for a different request: pick another --key.",
        "UNIMPLEMENTED": "this server does not offer that call yet: upgrade the server.",
    }
    print(f"error: {code}: {error.details()}", file=sys.stderr)
    retry_after = next((v for k, v in (error.trailing_metadata() or ()) if k == "retry-after-ms"), None)
    if code == "RESOURCE_EXHAUSTED":
        if retry_after is not None:
            print(f"hint: the server is busy: retry in {int(retry_after) / 1000:g} s.", file=sys.stderr)
        else:
            print("hint: a size or count limit was hit (`understanding config` lists the limits).", file=sys.stderr)
    if code in hints:
        print(f"hint: {hints[code]}", file=sys.stderr)
    return EXIT_RPC


# ---------------------------------------------------------------- commands
def cmd_serve(args: argparse.Namespace) -> int:
    from understanding.app import run_process

    overrides: dict[str, Any] = {}
    if args.port is not None:
        overrides["grpc_port"] = args.port
    if args.host is not None:
        overrides["grpc_host"] = args.host
    return run_process("serve", **overrides)


def cmd_worker(args: argparse.Namespace) -> int:
    from understanding.app import run_process

    overrides: dict[str, Any] = {"job_backend": "kafka"}
    if args.concurrency is not None:
        overrides["job_workers"] = args.concurrency
    return run_process("worker", **overrides)


def cmd_config(args: argparse.Namespace) -> int:
    from understanding.config import Settings

    rows = Settings.from_env().describe()
    if args.json:
        print(json.dumps([{"variable": v, "value": val, "doc": d} for v, val, d in rows], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="understanding settings")
    for col in ("variable", "value", "meaning"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    import grpc

    from understanding.v1 import understanding_pb2 as pb

    if args.file:
        return _analyze_file(args)
    if not args.text:
        print("error: give a FILE to analyze or --text TEXT", file=sys.stderr)
        return EXIT_USAGE
    request = pb.AnalyzeTextRequest(
        items=[pb.TextItem(text=t, media_id=args.media_id or "") for t in args.text],
        options=pb.TextOptions(return_embeddings=args.embeddings),
    )
    try:
        response = _stub(args).AnalyzeText(request, metadata=_metadata(args), timeout=args.timeout)
    except grpc.RpcError as error:
        return _rpc_error(error, args)
    if args.json:
        print(json.dumps(_to_json(response), indent=2, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for result in response.results:
        table = Table(title=f"{result.media_id}  language={result.language.code} ({result.language.probability:.2f})")
        table.add_column("tag")
        table.add_column("score", justify="right")
        for tag in result.tags:
            table.add_row(tag.label, f"{tag.score:.3f}")
        if not result.tags:
            table.add_row("(none)", "")
        console.print(table)
        console.print(f"{len(result.chunks)} chunk(s) indexed, model {result.embedding_model.name}")
    return 0


def detect_modality(path: str) -> str:
    """'text', 'speech' or 'video' from the file's content (not its extension)."""
    import av

    try:
        with av.open(path) as container:
            if any(s.type == "video" and s.frames != 1 for s in container.streams.video):
                return "video"
            if container.streams.audio:
                return "speech"
    except Exception:  # noqa: BLE001 - not a media container: maybe text
        pass
    with open(path, "rb") as fh:
        head = fh.read(65536)
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "speech"  # let the server say precisely why it cannot decode it


def _upload_stream(path: str, header: Any, progress: Any, task: Any, chunk_size: int = 256 * 1024) -> Any:
    import hashlib

    from understanding.v1 import understanding_pb2 as pb

    digest = hashlib.sha256()
    yield pb.UploadRequest(header=header)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
            progress.update(task, advance=len(chunk))
            yield pb.UploadRequest(chunk=chunk)
    yield pb.UploadRequest(end=pb.UploadEnd(sha256=digest.hexdigest()))


def _analyze_file(args: argparse.Namespace) -> int:
    import grpc
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from understanding.v1 import understanding_pb2 as pb

    path = args.file
    if not os.path.isfile(path):
        print(f"error: {path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    modality = detect_modality(path)
    if modality == "text":
        with open(path, encoding="utf-8") as fh:
            args.text = [fh.read()]
        args.file = None
        args.media_id = args.media_id or os.path.basename(path).replace(" ", "_")
        return cmd_analyze(args)
    header = pb.UploadHeader(
        media_id=args.media_id or "",
        filename=os.path.basename(path),
        size_bytes=os.path.getsize(path),
        speech=pb.SpeechOptions(
            language=args.language or "",
            task=pb.SPEECH_TASK_TRANSLATE if args.translate else pb.SPEECH_TASK_TRANSCRIBE,
            word_timestamps=args.words,
        ),
        text=pb.TextOptions(return_embeddings=args.embeddings),
    )
    stub = _stub(args)
    console = Console(stderr=True)
    columns = (TextColumn("uploading {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True, disable=args.json) as progress:
        task = progress.add_task(os.path.basename(path), total=os.path.getsize(path))
        try:
            if modality == "video":
                try:
                    response = stub.AnalyzeVideo(_upload_stream(path, header, progress, task), metadata=_metadata(args), timeout=args.timeout)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                        raise
                    console.print("video analysis is not available on this server: transcribing the audio track")
                    progress.reset(task)
                    response = stub.Transcribe(_upload_stream(path, header, progress, task), metadata=_metadata(args), timeout=args.timeout)
            else:
                response = stub.Transcribe(_upload_stream(path, header, progress, task), metadata=_metadata(args), timeout=args.timeout)
        except grpc.RpcError as error:
            return _rpc_error(error, args)
    if args.json:
        print(json.dumps(_to_json(response), indent=2, ensure_ascii=False))
        return 0
    _print_analysis(response.analysis)
    return 0


def _print_analysis(analysis: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = analysis.transcript
    console.print(
        f"[bold]{analysis.media_id}[/bold]  language={t.language.code or 'none'} ({t.language.probability:.2f})  "
        f"duration={t.duration_s:.1f}s  segments={len(t.segments)}"
    )
    table = Table(show_header=True)
    table.add_column("start", justify="right")
    table.add_column("end", justify="right")
    table.add_column("text")
    for seg in t.segments:
        table.add_row(f"{seg.start_s:.2f}", f"{seg.end_s:.2f}", seg.text.strip())
    console.print(table)
    if analysis.HasField("video") and analysis.video.duration_s:
        v = analysis.video
        console.print(
            f"video: {v.width}x{v.height} {v.codec} {v.fps:.1f} fps, {v.duration_s:.1f}s, "
            f"{len(analysis.shots)} shot(s), audio={'yes' if v.has_audio else 'no'}"
        )
        for shot in analysis.shots:
            labels = ", ".join(t.label for t in shot.tags) or "-"
            console.print(f"  shot {shot.index}: {shot.start_s:.1f}-{shot.end_s:.1f}s  faces={shot.face_count}  {labels}")
    if analysis.tags:
        console.print("tags: " + ", ".join(f"{tag.label} ({tag.score:.2f})" for tag in analysis.tags))


def cmd_search(args: argparse.Namespace) -> int:
    import grpc

    from understanding.v1 import understanding_pb2 as pb

    from understanding.v1 import common_pb2

    request = pb.SearchRequest(
        text=args.query, top_k=args.top_k, group_by_media=args.group, score_threshold=args.min_score or 0.0,
        mode={"auto": pb.SEARCH_MODE_UNSPECIFIED, "dense": pb.SEARCH_MODE_DENSE, "hybrid": pb.SEARCH_MODE_HYBRID}[args.mode],
    )
    f = request.filter
    f.modalities.extend(common_pb2.Modality.Value("MODALITY_" + m.upper()) for m in args.modality or ())
    f.media_ids.extend(args.media_id or ())
    f.tags.any.extend(args.tag or ())
    f.languages.extend(args.language or ())
    try:
        response = _stub(args).Search(request, metadata=_metadata(args), timeout=args.timeout)
    except grpc.RpcError as error:
        return _rpc_error(error, args)
    if args.json:
        print(json.dumps(_to_json(response), indent=2, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(response.hits)} result(s) for {args.query!r}")
    for col in ("score", "media", "modality", "time", "text", "tags"):
        table.add_column(col, justify="right" if col == "score" else "left", overflow="fold" if col == "media" else "ellipsis")
    for hit in response.hits:
        span = f"{hit.start_s:.1f}-{hit.end_s:.1f}s" if hit.end_s else ""
        media = hit.media_id + (f" (+{hit.group_hits - 1})" if hit.group_hits > 1 else "")
        table.add_row(
            f"{hit.score:.3f}", media, _modality_name(hit.modality), span, hit.text[:80],
            ", ".join(t.label for t in hit.tags),
        )
    console = Console()
    console.print(table)
    if not response.hits:
        console.print("no results: index something first (`understanding analyze --text ...`) or loosen the filters.")
    return 0


# ---------------------------------------------------------------- jobs, media, upload
EXIT_JOB = 4  # a watched job ended FAILED or CANCELLED

_STATE_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow", "RUNNING": "cyan", "QUEUED": "dim"}


def _state_name(value: int) -> str:
    from understanding.v1 import jobs_pb2

    return jobs_pb2.JobState.Name(value).removeprefix("JOB_STATE_")


def _modality_name(value: int) -> str:
    from understanding.v1 import common_pb2

    return common_pb2.Modality.Name(value).removeprefix("MODALITY_").lower()


def _when(ts: Any) -> str:
    if not ts.seconds:
        return ""
    import datetime as dt

    return dt.datetime.fromtimestamp(ts.seconds, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _chunk_stream(path: str, first: Any, wrap: Any, progress: Any, task: Any, chunk_size: int = 256 * 1024) -> Any:
    """`first`, the file's bytes in chunks, then end(sha256), each wrapped in the RPC's request type."""
    import hashlib

    from understanding.v1 import understanding_pb2 as pb

    digest = hashlib.sha256()
    yield first
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
            progress.update(task, advance=len(chunk))
            yield wrap(chunk=chunk)
    yield wrap(end=pb.UploadEnd(sha256=digest.hexdigest()))


def _upload_progress(args: argparse.Namespace) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("uploading {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    return Progress(*columns, console=Console(stderr=True), transient=True, disable=args.json)


def _job_table(jobs: Sequence[Any], title: str = "") -> Any:
    from rich.table import Table

    table = Table(title=title or None)
    # The job id is for copying: never cut or folded; the other columns give way.
    table.add_column("job", no_wrap=True, min_width=max((len(j.job_id) for j in jobs), default=3))
    table.add_column("state", no_wrap=True, min_width=9)
    table.add_column("media", overflow="fold")
    table.add_column("done", justify="right", no_wrap=True)
    for job in jobs:
        state = _state_name(job.state)
        stage = f" {job.progress.stage}" if job.progress.stage and state == "RUNNING" else ""
        table.add_row(
            job.job_id,
            f"[{_STATE_STYLE.get(state, '')}]{state.lower()}[/]",
            f"{job.media_id} ({_modality_name(job.modality)})",
            f"{job.progress.fraction:.0%}{stage}",
        )
    return table


def _print_job(job: Any) -> None:
    from rich.console import Console

    console = Console()
    state = _state_name(job.state)
    console.print(f"[bold]{job.job_id}[/bold]  [{_STATE_STYLE.get(state, '')}]{state.lower()}[/]")
    rows = [
        ("modality", _modality_name(job.modality)),
        ("media", job.media_id),
        ("progress", f"{job.progress.fraction:.0%} {job.progress.stage}".strip()),
        ("attempts", str(job.attempts)),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("idempotency key", job.idempotency_key),
    ]
    for name, value in rows:
        if value:
            console.print(f"  {name:<16}{value}", highlight=False)
    if job.error.code:
        console.print(f"[red]error[/red] {job.error.code}: {job.error.message}" + (" (retried)" if job.error.retriable else ""))
    if job.HasField("result") and job.result.media_id:
        if job.result.transcript.segments:
            _print_analysis(job.result)
        else:
            tags = ", ".join(f"{t.label} ({t.score:.2f})" for t in job.result.tags) or "(none)"
            console.print(f"result: {job.result.media_id}  {len(job.result.chunks)} chunk(s)  tags: {tags}")


def _watch(args: argparse.Namespace, stub: Any, job_id: str, timeout: float | None) -> int:
    """Follow a job until it is terminal: a progress bar, or JSON lines with --json."""
    import grpc
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from understanding.v1 import understanding_pb2 as pb

    last = None
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True, disable=args.json) as progress:
            task = progress.add_task(job_id, total=1.0)
            for job in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=_metadata(args), timeout=timeout):
                last = job
                if args.json:
                    print(json.dumps(_to_json(job), ensure_ascii=False), flush=True)
                state = _state_name(job.state).lower()
                stage = f" {job.progress.stage}" if job.progress.stage else ""
                progress.update(task, completed=job.progress.fraction, description=f"{job_id} {state}{stage}")
    except grpc.RpcError as error:
        return _rpc_error(error, args)
    if last is None:
        return EXIT_RPC
    if not args.json:
        _print_job(last)
    return 0 if _state_name(last.state) == "SUCCEEDED" else EXIT_JOB


def _speech_options(args: argparse.Namespace) -> Any:
    from understanding.v1 import understanding_pb2 as pb

    return pb.SpeechOptions(
        language=args.language or "",
        task=pb.SPEECH_TASK_TRANSLATE if args.translate else pb.SPEECH_TASK_TRANSCRIBE,
        word_timestamps=args.words,
    )


def cmd_upload(args: argparse.Namespace) -> int:
    import grpc

    from understanding.v1 import understanding_pb2 as pb

    path = args.file
    if not os.path.isfile(path):
        print(f"error: {path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    size = os.path.getsize(path)
    header = pb.UploadHeader(filename=os.path.basename(path), size_bytes=size, media_id=args.media_id or "")
    with _upload_progress(args) as progress:
        task = progress.add_task(os.path.basename(path), total=size)
        stream = _chunk_stream(path, pb.UploadRequest(header=header), pb.UploadRequest, progress, task)
        try:
            response = _stub(args).UploadMedia(stream, metadata=_metadata(args), timeout=args.timeout)
        except grpc.RpcError as error:
            return _rpc_error(error, args)
    if args.json:
        print(json.dumps(_to_json(response), indent=2))
        return 0
    print(f"{response.upload_id}  {response.size_bytes} bytes  sha256 {response.sha256[:16]}...")
    kind = detect_modality(path)
    print(f"next: understanding jobs submit --upload-id {response.upload_id} --modality {kind}", file=sys.stderr)
    return 0


def cmd_jobs_submit(args: argparse.Namespace) -> int:
    import grpc

    from understanding.v1 import common_pb2, understanding_pb2 as pb

    modalities = {"text": common_pb2.MODALITY_TEXT, "speech": common_pb2.MODALITY_SPEECH, "video": common_pb2.MODALITY_VIDEO}
    given = [x for x in (args.file, args.text, args.upload_id) if x]
    if len(given) != 1:
        print("error: give exactly one of FILE, --text TEXT or --upload-id ID", file=sys.stderr)
        return EXIT_USAGE
    if args.file and not os.path.isfile(args.file):
        print(f"error: {args.file}: no such file", file=sys.stderr)
        return EXIT_USAGE
    if args.text:
        kind = "text"
    elif args.modality:
        kind = args.modality
    elif args.file:
        kind = detect_modality(args.file)
    else:
        print("error: --upload-id needs --modality speech or video", file=sys.stderr)
        return EXIT_USAGE
    if kind == "text" and args.file:
        with open(args.file, encoding="utf-8") as fh:
            args.text, args.file = fh.read(), None
    header = pb.UploadHeader(
        media_id=args.media_id or "",
        filename=os.path.basename(args.file) if args.file else "",
        size_bytes=os.path.getsize(args.file) if args.file else 0,
        speech=_speech_options(args),
        video=pb.VideoOptions(sample_fps=args.sample_fps or 0.0),
    )
    spec = pb.JobSpec(
        idempotency_key=args.key or "", modality=modalities[kind], media=header, text=args.text or "",
        upload_id=args.upload_id or "",
    )
    stub = _stub(args)
    try:
        if args.file:
            with _upload_progress(args) as progress:
                task = progress.add_task(os.path.basename(args.file), total=header.size_bytes)
                stream = _chunk_stream(args.file, pb.SubmitJobRequest(spec=spec), pb.SubmitJobRequest, progress, task)
                job = stub.SubmitJob(stream, metadata=_metadata(args), timeout=args.timeout)
        else:
            job = stub.SubmitJob(iter([pb.SubmitJobRequest(spec=spec)]), metadata=_metadata(args), timeout=args.timeout)
    except grpc.RpcError as error:
        return _rpc_error(error, args)
    if args.watch:
        if not args.json:
            print(f"submitted {job.job_id} ({kind})", file=sys.stderr)
        return _watch(args, stub, job.job_id, None)
    if args.json:
        print(json.dumps(_to_json(job), indent=2, ensure_ascii=False))
        return 0
    print(job.job_id)
    print(f"follow it: understanding jobs watch {job.job_id}", file=sys.stderr)
    return 0


def _job_rpc(args: argparse.Namespace, method: str, request: Any) -> int:
    import grpc

    try:
        job = getattr(_stub(args), method)(request, metadata=_metadata(args), timeout=args.timeout)
    except grpc.RpcError as error:
        return _rpc_error(error, args)
    if args.json:
        print(json.dumps(_to_json(job), indent=2, ensure_ascii=False))
    else:
        _print_job(job)
    return 0


def cmd_jobs_get(args: argparse.Namespace) -> int:
    from understanding.v1 import understanding_pb2 as pb

    return _job_rpc(args, "GetJob", pb.GetJobRequest(job_id=args.job_id))


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    from understanding.v1 import understanding_pb2 as pb

    return _job_rpc(args, "CancelJob", pb.CancelJobRequest(job_id=args.job_id))


def cmd_jobs_watch(args: argparse.Namespace) -> int:
    return _watch(args, _stub(args), args.job_id, args.timeout)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    import grpc

    from understanding.v1 import jobs_pb2, understanding_pb2 as pb

    states = [jobs_pb2.JobState.Value("JOB_STATE_" + s.upper()) for s in args.state or ()]
    stub, jobs, token = _stub(args), [], args.page_token or ""
    try:
        while True:
            page = stub.ListJobs(
                pb.ListJobsRequest(page_size=args.page_size, page_token=token, states=states),
                metadata=_metadata(args), timeout=args.timeout,
            )
            jobs += list(page.jobs)
            token = page.next_page_token
            if not token or not args.all:
                break
    except grpc.RpcError as error:
        return _rpc_error(error, args)
    if args.json:
        print(json.dumps({"jobs": [_to_json(j) for j in jobs], "next_page_token": token}, indent=2, ensure_ascii=False))
        return 0
    from rich.console import Console

    console = Console()
    console.print(_job_table(jobs, title=f"{len(jobs)} job(s)"))
    if token:
        console.print(f"more: understanding jobs list --page-token {token}  (or --all)")
    return 0


def cmd_media_get(args: argparse.Namespace) -> int:
    import grpc

    from understanding.v1 import understanding_pb2 as pb

    try:
        media = _stub(args).GetMedia(pb.GetMediaRequest(media_id=args.media_id), metadata=_metadata(args), timeout=args.timeout)
    except grpc.RpcError as error:
        return _rpc_error(error, args)
    if args.json:
        print(json.dumps(_to_json(media), indent=2, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{media.media_id}  {_modality_name(media.modality)}  version {media.version}")
    for col in ("chunk", "time", "text", "tags"):
        table.add_column(col)
    for p in media.points:
        span = f"{p.start_s:.1f}-{p.end_s:.1f}s" if p.end_s else ""
        table.add_row(str(p.chunk_index), span, p.text[:100], ", ".join(t.label for t in p.tags))
    Console().print(table)
    return 0


def cmd_media_delete(args: argparse.Namespace) -> int:
    import grpc

    from understanding.v1 import understanding_pb2 as pb

    try:
        response = _stub(args).DeleteMedia(
            pb.DeleteMediaRequest(media_id=args.media_id), metadata=_metadata(args), timeout=args.timeout
        )
    except grpc.RpcError as error:
        return _rpc_error(error, args)
    if args.json:
        print(json.dumps(_to_json(response) or {"points_deleted": 0}, indent=2))
    else:
        print(f"deleted {response.points_deleted} point(s) of {args.media_id}")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    """Re-embed every stored point's text with another model into that model's
    collection, then point the alias at it (see `open_store`).

    On a running server (the Admin RPC: it keeps serving and switches its model
    live) unless `--offline`; without `--server`, a server that does not
    answer means the offline path (the embedded store is then free).
    """
    if not args.offline:
        explicit = bool(args.server or os.environ.get("UNDERSTANDING_SERVER"))
        reached = _reindex_online(args)
        if reached is not None:
            return reached
        if explicit:
            print(f"error: no server answers at {_channel_target(args)}", file=sys.stderr)
            print("hint: start it, fix --server, or pass --offline to reindex the local store.", file=sys.stderr)
            return EXIT_RPC
        print(f"no server at {_channel_target(args)}: reindexing the local store offline", file=sys.stderr)
    return _reindex_offline(args)


def _reindex_online(args: argparse.Namespace) -> int | None:
    """Reindex through the server's Admin service; None when no server answers."""
    import grpc
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from understanding.v1 import admin_pb2, admin_pb2_grpc

    channel = grpc.insecure_channel(_channel_target(args))
    try:
        grpc.channel_ready_future(channel).result(timeout=args.connect_timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        return None
    stub = admin_pb2_grpc.AdminStub(channel)
    spec = args.to_model
    model_path = spec if spec == "packaged" else os.path.abspath(os.path.expanduser(spec))
    key = args.api_key or os.environ.get("UNDERSTANDING_ADMIN_API_KEY") or os.environ.get("UNDERSTANDING_API_KEY", "")
    metadata = [("x-api-key", key)] if key else []
    request = admin_pb2.ReindexRequest(model_path=model_path, batch_size=args.batch_size, no_switch=args.no_switch)
    last = None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True, disable=args.json) as progress:
            task = progress.add_task("loading the model", total=None)
            for update in stub.Reindex(request, metadata=metadata, timeout=args.timeout or None):
                last = update
                phase = admin_pb2.ReindexPhase.Name(update.phase).removeprefix("REINDEX_PHASE_").lower()
                label = {"copying": "re-embedding", "catching_up": f"catch-up pass {update.passes}"}.get(phase, phase)
                progress.update(
                    task,
                    description=label.replace("_", " "),
                    total=update.total_points or None,
                    completed=update.done_points,
                )
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.PERMISSION_DENIED:
            print(f"error: PERMISSION_DENIED: {error.details()}", file=sys.stderr)
            print("hint: pass an admin key with --api-key (or UNDERSTANDING_ADMIN_API_KEY); the server "
                  "lists their hashes in UNDERSTANDING_ADMIN_API_KEYS.", file=sys.stderr)
            return EXIT_RPC
        return _rpc_error(error, args)
    finally:
        channel.close()
    if last is None:
        return EXIT_RPC
    phase = admin_pb2.ReindexPhase.Name(last.phase).removeprefix("REINDEX_PHASE_").lower()
    summary = {
        "mode": "online",
        "server": _channel_target(args),
        "phase": phase,
        "alias": last.alias,
        "from": last.from_collection,
        "to": last.to_collection,
        "model": {"name": last.model.name, "version": last.model.version},
        "switched": last.switched,
        "embedded": last.embedded_points,
        "without_text": last.without_text_points,
        "removed": last.removed_points,
        "points": last.target_points,
        "passes": last.passes,
        "write_pause_seconds": round(last.write_pause_seconds, 4),
        "seconds": round(last.elapsed_seconds, 2),
        "message": last.message,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    elif phase == "nothing_to_do":
        print(last.message)
    else:
        print(
            f"{summary['points']} points in {summary['to']} ({summary['embedded']} embedded in {summary['passes']} "
            f"pass(es), {summary['without_text']} without text skipped) in {summary['seconds']} s"
        )
        if last.switched:
            print(f"alias {last.alias} -> {last.to_collection}; the server now serves {last.model.name} "
                  f"(writes paused {summary['write_pause_seconds'] * 1000:.0f} ms).")
            print(f"The old collection {last.from_collection} is kept: reindex back to roll back.")
    return 0


def _reindex_offline(args: argparse.Namespace) -> int:
    from understanding import logs
    from understanding.config import Settings
    from understanding.core.embedding import EmbeddingFactory
    from understanding.core.reindex import reindex_offline
    from understanding.domain import InvalidInput

    settings = Settings.from_env()
    logs.configure(settings.log_level, json_lines=settings.log_json)

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        result = reindex_offline(
            EmbeddingFactory(settings), args.to_model, batch_size=args.batch_size, no_switch=args.no_switch,
            progress=progress,
        )
    except (InvalidInput, LookupError) as error:
        print(f"error: {getattr(error, 'message', error)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # noqa: BLE001 - e.g. the embedded store's WAL is locked
        print(f"error: cannot reindex the current collection: {error}", file=sys.stderr)
        if not settings.qdrant_url:
            print("hint: the embedded store belongs to one process: stop `understanding serve` first.", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    if result.nothing_to_do:
        print(f"{result.alias} already serves {result.to_collection}: nothing to do")
        return 0
    summary = {
        "alias": result.alias,
        "from": result.from_collection,
        "to": result.to_collection,
        "switched": result.switched,
        "embedded": result.embedded,
        "without_text": result.without_text,
        "removed": result.removed,
        "points": result.points,
        "seconds": result.seconds,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{summary['points']} points in {summary['to']} ({summary['embedded']} embedded, "
            f"{summary['without_text']} without text skipped) in {summary['seconds']} s"
        )
        if result.switched:
            print(f"alias {result.alias} -> {result.to_collection}.")
            print(
                "Start the service with UNDERSTANDING_EMBEDDING_MODEL unset (`packaged`: it follows the alias) "
                f"or set to {args.to_model}"
            )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="understanding", description="Multimodal understanding service.")
    parser.add_argument("--version", action="version", version=f"understanding {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC service (embedded defaults: no Kafka/Qdrant needed)")
    serve.add_argument("--port", type=int, help="gRPC port (default UNDERSTANDING_GRPC_PORT or 50051)")
    serve.add_argument("--host", help="bind address (default UNDERSTANDING_GRPC_HOST or 127.0.0.1)")
    serve.set_defaults(fn=cmd_serve)

    worker = sub.add_parser(
        "worker",
        help="run jobs from Kafka (the `kafka` job backend); start several to scale out",
        description="Consume understanding.jobs.v1 in the worker group and run each job's pipeline. "
        "Needs UNDERSTANDING_KAFKA_BOOTSTRAP and the blob directory the API replicas write "
        "(UNDERSTANDING_BLOB_DIR). SIGTERM finishes the jobs in hand, then stops.",
    )
    worker.add_argument("--concurrency", type=int, help="jobs run at once (default UNDERSTANDING_JOB_WORKERS or 1)")
    worker.set_defaults(fn=cmd_worker)

    config = sub.add_parser("config", help="list every setting with its current value")
    config.add_argument("--json", action="store_true")
    config.set_defaults(fn=cmd_config)

    def client(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", help="HOST:PORT of the service (default UNDERSTANDING_SERVER or 127.0.0.1:50051)")
        p.add_argument("--api-key", help="API key (default UNDERSTANDING_API_KEY)")
        p.add_argument("--tenant", help="tenant when the server runs without API keys")
        p.add_argument("--timeout", type=float, default=120.0, help="deadline in seconds")
        p.add_argument("--json", action="store_true", help="print the response as JSON")

    analyze = sub.add_parser("analyze", help="analyze a file (text, audio or video) or --text on a running server")
    analyze.add_argument("file", nargs="?", help="media file; its modality is detected from its content")
    analyze.add_argument("--text", action="append", help="text to analyze (repeat for several)")
    analyze.add_argument("--language", help="force the spoken language (ISO 639-1), default: detect")
    analyze.add_argument("--translate", action="store_true", help="translate speech to English")
    analyze.add_argument("--words", action="store_true", help="word timestamps")
    analyze.add_argument("--media-id", help="media id (default: derived from the text)")
    analyze.add_argument("--embeddings", action="store_true", help="include the vectors in the output")
    client(analyze)
    analyze.set_defaults(fn=cmd_analyze)

    search = sub.add_parser("search", help="semantic search on a running server")
    search.add_argument("query")
    search.add_argument("-k", "--top-k", type=int, default=10)
    search.add_argument("--group", action="store_true", help="best hit per media")
    search.add_argument("--modality", action="append", choices=("text", "speech", "video"), help="only this modality (repeatable)")
    search.add_argument("--media-id", action="append", help="only this media (repeatable)")
    search.add_argument("--tag", action="append", help="only hits with this tag label, e.g. topic.sports (repeatable)")
    search.add_argument("--language", action="append", help="only this language, ISO 639-1 (repeatable)")
    search.add_argument("--mode", choices=("auto", "dense", "hybrid"), default="auto", help="ranking (default: hybrid for text)")
    search.add_argument("--min-score", type=float, help="drop hits scoring below this")
    client(search)
    search.set_defaults(fn=cmd_search)

    upload = sub.add_parser(
        "upload", help="store a media file on the server for a later `jobs submit --upload-id`",
        description="Stream FILE to the server in chunks (with a progress bar) and print its upload id.",
    )
    upload.add_argument("file", help="media file to store")
    upload.add_argument("--media-id", help="media id to remember with the upload")
    client(upload)
    upload.set_defaults(fn=cmd_upload)

    jobs = sub.add_parser(
        "jobs", help="asynchronous jobs: submit, get, watch, cancel, list",
        description="Long media is processed as a job: submit it, then watch its progress or poll it.",
        epilog="example: understanding jobs submit lecture.mp4 --watch",
    )
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="{submit,get,watch,cancel,list}")
    submit = jobs_sub.add_parser(
        "submit", help="submit a file, a text or an uploaded media as a job",
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
    client(submit)
    submit.set_defaults(fn=cmd_jobs_submit)
    for name, fn, text in (
        ("get", cmd_jobs_get, "show a job (with its result once it succeeded)"),
        ("watch", cmd_jobs_watch, "follow a job's progress until it ends (exit 4 if it failed or was cancelled)"),
        ("cancel", cmd_jobs_cancel, "cancel a queued or running job"),
    ):
        p = jobs_sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("job_id")
        client(p)
        if name == "watch":
            p.set_defaults(timeout=None)
        p.set_defaults(fn=fn)
    jobs_list = jobs_sub.add_parser("list", help="list your jobs, newest first", description="List your jobs, newest first.")
    jobs_list.add_argument(
        "--state", action="append", choices=("queued", "running", "succeeded", "failed", "cancelled"),
        help="only jobs in this state (repeatable)",
    )
    jobs_list.add_argument("--page-size", type=int, default=50, help="jobs per page (1-500)")
    jobs_list.add_argument("--page-token", help="continue from a previous listing")
    jobs_list.add_argument("--all", action="store_true", help="follow every page")
    client(jobs_list)
    jobs_list.set_defaults(fn=cmd_jobs_list)

    media = sub.add_parser("media", help="stored media: get, delete", description="Inspect or remove an indexed media.")
    media_sub = media.add_subparsers(dest="media_command", required=True, metavar="{get,delete}")
    for name, fn, text in (
        ("get", cmd_media_get, "show every stored chunk of a media"),
        ("delete", cmd_media_delete, "remove every point of a media (publishes a MediaDeletedEvent)"),
    ):
        p = media_sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("media_id")
        client(p)
        p.set_defaults(fn=fn)

    reindex = sub.add_parser(
        "reindex", help="re-embed every stored point with another model into a new collection, then switch the alias"
    )
    reindex.add_argument(
        "--to-model", required=True, metavar="PATH", help="sentence-transformers model directory (or `packaged`)"
    )
    reindex.add_argument("--batch-size", type=int, default=256, help="points embedded per forward pass")
    reindex.add_argument("--no-switch", action="store_true", help="fill the new collection, leave the alias")
    reindex.add_argument("--json", action="store_true", help="print the summary as JSON")
    reindex.add_argument(
        "--server", help="HOST:PORT of the running service (default UNDERSTANDING_SERVER or 127.0.0.1:50051)"
    )
    reindex.add_argument("--api-key", help="admin API key (default UNDERSTANDING_ADMIN_API_KEY)")
    reindex.add_argument("--timeout", type=float, default=0.0, help="deadline in seconds (default: none)")
    reindex.add_argument(
        "--connect-timeout", type=float, default=2.0, help="seconds to wait for the server before going offline"
    )
    reindex.add_argument(
        "--offline", action="store_true", help="reindex the local embedded store directly (the server must be stopped)"
    )
    reindex.set_defaults(fn=cmd_reindex)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
