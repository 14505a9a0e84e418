"""`understanding reindex --to-model DIR`: switch the embedding model, through the running server or offline."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from understanding.cli import connect, output, reindex_offline

if TYPE_CHECKING:
    from understanding.cli import Subcommands
    from understanding_client import AdminClient, ReindexProgress


def register(sub: Subcommands) -> None:
    reindex = sub.add_parser(
        "reindex", help="re-embed every stored point with another model into a new collection, then switch the alias"
    )
    reindex.add_argument(
        "--to-model",
        required=True,
        metavar="MODEL",
        help="`multilingual` (the default model), `minilm`, or a sentence-transformers model directory",
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
    reindex.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    """Re-embed every stored point's text with another model into that model's
    collection, then point the alias at it.

    On a running server (the Admin RPC: it keeps serving and switches its model
    live) unless `--offline`; without `--server`, a server that does not
    answer means the offline path (the embedded store is then free).
    """
    if not args.offline:
        with connect.admin_client(args) as admin:
            if admin.wait_ready(args.connect_timeout):
                return _online(args, admin)
            target = admin.target
        if connect.server_given(args):
            return output.fail(
                f"no server answers at {target}",
                "start it, fix --server, or pass --offline to reindex the local store.",
                code=output.EXIT_RPC,
            )
        print(f"no server at {target}: reindexing the local store offline", file=sys.stderr)
    return reindex_offline.run(args)


def _online(args: argparse.Namespace, admin: AdminClient) -> int:
    """Reindex through the server's Admin service, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from understanding.models.embedder import is_packaged_name
    from understanding_client import PermissionDenied, UnderstandingError

    spec = args.to_model
    # A path as the user typed it, made absolute: the server resolves it in its own working directory.
    model_path = spec if is_packaged_name(spec) else os.path.abspath(os.path.expanduser(spec))
    last: ReindexProgress | None = None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with output.status_bar(*columns, hidden=args.json) as progress:
            task = progress.add_task("loading the model", total=None)
            updates = admin.reindex(
                model_path, batch_size=args.batch_size, no_switch=args.no_switch, timeout=args.timeout or None
            )
            for update in updates:
                last = update
                phase = update.phase.value
                label = {"copying": "re-embedding", "catching_up": f"catch-up pass {update.passes}"}.get(phase, phase)
                progress.update(
                    task,
                    description=label.replace("_", " "),
                    total=update.total_points or None,
                    completed=update.done_points,
                )
    except PermissionDenied as error:
        return output.fail(
            f"PERMISSION_DENIED: {error.details}",
            "pass an admin key with --api-key (or UNDERSTANDING_ADMIN_API_KEY); the server "
            "lists their hashes in UNDERSTANDING_ADMIN_API_KEYS.",
            code=output.EXIT_RPC,
        )
    except UnderstandingError as error:
        return output.report(error, admin.target)
    if last is None:
        return output.EXIT_RPC
    summary = _summary(last, admin.target)
    if args.json:
        output.print_json(summary)
    elif last.phase.value == "nothing_to_do":
        print(last.message)
    else:
        print(
            f"{summary['points']} points in {summary['to']} ({summary['embedded']} embedded in {summary['passes']} "
            f"pass(es), {summary['without_text']} without text skipped) in {summary['seconds']} s"
        )
        if last.switched:
            model = summary["model"]["name"]
            print(
                f"alias {last.alias} -> {last.to_collection}; the server now serves {model} "
                f"(writes paused {summary['write_pause_seconds'] * 1000:.0f} ms)."
            )
            print(f"The old collection {last.from_collection} is kept: reindex back to roll back.")
    return 0


def _summary(last: ReindexProgress, server: str) -> dict[str, Any]:
    return {
        "mode": "online",
        "server": server,
        "phase": last.phase.value,
        "alias": last.alias,
        "from": last.from_collection,
        "to": last.to_collection,
        "model": {"name": last.model.name if last.model else "", "version": last.model.version if last.model else ""},
        "switched": last.switched,
        "embedded": last.embedded_points,
        "without_text": last.without_text_points,
        "removed": last.removed_points,
        "points": last.target_points,
        "passes": last.passes,
        "write_pause_seconds": round(last.write_pause_s, 4),
        "seconds": round(last.elapsed_s, 2),
        "message": last.message,
    }
