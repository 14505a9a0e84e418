"""The Kafka job backend in real processes: `serve` replicas and `understanding worker`s."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from typing import IO

from tests.support.server import ServerProcess, spawn, stop_process


def kafka_backend_env(bootstrap: str, blob_dir: pathlib.Path, **extra: str) -> dict[str, str]:
    """Settings for one test's cluster: its own topics and groups on the given broker."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "UNDERSTANDING_KAFKA_BOOTSTRAP": bootstrap,
        "UNDERSTANDING_JOB_BACKEND": "kafka",
        "UNDERSTANDING_BLOB_DIR": str(blob_dir),
        "UNDERSTANDING_KAFKA_JOBS_TOPIC": f"understanding.jobs.v1.test-{tag}",
        "UNDERSTANDING_KAFKA_JOB_STATE_TOPIC": f"understanding.jobs.state.v1.test-{tag}",
        "UNDERSTANDING_KAFKA_RESULTS_TOPIC": f"understanding.results.v1.test-{tag}",
        "UNDERSTANDING_KAFKA_JOB_STATUS_TOPIC": f"understanding.jobs.status.v1.test-{tag}",
        "UNDERSTANDING_KAFKA_ANALYSIS_TOPIC": f"understanding.analysis.v1.test-{tag}",
        "UNDERSTANDING_KAFKA_JOB_DLQ_TOPIC": f"understanding.jobs.dlq.v1.test-{tag}",
        "UNDERSTANDING_KAFKA_WORKER_GROUP": f"workers-{tag}",
        "UNDERSTANDING_KAFKA_INDEXER_GROUP": f"indexer-{tag}",
        "UNDERSTANDING_KAFKA_JOB_PARTITIONS": "4",
    }
    env.update({f"UNDERSTANDING_{k.upper()}": v for k, v in extra.items()})
    return env


def start_api(data_dir: pathlib.Path, env: Mapping[str, str], **extra: str) -> ServerProcess:
    server = ServerProcess(data_dir, env={**env, **{f"UNDERSTANDING_{k.upper()}": v for k, v in extra.items()}}).start()
    server.wait_serving()
    return server


class WorkerProcess:
    """A real `understanding worker` subprocess with its own data dir and log file."""

    def __init__(self, data_dir: pathlib.Path, env: Mapping[str, str]) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir / "worker.log"
        self._env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        defaults = {"UNDERSTANDING_DATA_DIR": str(self.data_dir), "UNDERSTANDING_SHUTDOWN_GRACE_S": "20"}
        self.proc, self._log = spawn("worker", self.log_path, {**defaults, **self._env})
        return self

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            if '"worker ready"' in self.log():
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def ran(self, job_id: str) -> bool:
        """Whether this worker started an attempt of the job (it logs `job running`)."""
        return any('"job running"' in line and job_id in line for line in self.log().splitlines())

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 120.0) -> int:
        return stop_process(self.proc, self._log, sig, timeout_s)
