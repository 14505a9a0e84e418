"""The real Kafka broker of the test session (scripts/kafka.sh), and a consumer helper."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import time
from typing import Any, Callable

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kafka.sh"


def broker_env(port: int, controller_port: int, run_dir: pathlib.Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["KAFKA_PORT"] = str(port)
    env["KAFKA_CONTROLLER_PORT"] = str(controller_port)
    if run_dir is not None:
        env["UNDERSTANDING_KAFKA_DIR"] = str(run_dir)
    return env


def kafka(command: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(["bash", str(SCRIPT), command], check=True, env=env, stdout=subprocess.DEVNULL)


async def collect(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[Any]], bool],
    timeout_s: float = 60.0,
    settle_s: float = 0.0,
) -> list[Any]:
    """Read `topic` from the beginning until `until(records)` holds (then `settle_s` more)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        satisfied_at: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
            if satisfied_at is None and until(records):
                satisfied_at = time.monotonic()
            if satisfied_at is not None and time.monotonic() - satisfied_at >= settle_s:
                return records
        return records
    finally:
        await consumer.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
