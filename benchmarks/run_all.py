"""Run every benchmark script and print one summary table.

    python benchmarks/run_all.py [--quick]

Collects the `RESULT {json}` lines each script prints. Figures are printed,
never asserted (CI runs --quick so the scripts cannot rot).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    extra = sys.argv[1:]
    rows = []
    failures = []
    for script in sorted(HERE.glob("*.py")):
        if script.name.startswith("_") or script.name == "run_all.py":
            continue
        print(f"== {script.name} {' '.join(extra)}", flush=True)
        proc = subprocess.run([sys.executable, str(script), *extra], capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            failures.append(script.name)
            sys.stdout.write(proc.stderr[-3000:])
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                rows.append((script.name, json.loads(line[len("RESULT ") :])))
    print()
    print(f"{'script':24} {'figure':52} {'service':>10} {'baseline':>10} {'ratio':>7} {'target':>10}")
    for name, r in rows:
        base = "" if r["baseline"] is None else f"{r['baseline']:.3f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{name:24} {r['figure'][:52]:52} {r['service']:10.3f} {base:>10} {ratio:>7} {r['target']:>10}")
    if failures:
        print(f"benchmark scripts failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
