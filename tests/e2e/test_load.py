"""The load test (benchmarks/load_test.py) in its CI-bounded form.

A second process starts a server and drives it with concurrent clients mixing
AnalyzeText, Search, GetMedia, health, GetJob, ListJobs and small Transcribe
calls for ~25 s. Asserted: no unexpected error (only RESOURCE_EXHAUSTED
back-pressure is allowed), the server survives, and its memory stays bounded.
No timing is asserted; the figures are printed (`make bench` / `make soak` run
it longer).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("UNDERSTANDING_LOAD_SECONDS", "25"))
RSS_GROWTH_MAX_MIB = 400


def test_mixed_load_from_a_second_process(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "load_test.py"), "--seconds", str(SECONDS), "--clients", "8", "--json-out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 300,
    )  # fmt: skip
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["server_alive"]
    assert summary["unexpected_errors"] == {}, summary["error_examples"]
    assert summary["ok"] > 0 and set(summary["rpcs"]) >= {"AnalyzeText", "Search", "GetMedia", "Health", "GetJob"}
    for rpc, figures in summary["rpcs"].items():
        assert figures["ok"] > 0, (rpc, figures)
    growth = summary["rss_after_mib"] - summary["rss_before_mib"]
    assert growth < RSS_GROWTH_MAX_MIB, f"server RSS grew by {growth:.0f} MiB under load"
