"""The moderation use case's live pieces, with the real offensive-language model."""

from __future__ import annotations

from typing import Any, cast

import pytest

from understanding.core.moderate import Moderator
from understanding.domain import Modality
from understanding.models.offensive import ProfanityCheckModel
from understanding.pipelines.policy import load_policy
from understanding.pipelines.text_signals import TextSignals


@pytest.fixture(scope="module")
def moderator() -> Moderator:
    model = ProfanityCheckModel()
    model.warm_up()
    # The text pipeline is not used by what these tests call.
    return Moderator(policies=load_policy(), signals=TextSignals(offensive=model), text=cast(Any, None))


async def test_text_shown_on_a_live_frame_is_judged_by_the_offensive_model(moderator: Moderator) -> None:
    found = await moderator.shown_text_signals("WELCOME\nyou are a fucking idiot", t_s=12.0, language="en")
    (offensive,) = found
    assert offensive.category == "offensive" and offensive.score >= 0.5
    evidence = offensive.evidence
    assert evidence.modality is Modality.VIDEO and evidence.frame_s == 12.0
    assert (evidence.start_s, evidence.end_s) == (12.0, 12.0) and "idiot" in evidence.text
    # contact details on screen come from the OCR lines (with boxes), not from here
    assert await moderator.shown_text_signals("call +1 415 555 0132", t_s=1.0) == []
    assert await moderator.shown_text_signals("   ", t_s=1.0) == []
