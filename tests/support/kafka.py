"""The real Kafka broker of the test session (scripts/kafka.sh), and a consumer helper."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import time
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kafka.sh"


def broker_env(port: int, controller_port: int, run_dir: pathlib.Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["KAFKA_PORT"] = str(port)
    env["KAFKA_CONTROLLER_PORT"] = str(controller_port)
    # A JVM starting on two busy cores can take minutes; `up`/`resume` return as soon as it answers.
    env.setdefault("KAFKA_READY_TIMEOUT", "300")
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
    timeout_s: float = 180.0,
    settle_s: float = 0.0,
) -> list[Any]:
    """Read `topic` from the beginning until `until(records)` holds (then `settle_s` more).

    Returns as soon as that is true, so the (generous) `timeout_s` costs only a failing test."""
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


async def wait_consumed(bootstrap: str, group: str, topic: str, *, timeout_s: float = 180.0) -> None:
    """Wait until consumer group `group` has committed everything written to `topic` so far.

    The job worker and the result indexer commit a record only once its effect is
    durable, so afterwards nothing they were handed is still in flight.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            await consumer.topics()  # refresh metadata once
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while True:
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            behind = {
                tp.partition: (committed[tp].offset if tp in committed else -1, end)
                for tp, end in ends.items()
                if end > 0 and (tp not in committed or committed[tp].offset < end)
            }
            if not behind:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group} still behind on {topic} after {timeout_s:g} s: {behind}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
        await consumer.stop()
