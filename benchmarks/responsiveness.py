"""Start-up, memory, and event-loop health: cheap RPCs stay fast while heavy work runs.

    python benchmarks/responsiveness.py [--quick]

Reports time from process start to health SERVING, resident memory with all
models loaded, and the latency of cheap RPCs (health Check, GetJob) idle
(baseline) and while two transcriptions run (service). CPU work runs in worker
threads, so the loop should keep answering; the ratio shows what is left of
the 2 cores for it.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import percentile, result, start_server  # noqa: E402


def probe(target: str, seconds: float) -> tuple[list[float], list[float]]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tests.support.jobs import job_requests, text_spec
    from understanding.v1 import understanding_pb2 as pb
    from understanding.v1 import understanding_pb2_grpc

    md = [("x-tenant-id", "bench")]
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stub = understanding_pb2_grpc.UnderstandingStub(channel)
        job = stub.SubmitJob(job_requests(text_spec("probe job")), metadata=md)
        checks, gets = [], []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            checks.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            stub.GetJob(pb.GetJobRequest(job_id=job.job_id), metadata=md, timeout=10)
            gets.append(time.perf_counter() - t0)
            time.sleep(0.01)
        return checks, gets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import psutil

    from benchmarks.speech_rtf import make_clip, upload

    work = pathlib.Path(tempfile.mkdtemp(prefix="resp-bench-"))
    clip = make_clip(15.0 if args.quick else 60.0, work)
    server = start_server()
    try:
        rss = psutil.Process(server.proc.pid).memory_info().rss
        upload(server.target, clip, "warm")
        idle_checks, idle_gets = probe(server.target, 2.0 if args.quick else 5.0)
        busy: list[float] = []
        workers = [
            threading.Thread(target=lambda m=m: busy.append(upload(server.target, clip, m)))
            for m in ("heavy-a", "heavy-b")
        ]
        for w in workers:
            w.start()
        time.sleep(1.0)
        load_checks, load_gets = probe(server.target, 2.0 if args.quick else 8.0)
        for w in workers:
            w.join()
    finally:
        server.stop()
    print(f"start to SERVING           {server.serving_after_s:.1f} s")
    print(f"RSS after warm-up          {rss / 2**20:.0f} MiB")
    for name, idle, loaded in (("health Check", idle_checks, load_checks), ("GetJob", idle_gets, load_gets)):
        print(
            f"{name:14} idle p50 {percentile(idle, 50) * 1e3:6.2f} ms p99 {percentile(idle, 99) * 1e3:6.2f} ms | "
            f"during 2 transcriptions p50 {percentile(loaded, 50) * 1e3:6.2f} ms p99 {percentile(loaded, 99) * 1e3:6.2f} ms"
        )
    result("start-up: process start to SERVING (s)", server.serving_after_s, None, "report", "s")
    result("RSS with all models loaded (MiB)", rss / 2**20, None, "report", "MiB")
    result(
        "health p99 during transcription vs idle (ms)",
        percentile(load_checks, 99) * 1e3,
        percentile(idle_checks, 99) * 1e3,
        "report",
        "ms",
    )
    result(
        "GetJob p99 during transcription vs idle (ms)",
        percentile(load_gets, 99) * 1e3,
        percentile(idle_gets, 99) * 1e3,
        "report",
        "ms",
    )


if __name__ == "__main__":
    main()
