"""A real `understanding serve` process on a loopback port, for e2e tests."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from understanding.v1 import understanding_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        self._channel: grpc.Channel | None = None
        self._credentials = credentials

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSTANDING_") or k == "UNDERSTANDING_CACHE"}
        env.update(
            {
                "UNDERSTANDING_GRPC_PORT": str(self.port),
                "UNDERSTANDING_DATA_DIR": str(self.data_dir),
                "UNDERSTANDING_LOG_LEVEL": "INFO",
                "UNDERSTANDING_SHUTDOWN_GRACE_S": "5",
                "UNDERSTANDING_METRICS_PORT": "0",  # a free port, found by metrics_port()
            }
        )
        env.update(self._env)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "understanding", "serve"], cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    def health_status(self, service: str = "") -> int | None:
        """Health status, or None when the server does not answer yet."""
        try:
            stub = health_pb2_grpc.HealthStub(self.channel)
            return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1).status)
        except grpc.RpcError:
            return None

    def wait_serving(self, timeout_s: float = 120.0) -> list[int | None]:
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
                self._channel = grpc.insecure_channel(self.target)
            else:
                self._channel = grpc.secure_channel(self.target, self._credentials)
        return self._channel

    @property
    def stub(self) -> understanding_pb2_grpc.UnderstandingStub:
        return understanding_pb2_grpc.UnderstandingStub(self.channel)

    def metrics_port(self) -> int:
        """The metrics port the server logged last (`metrics listening`): restarts append to the log."""
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if '"metrics listening"' in line]
        if not lines:
            raise LookupError(f"no metrics port in the log:\n{self.log()}")
        return int(json.loads(lines[-1])["metrics_port"])

    def metrics(self) -> str:
        """The Prometheus text exposition, scraped now."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port()}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)
