#!/usr/bin/env bash
# Run a command while a CPU burner keeps the machine busy, the way a shared CI
# machine is: `scripts/under_load.sh .venv/bin/python -m pytest tests/unit`.
# UNDER_LOAD_CPUS burner processes (default: one per core) run for as long as
# the command does and are stopped with it. stress-ng comes from
# scripts/bootstrap.sh. The command's exit status is this script's.
set -euo pipefail
[[ $# -gt 0 ]] || { sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
command -v stress-ng >/dev/null || { echo "under_load.sh: stress-ng is missing (make setup installs it)" >&2; exit 2; }
cpus="${UNDER_LOAD_CPUS:-$(nproc)}"
stress-ng --cpu "$cpus" --quiet &
burner=$!
trap 'kill "$burner" 2>/dev/null || true; wait "$burner" 2>/dev/null || true' EXIT
"$@"
