"""A real `understanding serve` process on a loopback port, for e2e tests."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from understanding.v1 import understanding_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PATIENT_RPC_S = 30.0  # deadline of a cheap probe RPC (health): bounds a hang, never trips on a slow machine
# A channel to a server that is still starting (or restarting) retries the connection
# within a second instead of gRPC's default back-off of up to two minutes.
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    command: str, log_path: pathlib.Path, settings: Mapping[str, str]
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """`python -m understanding <command>` with none of this shell's UNDERSTANDING_* settings
    (but the model cache) and `settings` instead; output appended to `log_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSTANDING_") or k == "UNDERSTANDING_CACHE"}
    env.update(settings)
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "understanding", command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return proc, log


def stop_process(proc: subprocess.Popen[bytes] | None, log: IO[bytes] | None, sig: int, timeout_s: float) -> int:
    """Send `sig`, wait up to `timeout_s`, then kill; the exit code (0 if never started)."""
    if proc is None:
        return 0
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if log is not None:
        log.close()
    return int(proc.returncode)


class ServerProcess:
    def __init__(
        self,
        data_dir: pathlib.Path,
        env: Mapping[str, str] | None = None,
        *,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self._env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self._credentials = credentials

    def configure(self, env: Mapping[str, str]) -> None:
        """Settings for the next `start` (a restart with another configuration)."""
        self._env = dict(env)

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        defaults = {
            "UNDERSTANDING_GRPC_PORT": str(self.port),
            "UNDERSTANDING_DATA_DIR": str(self.data_dir),
            "UNDERSTANDING_LOG_LEVEL": "INFO",
            "UNDERSTANDING_SHUTDOWN_GRACE_S": "5",
            "UNDERSTANDING_METRICS_PORT": "0",  # a free port, found by metrics_port()
        }
        self.proc, self._log = spawn("serve", self.log_path, {**defaults, **self._env})
        return self

    def health_status(self, service: str = "") -> int | None:
        """Health status, or None when the server does not answer (yet).

        A server that is not listening answers at once (UNAVAILABLE); the deadline only
        bounds a call to a listening server, which may be slow on a loaded machine."""
        try:
            stub = health_pb2_grpc.HealthStub(self.channel)
            return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=PATIENT_RPC_S).status)
        except grpc.RpcError:
            return None

    def wait_serving(self, timeout_s: float = 300.0) -> list[int | None]:
        """Poll health until SERVING; returns the statuses seen on the way."""
        seen: list[int | None] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            status = self.health_status()
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == health_pb2.HealthCheckResponse.SERVING:
                return seen
            time.sleep(0.1)
        raise TimeoutError(f"server not SERVING after {timeout_s}s:\n{self.log()}")

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            if self._credentials is None:
                self._channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
            else:
                self._channel = grpc.secure_channel(self.target, self._credentials, options=CHANNEL_OPTIONS)
        return self._channel

    @property
    def stub(self) -> understanding_pb2_grpc.UnderstandingStub:
        return understanding_pb2_grpc.UnderstandingStub(self.channel)

    def metrics_port(self) -> int:
        """The metrics port the server logged last (`metrics listening`): restarts append to the log."""
        lines = [
            line for line in self.log_path.read_text(errors="replace").splitlines() if '"metrics listening"' in line
        ]
        if not lines:
            raise LookupError(f"no metrics port in the log:\n{self.log()}")
        return int(json.loads(lines[-1])["metrics_port"])

    def metrics(self) -> str:
        """The Prometheus text exposition, scraped now."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port()}/metrics", timeout=PATIENT_RPC_S
        ) as response:
            return str(response.read().decode())

    def outbox(self, topic: str | None = None) -> list[bytes]:
        """The event payloads waiting in the server's outbox (of one topic), oldest first (opened read-only)."""
        db = sqlite3.connect(f"file:{self.data_dir / 'outbox.sqlite3'}?mode=ro", uri=True)
        try:
            if topic is not None:
                return [row[0] for row in db.execute("SELECT value FROM outbox WHERE topic = ? ORDER BY seq", (topic,))]
            return [row[0] for row in db.execute("SELECT value FROM outbox ORDER BY seq")]
        finally:
            db.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 120.0) -> int:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        return stop_process(self.proc, self._log, sig, timeout_s)
