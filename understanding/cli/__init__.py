"""`understanding` command line: run the service, or call a running one through the SDK (understanding_client).

Each module registers its own subcommand(s) and runs them: serve (serve, worker),
config, analyze, live, search, upload, jobs, media, reindex. The client commands share
connect.py (flags -> SDK client) and output.py (JSON, errors with hints, progress
bars); they import no generated stub. Imports of the SDK, rich and the service
happen inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from understanding import __version__
from understanding.cli import analyze, config, jobs, live, media, reindex, search, serve, upload

if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

#: In `--help` order.
COMMANDS = (serve, config, analyze, live, search, upload, jobs, media, reindex)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="understanding", description="Multimodal understanding service.")
    parser.add_argument("--version", action="version", version=f"understanding {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args))
