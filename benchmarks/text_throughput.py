"""Text throughput through the gRPC API versus raw batched encode of the same model and backend.

    python benchmarks/text_throughput.py [--quick] [--model multilingual|minilm] [--backend onnx|numpy|torch|onnx-int8]

Measures, in one run: raw encode one text at a time and in batches of 32 with
the model and backend the server uses (the baselines; for MiniLM torch's raw
batched rate too, for reference), then AnalyzeText through a real server
process (embedded store, outbox) with 1 client and with 32 concurrent
single-text clients, and with 2 clients sending 32 texts per call (the API
takes up to 64 items per call). Besides throughput and latency it reports the server's
CPU ms per text, which moves less than wall time when the 2 cores are shared,
and the single-client latency broken down from the server's own metrics
(mean per call: the model's forward pass, the store write, the outbox write;
the rest is gRPC, language detection, tagging, lexical terms and batching waits).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _harness import percentile, result, start_server  # noqa: E402

CORPUS_SEED = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Messi scored twice in the second half and Barcelona won the league.",
    "Our flight to Tokyo was delayed by three hours because of the storm.",
    "This carbonara recipe uses eggs, pecorino cheese and guanciale.",
    "The parliament passed the budget bill after a long debate on Tuesday.",
    "Just beat the final boss after forty tries, streaming again tonight.",
    "Please send the quarterly report before the meeting on Thursday.",
    "The band announced a world tour to promote their new album.",
]


def corpus(n: int) -> list[str]:
    return [f"{CORPUS_SEED[i % len(CORPUS_SEED)]} (item {i})" for i in range(n)]


def raw_baselines(texts: list[str], model_spec: str, backend: str, *, single: bool = True) -> tuple[float, float]:
    """(texts/s one at a time, texts/s in batches of 32) of the model's own encode with `backend`."""
    import pathlib
    import tempfile

    from understanding.config import Settings
    from understanding.models.embedder import load_text_encoder, resolve_model

    cache = pathlib.Path(
        os.environ.get("UNDERSTANDING_CACHE_DIR") or Settings.from_env().cache_dir or tempfile.mkdtemp()
    )
    model = load_text_encoder(resolve_model(model_spec), backend=backend, cache_dir=cache / "models")
    model.encode(texts[:32])
    one_at_a_time = 0.0
    if single:
        started = time.perf_counter()
        for t in texts:
            model.encode([t])
        one_at_a_time = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(0, len(texts), 32):
        model.encode(texts[i : i + 32])
    batched = len(texts) / (time.perf_counter() - started)
    del model
    return one_at_a_time, batched


async def through_grpc(target: str, texts: list[str], concurrency: int, per_call: int = 1) -> tuple[float, list[float]]:
    """(texts/s, latency per call) with `concurrency` clients sending `per_call` texts per AnalyzeText."""
    import grpc

    from understanding.v1 import understanding_pb2 as pb
    from understanding.v1 import understanding_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = understanding_pb2_grpc.UnderstandingStub(channel)
        md = (("x-tenant-id", "bench"),)
        await stub.AnalyzeText(pb.AnalyzeTextRequest(items=[pb.TextItem(text="warm up")]), metadata=md)
        queue: asyncio.Queue[list[str]] = asyncio.Queue()
        for i in range(0, len(texts), per_call):
            queue.put_nowait(texts[i : i + per_call])
        latencies: list[float] = []

        async def client() -> None:
            while True:
                try:
                    batch = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                items = [pb.TextItem(text=text) for text in batch]
                t0 = time.perf_counter()
                await stub.AnalyzeText(pb.AnalyzeTextRequest(items=items), metadata=md, timeout=60)
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return len(texts) / (time.perf_counter() - started), latencies


def main() -> None:
    from understanding.config import Settings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run for CI smoke")
    parser.add_argument(
        "--backend", default=Settings().embedding_backend, help="embedding backend (default: the service's)"
    )
    parser.add_argument("--model", default=Settings().embedding_model, help="embedding model (default: the service's)")
    args = parser.parse_args()
    import psutil
    from _harness import free_port

    n_single, n_conc = (32, 128) if args.quick else (300, 2000)
    base_texts = corpus(max(n_single, 320 if not args.quick else 64))
    single, batched = raw_baselines(base_texts, args.model, args.backend)
    with_torch = args.backend != "torch" and args.model in ("minilm", "packaged")
    torch_batched = raw_baselines(base_texts, args.model, "torch", single=False)[1] if with_torch else 0.0
    metrics_port = free_port()
    server = start_server(
        {
            "UNDERSTANDING_EMBEDDING_BACKEND": args.backend,
            "UNDERSTANDING_EMBEDDING_MODEL": args.model,
            "UNDERSTANDING_METRICS_PORT": str(metrics_port),
            **_passthrough(),
        }
    )
    try:
        proc = psutil.Process(server.proc.pid)
        before = scrape(metrics_port)
        tput1, lat1 = asyncio.run(through_grpc(server.target, corpus(n_single), 1))
        breakdown = mean_seconds(before, scrape(metrics_port))
        cpu_before = sum(proc.cpu_times()[:2])
        tput32, lat32 = asyncio.run(through_grpc(server.target, corpus(n_conc), 32))
        server_cpu_ms = (sum(proc.cpu_times()[:2]) - cpu_before) / n_conc * 1e3
        tput_items, lat_items = asyncio.run(through_grpc(server.target, corpus(n_conc), 2, per_call=32))
    finally:
        server.stop()
    # The 2 cores may be shared: measure the batched baseline again after the
    # service and use the mean, so a load change hits both sides alike.
    batched_after = raw_baselines(base_texts, args.model, args.backend, single=False)[1]
    print(f"raw batch-32 before {batched:.1f}/s, after {batched_after:.1f}/s")
    batched = (batched + batched_after) / 2
    print(
        f"model {args.model}, backend {args.backend}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'figure':44} {'texts/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'raw encode, 1 text per call':44} {single:10.1f}")
    print(f"{'raw encode, batches of 32':44} {batched:10.1f}")
    if with_torch:
        print(f"{'raw torch encode, batches of 32':44} {torch_batched:10.1f}")
    print(
        f"{'AnalyzeText via gRPC, 1 client':44} {tput1:10.1f} {percentile(lat1, 50) * 1e3:8.1f} {percentile(lat1, 99) * 1e3:8.1f}"
    )
    print(
        f"{'AnalyzeText via gRPC, 32 concurrent clients':44} {tput32:10.1f} {percentile(lat32, 50) * 1e3:8.1f} {percentile(lat32, 99) * 1e3:8.1f}"
    )
    print(
        f"{'AnalyzeText via gRPC, 2 clients x 32 texts/call':44} {tput_items:10.1f}"
        f" {percentile(lat_items, 50) * 1e3:8.1f} {percentile(lat_items, 99) * 1e3:8.1f}"
    )
    print(f"server CPU per text at 32 clients: {server_cpu_ms:.2f} ms")
    p50 = percentile(lat1, 50) * 1e3
    parts = {name: breakdown.get(key, 0.0) * 1e3 for name, key in _PARTS.items()}
    print(f"single-client latency p50 {p50:.1f} ms; mean per call from the server's metrics:")
    for name, ms in parts.items():
        print(f"  {name:38s} {ms:7.2f} ms")
    print(
        f"  {'rest (gRPC, language, tags, terms, waits)':38s} {breakdown.get('rpc', 0.0) * 1e3 - sum(parts.values()):7.2f} ms"
    )
    print(f"server start to SERVING: {server.serving_after_s:.1f} s")
    result(
        f"text texts/s, 1 client vs raw 1-at-a-time ({args.model}, {args.backend})", tput1, single, ">= 0.85", "texts/s"
    )
    result(
        f"text texts/s, 32 clients vs raw batch-32 ({args.model}, {args.backend})",
        tput32,
        batched,
        ">= 0.85",
        "texts/s",
    )
    result(
        f"text texts/s, 2 clients x 32 texts per call vs raw batch-32 ({args.model}, {args.backend})",
        tput_items,
        batched,
        "report",
        "texts/s",
    )
    result("text p50 latency, 1 client (ms)", p50, None, "report", "ms")
    for name, ms in parts.items():
        result(f"text 1-client mean {name} (ms)", ms, None, "report", "ms")
    if with_torch:
        result("text texts/s, 32 clients vs raw torch batch-32", tput32, torch_batched, "report", "texts/s")
    result("text p99 latency at 32 clients (ms)", percentile(lat32, 99) * 1e3, None, "report", "ms")
    result("text server CPU ms per text at 32 clients", server_cpu_ms, None, "report", "ms")


# Single-client breakdown: histogram -> label in the printout.
_PARTS = {
    "model forward pass (embed batch)": "embed",
    "store write (group commit)": "store-writes",
    "outbox write (group commit)": "outbox-writes",
}


def scrape(port: int) -> dict[str, tuple[float, float]]:
    """(sum, count) of the batch-time histograms per batcher, and of AnalyzeText's RPC latency."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        for prefix, key_of in (
            ("understanding_batch_seconds_", lambda labels: labels.split('batcher="', 1)[1].split('"', 1)[0]),
            (
                "understanding_rpc_seconds_",
                lambda labels: "rpc" if "AnalyzeText" in labels and 'code="OK"' in labels else "",
            ),
        ):
            if not line.startswith(prefix) or "{" not in line:
                continue
            kind = line[len(prefix) : line.index("{")]
            if kind not in ("sum", "count"):
                continue
            key = key_of(line[line.index("{") : line.index("}")])
            if key:
                slot = out.setdefault(key, [0.0, 0.0])
                slot[0 if kind == "sum" else 1] += float(line.rsplit(" ", 1)[1])
    return {k: (v[0], v[1]) for k, v in out.items()}


def mean_seconds(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean seconds per observation between two scrapes, per histogram."""
    out = {}
    for key, (total, count) in after.items():
        total0, count0 = before.get(key, (0.0, 0.0))
        if count > count0:
            out[key] = (total - total0) / (count - count0)
    return out


def _passthrough() -> dict[str, str]:
    """Batcher settings from this environment reach the server (for tuning runs)."""
    return {k: v for k, v in os.environ.items() if k.startswith("UNDERSTANDING_EMBED")}


if __name__ == "__main__":
    main()
