"""Load test from a second process: many concurrent clients mixing RPCs for a bounded time.

    python benchmarks/load_test.py [--quick | --soak] [--seconds S] [--clients N]
                                   [--target HOST:PORT --server-pid PID] [--json-out PATH]

Starts a server (or targets a running one), seeds a few media and a job, then
runs N client threads on loopback, each picking its next call at random:
AnalyzeText, Search, GetMedia, health Check, GetJob, and a small Transcribe.
Prints throughput, p50/p99 latency and error counts per RPC and the server's
RSS before, at its peak and after, as `RESULT` lines for run_all.py, plus one
`SUMMARY {json}` line (also written to --json-out) for tests/e2e/test_load.py.

Expected errors are RESOURCE_EXHAUSTED (back-pressure, with a retry hint);
anything else is unexpected. `--soak` runs 30 minutes and samples RSS every
30 s, so a slow leak shows as drift.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import percentile, result, start_server  # noqa: E402

# RPC -> weight in the mix
MIX = {"AnalyzeText": 30, "Search": 25, "GetMedia": 15, "Health": 10, "GetJob": 12, "Transcribe": 3, "ListJobs": 5}
TENANTS = ("load-a", "load-b")
WORDS = (
    "budget forecast meeting report quarterly revenue customer support incident outage deploy release "
    "football match goal referee weather storm rain forecast recipe oven garlic pasta travel flight hotel"
).split()
EXPECTED = {"RESOURCE_EXHAUSTED"}


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.codes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.examples: dict[str, str] = {}

    def record(self, rpc: str, seconds: float, code: str, detail: str = "") -> None:
        with self.lock:
            self.codes[rpc][code] += 1
            if code == "OK":
                self.latency[rpc].append(seconds)
            elif code not in self.examples:
                self.examples[f"{rpc}:{code}"] = detail[:300]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 40))).capitalize() + "."


def client(target: str, clip: bytes, seeds: dict[str, Any], deadline: float, stats: Stats, seed: int) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tests.support.upload import upload_requests
    from understanding.v1 import understanding_pb2 as pb
    from understanding.v1 import understanding_pb2_grpc

    rng = random.Random(seed)
    names, weights = zip(*MIX.items(), strict=True)
    with grpc.insecure_channel(target) as channel:
        stub = understanding_pb2_grpc.UnderstandingStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        n = 0
        while time.monotonic() < deadline:
            rpc = rng.choices(names, weights)[0]
            tenant = rng.choice(TENANTS)
            md = [("x-tenant-id", tenant)]
            calls: dict[str, Callable[[], Any]] = {
                "AnalyzeText": lambda: stub.AnalyzeText(
                    pb.AnalyzeTextRequest(items=[pb.TextItem(media_id=f"load-{seed}-{n % 50}", text=sentence(rng)) for _ in range(rng.randint(1, 4))]),
                    metadata=md, timeout=60,
                ),
                "Search": lambda: stub.Search(pb.SearchRequest(text=" ".join(rng.sample(WORDS, 3)), top_k=10), metadata=md, timeout=60),
                "GetMedia": lambda: stub.GetMedia(pb.GetMediaRequest(media_id=rng.choice(seeds["media"][tenant])), metadata=md, timeout=60),
                "Health": lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=60),
                "GetJob": lambda: stub.GetJob(pb.GetJobRequest(job_id=seeds["jobs"][tenant]), metadata=md, timeout=60),
                "ListJobs": lambda: stub.ListJobs(pb.ListJobsRequest(page_size=20), metadata=md, timeout=60),
                "Transcribe": lambda: stub.Transcribe(
                    upload_requests(clip, pb.UploadHeader(media_id=f"load-clip-{seed}", filename="clip.wav")), metadata=md, timeout=120
                ),
            }  # fmt: skip
            started = time.perf_counter()
            try:
                calls[rpc]()
                stats.record(rpc, time.perf_counter() - started, "OK")
            except grpc.RpcError as error:
                stats.record(rpc, time.perf_counter() - started, error.code().name, error.details() or "")
                if error.code().name in EXPECTED:
                    time.sleep(0.05)
            n += 1


def seed_data(target: str) -> dict[str, Any]:
    import grpc

    from tests.support.jobs import job_requests, text_spec
    from understanding.v1 import understanding_pb2 as pb
    from understanding.v1 import understanding_pb2_grpc

    rng = random.Random(0)
    seeds: dict[str, Any] = {"media": {}, "jobs": {}}
    with grpc.insecure_channel(target) as channel:
        stub = understanding_pb2_grpc.UnderstandingStub(channel)
        for tenant in TENANTS:
            md = [("x-tenant-id", tenant)]
            ids = [f"seed-{i}" for i in range(10)]
            stub.AnalyzeText(
                pb.AnalyzeTextRequest(items=[pb.TextItem(media_id=m, text=sentence(rng)) for m in ids]),
                metadata=md,
                timeout=120,
            )
            seeds["media"][tenant] = ids
            seeds["jobs"][tenant] = stub.SubmitJob(
                job_requests(text_spec("seed job for GetJob")), metadata=md, timeout=60
            ).job_id
    return seeds


class RssSampler(threading.Thread):
    def __init__(self, pid: int | None, every_s: float) -> None:
        super().__init__(daemon=True)
        import psutil

        self._proc = psutil.Process(pid) if pid else None
        self._every = every_s
        self._stop = threading.Event()
        self.samples: list[tuple[float, int]] = []

    def rss(self) -> int:
        return int(self._proc.memory_info().rss) if self._proc is not None else 0

    def run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self._every):
            self.samples.append((round(time.monotonic() - started, 1), self.rss()))

    def stop(self) -> None:
        self._stop.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 s, 4 clients (CI: run_all --quick)")
    parser.add_argument("--soak", action="store_true", help="30 minutes, 16 clients, RSS sampled every 30 s")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--clients", type=int)
    parser.add_argument("--target", help="a running server (default: start one)")
    parser.add_argument("--server-pid", type=int, help="its pid, for RSS figures")
    parser.add_argument("--json-out", type=pathlib.Path)
    parser.add_argument("--skip", action="append", default=[], choices=sorted(MIX), help="leave an RPC out of the mix")
    args = parser.parse_args()
    seconds = args.seconds or (8.0 if args.quick else 1800.0 if args.soak else 60.0)
    for rpc in args.skip:
        MIX.pop(rpc)
    clients = args.clients or (4 if args.quick else 16)

    from tests.fixtures import speech

    work = pathlib.Path(tempfile.mkdtemp(prefix="load-test-"))
    clip = speech.make_speech_wav("Load test clip: a short sentence to transcribe.", work / "clip.wav").read_bytes()
    server = None
    if args.target:
        target, pid = args.target, args.server_pid
    else:
        server = start_server({"UNDERSTANDING_METRICS_PORT": "0"})
        target, pid = server.target, server.proc.pid
    try:
        seeds = seed_data(target)
        sampler = RssSampler(pid, 30.0 if args.soak else 1.0)
        rss_before = sampler.rss()
        sampler.start()
        stats = Stats()
        deadline = time.monotonic() + seconds
        started = time.perf_counter()
        threads = [
            threading.Thread(target=client, args=(target, clip, seeds, deadline, stats, i)) for i in range(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        sampler.stop()
        time.sleep(1.0)  # let the server settle (batchers flush, buffers free)
        rss_after = sampler.rss()
        alive = server is None or server.proc.poll() is None
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    total = sum(sum(c.values()) for c in stats.codes.values())
    ok = sum(c["OK"] for c in stats.codes.values())
    unexpected = {
        f"{rpc}:{code}": n
        for rpc, c in stats.codes.items()
        for code, n in c.items()
        if code != "OK" and code not in EXPECTED
    }
    per_rpc = {
        rpc: {
            "calls": sum(stats.codes[rpc].values()),
            "ok": stats.codes[rpc]["OK"],
            "p50_ms": round(percentile(stats.latency[rpc], 50) * 1e3, 2),
            "p99_ms": round(percentile(stats.latency[rpc], 99) * 1e3, 2),
            "errors": {k: v for k, v in stats.codes[rpc].items() if k != "OK"},
        }
        for rpc in sorted(stats.codes)
    }
    peak = max([rss_before, rss_after, *(s for _, s in sampler.samples)])
    summary = {
        "seconds": round(elapsed, 1),
        "clients": clients,
        "calls": total,
        "ok": ok,
        "throughput_rps": round(ok / elapsed, 1),
        "unexpected_errors": unexpected,
        "error_examples": stats.examples,
        "rpcs": per_rpc,
        "server_alive": alive,
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_peak_mib": round(peak / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1),
        "rss_samples_mib": [(t, round(s / 2**20, 1)) for t, s in sampler.samples] if args.soak else [],
    }
    print(f"{clients} clients for {elapsed:.1f} s on {target}: {ok}/{total} OK, {summary['throughput_rps']} RPC/s")
    print(f"{'rpc':12} {'calls':>7} {'ok':>7} {'p50 ms':>9} {'p99 ms':>9}  errors")
    for rpc, r in per_rpc.items():
        print(f"{rpc:12} {r['calls']:7d} {r['ok']:7d} {r['p50_ms']:9.2f} {r['p99_ms']:9.2f}  {r['errors'] or ''}")
    print(
        f"server RSS before {summary['rss_before_mib']} MiB, peak {summary['rss_peak_mib']} MiB, after {summary['rss_after_mib']} MiB"
    )
    if unexpected:
        print(f"UNEXPECTED ERRORS {unexpected}: {stats.examples}")
    result("load: throughput, mixed RPCs (RPC/s)", ok / elapsed, None, "", "rpc/s")
    for rpc in ("AnalyzeText", "Search", "GetMedia", "GetJob", "Health"):
        if rpc in per_rpc:
            result(f"load: {rpc} p99 (ms)", per_rpc[rpc]["p99_ms"], per_rpc[rpc]["p50_ms"], "ratio = p99/p50", "ms")
    result("load: unexpected errors", float(sum(unexpected.values())), None, "0", "")
    result("load: server RSS after/before (MiB)", rss_after / 2**20, rss_before / 2**20 or None, "ratio < 1.5", "MiB")
    line = json.dumps(summary)
    print("SUMMARY " + line, flush=True)
    if args.json_out:
        args.json_out.write_text(line)
    return 0 if alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
