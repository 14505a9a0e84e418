"""Print the project's import graph between its top-level modules and packages.

    python scripts/import_graph.py            # edges "a -> b" (direct imports), one per line
    python scripts/import_graph.py --dot      # the same as Graphviz dot

Uses grimp (the engine under import-linter), so it reads the source without
importing it. Run it on two commits to see what a change moved.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dot", action="store_true", help="print Graphviz dot")
    parser.add_argument("--package", default="understanding")
    args = parser.parse_args()
    import grimp

    graph = grimp.build_graph(args.package)
    generated = {f"{args.package}.v1", f"{args.package}.internal"}

    def top(module: str) -> str:
        parts = module.split(".")
        name = ".".join(parts[:2]) if len(parts) > 1 else parts[0]
        return "stubs" if name in generated else name.removeprefix(f"{args.package}.")

    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = top(module), top(imported)
            if a != b and a != "stubs":
                edges[a].add(b)
    if args.dot:
        print("digraph imports {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
    else:
        for a in sorted(edges):
            print(f"{a} -> {', '.join(sorted(edges[a]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
