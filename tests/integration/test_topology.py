"""The distributed topology for real: two API replicas and two workers, a real Kafka broker and a
real Qdrant server the workers write to directly (no results topic, no indexer).

One worker is SIGKILLed while it is certainly mid-job (it hangs in its first decode): every job
still ends SUCCEEDED exactly once, its points are in the server's collection exactly once (one
point per chunk, one version), and both replicas see every result through GetMedia and Search.
"""

from __future__ import annotations

import collections
import itertools
import pathlib
import signal
import uuid

import pytest
from qdrant_client import QdrantClient

from tests.fixtures import speech
from tests.support.jobs import TERMINAL, job_requests, speech_spec, text_spec, wait_terminal
from tests.support.kafka import collect
from tests.support.qdrant import QdrantEndpoint
from tests.support.server import ServerProcess
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess, kafka_backend_env
from understanding.v1 import jobs_pb2
from understanding.v1 import understanding_pb2 as pb

pytestmark = [pytest.mark.kafka, pytest.mark.qdrant_server]

MD = [("x-tenant-id", "topology")]
SENTENCES = [
    "The harbour ferry leaves for the island every morning at seven.",
    "Our cooking class makes fresh pasta with basil and tomatoes.",
    "The chess tournament final lasted more than five hours.",
    "Volunteers planted two hundred trees along the river bank.",
]
JOBS = 16  # every fourth is speech


def _submit(replica: ServerProcess, i: int, wavs: list[pathlib.Path]) -> jobs_pb2.Job:
    if i % 4 == 0:
        spec = speech_spec(media_id=f"topo-speech-{i}")
        return replica.stub.SubmitJob(job_requests(spec, wavs[(i // 4) % len(wavs)]), metadata=MD, timeout=60)
    text = f"Report {i}: {SENTENCES[i % len(SENTENCES)]}"
    return replica.stub.SubmitJob(job_requests(text_spec(text, media_id=f"topo-text-{i}")), metadata=MD, timeout=60)


async def test_two_replicas_two_workers_writing_to_qdrant_one_worker_killed(
    tmp_path: pathlib.Path, kafka_bootstrap: str, qdrant_server: QdrantEndpoint
) -> None:
    alias = f"topo_{uuid.uuid4().hex[:8]}"
    env = {
        **kafka_backend_env(kafka_bootstrap, tmp_path / "blobs", job_max_attempts="4"),
        "UNDERSTANDING_QDRANT_URL": qdrant_server.url,
        "UNDERSTANDING_QDRANT_COLLECTION": alias,
    }
    replicas = [ServerProcess(tmp_path / f"api-{k}", env=env).start() for k in range(2)]
    # Worker 0 hangs in the first media it decodes (and never times out): it is certainly
    # mid-job when it is killed, and that job can only finish by being redelivered.
    hanging = {"UNDERSTANDING_FAULTS": "decode_hang=1", "UNDERSTANDING_DECODE_TIMEOUT_S": "3600"}
    workers = [WorkerProcess(tmp_path / "worker-0", {**env, **hanging}).start()]
    workers.append(WorkerProcess(tmp_path / "worker-1", env).start())
    client = QdrantClient(url=qdrant_server.url, timeout=30)
    try:
        wavs = [speech.make_speech_wav(text, tmp_path / f"s{i}.wav") for i, text in enumerate(SENTENCES)]
        for replica in replicas:
            replica.wait_serving()
        for worker in workers:
            worker.wait_ready()
        jobs = [_submit(replicas[i % 2], i, wavs) for i in range(JOBS)]  # both replicas take jobs
        extra = itertools.count(4 * JOBS, 4)  # indexes of speech jobs added later (unique media ids)

        def hung_in_worker_0() -> str | None:
            """The speech job worker 0 started (text jobs decode nothing: only speech hangs it)."""
            spoken = [j for j in jobs if j.media_id.startswith("topo-speech")]
            started = [j.job_id for j in spoken if workers[0].ran(j.job_id)]
            if started:
                return started[0]
            states = [replicas[0].stub.GetJob(pb.GetJobRequest(job_id=j.job_id), metadata=MD).state for j in spoken]
            if all(state in TERMINAL for state in states):  # none landed on worker 0's partitions: one more
                more = next(extra)
                jobs.append(_submit(replicas[len(jobs) % 2], more, wavs))
            return None

        victim = wait_until(hung_in_worker_0, timeout_s=600, interval_s=0.5, what="worker 0 hung in a job")
        assert workers[0].stop(sig=signal.SIGKILL) == -signal.SIGKILL

        finals = {j.job_id: wait_terminal(replicas[0].stub, j.job_id, MD, timeout_s=600) for j in jobs}
        assert {j.state for j in finals.values()} == {jobs_pb2.JOB_STATE_SUCCEEDED}, [
            (j.media_id, j.error.message) for j in finals.values() if j.state != jobs_pb2.JOB_STATE_SUCCEEDED
        ]
        assert finals[victim].attempts >= 2 and workers[1].ran(victim)  # redelivered to the survivor

        # Every point once in the server's collection: one per chunk of each job, one version each.
        points, offset = [], None
        while True:
            page, offset = client.scroll(alias, limit=256, offset=offset, with_payload=True, with_vectors=False)
            points.extend(page)
            if offset is None:
                break
        by_media: dict[str, list[int]] = collections.defaultdict(list)
        versions: dict[str, set[int]] = collections.defaultdict(set)
        for point in points:
            payload = point.payload or {}
            by_media[str(payload["media_id"])].append(int(payload["chunk_index"]))
            versions[str(payload["media_id"])].add(int(payload["version"]))
        assert set(by_media) == {j.media_id for j in finals.values()}
        for job in finals.values():
            chunks = by_media[job.media_id]
            assert sorted(chunks) == list(range(len(job.result.chunks))), (job.media_id, chunks)
            assert versions[job.media_id] == {job.result.version}, job.media_id

        # Both replicas see every result: the media, and a search for what it says.
        for replica in replicas:
            for job in finals.values():
                media = replica.stub.GetMedia(pb.GetMediaRequest(media_id=job.media_id), metadata=MD, timeout=30)
                assert len(media.points) == len(job.result.chunks) and media.version == job.result.version
            for job in finals.values():  # what each media says finds it, from either replica
                query = job.result.chunks[0].text
                hits = replica.stub.Search(pb.SearchRequest(text=query, top_k=5), metadata=MD, timeout=30).hits
                assert job.media_id in {h.media_id for h in hits}, (job.media_id, query, [h.media_id for h in hits])

        # The workers wrote the vectors themselves: nothing went through the results topic.
        results = await collect(kafka_bootstrap, env["UNDERSTANDING_KAFKA_RESULTS_TOPIC"], until=bool, timeout_s=5)
        assert results == []
    finally:
        client.close()
        codes = [w.stop() for w in workers]
        for replica in replicas:
            assert replica.stop() == 0, replica.log()
        assert codes[1:] == [0], workers[-1].log()[-3000:]
