"""`understanding media get|delete MEDIA_ID`: inspect or remove an indexed media."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from understanding.cli import connect, output

if TYPE_CHECKING:
    from understanding.cli import Subcommands


def register(sub: Subcommands) -> None:
    media = sub.add_parser("media", help="stored media: get, delete", description="Inspect or remove an indexed media.")
    media_sub = media.add_subparsers(dest="media_command", required=True, metavar="{get,delete}")
    for name, fn, text in (
        ("get", run_get, "show every stored chunk of a media"),
        ("delete", run_delete, "remove every point of a media (publishes a MediaDeletedEvent)"),
    ):
        p = media_sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("media_id")
        connect.add_client_arguments(p)
        p.set_defaults(fn=fn)


def run_get(args: argparse.Namespace) -> int:
    from rich.table import Table

    from understanding_client import UnderstandingError

    with connect.client(args) as client:
        try:
            media = client.get_media(args.media_id)
        except UnderstandingError as error:
            return output.report(error, client.target)
    if args.json:
        output.print_json(output.message_dict(media.raw))
        return 0
    table = Table(title=f"{media.media_id}  {media.modality.value}  version {media.version}")
    for col in ("chunk", "time", "text", "tags"):
        table.add_column(col)
    for p in media.points:
        span = f"{p.start_s:.1f}-{p.end_s:.1f}s" if p.end_s else ""
        table.add_row(str(p.chunk_index), span, p.text[:100], ", ".join(tag.label for tag in p.tags))
    output.console().print(table)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from understanding_client import UnderstandingError

    with connect.client(args) as client:
        try:
            deleted = client.delete_media(args.media_id)
        except UnderstandingError as error:
            return output.report(error, client.target)
    if args.json:
        output.print_json({"points_deleted": deleted})
    else:
        print(f"deleted {deleted} point(s) of {args.media_id}")
    return 0
