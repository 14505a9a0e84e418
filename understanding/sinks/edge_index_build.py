"""Child process of the embedded store's background index build.

    python -m understanding.sinks.edge_index_build SHARD_DIR

Loads the shard copy at SHARD_DIR, builds its HNSW index (`optimize`, which
holds the GIL for its whole run: a child process keeps that off the serving
process), flushes and closes it. Exit 0 when segments were optimized, 3 when
there was nothing to do, 1 on an error. Imports only qdrant-edge.
"""

from __future__ import annotations

import os
import sys

# Nothing changed: the caller discards the copy.
NOTHING_TO_DO = 3


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    import qdrant_edge as qe

    # Serving comes first: the build takes the CPU time the service leaves.
    os.nice(10)
    shard = qe.EdgeShard.load(argv[1], None)
    try:
        changed = shard.optimize()
        shard.flush()
    finally:
        shard.close()
    return 0 if changed else NOTHING_TO_DO


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
