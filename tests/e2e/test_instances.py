"""Several `serve` processes on one host, and start-up failures that name the setting.

The README's "more API replicas" example sets only a second gRPC port and data
directory: with the default metrics port (`auto` = gRPC port + 1000) the two
processes must run side by side.
"""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys

from grpc_health.v1 import health_pb2

from tests.support.server import ROOT, ServerProcess


def _free_pair() -> int:
    """A free port p whose p + 1000 is free too (the `auto` metrics port)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 1000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def test_two_instances_with_the_readme_settings_run_side_by_side(tmp_path: pathlib.Path) -> None:
    servers = []
    try:
        for name in ("first", "second"):
            server = ServerProcess(tmp_path / name, env={"UNDERSTANDING_METRICS_PORT": ""})
            server.port = _free_pair()
            server.target = f"127.0.0.1:{server.port}"
            servers.append(server.start())
        for server in servers:
            # Two servers load their models at once: give each twice a lone server's patience.
            assert server.wait_serving(timeout_s=600)[-1] == health_pb2.HealthCheckResponse.SERVING
            assert server.metrics_port() == server.port + 1000
            assert "understanding_ready 1.0" in server.metrics()
    finally:
        for server in servers:
            server.stop()


def _serve(tmp_path: pathlib.Path, **env: str) -> subprocess.CompletedProcess[str]:
    settings = {"UNDERSTANDING_DATA_DIR": str(tmp_path / "data"), "UNDERSTANDING_LOG_LEVEL": "ERROR", **env}
    clean = {
        k: v
        for k, v in __import__("os").environ.items()
        if not k.startswith("UNDERSTANDING_") or k == "UNDERSTANDING_CACHE"
    }
    return subprocess.run(
        [sys.executable, "-m", "understanding", "serve"],
        cwd=ROOT, env={**clean, **settings}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_start_up_failures_print_one_line_naming_the_setting(tmp_path: pathlib.Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        grpc_taken = _serve(tmp_path, UNDERSTANDING_GRPC_PORT=str(port), UNDERSTANDING_METRICS_PORT="off")
        metrics_taken = _serve(tmp_path, UNDERSTANDING_GRPC_PORT="0", UNDERSTANDING_METRICS_PORT=str(port))
    bad_number = _serve(tmp_path, UNDERSTANDING_GRPC_PORT="fifty")
    bad_metrics = _serve(tmp_path, UNDERSTANDING_GRPC_PORT="0", UNDERSTANDING_METRICS_PORT="often")
    no_model = _serve(
        tmp_path, UNDERSTANDING_GRPC_PORT="0", UNDERSTANDING_METRICS_PORT="off",
        UNDERSTANDING_EMBEDDING_MODEL=str(tmp_path / "no-such-model"),
    )  # fmt: skip
    unknown_model = _serve(
        tmp_path, UNDERSTANDING_GRPC_PORT="0", UNDERSTANDING_METRICS_PORT="off", UNDERSTANDING_EMBEDDING_MODEL="multilingal",
    )  # fmt: skip
    wrong_backend = _serve(
        tmp_path, UNDERSTANDING_GRPC_PORT="0", UNDERSTANDING_METRICS_PORT="off", UNDERSTANDING_EMBEDDING_BACKEND="torch",
    )  # fmt: skip
    no_whisper = _serve(
        tmp_path, UNDERSTANDING_GRPC_PORT="0", UNDERSTANDING_METRICS_PORT="off",
        UNDERSTANDING_WHISPER_MODEL=str(tmp_path / "no-such-whisper"),
    )  # fmt: skip
    cases = {
        "UNDERSTANDING_GRPC_PORT": grpc_taken,
        "UNDERSTANDING_METRICS_PORT=": metrics_taken,
        "UNDERSTANDING_GRPC_PORT='fifty'": bad_number,
        "UNDERSTANDING_METRICS_PORT='often'": bad_metrics,
        "UNDERSTANDING_EMBEDDING_MODEL=": no_model,
        "UNDERSTANDING_EMBEDDING_MODEL='multilingal': unknown embedding model": unknown_model,
        # The default (multilingual) model has no torch backend.
        "UNDERSTANDING_EMBEDDING_BACKEND='torch' does not apply to the multilingual model": wrong_backend,
        "UNDERSTANDING_WHISPER_MODEL=": no_whisper,
    }
    for setting, result in cases.items():
        assert result.returncode == 2, (setting, result.returncode, result.stderr[-2000:])
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and setting in errors[0], (setting, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
