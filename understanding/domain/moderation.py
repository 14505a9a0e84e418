"""Moderation: signals from the models, and the decision a policy makes from them.

A `Signal` is one model's finding with its evidence (where in the media, which
model); pipelines produce signals and nothing else. A versioned policy turns
the signals of a media into a `Moderation`: one decision (ALLOW / REVIEW /
BLOCK), the categories that contributed with their score and severity, and the
evidence behind each, so a moderator can act and an appeal can be traced to
the model and policy version that decided.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from understanding.domain.media import Modality, ModelRef


# The categories signals are filed under (a policy names them; an unknown name in a policy
# file is a start-up error). `contact.*` are sub-kinds of contact details.
CATEGORIES: tuple[str, ...] = (
    "nudity",  # exposed body parts / NSFW imagery (images, frames)
    "sexual",  # sexual solicitation or content in text / speech
    "offensive",  # offensive language, insults, profanity
    "harassment",
    "hate",
    "violence",
    "self_harm",
    "spam_scam",  # scams, fraud, unsolicited promotion
    "minors",  # signs a minor is involved
    "contact.phone",  # contact details: the main scam vector in dating and video chat
    "contact.email",
    "contact.url",
    "contact.handle",  # social / messenger handles
    "contact.payment",  # payment handles, crypto addresses, IBANs
)


class Decision(enum.Enum):
    """Ordered: a media's decision is the most severe of its categories'."""

    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Decision.ALLOW: 0, Decision.REVIEW: 1, Decision.BLOCK: 2}


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where a signal was found and by what. Times are seconds within the media; `box` is
    (x, y, width, height) in pixels of the frame or image; `span` is a character range of
    `text` within the chunk / transcript text it came from (`chunk_index`)."""

    modality: Modality
    model: ModelRef
    start_s: float = 0.0
    end_s: float = 0.0
    frame_s: float | None = None
    box: tuple[float, float, float, float] | None = None
    text: str = ""
    span: tuple[int, int] | None = None
    chunk_index: int | None = None
    speaker: str = ""
    detail: str = ""  # the model's own label, e.g. "FEMALE_BREAST_EXPOSED" or "phone"


@dataclass(frozen=True, slots=True)
class Signal:
    """One finding: a category (e.g. `nudity`, `offensive`, `contact.phone`), a score in [0, 1]."""

    category: str
    score: float
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class CategoryResult:
    """A category as the policy judged it: the best score of its signals, the decision this
    category alone calls for, and the evidence (strongest first)."""

    category: str
    score: float
    severity: Decision
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True, slots=True)
class Moderation:
    decision: Decision
    policy: str
    policy_version: str
    categories: tuple[CategoryResult, ...] = ()
