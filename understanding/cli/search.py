"""`understanding search QUERY`: semantic search on a running server."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from understanding.cli import connect, output

if TYPE_CHECKING:
    from understanding.cli import Subcommands


def register(sub: Subcommands) -> None:
    search = sub.add_parser("search", help="semantic search on a running server")
    search.add_argument("query")
    search.add_argument("-k", "--top-k", type=int, default=10)
    search.add_argument("--group", action="store_true", help="best hit per media")
    search.add_argument(
        "--modality", action="append", choices=("text", "speech", "video"), help="only this modality (repeatable)"
    )
    search.add_argument("--media-id", action="append", help="only this media (repeatable)")
    search.add_argument("--tag", action="append", help="only hits with this tag label, e.g. topic.sports (repeatable)")
    search.add_argument("--language", action="append", help="only this language, ISO 639-1 (repeatable)")
    search.add_argument(
        "--mode", choices=("auto", "dense", "hybrid"), default="auto", help="ranking (default: hybrid for text)"
    )
    search.add_argument("--min-score", type=float, help="drop hits scoring below this")
    connect.add_client_arguments(search)
    search.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from understanding_client import UnderstandingError

    with connect.client(args) as client:
        try:
            results = client.search(
                args.query,
                top_k=args.top_k,
                group_by_media=args.group,
                score_threshold=args.min_score,
                mode=args.mode,
                modalities=args.modality,
                media_ids=args.media_id,
                tags_any=args.tag,
                languages=args.language,
            )
        except UnderstandingError as error:
            return output.report(error, client.target)
    if args.json:
        output.print_json(output.message_dict(results.raw))
        return 0
    table = Table(title=f"{len(results)} result(s) for {args.query!r}")
    for col in ("score", "media", "modality", "time", "text", "tags"):
        table.add_column(
            col, justify="right" if col == "score" else "left", overflow="fold" if col == "media" else "ellipsis"
        )
    for hit in results:
        span = f"{hit.start_s:.1f}-{hit.end_s:.1f}s" if hit.end_s else ""
        media = hit.media_id + (f" (+{hit.group_hits - 1})" if hit.group_hits > 1 else "")
        tags = ", ".join(tag.label for tag in hit.tags)
        table.add_row(f"{hit.score:.3f}", media, hit.modality.value, span, hit.text[:80], tags)
    console = output.console()
    console.print(table)
    if not results.hits:
        console.print("no results: index something first (`understanding analyze --text ...`) or loosen the filters.")
    return 0
