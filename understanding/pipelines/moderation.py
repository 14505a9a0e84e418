"""The moderation decision: signals + a resolved policy -> one `Moderation`. Pure, no I/O.

The same function judges a whole media (the analyze use case) and one live window (the
live path calls it per window), so a decision made live and the one made on the stream's
final analysis follow the same rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from understanding.domain import CategoryResult, Decision, Moderation, Signal
from understanding.pipelines.policy import Policy, Rule

__all__ = ["MAX_EVIDENCE", "decide"]

# Evidence kept per category, strongest first: a moderator needs the worst instances, and
# an event must stay small whatever the media's length (a 4-hour call can repeat a number).
MAX_EVIDENCE = 20
_NO_RULE = Rule()


def decide(signals: Iterable[Signal], policy: Policy) -> Moderation:
    """Judge every category that has a signal; the decision is the most severe category's.

    A category's severity is the most severe any of its signals calls for (a zero-shot
    signal capped by the rule's `zero_shot`), so a strong zero-shot similarity never
    outranks what a trained model's score would justify; its score and first evidence are
    those of the strongest signal making that call. A category the policy does not name is
    reported with severity ALLOW.
    """
    grouped: dict[str, list[Signal]] = {}
    for signal in signals:
        grouped.setdefault(signal.category, []).append(signal)
    results = []
    for category, found in grouped.items():
        rule = policy.rules.get(category, _NO_RULE)
        calls = {id(s): rule.severity(s.score, zero_shot=s.zero_shot) for s in found}
        # The evidence that decided first: the most severe call, then the highest score.
        found.sort(key=lambda s: (-calls[id(s)].rank, -s.score, s.evidence.start_s, s.evidence.chunk_index or 0))
        severity = calls[id(found[0])]
        results.append(
            CategoryResult(
                category=category,
                score=round(float(found[0].score), 4),
                severity=severity,
                evidence=tuple(
                    dataclasses.replace(s.evidence, score=round(float(s.score), 4), zero_shot=s.zero_shot)
                    for s in found[:MAX_EVIDENCE]
                ),
            )
        )
    results.sort(key=lambda r: (-r.severity.rank, -r.score, r.category))
    decision = results[0].severity if results else Decision.ALLOW
    return Moderation(decision=decision, policy=policy.name, policy_version=policy.version, categories=tuple(results))
