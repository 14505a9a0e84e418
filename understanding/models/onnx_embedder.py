"""Sentence embeddings through ONNX Runtime, exported once from the packaged weights.

The first start exports the sentence-transformers model (transformer, pooling
and L2 normalisation in one graph) with `torch.onnx.export` into the cache,
keyed by the model's path and content version, so a different model re-exports
and every later start loads the ONNX file without importing torch at all.
Tokenisation uses the model directory's fast `tokenizer.json`, with the same
truncation (`max_seq_length`) as sentence-transformers, so the vectors match
the torch backend's to float precision (cosine ~1.0, checked by the tests and
`benchmarks/embed_backends.py`).

`quantize=True` adds dynamic int8 weights (onnxruntime.quantization, which
needs the `onnx` package): smaller and usually faster, but the vectors move a
little, so its ModelRef version differs and its vectors live in their own
collection.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pathlib
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from understanding.domain import ModelRef, Vector
from understanding.models._onnx import cpu_session

log = logging.getLogger(__name__)

# Bump when the exported graph changes shape or semantics: old exports are then ignored.
EXPORT_FORMAT = 1
_OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_POOLING_MODES = ("mean", "cls", "max")
# Padded tokens per ONNX run when a batch is split into groups of similar length.
_GROUP_TOKENS = 4096


def quantization_available() -> bool:
    """onnxruntime.quantization imports `onnx`, which is not in requirements.lock."""
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        return False
    return True


def model_config(model_dir: pathlib.Path) -> dict[str, Any]:
    """Pooling mode, normalisation and max_seq_length, read like sentence-transformers does."""
    modules = json.loads((model_dir / "modules.json").read_text()) if (model_dir / "modules.json").exists() else []
    pooling_dir = next((m["path"] for m in modules if m["type"].endswith("models.Pooling")), "1_Pooling")
    pooling_cfg_path = model_dir / pooling_dir / "config.json"
    pooling = (
        json.loads(pooling_cfg_path.read_text()) if pooling_cfg_path.exists() else {"pooling_mode_mean_tokens": True}
    )
    modes = [
        m
        for m in _POOLING_MODES
        if pooling.get(f"pooling_mode_{m}_token" if m == "cls" else f"pooling_mode_{m}_tokens")
    ]
    others = [
        k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and not any(m in k for m in _POOLING_MODES)
    ]
    if len(modes) != 1 or others:
        raise ValueError(
            f"{model_dir}: pooling {pooling} is not supported by the onnx backend (use embedding_backend=torch)"
        )
    st_cfg_path = model_dir / "sentence_bert_config.json"
    st_cfg = json.loads(st_cfg_path.read_text()) if st_cfg_path.exists() else {}
    return {
        "pooling": modes[0],
        "normalize": any(m["type"].endswith("models.Normalize") for m in modules),
        "max_seq_length": int(st_cfg.get("max_seq_length") or 512),
        "do_lower_case": bool(st_cfg.get("do_lower_case", False)),
    }


def export_dir(model_dir: pathlib.Path, cache_root: pathlib.Path, model_version: str) -> pathlib.Path:
    """Where the export of this model lives: keyed by its path and content version."""
    key = hashlib.sha256(f"{model_dir.resolve()}|{model_version}|{EXPORT_FORMAT}".encode()).hexdigest()[:16]
    return cache_root / "onnx" / f"{_safe_name(model_dir)}-{key}"


def _safe_name(model_dir: pathlib.Path) -> str:
    name = model_dir.name if model_dir.name != "model" else model_dir.parent.name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:48] or "model"


@contextlib.contextmanager
def _exclusive(lock_path: pathlib.Path) -> Iterator[None]:
    """Cross-process lock, so a second process waits for the first export instead of redoing it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _atomic_write(dest: pathlib.Path, write: Any) -> None:
    """`write(path)` into a temp file beside `dest`, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        write(pathlib.Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def ensure_export(
    model_dir: pathlib.Path, cache_root: pathlib.Path, model_version: str, *, quantize: bool = False
) -> pathlib.Path:
    """Path of the ONNX file for the model, exporting (and quantizing) it first if needed.

    Safe when several processes start at once: they serialise on a lock file,
    and each file is written to a temp name and renamed into place, so a crash
    mid-export leaves no file that looks complete.
    """
    target = export_dir(model_dir, cache_root, model_version)
    fp32 = target / "model.onnx"
    wanted = target / "model.int8.onnx" if quantize else fp32
    if wanted.exists():
        return wanted
    if quantize and not quantization_available():
        raise RuntimeError(
            "embedding_backend=onnx-int8 needs onnxruntime.quantization, which needs the `onnx` package "
            "(not installed); use embedding_backend=onnx"
        )
    target.mkdir(parents=True, exist_ok=True)
    with _exclusive(target / "export.lock"):
        if not fp32.exists():
            started = time.perf_counter()
            _atomic_write(fp32, lambda tmp: _export_fp32(model_dir, tmp))
            (target / "source.json").write_text(
                json.dumps({"model_dir": str(model_dir), "version": model_version, "format": EXPORT_FORMAT})
            )
            log.info(
                "exported embedding model to onnx",
                extra={"path": str(fp32), "seconds": round(time.perf_counter() - started, 1)},
            )
        if quantize and not wanted.exists():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            _atomic_write(
                wanted,
                lambda tmp: quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=False),
            )
    return wanted


def _export_fp32(model_dir: pathlib.Path, dest: pathlib.Path) -> None:
    """Trace transformer + pooling + normalisation into one ONNX graph (needs torch, once)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    cfg = model_config(model_dir)
    # Eager attention traces into plain MatMul/Softmax; the SDPA path bakes
    # shape-dependent Python branches into the trace.
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, transformer: Any) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            if cfg["pooling"] == "mean":  # sentence_transformers.models.Pooling, mean tokens
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            elif cfg["pooling"] == "cls":
                pooled = hidden[:, 0]
            else:
                pooled = hidden.masked_fill(mask == 0, -1e9).max(1).values
            # Always unit length, whether or not modules.json ends in Normalize:
            # the service stores and compares unit vectors (as Embedder does).
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    sample = torch.ones((2, 8), dtype=torch.long)
    with torch.no_grad(), _without_onnx_package_check(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python branches on shapes: fine here
        torch.onnx.export(
            SentenceEncoder(model),
            (sample, sample, torch.zeros_like(sample)),
            str(dest),
            input_names=list(_INPUTS),
            output_names=["sentence_embedding"],
            dynamic_axes={
                **{name: {0: "batch", 1: "sequence"} for name in _INPUTS},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=_OPSET,
            dynamo=False,
        )


@contextlib.contextmanager
def _without_onnx_package_check() -> Iterator[None]:
    """Let the TorchScript exporter run without the `onnx` package.

    The exporter builds the model bytes in C++, then imports `onnx` only to
    splice in custom onnx-script functions, which this graph never has. The
    `onnx` package is not in requirements.lock, so when it is missing that
    step becomes a pass-through.
    """
    try:
        import onnx  # noqa: F401

        yield
        return
    except ImportError:
        pass
    from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

    original = onnx_proto_utils._add_onnxscript_fn

    def passthrough(model_bytes: bytes, custom_opsets: Any) -> bytes:
        return model_bytes

    onnx_proto_utils._add_onnxscript_fn = passthrough
    try:
        yield
    finally:
        onnx_proto_utils._add_onnxscript_fn = original


class OnnxEmbedder:
    """Encodes batches of texts into unit-norm float32 vectors with ONNX Runtime.

    Same interface as `Embedder`. Called from the micro-batcher's worker thread;
    a lock keeps direct callers (the tagger at start-up) from overlapping it.
    """

    def __init__(
        self,
        model_dir: pathlib.Path,
        *,
        cache_root: pathlib.Path,
        model_ref: ModelRef,
        quantize: bool = False,
        threads: int = 0,
    ) -> None:
        from tokenizers import Tokenizer

        cfg = model_config(model_dir)
        if not (model_dir / "tokenizer.json").exists():
            raise ValueError(f"{model_dir} has no tokenizer.json (a fast tokenizer): use embedding_backend=torch")
        path = ensure_export(model_dir, cache_root, model_ref.version, quantize=quantize)
        self._session = cpu_session(path, threads)
        self._input_names = {i.name for i in self._session.get_inputs()}
        self.max_seq_length = int(cfg["max_seq_length"])
        self._lower = bool(cfg["do_lower_case"])
        self._counter = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        pad_id = self._tokenizer.token_to_id("[PAD]")
        self._tokenizer.no_padding()  # padded per length group in `encode_matrix`
        self._pad_id = 0 if pad_id is None else pad_id
        self.model_ref = ModelRef(name=model_ref.name, version=model_ref.version + ("-int8" if quantize else ""))
        self.path = path
        self._lock = threading.Lock()
        self.dimension = int(self.encode(["dimension probe"])[0].shape[0])
        log.info("onnx embedder loaded", extra={"model": self.model_ref.name, "dim": self.dimension, "path": str(path)})

    def encode_matrix(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) unit vectors, in input order.

        A micro-batch mixes short and long texts; padding them all to the
        longest wastes most of the attention work, so texts are sorted by
        token count and run in groups of similar length (at most
        `_GROUP_TOKENS` padded tokens per run). Padding never changes a
        vector (masked mean pooling), so the grouping is invisible.
        """
        out = np.zeros((len(texts), getattr(self, "dimension", 0)), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch([t.lower() for t in texts] if self._lower else list(texts))
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        group: list[int] = []
        for i in order:  # ascending length: the newest member is the longest
            if group and (len(group) + 1) * len(encodings[i].ids) > _GROUP_TOKENS:
                out = self._run_group(encodings, group, out)
                group = []
            group.append(i)
        return self._run_group(encodings, group, out)

    def _run_group(self, encodings: list[Any], group: list[int], out: np.ndarray) -> np.ndarray:
        width = max(len(encodings[i].ids) for i in group)
        ids = np.full((len(group), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(group), width), dtype=np.int64)
        types = np.zeros((len(group), width), dtype=np.int64)
        for row, i in enumerate(group):
            e = encodings[i]
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = e.ids, e.attention_mask, e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = types
        with self._lock:
            (matrix,) = self._session.run(None, feed)
        if out.shape[1] != matrix.shape[1]:  # the first call learns the dimension
            out = np.zeros((out.shape[0], matrix.shape[1]), dtype=np.float32)
        out[group] = matrix
        return out

    def encode(self, texts: Sequence[str]) -> list[Vector]:
        return list(self.encode_matrix(texts))

    def count_tokens(self, text: str) -> int:
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def warm_up(self) -> None:
        self.encode(["warm up the embedder"] * 4)

    def describe(self) -> str:
        return json.dumps({"name": self.model_ref.name, "version": self.model_ref.version, "backend": "onnx"})
