"""alt-profanity-check's packaged model: real scores, the evidence span, and the version guard."""

from __future__ import annotations

import pathlib
import shutil

import joblib
import numpy as np
import pytest

from understanding.models.offensive import (
    LANGUAGES,
    OffensiveModelError,
    ProfanityCheckModel,
    _package_dir,
    _SigmoidFolds,
    deobfuscate,
)


@pytest.fixture(scope="module")
def model() -> ProfanityCheckModel:
    loaded = ProfanityCheckModel()
    loaded.warm_up()
    return loaded


def test_offensive_and_ordinary_messages(model: ProfanityCheckModel) -> None:
    offensive, insult, ordinary, question = model.predict([
        "fuck you, you stupid bitch", "go to hell, you worthless piece of shit",
        "Thanks for the call yesterday, see you on Friday!", "What time does the museum open on Sundays?",
    ])  # fmt: skip
    assert offensive > 0.9 and insult > 0.9
    assert ordinary < 0.2 and question < 0.2
    assert model.model.name == "alt-profanity-check" and model.model.version == "1.9.1"
    assert LANGUAGES == frozenset({"en"})


def test_the_one_product_scores_exactly_as_scikit_learn(model: ProfanityCheckModel) -> None:
    """The fast path (`_SigmoidFolds`) against the pickled classifier's own predict_proba, on
    texts of 1-12 words drawn from the model's whole vocabulary, offensive words included."""
    assert model._folds is not None
    vocabulary = sorted(model._vocabulary)
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(vocabulary, size=int(rng.integers(1, 13)))) for _ in range(2000)]
    texts += ["fuck you, you stupid bitch", "Thanks for the call yesterday!", "", "!!!"]
    matrix = model._vectorizer.transform(texts)
    expected = model._classifier.predict_proba(matrix)[:, 1]
    assert np.abs(model._folds.positive(matrix) - expected).max() < 1e-12
    assert np.abs(np.asarray(model.predict(texts)) - expected).max() < 1e-12
    assert expected.min() < 0.1 and expected.max() > 0.9  # both ends of the scale were exercised


def test_a_classifier_of_another_shape_keeps_scikit_learns_path() -> None:
    assert _SigmoidFolds.of(object()) is None


def test_one_insult_in_a_long_text_is_found_with_its_span(model: ProfanityCheckModel) -> None:
    calm = "We walked along the river and talked about the new library, the weather and the trains. " * 6
    text = calm + "Then he wrote: shut up, you fucking idiot. " + calm
    whole = model.predict([text])[0]
    scored = model.score_text(text)
    assert scored.score > 0.8 > whole  # diluted in the whole text, clear in its window
    assert "fucking idiot" in text[scored.start : scored.end]
    assert scored.words and scored.words[0].text == "fucking"
    assert text[scored.words[0].start : scored.words[0].end] == "fucking"
    assert model.score_text("").score == 0.0


def test_other_languages_are_not_covered(model: ProfanityCheckModel) -> None:
    # Spanish and Italian insults score low: the vocabulary is English (callers check LANGUAGES).
    spanish, italian = model.predict(["eres un hijo de puta y un cabrón", "sei un gran pezzo di merda, stronzo"])
    assert spanish < 0.5 and italian < 0.5


def test_a_pickle_from_another_scikit_learn_is_refused(tmp_path: pathlib.Path) -> None:
    source = _package_dir()
    shutil.copy(source / "model.joblib", tmp_path / "model.joblib")
    vectorizer = joblib.load(source / "vectorizer.joblib")
    state = vectorizer.__getstate__()
    state["_sklearn_version"] = "0.24.2"

    class OldPickle:
        def __reduce__(self) -> tuple[object, ...]:
            return (type(vectorizer), (), state)

    joblib.dump(OldPickle(), tmp_path / "vectorizer.joblib")
    with pytest.raises(OffensiveModelError, match="another scikit-learn"):
        ProfanityCheckModel(tmp_path)
    (tmp_path / "vectorizer.joblib").unlink()
    with pytest.raises(OffensiveModelError, match="cannot load"):
        ProfanityCheckModel(tmp_path)


def test_evasive_spellings_are_read(model: ProfanityCheckModel) -> None:
    evasive = ["f*u*c*k you", "what a bunch of bullsh1t", "ＦＵＣＫ ＹＯＵ", "s h i t head"]
    plain = model.predict(evasive)
    scored = model.score_texts(evasive)
    assert all(s.score >= 0.8 for s in scored), [s.score for s in scored]
    assert sum(p >= 0.8 for p in plain) < len(evasive)  # the bag of words alone misses some of them
    assert deobfuscate("I have 2 cats, room 101") == "I have 2 cats, room 101"  # digits alone stay digits
