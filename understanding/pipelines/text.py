"""Text understanding: chunk, embed, tag and detect the language of a text."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping, Sequence

import numpy as np

from understanding.domain import Analysis, Chunk, Language, Modality, ModelRef, Tag, Vector
from understanding.models.language import LanguageDetector
from understanding.pipelines.chunking import chunk_text
from understanding.pipelines.tagging import Tagger

EmbedFn = Callable[[Sequence[str]], Awaitable[list[Vector]]]

# Language identification is reliable well before this many characters.
_LANGUAGE_SAMPLE_CHARS = 2000


@dataclass(frozen=True, slots=True)
class TextInput:
    media_id: str
    text: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Window:
    """A piece of content to embed with its position in the media."""

    text: str
    start_s: float = 0.0
    end_s: float = 0.0


def new_version() -> int:
    """Monotonic-enough version for a (re-)analysis: microseconds since the epoch."""
    return time.time_ns() // 1000


def overall_tags(tagger: Tagger, vectors: Sequence[Vector], *, start_s: float = 0.0, end_s: float = 0.0) -> tuple[Tag, ...]:
    """Tags for a whole media: the tagger applied to the mean of its chunk vectors."""
    if not vectors:
        return ()
    mean = np.mean(np.stack(list(vectors)), axis=0)
    norm = float(np.linalg.norm(mean))
    if norm > 0:
        mean = mean / norm
    return tagger.tag([mean.astype(np.float32)], start_s=start_s, end_s=end_s)[0]


class TextPipeline:
    """Turns text (or transcript windows) into chunks with vectors, tags and language."""

    def __init__(
        self,
        *,
        embed: EmbedFn,
        tagger: Tagger,
        language: LanguageDetector,
        model: ModelRef,
        chunk_max_words: int,
        chunk_overlap_words: int,
    ) -> None:
        self._embed = embed
        self._tagger = tagger
        self._language = language
        self.model = model
        self._max_words = chunk_max_words
        self._overlap = chunk_overlap_words

    def detect_language(self, text: str) -> Language:
        return self._language.detect(text[:_LANGUAGE_SAMPLE_CHARS])

    async def embed_windows(self, windows: Sequence[Window]) -> list[Chunk]:
        """Embed and tag each window; long windows are split into word chunks first."""
        pieces: list[Window] = []
        for window in windows:
            spans = chunk_text(window.text, max_words=self._max_words, overlap_words=self._overlap)
            pieces.extend(Window(span.text, window.start_s, window.end_s) for span in spans)
        if not pieces:
            return []
        vectors = await self._embed([p.text for p in pieces])
        chunks = []
        for i, (piece, vector) in enumerate(zip(pieces, vectors)):
            tags = self._tagger.tag([vector], start_s=piece.start_s, end_s=piece.end_s)[0]
            chunks.append(
                Chunk(index=i, text=piece.text, embedding=vector, tags=tags, start_s=piece.start_s, end_s=piece.end_s)
            )
        return chunks

    def overall_tags(self, chunks: Sequence[Chunk], *, end_s: float = 0.0) -> tuple[Tag, ...]:
        return overall_tags(self._tagger, [c.embedding for c in chunks], end_s=end_s)

    async def analyze(self, tenant: str, item: TextInput) -> Analysis:
        chunks = await self.embed_windows([Window(item.text)])
        return Analysis(
            tenant=tenant,
            media_id=item.media_id,
            modality=Modality.TEXT,
            language=self.detect_language(item.text),
            tags=self.overall_tags(chunks),
            chunks=tuple(chunks),
            embedding_model=self.model,
            created_at=time.time(),
            version=new_version(),
            metadata=dict(item.metadata),
        )
