"""A real Qdrant server for tests and benchmarks.

Either the server at `UNDERSTANDING_TEST_QDRANT_URL` (gRPC on the port after
it unless `UNDERSTANDING_TEST_QDRANT_GRPC_PORT` says otherwise: `.ci/run`
starts one with scripts/qdrant.sh), or a private server started from the
binary beside the checkout (`../shared/tools/qdrant/qdrant`, overridden by
`UNDERSTANDING_QDRANT_BIN`) on free loopback ports with its own storage, which
fault tests may kill, pause and restart. Without either, tests that need it
skip, except under CI (`CI=true`), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN_ENV = "UNDERSTANDING_QDRANT_BIN"
URL_ENV = "UNDERSTANDING_TEST_QDRANT_URL"
GRPC_PORT_ENV = "UNDERSTANDING_TEST_QDRANT_GRPC_PORT"


@dataclass(frozen=True, slots=True)
class QdrantEndpoint:
    url: str  # REST
    grpc_port: int


def qdrant_binary() -> pathlib.Path | None:
    path = pathlib.Path(os.environ.get(BIN_ENV) or ROOT.parent / "shared" / "tools" / "qdrant" / "qdrant")
    return path if path.is_file() and os.access(path, os.X_OK) else None


def configured_endpoint() -> QdrantEndpoint | None:
    url = os.environ.get(URL_ENV, "").strip().rstrip("/")
    if not url:
        return None
    port = int(url.rsplit(":", 1)[1]) if url.count(":") == 2 else 6333
    return QdrantEndpoint(url, int(os.environ.get(GRPC_PORT_ENV) or port + 1))


def unavailable(reason: str, *, binary_only: bool = False) -> None:
    """Skip the test, or fail it under CI: CI must run every Qdrant test."""
    binary = f"{BIN_ENV} to a Qdrant server binary (default {ROOT.parent / 'shared' / 'tools' / 'qdrant' / 'qdrant'})"
    if binary_only:
        message = f"{reason}: this test kills and pauses its own server; set {binary}"
    else:
        message = f"{reason}: set {URL_ENV} to a running Qdrant server, or {binary}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the Qdrant server tests, but {message}", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _dying_with_parent(argv: list[str]) -> list[str]:
    """`argv` run so that the server gets SIGKILL if the test process dies without stopping it.

    util-linux's setpriv (always in Debian) sets PR_SET_PDEATHSIG and execs the server, same pid.
    Not a `preexec_fn`: that forks a process full of gRPC threads and runs Python in the child,
    where gRPC's fork handlers once broke the child before exec (seen in a stressed run).
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


class QdrantServer:
    """One server process on loopback with its own storage (kept across restarts)."""

    def __init__(self, binary: pathlib.Path, run_dir: pathlib.Path) -> None:
        self.binary = binary
        self.run_dir = run_dir
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = run_dir / "qdrant.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def endpoint(self) -> QdrantEndpoint:
        return QdrantEndpoint(self.url, self.grpc_port)

    def start(self) -> QdrantServer:
        (self.run_dir / "storage").mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "QDRANT__SERVICE__HOST": "127.0.0.1",
            "QDRANT__SERVICE__HTTP_PORT": str(self.http_port),
            "QDRANT__SERVICE__GRPC_PORT": str(self.grpc_port),
            "QDRANT__STORAGE__STORAGE_PATH": str(self.run_dir / "storage"),
            "QDRANT__STORAGE__SNAPSHOTS_PATH": str(self.run_dir / "snapshots"),
            "QDRANT__TELEMETRY_DISABLED": "true",
            "QDRANT__LOG_LEVEL": "WARN",
        }
        with self._log.open("ab") as log:
            # cwd = run dir: the server reads ./config and writes ./snapshots there, never beside the binary.
            self.proc = subprocess.Popen(
                _dying_with_parent([str(self.binary)]),
                cwd=self.run_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> QdrantServer:
        """Until /readyz answers 200 (polled: the server has no readiness notification)."""
        deadline = time.monotonic() + timeout_s
        while not ready(self.url):
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"the Qdrant server exited during start-up:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Qdrant server was not ready after {timeout_s:g} s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing flushed, nothing shut down cleanly."""
        assert self.proc is not None
        self.resume()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> QdrantServer:
        """Start again on the same ports and storage (after `kill` or `stop`)."""
        return self.start().wait_ready()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self, tail: int = 40) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-tail:])
        return ""


@contextlib.contextmanager
def private_server(run_dir: pathlib.Path, *, binary_only: bool = False) -> Iterator[QdrantServer]:
    """A fresh server from the binary, stopped afterwards (skips or fails without the binary)."""
    binary = qdrant_binary()
    if binary is None:
        unavailable("no Qdrant server binary", binary_only=binary_only)
    assert binary is not None
    server = QdrantServer(binary, run_dir).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
