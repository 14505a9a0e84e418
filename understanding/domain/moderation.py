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
import re
from dataclasses import dataclass

from understanding.domain.errors import InvalidInput
from understanding.domain.media import Modality, ModelRef

_POLICY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
    # The signal's score, filled by the policy's decision (pipelines/moderation.py) so each
    # piece of evidence says how strong it was.
    score: float = 0.0
    # True when the request asked for PII redaction: `text` is then empty (never the raw
    # value) while `detail` still says what kind of contact detail was found where.
    redacted: bool = False
    # Copied from the signal by the decision, like `score`.
    zero_shot: bool = False


@dataclass(frozen=True, slots=True)
class Signal:
    """One finding: a category (e.g. `nudity`, `offensive`, `contact.phone`), a score in [0, 1].

    `zero_shot` marks a score derived from an embedding similarity to the category's
    descriptions rather than from a model trained for the category: weaker evidence, so a
    policy can cap what such a signal alone may call for (see pipelines/policy.py).
    """

    category: str
    score: float
    evidence: Evidence
    zero_shot: bool = False


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
    """A media's (or a live window's) verdict: the decision, the policy (name and version of
    the policy file) that made it, and every category that had a signal, most severe first."""

    decision: Decision
    policy: str
    policy_version: str
    categories: tuple[CategoryResult, ...] = ()

    def flagged(self) -> tuple[str, ...]:
        """The categories that call for REVIEW or BLOCK (what search filters on)."""
        return tuple(c.category for c in self.categories if c.severity is not Decision.ALLOW)


@dataclass(frozen=True, slots=True)
class ModerationOptions:
    """What a request asks of moderation. `policy` None: the tenant's default policy;
    `redact_pii`: mask contact details in every stored, returned and published text."""

    policy: str | None = None
    redact_pii: bool = False

    def __post_init__(self) -> None:
        if self.policy is not None and not _POLICY_NAME.match(self.policy):
            raise InvalidInput(
                "must be a policy name of letters, digits, '.', '_' or '-' (at most 64)", field="moderation.policy"
            )
