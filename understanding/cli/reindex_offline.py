"""`understanding reindex --offline`: reindex the local store in this process (the server must be stopped).

Unlike every other client command this one calls into the service itself
(`understanding.core.reindex.reindex_offline`, the same re-embedding the online
reindex runs): that call is here, so the service can move without touching the
rest of the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys

from understanding.cli import output


def run(args: argparse.Namespace) -> int:
    """Re-embed the local store with `args.to_model` into its collection, then move the alias (unless --no-switch)."""
    from understanding import logs
    from understanding.config import Settings
    from understanding.core.embedding import EmbeddingFactory
    from understanding.core.reindex import reindex_offline
    from understanding.domain import InvalidInput

    settings = Settings.from_env()
    logs.configure(settings.log_level, json_lines=settings.log_json)
    announced = False

    def progress(done: int, total: int) -> None:
        nonlocal announced
        if not announced:
            print(f"re-embedding {total} points", file=sys.stderr)
            announced = True
        print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        result = reindex_offline(
            EmbeddingFactory(settings),
            args.to_model,
            batch_size=args.batch_size,
            no_switch=args.no_switch,
            progress=progress,
        )
    except InvalidInput as error:
        return output.fail(error.message)
    except LookupError as error:
        return output.fail(str(error))
    except Exception as error:  # noqa: BLE001 - e.g. the embedded store's WAL is locked
        busy = "the embedded store belongs to one process: stop `understanding serve` first."
        hints = [] if settings.qdrant_url else [busy]
        return output.fail(f"cannot reindex the current collection: {error}", *hints, code=1)
    if announced:
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
                "Start the service with UNDERSTANDING_EMBEDDING_MODEL unset (the default follows the alias) "
                f"or set to {args.to_model}"
            )
    return 0
