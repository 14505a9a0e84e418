"""`understanding reindex --offline`: reindex the local store in this process (the server must be stopped).

Unlike every other client command this one calls into the service itself
(understanding.app, understanding.models, understanding.sinks, understanding.reindex):
those calls are all here, so the composition root can move without touching the rest of the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys

from understanding.cli import output


def run(args: argparse.Namespace) -> int:
    """Re-embed the local store with `args.to_model` into its collection, then move the alias (unless --no-switch)."""
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
        return output.fail(str(error))
    try:
        source = open_store(settings, None, None, role="current")
    except LookupError as error:
        return output.fail(str(error))
    except Exception as error:  # noqa: BLE001 - e.g. the embedded store's WAL is locked
        busy = "the embedded store belongs to one process: stop `understanding serve` first."
        hints = [] if settings.qdrant_url else [busy]
        return output.fail(f"cannot open the current collection: {error}", *hints, code=1)
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
            from understanding.reindex import model_spec_of

            target.promote(alias, model_path=model_spec_of(args.to_model, model_dir))
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
            print(
                "Start the service with UNDERSTANDING_EMBEDDING_MODEL unset (`packaged`: it follows the alias) "
                f"or set to {args.to_model}"
            )
    return 0
