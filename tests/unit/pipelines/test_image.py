"""The image pipeline on a real decoder and face model, with small fakes for the embedder and
the picture models: chunks (description, then the text read), image facts, signals."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Sequence

import numpy as np
import pytest

from tests.fixtures import images as fx
from understanding.domain import ImageOptions, LimitExceeded, Modality, ModelRef
from understanding.media.sandbox import MediaDecoder, SandboxSettings
from understanding.models.language import LanguageDetector
from understanding.models.nudity import NudityResult
from understanding.models.ocr import OcrResult
from understanding.models.ocr import TextLine as ReadLine
from understanding.pipelines.image import ImageInput, ImagePipeline, ImageSettings
from understanding.pipelines.screening import VisualModels
from understanding.pipelines.tagging import Label, Tagger, Taxonomy
from understanding.pipelines.text import TextPipeline
from understanding.pipelines.visual import FaceDetector

NSFW = ModelRef("open-nsfw", "1")
OCR = ModelRef("pp-ocrv4-mobile", "1")
LINES = ("Evening lecture on tidal navigation", "Call +44 20 7946 0958 for tickets")


def vector(text: str) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    for word in text.lower().split():
        v[int(hashlib.sha256(word.encode()).hexdigest(), 16) % 8] += 1.0
    return v / max(float(np.linalg.norm(v)), 1e-9)


async def embed(texts: Sequence[str]) -> list[np.ndarray]:
    return [vector(t) for t in texts]


def text_pipeline() -> TextPipeline:
    taxonomy = Taxonomy(version="1", labels=(Label("topic.travel", "topic", 0.5, ("navigation lecture",)),))
    return TextPipeline(
        embed=embed, tagger=Tagger(taxonomy, lambda ts: [vector(t) for t in ts]), language=LanguageDetector(),
        model=ModelRef("fake", "1"), chunk_max_words=4, chunk_overlap_words=1,
    )  # fmt: skip


class Models:
    def __init__(self) -> None:
        self.sizes: list[tuple[int, ...]] = []

    async def nudity(self, image: np.ndarray) -> NudityResult:
        self.sizes.append(image.shape)
        return NudityResult(0.25, (), NSFW)

    async def ocr(self, image: np.ndarray) -> OcrResult:
        self.sizes.append(image.shape)
        h = image.shape[0]
        lines = tuple(
            ReadLine(text, 0.9, ((20.0, y), (400.0, y), (400.0, y + 20), (20.0, y + 20)), 0.0)
            for text, y in zip(LINES, (h * 0.2, h * 0.6), strict=True)
        )
        return OcrResult(lines, 2, 0, OCR, (0, 1))


@pytest.fixture(scope="module")
def faces() -> FaceDetector:
    return FaceDetector()


def pipeline(faces: FaceDetector, models: Models, **settings: int) -> ImagePipeline:
    return ImagePipeline(
        decoder=MediaDecoder(SandboxSettings(isolate=False)),
        text=text_pipeline(),
        faces=faces,
        models=VisualModels(models.nudity, models.ocr, NSFW, OCR),
        settings=ImageSettings(chunk_max_words=4, chunk_overlap_words=1, **settings),  # type: ignore[arg-type]
    )


async def test_an_image_becomes_a_description_and_the_text_read_in_it(
    tmp_path: pathlib.Path, faces: FaceDetector
) -> None:
    models = Models()
    path = fx.photo(tmp_path / "face.jpg", size=1024)
    a = await pipeline(faces, models, max_side=512).analyze("t", ImageInput("img-1", path, metadata={"k": "v"}))
    assert a.modality is Modality.IMAGE and a.media_id == "img-1" and a.metadata == {"k": "v"}
    assert a.image is not None and (a.image.width, a.image.height, a.image.format) == (1024, 1024, "jpeg")
    assert models.sizes == [(512, 512, 3), (512, 512, 3)]  # both models on the capped decode
    assert a.image.face_count == 1 and "visual.faces" in {t.label for t in a.chunks[0].tags}
    assert a.chunks[0].text.startswith("a ") and "face" in a.chunks[0].text
    assert a.image.ocr_text == "\n".join(LINES)
    # Boxes in the original's pixels: the fake read at y = 0.2 * 512 on the 512 px copy.
    assert a.image.text_lines[0].box.y == pytest.approx(0.2 * 1024, abs=0.2)
    pieces = [c.text for c in a.chunks[1:]]
    assert pieces[0] == "Evening lecture on tidal" and all(len(p.split()) <= 4 for p in pieces)
    assert all(c.extra.get("ocr_text") == c.text for c in a.chunks[1:])
    assert a.image.nudity_score == 0.25 and all(c.extra["nudity_score"] == 0.25 for c in a.chunks)
    assert a.visual_models == (NSFW, OCR)
    by_category = {s.category: s for s in a.signals}
    assert set(by_category) == {"nudity", "contact.phone"}
    phone = by_category["contact.phone"].evidence
    chunk = a.chunks[phone.chunk_index or 0]
    assert phone.span is not None and chunk.text[phone.span[0] : phone.span[1]] == "+44 20 7946 0958"
    assert phone.modality is Modality.IMAGE and phone.model == OCR and phone.frame_s == 0.0
    assert phone.box is not None and phone.box[1] == pytest.approx(0.6 * 1024, abs=0.2)


async def test_skipped_models_leave_no_findings(tmp_path: pathlib.Path, faces: FaceDetector) -> None:
    models = Models()
    path = fx.text_image(tmp_path / "poster.png")
    a = await pipeline(faces, models).analyze(
        "t", ImageInput("img-2", path, ImageOptions(skip_ocr=True, skip_nudity=True))
    )
    assert models.sizes == [] and a.signals == () and a.visual_models == ()
    assert a.image is not None and a.image.ocr_text == "" and len(a.chunks) == 1
    assert "nudity_score" not in a.chunks[0].extra


async def test_limits_come_from_the_settings(tmp_path: pathlib.Path, faces: FaceDetector) -> None:
    with pytest.raises(LimitExceeded) as err:
        await pipeline(faces, Models(), max_pixels=100_000).analyze("t", ImageInput("i", fx.photo(tmp_path / "p.jpg")))
    assert err.value.field == "image.resolution"
