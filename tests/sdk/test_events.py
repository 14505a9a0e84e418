"""Event decoding and the example consumer, on the real broker."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.sdk.conftest import SDK_DIR
from tests.support.kafka import collect
from understanding_client import Client, JobState, Modality, TextItem
from understanding_client.events import (
    AnalysisEvent,
    JobEvent,
    MediaDeletedEvent,
    UnknownEventSchema,
    consume,
    decode_event,
)

pytestmark = pytest.mark.kafka


async def test_decode_every_event_kind(
    client: Client, kafka_bootstrap: str, analysis_topic: str, job_status_topic: str
) -> None:
    media_id = f"ev-{uuid.uuid4().hex[:8]}"
    client.analyze_text(
        TextItem("The band played their new song at the concert", media_id=media_id, metadata={"k": "v"})
    )
    deleted = client.delete_media(media_id)
    job = client.submit_job(text="A pasta recipe with garlic and olive oil")
    client.wait_job(job.job_id, timeout=300)

    key = media_id.encode()
    records = await collect(kafka_bootstrap, analysis_topic, until=lambda rs: sum(r.key == key for r in rs) >= 2)
    mine = [r for r in records if r.key == key]
    analysis, gone = (decode_event(r.value, r.headers) for r in mine[:2])
    assert isinstance(analysis, AnalysisEvent) and isinstance(gone, MediaDeletedEvent)
    assert analysis.analysis.media_id == media_id and analysis.analysis.modality is Modality.TEXT
    assert analysis.analysis.metadata == {"k": "v"} and analysis.schema_version == 1 and analysis.event_id
    assert analysis.produced_at is not None and analysis.collection and analysis.raw is not None
    assert gone.media_id == media_id and gone.points_deleted == deleted and gone.tenant == client.config.tenant

    jkey = job.job_id.encode()
    statuses = await collect(kafka_bootstrap, job_status_topic, until=lambda rs: any(r.key == jkey for r in rs))
    event = decode_event(*next((r.value, r.headers) for r in statuses if r.key == jkey))
    assert isinstance(event, JobEvent) and event.job.state is JobState.SUCCEEDED and event.job.job_id == job.job_id

    # Headers as a mapping work too; an unknown schema is a clear error.
    same = decode_event(mine[0].value, {"schema": b"understanding.v1.AnalysisEvent"})
    assert isinstance(same, AnalysisEvent) and same.event_id == analysis.event_id
    with pytest.raises(UnknownEventSchema, match="understanding.v1.AnalysisEvent"):
        decode_event(mine[0].value, [("schema", b"acme.v9.Other")])
    with pytest.raises(UnknownEventSchema):
        decode_event(mine[0].value, None)

    # consume(): the aiokafka helper yields decoded records with their coordinates.
    async with contextlib.aclosing(
        consume([analysis_topic], bootstrap_servers=kafka_bootstrap, from_beginning=True)
    ) as events:
        async for record in events:
            if record.key == media_id:
                assert isinstance(record.event, AnalysisEvent) and record.tenant == client.config.tenant
                assert record.trace_id and record.topic == analysis_topic and record.offset >= 0
                break


def test_example_consumer_prints_the_analysis(client: Client, kafka_bootstrap: str, analysis_topic: str) -> None:
    media_id = f"example-{uuid.uuid4().hex[:8]}"
    client.analyze_text(TextItem("Messi scored twice and Barcelona won the league", media_id=media_id))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SDK_DIR), os.environ.get("PYTHONPATH", "")]))
    example = SDK_DIR / "examples" / "consume_events.py"
    common = ["--bootstrap", kafka_bootstrap, "--topic", analysis_topic, "--from-beginning", "--key", media_id]
    done = subprocess.run(
        [sys.executable, str(example), *common, "--max-events", "1", "--timeout-s", "60"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith("analysis") and f"media={media_id}" in line and "topic.sports" in line
    assert f"tenant={client.config.tenant}" in line and "modality=text" in line

    as_json = subprocess.run(
        [sys.executable, str(example), *common, "--max-events", "1", "--timeout-s", "60", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert as_json.returncode == 0, as_json.stderr
    record = json.loads(as_json.stdout)
    assert record["schema"] == "understanding.v1.AnalysisEvent" and record["key"] == media_id
    assert record["event"]["analysis"]["media_id"] == media_id
