"""Embedding backends: ONNX Runtime (fp32, int8) versus torch on a real corpus.

    python benchmarks/embed_backends.py [--quick]

Same model (the packaged all-MiniLM-L6-v2), same texts, same process, the
backends measured in alternation so machine load hits them alike. Texts are
fortunes (short) and Python library docs (long, truncated at 256 tokens), both
installed by scripts/bootstrap.sh. Reports texts/s one at a time and in
batches of 32, CPU ms per text (steadier than wall time on a shared machine),
and the cosine of each backend's vectors to torch's (target >= 0.99).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _harness import result  # noqa: E402


def corpus(n: int) -> list[str]:
    texts: list[str] = []
    fortunes = pathlib.Path("/usr/share/games/fortunes")
    for path in sorted(fortunes.glob("*")) if fortunes.is_dir() else []:
        if path.is_file() and not path.suffix:
            texts += [t.strip() for t in path.read_text(errors="ignore").split("\n%\n") if t.strip()]
    docs = pathlib.Path("/usr/share/doc/python3.11/html/_sources/library")
    for path in sorted(docs.glob("*.rst.txt")) if docs.is_dir() else []:
        body = path.read_text(errors="ignore")
        texts += [body[i : i + 1200] for i in range(0, min(len(body), 6000), 1200)]
    if not texts:
        raise SystemExit("no corpus: install the fortunes and python3.11-doc packages (make setup does)")
    random.Random(7).shuffle(texts)
    return texts[:n]


def measure(encode, texts: list[str], batch: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(texts/s, CPU ms per text) for `encode` over `texts` in batches of `batch`."""
    encode(texts[:batch])
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch):
        encode(texts[i : i + batch])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(texts) / wall, cpu / len(texts) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run for CI smoke")
    args = parser.parse_args()
    from understanding.models.embedder import load_embedder, resolve_embedding_model
    from understanding.models.onnx_embedder import quantization_available

    model_dir = resolve_embedding_model("packaged")
    cache = (
        pathlib.Path(os.environ.get("UNDERSTANDING_CACHE_DIR") or tempfile.mkdtemp(prefix="embed-bench-")) / "models"
    )
    texts = corpus(64 if args.quick else 512)
    single = texts[: 32 if args.quick else 160]
    rounds = 1 if args.quick else 2

    backends = {"torch": load_embedder(model_dir, backend="torch")}
    started = time.perf_counter()
    backends["onnx"] = load_embedder(model_dir, backend="onnx", cache_dir=cache)
    onnx_load_s = time.perf_counter() - started
    if quantization_available():
        backends["onnx-int8"] = load_embedder(model_dir, backend="onnx-int8", cache_dir=cache)

    def encode_all(encoder) -> np.ndarray:  # type: ignore[no-untyped-def]
        return np.concatenate([np.stack(encoder.encode(texts[i : i + 32])) for i in range(0, len(texts), 32)])

    reference = encode_all(backends["torch"])
    speed: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(rounds):  # alternate backends so load changes hit each alike
        for batch, sample in ((1, single), (32, texts)):
            for name, encoder in backends.items():
                speed.setdefault((name, batch), []).append(measure(encoder.encode, sample, batch))

    def best(name: str, batch: int) -> tuple[float, float]:
        runs = speed[(name, batch)]
        return max(r[0] for r in runs), min(r[1] for r in runs)

    print(
        f"corpus: {len(texts)} texts, mean {np.mean([len(t) for t in texts]):.0f} chars; onnx load/export {onnx_load_s:.1f} s"
    )
    print(f"{'backend':10} {'batch':>5} {'texts/s':>9} {'cpu ms/text':>12} {'cos mean':>9} {'cos min':>9}")
    for name, encoder in backends.items():
        cosine = (encode_all(encoder) * reference).sum(axis=1)
        for batch in (1, 32):
            rate, cpu = best(name, batch)
            print(f"{name:10} {batch:5d} {rate:9.1f} {cpu:12.2f} {cosine.mean():9.5f} {cosine.min():9.5f}")
        if name == "torch":
            continue
        for batch in (1, 32):
            result(
                f"{name} vs torch texts/s, batch {batch}",
                best(name, batch)[0],
                best("torch", batch)[0],
                "> 1",
                "texts/s",
            )
        result(f"{name} vs torch CPU ms/text, batch 32", best(name, 32)[1], best("torch", 32)[1], "< 1", "ms")
        result(f"{name} cosine to torch, mean", float(cosine.mean()), None, ">= 0.99", "")
        result(f"{name} cosine to torch, min", float(cosine.min()), None, ">= 0.99", "")
    if "onnx-int8" not in backends:
        print("onnx-int8: skipped (onnxruntime.quantization needs the `onnx` package, not installed)")


if __name__ == "__main__":
    main()
