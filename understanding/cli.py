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
        "(or pass --server HOST:PORT).",
        "UNAUTHENTICATED": "pass --api-key or set UNDERSTANDING_API_KEY.",
        "DEADLINE_EXCEEDED": "the server took too long; raise --timeout.",
    }
    print(f"error: {code}: {error.details()}", file=sys.stderr)
    if code in hints:
        print(f"hint: {hints[code]}", file=sys.stderr)
    return EXIT_RPC


# ---------------------------------------------------------------- commands
def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from understanding import logs
    from understanding.app import serve
    from understanding.config import Settings

    overrides: dict[str, Any] = {}
    if args.port is not None:
        overrides["grpc_port"] = args.port
    if args.host is not None:
        overrides["grpc_host"] = args.host
    settings = Settings.from_env(**overrides)
    logs.configure(settings.log_level, json_lines=settings.log_json)
    asyncio.run(serve(settings))
    return 0


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
    if analysis.tags:
        console.print("tags: " + ", ".join(f"{tag.label} ({tag.score:.2f})" for tag in analysis.tags))


def cmd_search(args: argparse.Namespace) -> int:
    import grpc

    from understanding.v1 import understanding_pb2 as pb

    request = pb.SearchRequest(text=args.query, top_k=args.top_k, group_by_media=args.group)
    try:
        response = _stub(args).Search(request, metadata=_metadata(args), timeout=args.timeout)
    except grpc.RpcError as error:
        return _rpc_error(error, args)
    if args.json:
        print(json.dumps(_to_json(response), indent=2, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"results for {args.query!r}")
    for col in ("score", "media", "time", "text", "tags"):
        table.add_column(col)
    for hit in response.hits:
        span = f"{hit.start_s:.1f}-{hit.end_s:.1f}s" if hit.end_s else ""
        table.add_row(
            f"{hit.score:.3f}", hit.media_id, span, hit.text[:80], ", ".join(t.label for t in hit.tags)
        )
    Console().print(table)
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    """Re-embed every stored point's text with another model into that model's
    collection, then point the alias at it (see `open_store`)."""
    from understanding import logs
    from understanding.app import open_store
    from understanding.config import Settings
    from understanding.models.embedder import Embedder, resolve_embedding_model
    from understanding.sinks.store import reembed_into

    settings = Settings.from_env()
    logs.configure(settings.log_level, json_lines=settings.log_json)
    try:
        model_dir = resolve_embedding_model(args.to_model)
    except (FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        source = open_store(settings, None, None, role="current")
    except LookupError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # noqa: BLE001 - e.g. the embedded store's WAL is locked
        print(f"error: cannot open the current collection: {error}", file=sys.stderr)
        if not settings.qdrant_url:
            print("hint: the embedded store belongs to one process: stop `understanding serve` first.", file=sys.stderr)
        return 1
    try:
        embedder = Embedder(model_dir, device=settings.embedding_device)
        target = open_store(settings, embedder.dimension, embedder.model_ref, role="target")
    except BaseException:
        source.close()
        raise
    alias = settings.qdrant_collection
    try:
        if target.collection == source.collection:
            print(f"{alias} already serves {target.collection}: nothing to do")
            return 0
        total = source.count()
        print(f"re-embedding {total} points: {source.collection} -> {target.collection}", file=sys.stderr)
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)

        model, size = embedder.model_ref, args.batch_size
        runs = [reembed_into(source, target, embedder.encode, model, batch_size=size, progress=progress)]
        print(file=sys.stderr)
        # A second, incremental pass picks up what was written during the first.
        runs.append(reembed_into(source, target, embedder.encode, model, batch_size=size))
        target.optimize()
        if not args.no_switch:
            target.promote(alias)
        summary = {
            "alias": alias,
            "from": source.collection,
            "to": target.collection,
            "switched": not args.no_switch,
            "embedded": sum(r.embedded for r in runs),
            "without_text": runs[-1].without_text,
            "removed": sum(r.removed for r in runs),
            "points": target.count(),
            "seconds": round(sum(r.seconds for r in runs), 2),
        }
    finally:
        target.close()
        source.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{summary['points']} points in {summary['to']} ({summary['embedded']} embedded, "
            f"{summary['without_text']} without text skipped) in {summary['seconds']} s"
        )
        if summary["switched"]:
            print(f"alias {alias} -> {summary['to']}.")
            print(f"Restart the service with UNDERSTANDING_EMBEDDING_MODEL={args.to_model}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="understanding", description="Multimodal understanding service.")
    parser.add_argument("--version", action="version", version=f"understanding {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC service (embedded defaults: no Kafka/Qdrant needed)")
    serve.add_argument("--port", type=int, help="gRPC port (default UNDERSTANDING_GRPC_PORT or 50051)")
    serve.add_argument("--host", help="bind address (default UNDERSTANDING_GRPC_HOST or 127.0.0.1)")
    serve.set_defaults(fn=cmd_serve)

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
    client(search)
    search.set_defaults(fn=cmd_search)

    reindex = sub.add_parser(
        "reindex", help="re-embed every stored point with another model into a new collection, then switch the alias"
    )
    reindex.add_argument("--to-model", required=True, metavar="PATH", help="sentence-transformers model directory")
    reindex.add_argument("--batch-size", type=int, default=256, help="points embedded per forward pass")
    reindex.add_argument("--no-switch", action="store_true", help="fill the new collection, leave the alias")
    reindex.add_argument("--json", action="store_true", help="print the summary as JSON")
    reindex.set_defaults(fn=cmd_reindex)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
