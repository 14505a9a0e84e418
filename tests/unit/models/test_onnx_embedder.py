"""ONNX Runtime embedder: same vectors as torch, export cached, reused and atomic."""

from __future__ import annotations

import multiprocessing
import pathlib

import numpy as np
import pytest

from understanding.models import onnx_embedder
from understanding.models.embedder import Embedder, load_embedder, resolve_embedding_model
from understanding.models.onnx_embedder import OnnxEmbedder, ensure_export, export_dir, quantization_available

FALLBACK_TEXTS = [
    "What a game last night! Messi scored twice and Barcelona won the league.",
    "The meeting is moved to Thursday at 3 pm in room 204.",
    "Der Zug nach Berlin hat heute wieder zwanzig Minuten Verspätung.",
    "¿Dónde está la biblioteca más cercana?",
    "x",
]


def real_texts(limit: int = 96) -> list[str]:
    """Short and long texts from corpora installed on the machine (fortunes, Python docs)."""
    texts: list[str] = []
    fortunes = pathlib.Path("/usr/share/games/fortunes")
    for path in sorted(fortunes.glob("*")) if fortunes.is_dir() else []:
        if path.suffix or not path.is_file():
            continue
        texts += [t.strip() for t in path.read_text(errors="ignore").split("\n%\n") if t.strip()][:12]
        if len(texts) >= limit // 2:
            break
    docs = pathlib.Path("/usr/share/doc/python3.11/html/_sources/library")
    for path in sorted(docs.glob("*.rst.txt"))[:8] if docs.is_dir() else []:
        texts.append(path.read_text(errors="ignore")[:3000])  # longer than 256 tokens: truncation
    return (texts or FALLBACK_TEXTS)[:limit] + FALLBACK_TEXTS


@pytest.fixture(scope="module")
def model_dir() -> pathlib.Path:
    return resolve_embedding_model("packaged")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx(model_dir: pathlib.Path, cache: pathlib.Path) -> OnnxEmbedder:
    encoder = load_embedder(model_dir, backend="onnx", cache_dir=cache)
    assert isinstance(encoder, OnnxEmbedder)
    return encoder


@pytest.fixture(scope="module")
def torch_embedder(model_dir: pathlib.Path) -> Embedder:
    return Embedder(model_dir)


def test_same_vectors_as_torch(onnx: OnnxEmbedder, torch_embedder: Embedder) -> None:
    texts = real_texts()
    got = np.stack(onnx.encode(texts))
    want = np.stack(torch_embedder.encode(texts))
    cosine = (got * want).sum(axis=1)
    assert cosine.min() >= 0.99, cosine.min()
    assert cosine.mean() >= 0.999, cosine.mean()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)


def test_same_model_ref_as_torch_and_dimension(onnx: OnnxEmbedder, torch_embedder: Embedder) -> None:
    # fp32 ONNX vectors are the torch vectors (cosine ~1): one version, one collection.
    assert onnx.model_ref == torch_embedder.model_ref
    assert onnx.dimension == torch_embedder.dimension == 384
    assert onnx.max_seq_length == torch_embedder.max_seq_length == 256
    assert onnx.count_tokens("Messi scored twice") == torch_embedder.count_tokens("Messi scored twice")


def test_empty_input_and_batch_independence(onnx: OnnxEmbedder) -> None:
    assert onnx.encode([]) == []
    alone = onnx.encode(["short text"])[0]
    padded = onnx.encode(["short text", "a much longer text " * 40])[0]  # padding must not leak into pooling
    assert float(np.dot(alone, padded)) > 0.9999
    assert onnx.encode([""])[0].shape == (384,)


def test_export_is_cached_and_reused(
    onnx: OnnxEmbedder, model_dir: pathlib.Path, cache: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamp = onnx.path.stat().st_mtime_ns

    def no_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_embedder, "_export_fp32", no_export)
    again = load_embedder(model_dir, backend="onnx", cache_dir=cache)
    assert isinstance(again, OnnxEmbedder) and again.path == onnx.path
    assert onnx.path.stat().st_mtime_ns == stamp
    assert not [p for p in onnx.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_another_model_or_version_gets_its_own_export(model_dir: pathlib.Path, cache: pathlib.Path) -> None:
    assert export_dir(model_dir, cache, "v1") != export_dir(model_dir, cache, "v2")
    assert export_dir(model_dir, cache, "v1") != export_dir(model_dir.parent, cache, "v1")


def test_failed_export_leaves_nothing_that_looks_complete(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(model_dir: pathlib.Path, dest: pathlib.Path) -> None:
        dest.write_bytes(b"half a model")
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(onnx_embedder, "_export_fp32", crash)
    with pytest.raises(RuntimeError, match="mid-export"):
        ensure_export(model_dir, tmp_path, "v1")
    target = export_dir(model_dir, tmp_path, "v1")
    assert not (target / "model.onnx").exists()
    assert not [p for p in target.iterdir() if p.name.endswith(".tmp")]


def _export_in_child(model_dir: str, cache: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    path = ensure_export(pathlib.Path(model_dir), pathlib.Path(cache), "race")
    queue.put((str(path), path.stat().st_ino))


def test_two_processes_exporting_at_once_agree(model_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    children = [ctx.Process(target=_export_in_child, args=(str(model_dir), str(tmp_path), queue)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(300)
        assert child.exitcode == 0
    (path_a, inode_a), (path_b, inode_b) = queue.get(timeout=5), queue.get(timeout=5)
    assert path_a == path_b and inode_a == inode_b  # one export, not two renamed over each other
    target = pathlib.Path(path_a)
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    encoder = OnnxEmbedder(model_dir, cache_root=tmp_path, model_ref=onnx_embedder.ModelRef("m", "race"))
    assert encoder.path == target and encoder.dimension == 384


def test_int8_backend(model_dir: pathlib.Path, cache: pathlib.Path, torch_embedder: Embedder) -> None:
    if not quantization_available():
        with pytest.raises(RuntimeError, match="onnx"):
            load_embedder(model_dir, backend="onnx-int8", cache_dir=cache)
        return
    int8 = load_embedder(model_dir, backend="onnx-int8", cache_dir=cache)
    # Quantized vectors differ a little: their own version, so never mixed with fp32 ones.
    assert int8.model_ref.version == torch_embedder.model_ref.version + "-int8"
    texts = real_texts(32)
    cosine = (np.stack(int8.encode(texts)) * np.stack(torch_embedder.encode(texts))).sum(axis=1)
    assert cosine.mean() >= 0.98


def test_unknown_backend_is_rejected(model_dir: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="unknown embedding backend"):
        load_embedder(model_dir, backend="tensorrt")
