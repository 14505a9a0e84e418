"""Nudity models on real photographs: ordinary pictures score low, batches equal single calls,
and the AGPL detector stays optional and out of the default import graph."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data

from understanding.models.nudity import (
    NudeNetDetector,
    NudityModelUnavailable,
    OpenNsfwClassifier,
    load_nudity_model,
)

NUDENET_INSTALLED = importlib.util.find_spec("nudenet") is not None


def photos() -> list[np.ndarray]:
    """Real photographs shipped with scikit-image: a person, a cup of coffee, a cat, a rocket."""
    return [
        cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR)
        for name in ("astronaut", "coffee", "chelsea", "rocket")
    ]


@pytest.fixture(scope="module")
def open_nsfw() -> OpenNsfwClassifier:
    model = OpenNsfwClassifier(threads=1)
    model.warm_up()
    return model


def test_ordinary_photos_score_low_and_batches_match_singles(open_nsfw: OpenNsfwClassifier) -> None:
    images = photos()
    batch = open_nsfw.predict(images)
    assert [r.score for r in batch] == pytest.approx([open_nsfw.predict([i])[0].score for i in images], abs=1e-5)
    assert all(0.0 <= r.score < 0.2 for r in batch), [r.score for r in batch]
    assert all(r.parts == () and r.model.name == "open-nsfw" for r in batch)
    assert open_nsfw.predict([]) == []


def test_grey_bgra_and_tiny_inputs_are_handled(open_nsfw: OpenNsfwClassifier) -> None:
    coffee = photos()[1]
    reference = open_nsfw.predict([coffee])[0].score
    bgra = cv2.cvtColor(coffee, cv2.COLOR_BGR2BGRA)
    grey = cv2.cvtColor(coffee, cv2.COLOR_BGR2GRAY)
    assert open_nsfw.predict([bgra])[0].score == pytest.approx(reference, abs=1e-5)
    assert 0.0 <= open_nsfw.predict([grey])[0].score < 0.2
    tiny = np.full((7, 5, 3), 200, np.uint8)  # smaller than the model's input: resized, not refused
    assert 0.0 <= open_nsfw.predict([tiny])[0].score <= 1.0


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="open-nsfw, nudenet"):
        load_nudity_model("clip")


def test_importing_the_module_does_not_import_nudenet() -> None:
    code = "import sys, understanding.models.nudity as m; m.OpenNsfwClassifier; print('nudenet' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.skipif(NUDENET_INSTALLED, reason="the nudity extra is installed")
def test_nudenet_absent_says_how_to_install() -> None:
    with pytest.raises(NudityModelUnavailable, match="UNDERSTANDING_EXTRAS=nudity make setup"):
        load_nudity_model("nudenet")


@pytest.mark.skipif(not NUDENET_INSTALLED, reason="optional nudity extra (AGPL-3.0) not installed")
def test_nudenet_finds_the_face_and_no_exposure_in_a_portrait() -> None:
    detector = NudeNetDetector(threads=1)
    detector.warm_up()
    astronaut = photos()[0]  # 512x512, the face around x 170-280, y 40-170
    (result,) = detector.predict([astronaut])
    faces = [p for p in result.parts if p.label.startswith("FACE_")]
    assert faces and faces[0].score > 0.5
    cx, cy = faces[0].x + faces[0].w / 2, faces[0].y + faces[0].h / 2
    assert 150 < cx < 300 and 30 < cy < 200
    assert result.score < 0.3
    # Boxes are in the input's pixels whatever its shape (padding is undone).
    wide = cv2.copyMakeBorder(astronaut, 0, 0, 0, 512, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    (again,) = detector.predict([wide])
    face = next(p for p in again.parts if p.label == faces[0].label)
    assert abs(face.x - faces[0].x) < 12 and abs(face.y - faces[0].y) < 12
