"""The moderation use case: an analysis's signals and the policy -> its `Moderation`.

Every analysis (inline or job, text, speech or video) passes through `Moderator.moderate`
after its modality's pipeline: the text detectors add their signals to those the pipeline
made (visual ones), the policy the request names (or the tenant's) decides, and, when the
request asks, contact details are masked everywhere before anything is stored or published.

The live path uses the same pieces per window: `window_signals` + `decide`, then
`ResultSink.publish_moderation(..., partial=True)` for a REVIEW or BLOCK as soon as it is made.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from understanding.domain import Analysis, Modality, Moderation, ModerationOptions, Signal, Vector
from understanding.pipelines.moderation import decide
from understanding.pipelines.policy import Policy, PolicySet
from understanding.pipelines.redaction import redact_analysis
from understanding.pipelines.text import TextPipeline
from understanding.pipelines.text_signals import TextSignals, TextUnit, text_units


class Moderator:
    def __init__(self, *, policies: PolicySet, signals: TextSignals, text: TextPipeline) -> None:
        self.policies = policies
        self._signals = signals
        self._text = text

    def policy(self, tenant: str, options: ModerationOptions | None = None) -> Policy:
        """The policy a request gets (InvalidInput naming `moderation.policy` if unknown):
        resolve it before the work, so a typo fails at once and not after an hour of audio."""
        return self.policies.resolve(tenant, options.policy if options is not None else None)

    async def moderate(self, analysis: Analysis, options: ModerationOptions, policy: Policy | None = None) -> Analysis:
        """`analysis` with its text signals added, its moderation decided and, if asked, its
        contact details redacted."""
        policy = policy or self.policy(analysis.tenant, options)
        binding = self._text.binding
        # Zero-shot scores need the tagger of the model that embedded the chunks (not so for an
        # analysis embedded just before an online model switch: then it has none).
        same_model = binding.model == analysis.embedding_model
        found = await asyncio.to_thread(
            self._signals.detect,
            text_units(analysis),
            tagger=binding.tagger if same_model else None,
            embedding_model=analysis.embedding_model,
        )
        signals = (*analysis.signals, *found)
        moderated = dataclasses.replace(analysis, signals=signals, moderation=decide(signals, policy))
        return redact_analysis(moderated) if options.redact_pii else moderated

    # ------------------------------------------------------------ live windows
    async def window_signals(
        self,
        text: str,
        *,
        start_s: float,
        end_s: float,
        chunk_index: int,
        language: str | None = None,
        speaker: str = "",
        embedding: Vector | None = None,
    ) -> list[Signal]:
        """Signals of one live transcript window (zero-shot ones need its `embedding`)."""
        unit = TextUnit(
            chunk_index=chunk_index,
            text=text,
            modality=Modality.SPEECH,
            start_s=start_s,
            end_s=end_s,
            language=language,
            embedding=embedding,
        )
        binding = self._text.binding
        found = await asyncio.to_thread(
            self._signals.detect, [unit], tagger=binding.tagger, embedding_model=binding.model
        )
        return (
            [dataclasses.replace(s, evidence=dataclasses.replace(s.evidence, speaker=speaker)) for s in found]
            if speaker
            else found
        )

    async def shown_text_signals(self, text: str, *, t_s: float, language: str | None = None) -> list[Signal]:
        """Signals of text read on a live frame at `t_s`: the offensive model (its contact details
        come from the OCR lines, with boxes; a frame has no embedding for the zero-shot ones)."""
        if not text.strip():
            return []
        unit = TextUnit(
            chunk_index=0, text=text, modality=Modality.VIDEO, start_s=t_s, end_s=t_s, language=language, contacts=False
        )
        found = await asyncio.to_thread(self._signals.detect, [unit], tagger=None, embedding_model=None)
        return [dataclasses.replace(s, evidence=dataclasses.replace(s.evidence, frame_s=t_s)) for s in found]

    def decide(self, tenant: str, signals: Sequence[Signal], options: ModerationOptions | None = None) -> Moderation:
        """The policy's verdict on some signals (a live window's): pure, no I/O."""
        return decide(signals, self.policy(tenant, options))
