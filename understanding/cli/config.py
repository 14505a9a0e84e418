"""`understanding config`: every setting with its current value and meaning."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from understanding.cli import output

if TYPE_CHECKING:
    from understanding.cli import Subcommands


def register(sub: Subcommands) -> None:
    config = sub.add_parser("config", help="list every setting with its current value")
    config.add_argument("--json", action="store_true")
    config.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from understanding.config import Settings

    rows = Settings.from_env().describe()
    if args.json:
        output.print_json([{"variable": v, "value": val, "doc": d} for v, val, d in rows])
        return 0
    from rich.table import Table

    table = Table(title="understanding settings")
    for col in ("variable", "value", "meaning"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    output.console().print(table)
    return 0
