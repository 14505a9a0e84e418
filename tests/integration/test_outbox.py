"""Events are never lost: they wait in the outbox until a broker takes them.

Uses real Kafka brokers started by scripts/kafka.sh (a second one on its own
ports, so the session broker is not disturbed) and real server processes.
"""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.support.kafka import broker_env, collect, kafka
from tests.support.server import ServerProcess, free_port
from tests.support.waiting import PATIENCE_S, wait_until
from understanding.v1 import events_pb2
from understanding.v1 import understanding_pb2 as pb

MD = [("x-tenant-id", "outbox")]


ANALYSIS_TOPIC = "understanding.analysis.v1"  # the default (moderation events wait on their own topic)


def outbox_media_ids(server: ServerProcess) -> list[str]:
    return [events_pb2.AnalysisEvent.FromString(v).analysis.media_id for v in server.outbox(ANALYSIS_TOPIC)]


def test_health_not_serving_until_warm_and_embedded_outbox(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No broker configured (embedded default): health goes SERVING only after warm-up; events stay in the outbox."""
    server = ServerProcess(tmp_path / "srv").start()
    try:
        statuses: list[int | None] = []
        warming_codes = set()
        early_accepted = 0  # health may turn SERVING while an early call is in flight
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status = server.health_status()
            statuses.append(status)
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                try:
                    # A refusal is immediate; the deadline only bounds a call accepted on a busy machine.
                    server.stub.AnalyzeText(
                        pb.AnalyzeTextRequest(items=[pb.TextItem(media_id="early", text="early")]),
                        metadata=MD,
                        timeout=PATIENCE_S,
                    )
                    early_accepted += 1
                except grpc.RpcError as error:
                    warming_codes.add(error.code())
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            time.sleep(0.05)
        assert statuses[-1] == health_pb2.HealthCheckResponse.SERVING
        first_answer = next(s for s in statuses if s is not None)
        assert first_answer == health_pb2.HealthCheckResponse.NOT_SERVING, statuses
        assert warming_codes <= {grpc.StatusCode.UNAVAILABLE}
        assert grpc.StatusCode.UNAVAILABLE in warming_codes

        server.stub.AnalyzeText(
            pb.AnalyzeTextRequest(items=[pb.TextItem(media_id="kept-1", text="kept safe in the outbox")]), metadata=MD
        )
        assert outbox_media_ids(server) == ["early"] * early_accepted + ["kept-1"]
    finally:
        assert server.stop() == 0


@pytest.mark.kafka
async def test_outbox_delivers_exactly_once_when_broker_returns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port, controller = free_port(), free_port()
    bootstrap = f"127.0.0.1:{port}"
    topic = "understanding.analysis.v1.outbox-test"
    server = ServerProcess(
        tmp_path / "srv",
        env={
            "UNDERSTANDING_KAFKA_BOOTSTRAP": bootstrap,
            "UNDERSTANDING_KAFKA_ANALYSIS_TOPIC": topic,
            "UNDERSTANDING_OUTBOX_RETRY_MAX_S": "1",
        },
    ).start()
    env = broker_env(port, controller, tmp_path / "kafka")
    try:
        server.wait_serving()
        # The broker is down: the RPC still succeeds and the event waits.
        response = server.stub.AnalyzeText(
            pb.AnalyzeTextRequest(items=[pb.TextItem(media_id="late-1", text="delivered once the broker is back")]),
            metadata=MD,
            timeout=PATIENCE_S,
        )
        assert response.results[0].media_id == "late-1"
        # The relay tried to deliver it, failed, and kept it.
        wait_until(lambda: "outbox relay: kafka unavailable" in server.log_path.read_text(), what="a failed delivery")
        assert len(server.outbox(topic)) == 1  # its moderation event waits beside it, on its own topic

        kafka("up", env)  # the broker comes (back) up
        records = await collect(bootstrap, topic, until=lambda rs: any(r.key == b"late-1" for r in rs), settle_s=5)
        mine = [r for r in records if r.key == b"late-1"]
        assert len(mine) == 1, f"expected exactly one event, got {len(mine)}"
        event = events_pb2.AnalysisEvent.FromString(mine[0].value)
        assert event.analysis.media_id == "late-1" and event.analysis.tenant == "outbox"
        wait_until(lambda: not server.outbox(), what="the outbox drained")
    finally:
        assert server.stop() == 0
        kafka("down", env)
