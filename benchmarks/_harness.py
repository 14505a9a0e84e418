"""Shared bits of the benchmark scripts: a real server process and result lines.

Every script prints a human-readable table and, for `run_all.py`, one
`RESULT {json}` line per figure: figure, service, baseline, ratio, target.
Benchmarks print figures; they never assert timings.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    target: str
    data_dir: pathlib.Path
    started_s: float
    serving_after_s: float

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_server(env: Mapping[str, str] | None = None) -> Server:
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="understanding-bench-"))
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSTANDING_") or k == "UNDERSTANDING_CACHE"}
    full_env.update(
        {
            "UNDERSTANDING_GRPC_PORT": str(port),
            "UNDERSTANDING_DATA_DIR": str(data_dir),
            "UNDERSTANDING_LOG_LEVEL": "WARNING",
            "UNDERSTANDING_METRICS_PORT": "0",
        }
    )
    full_env.update(env or {})
    log = (data_dir / "server.log").open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "understanding", "serve"], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
    )
    target = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(target)
    stub = health_pb2_grpc.HealthStub(channel)
    while True:
        if proc.poll() is not None:
            raise RuntimeError((data_dir / "server.log").read_text()[-3000:])
        try:
            if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                break
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    channel.close()
    return Server(proc, target, data_dir, started, time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]


def result(figure: str, service: float, baseline: float | None, target: str, unit: str = "") -> None:
    ratio = (service / baseline) if baseline else None
    print(
        "RESULT "
        + json.dumps(
            {"figure": figure, "service": service, "baseline": baseline, "ratio": ratio, "target": target, "unit": unit}
        ),
        flush=True,
    )
