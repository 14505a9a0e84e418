"""Kafka job backend: jobs per minute and submit->SUCCEEDED latency with 1 and 2 workers.

    python benchmarks/jobs_bench.py [--quick]

A real `serve` (job backend kafka, embedded store, indexer) and real
`understanding worker` processes on the broker of scripts/kafka.sh
(UNDERSTANDING_TEST_KAFKA, default 127.0.0.1:19092; started if not running),
fresh topics per run. Measured on a short espeak-ng clip:
  - inline: the Transcribe RPC (the same pipeline and sinks, no queue), one at a time;
  - one job at a time through the queue (submit -> SUCCEEDED via WatchJob): the
    difference to inline is the queue overhead (blob hand-off, two topic hops,
    state topic round trips, indexer);
  - a burst of N jobs with 1 worker, then with 2 workers: jobs/min and latency;
  - a one-sentence text job versus AnalyzeText: the pipeline is tiny, so the
    difference is the bare queue overhead.
Workers share the machine's cores with the API process, so on a small box the
second worker mostly shows how much the pipeline already used the cores.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import ROOT, percentile, result, start_server  # noqa: E402

KAFKA = os.environ.get("UNDERSTANDING_TEST_KAFKA", "127.0.0.1:19092")
SENTENCE = "Please remember to lock the server room when you leave in the evening."


def _port_open(target: str) -> bool:
    host, port = target.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def start_worker(env: dict[str, str], data_dir: pathlib.Path) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSTANDING_") or k == "UNDERSTANDING_CACHE"}
    full.update(env)
    full.update(
        {"UNDERSTANDING_DATA_DIR": str(data_dir), "UNDERSTANDING_LOG_LEVEL": "INFO", "UNDERSTANDING_METRICS_PORT": "0"}
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "understanding", "worker"],
        cwd=ROOT,
        env=full,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    while '"worker ready"' not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        time.sleep(0.2)
    return proc


def run_job(stub, wav: bytes, media_id: str) -> float:  # type: ignore[no-untyped-def]
    """Submit one speech job and follow it to its end; returns submit -> SUCCEEDED seconds."""
    from understanding.v1 import common_pb2, jobs_pb2
    from understanding.v1 import understanding_pb2 as pb

    def requests():  # type: ignore[no-untyped-def]
        yield pb.SubmitJobRequest(
            spec=pb.JobSpec(modality=common_pb2.MODALITY_SPEECH, media=pb.UploadHeader(media_id=media_id))
        )
        yield pb.SubmitJobRequest(chunk=wav)
        yield pb.SubmitJobRequest(end=pb.UploadEnd(sha256=hashlib.sha256(wav).hexdigest()))

    md = [("x-tenant-id", "bench")]
    started = time.perf_counter()
    job = stub.SubmitJob(requests(), metadata=md, timeout=60)
    for update in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), metadata=md, timeout=600):
        if update.state == jobs_pb2.JOB_STATE_SUCCEEDED:
            return time.perf_counter() - started
        if update.state in (jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED):
            raise RuntimeError(f"job {job.job_id} ended {update.state}: {update.error}")
    raise RuntimeError("watch ended early")


def run_text_job(stub, text: str, media_id: str) -> float:  # type: ignore[no-untyped-def]
    """A text job (a tiny pipeline): its latency is almost all queue overhead."""
    from understanding.v1 import common_pb2, jobs_pb2
    from understanding.v1 import understanding_pb2 as pb

    md = [("x-tenant-id", "bench")]
    spec = pb.JobSpec(modality=common_pb2.MODALITY_TEXT, text=text, media=pb.UploadHeader(media_id=media_id))
    started = time.perf_counter()
    job = stub.SubmitJob(iter([pb.SubmitJobRequest(spec=spec)]), metadata=md, timeout=60)
    for update in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), metadata=md, timeout=120):
        if update.state == jobs_pb2.JOB_STATE_SUCCEEDED:
            return time.perf_counter() - started
    raise RuntimeError(f"text job {job.job_id} did not succeed")


def burst(stub, wav: bytes, n: int, tag: str) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    """n jobs submitted at once: (jobs per minute, latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        seconds = run_job(stub, wav, f"{tag}-{i}")
        with lock:
            latencies.append(seconds)

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(latencies) != n:
        raise RuntimeError(f"{n - len(latencies)} job(s) failed")
    return n / (time.perf_counter() - started) * 60, latencies


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_burst, n_seq = (6, 3) if args.quick else (24, 8)
    if not _port_open(KAFKA):
        subprocess.run(["bash", str(ROOT / "scripts" / "kafka.sh"), "up"], check=True, stdout=subprocess.DEVNULL)

    from tests.fixtures import speech
    from understanding.v1 import understanding_pb2 as pb
    from understanding.v1 import understanding_pb2_grpc

    work = pathlib.Path(tempfile.mkdtemp(prefix="understanding-jobs-bench-"))
    wav_path = speech.make_speech_wav(SENTENCE, work / "short.wav")
    wav = wav_path.read_bytes()
    tag = uuid.uuid4().hex[:8]
    env = {
        "UNDERSTANDING_KAFKA_BOOTSTRAP": KAFKA,
        "UNDERSTANDING_JOB_BACKEND": "kafka",
        "UNDERSTANDING_BLOB_DIR": str(work / "blobs"),
        "UNDERSTANDING_KAFKA_JOB_PARTITIONS": "4",
        "UNDERSTANDING_JOB_QUEUE_SIZE": "1000",
        "UNDERSTANDING_JOB_TENANT_INFLIGHT": "1000",
    }
    for name in ("jobs", "job_state", "results", "job_status", "analysis", "job_dlq"):
        env[f"UNDERSTANDING_KAFKA_{name.upper()}_TOPIC"] = f"bench.{name}.{tag}"
    env["UNDERSTANDING_KAFKA_WORKER_GROUP"] = f"bench-workers-{tag}"
    env["UNDERSTANDING_KAFKA_INDEXER_GROUP"] = f"bench-indexer-{tag}"

    server = start_server(env)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        import grpc

        channel = grpc.insecure_channel(server.target)
        stub = understanding_pb2_grpc.UnderstandingStub(channel)
        workers.append(start_worker(env, work / "w0"))
        md = [("x-tenant-id", "bench")]

        def inline() -> float:
            def requests():  # type: ignore[no-untyped-def]
                yield pb.UploadRequest(header=pb.UploadHeader(media_id="inline"))
                yield pb.UploadRequest(chunk=wav)
                yield pb.UploadRequest(end=pb.UploadEnd(sha256=hashlib.sha256(wav).hexdigest()))

            started = time.perf_counter()
            stub.Transcribe(requests(), metadata=md, timeout=120)
            return time.perf_counter() - started

        inline()  # warm both paths
        run_job(stub, wav, "warm")
        text_inline_s, text_job_s = [], []
        for i in range(n_seq * 3):
            started = time.perf_counter()
            stub.AnalyzeText(
                pb.AnalyzeTextRequest(items=[pb.TextItem(media_id=f"ti-{i}", text=SENTENCE)]), metadata=md, timeout=60
            )
            text_inline_s.append(time.perf_counter() - started)
            text_job_s.append(run_text_job(stub, SENTENCE, f"tj-{i}"))
        inline_s, queued_s = [], []
        for i in range(n_seq):  # interleaved, so load from elsewhere hits both alike
            inline_s.append(inline())
            queued_s.append(run_job(stub, wav, f"seq-{i}"))
        rate1, lat1 = burst(stub, wav, n_burst, "one")
        workers.append(start_worker(env, work / "w1"))
        time.sleep(5)  # let the group rebalance onto both workers
        rate2, lat2 = burst(stub, wav, n_burst, "two")
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()

    clip_s = speech.wav_duration(wav_path)
    print(f"clip {clip_s:.1f}s audio; {n_seq} sequential, bursts of {n_burst}")
    print(f"{'':34} {'p50 s':>8} {'p95 s':>8}")
    print(f"{'inline Transcribe':34} {percentile(inline_s, 50):8.3f} {percentile(inline_s, 95):8.3f}")
    print(f"{'job, one at a time (1 worker)':34} {percentile(queued_s, 50):8.3f} {percentile(queued_s, 95):8.3f}")
    print(f"{'job in a burst, 1 worker':34} {percentile(lat1, 50):8.3f} {percentile(lat1, 95):8.3f}")
    print(f"{'job in a burst, 2 workers':34} {percentile(lat2, 50):8.3f} {percentile(lat2, 95):8.3f}")
    print(
        f"{'inline AnalyzeText (one item)':34} {percentile(text_inline_s, 50):8.3f} {percentile(text_inline_s, 95):8.3f}"
    )
    print(f"{'text job, one at a time':34} {percentile(text_job_s, 50):8.3f} {percentile(text_job_s, 95):8.3f}")
    print(f"jobs/min: 1 worker {rate1:.1f}, 2 workers {rate2:.1f}")
    result("jobs/min short audio, 1 worker", rate1, None, "-", "jobs/min")
    result("jobs/min short audio, 2 workers (vs 1)", rate2, rate1, ">= 1.0", "jobs/min")
    result("submit->SUCCEEDED p50 in burst, 1 worker", percentile(lat1, 50), None, "-", "s")
    result("submit->SUCCEEDED p50 in burst, 2 workers", percentile(lat2, 50), None, "-", "s")
    result("job p50 one at a time vs inline Transcribe", percentile(queued_s, 50), percentile(inline_s, 50), "-", "s")
    result(
        "queue overhead per job (job - inline p50)",
        percentile(queued_s, 50) - percentile(inline_s, 50),
        None,
        "< 1 s",
        "s",
    )
    result(
        "text job p50 vs inline AnalyzeText", percentile(text_job_s, 50), percentile(text_inline_s, 50), "< 1 s", "s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
