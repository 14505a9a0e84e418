"""`understanding serve` and `understanding worker`: run the service (the calls into understanding.app are here)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from understanding.cli import Subcommands


def register(sub: Subcommands) -> None:
    serve = sub.add_parser("serve", help="run the gRPC service (embedded defaults: no Kafka/Qdrant needed)")
    serve.add_argument("--port", type=int, help="gRPC port (default UNDERSTANDING_GRPC_PORT or 50051)")
    serve.add_argument("--host", help="bind address (default UNDERSTANDING_GRPC_HOST or 127.0.0.1)")
    serve.set_defaults(fn=run_serve)

    worker = sub.add_parser(
        "worker",
        help="run jobs from Kafka (the `kafka` job backend); start several to scale out",
        description="Consume understanding.jobs.v1 in the worker group and run each job's pipeline. "
        "Needs UNDERSTANDING_KAFKA_BOOTSTRAP and the blob directory the API replicas write "
        "(UNDERSTANDING_BLOB_DIR). SIGTERM finishes the jobs in hand, then stops.",
    )
    worker.add_argument("--concurrency", type=int, help="jobs run at once (default UNDERSTANDING_JOB_WORKERS or 1)")
    worker.set_defaults(fn=run_worker)


def run_serve(args: argparse.Namespace) -> int:
    from understanding.app import run_process

    overrides: dict[str, Any] = {}
    if args.port is not None:
        overrides["grpc_port"] = args.port
    if args.host is not None:
        overrides["grpc_host"] = args.host
    return run_process("serve", **overrides)


def run_worker(args: argparse.Namespace) -> int:
    from understanding.app import run_process

    overrides: dict[str, Any] = {"job_backend": "kafka"}
    if args.concurrency is not None:
        overrides["job_workers"] = args.concurrency
    return run_process("worker", **overrides)
