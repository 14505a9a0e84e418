"""Session fixtures: the real Kafka broker and a real server process."""

from __future__ import annotations

import os
import pathlib
import socket
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.support.kafka import kafka
from tests.support.qdrant import URL_ENV, QdrantEndpoint, configured_endpoint, private_server, ready
from tests.support.server import ServerProcess

KAFKA = os.environ.get("UNDERSTANDING_TEST_KAFKA", "127.0.0.1:19092")

# The CLI the tests run (`python -m understanding ...`) is built on the SDK. The
# editable install provides both (scripts/bootstrap.sh); a checkout run with
# PYTHONPATH pointing at it (a worktree sharing another checkout's venv) gets
# its own SDK too, in this process and in the processes it starts.
SDK_DIR = str(pathlib.Path(__file__).resolve().parents[1] / "clients" / "python")
if SDK_DIR not in sys.path:
    sys.path.insert(0, SDK_DIR)
os.environ["PYTHONPATH"] = os.pathsep.join([SDK_DIR, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def _port_open(target: str) -> bool:
    host, port = target.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The real broker: started by scripts/kafka.sh if it is not running yet."""
    if not _port_open(KAFKA):
        kafka("up")
    return KAFKA


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "qdrant_server: needs a real Qdrant server (UNDERSTANDING_TEST_QDRANT_URL, or the binary beside the "
        "checkout started by the session); skips without one, fails under CI",
    )


@pytest.fixture(scope="session")
def qdrant_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantEndpoint]:
    """A real Qdrant server: the one at UNDERSTANDING_TEST_QDRANT_URL, else a private one from the binary."""
    endpoint = configured_endpoint()
    if endpoint is not None:
        if not ready(endpoint.url):
            pytest.fail(f"{URL_ENV}={endpoint.url} is set but that Qdrant server does not answer /readyz")
        yield endpoint
        return
    with private_server(tmp_path_factory.mktemp("qdrant")) as server:
        yield server.endpoint


@pytest.fixture(scope="session")
def analysis_topic() -> str:
    return f"understanding.analysis.v1.test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def moderation_topic() -> str:
    return f"understanding.moderation.v1.test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def job_status_topic() -> str:
    return f"understanding.jobs.status.v1.test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    analysis_topic: str,
    job_status_topic: str,
    moderation_topic: str,
) -> Iterator[ServerProcess]:
    """One server for the e2e session: embedded Qdrant store, real Kafka."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("server"),
        env={
            "UNDERSTANDING_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "UNDERSTANDING_KAFKA_ANALYSIS_TOPIC": analysis_topic,
            "UNDERSTANDING_KAFKA_JOB_STATUS_TOPIC": job_status_topic,
            "UNDERSTANDING_KAFKA_MODERATION_TOPIC": moderation_topic,
            "UNDERSTANDING_MAX_TEXTS_PER_CALL": "16",
            "UNDERSTANDING_MAX_TEXT_BYTES": "20000",
            "UNDERSTANDING_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),
        },
    ).start()
    try:
        proc.wait_serving()
        yield proc
    finally:
        code = proc.stop()
        assert code == 0, f"server exited with {code} on SIGTERM:\n{proc.log()}"
