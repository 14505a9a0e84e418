"""Text understanding: chunk, embed, tag and detect the language of a text."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from understanding.batching import BatcherClosed
from understanding.domain import Analysis, Chunk, Language, Modality, ModelRef, Tag, Vector
from understanding.models.language import LanguageDetector
from understanding.pipelines.chunking import chunk_text
from understanding.pipelines.tagging import Tagger

EmbedFn = Callable[[Sequence[str]], Awaitable[list[Vector]]]

# Language identification is reliable well before this many characters.
_LANGUAGE_SAMPLE_CHARS = 2000
# A chunk or segment gets its own language only when its text says so clearly;
# short or mixed pieces keep the media's (a transcript's comes from the audio).
OWN_LANGUAGE_MIN_PROBABILITY = 0.9
OWN_LANGUAGE_MIN_LETTERS = 12


@dataclass(frozen=True, slots=True)
class TextInput:
    media_id: str
    text: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmbeddingBinding:
    """The embedding model a pipeline uses: how to embed, the tagger built on
    the same model's vectors, and its name. Swapped as one (online reindex)."""

    embed: EmbedFn
    tagger: Tagger
    model: ModelRef


@dataclass(frozen=True, slots=True)
class Window:
    """A piece of content to embed with its position in the media."""

    text: str
    start_s: float = 0.0
    end_s: float = 0.0
    speakers: tuple[str, ...] = ()  # who says it (transcript windows)


def new_version() -> int:
    """Monotonic-enough version for a (re-)analysis: microseconds since the epoch."""
    return time.time_ns() // 1000


def overall_tags(
    tagger: Tagger, vectors: Sequence[Vector], *, start_s: float = 0.0, end_s: float = 0.0
) -> tuple[Tag, ...]:
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
        self._binding = EmbeddingBinding(embed, tagger, model)
        self._language = language
        self._max_words = chunk_max_words
        self._overlap = chunk_overlap_words

    @property
    def model(self) -> ModelRef:
        return self._binding.model

    @property
    def binding(self) -> EmbeddingBinding:
        return self._binding

    def rebind(self, binding: EmbeddingBinding) -> None:
        """Embed and tag with another model from now on (online reindex).

        A call already embedding with the previous model embeds again with the
        new one before it returns, so the chunks it returns, `overall_tags` and
        `model` read right after it agree (see `embed_windows`).
        """
        self._binding = binding

    def detect_language(self, text: str) -> Language:
        return self._language.detect(text[:_LANGUAGE_SAMPLE_CHARS])

    def own_language(self, text: str, fallback: Language | None) -> Language | None:
        """The language of a piece of a media (a chunk, a transcript segment): its own when its
        text is long enough and detection confident, else `fallback` (the media's).

        Why per piece: people switch language within a post or a call, and the
        lexical side of search and the `languages` filter work per point.
        """
        sample = text[:_LANGUAGE_SAMPLE_CHARS]
        if sum(ch.isalpha() for ch in sample) < OWN_LANGUAGE_MIN_LETTERS:
            return fallback
        detected = self._language.detect(sample)
        if detected.code == "und" or detected.probability < OWN_LANGUAGE_MIN_PROBABILITY:
            return fallback
        return detected

    async def embed_windows(self, windows: Sequence[Window], *, fallback: Language | None = None) -> list[Chunk]:
        """Embed and tag each window; long windows are split into word chunks first. Each chunk
        gets its own language (see `own_language`; `fallback` is the media's)."""
        pieces: list[Window] = []
        for window in windows:
            spans = chunk_text(window.text, max_words=self._max_words, overlap_words=self._overlap)
            pieces.extend(Window(span.text, window.start_s, window.end_s, window.speakers) for span in spans)
        if not pieces:
            return []
        texts = [p.text for p in pieces]
        while True:
            binding = self._binding
            try:
                vectors = await binding.embed(texts)
            except BatcherClosed:
                if self._binding is binding:
                    raise
                continue  # the model was swapped while we waited: embed with the new one
            if self._binding is binding:
                break
        chunks = []
        for i, (piece, vector) in enumerate(zip(pieces, vectors, strict=True)):
            tags = binding.tagger.tag([vector], start_s=piece.start_s, end_s=piece.end_s)[0]
            language = self.own_language(piece.text, fallback)
            chunks.append(
                Chunk(
                    index=i,
                    text=piece.text,
                    embedding=vector,
                    tags=tags,
                    start_s=piece.start_s,
                    end_s=piece.end_s,
                    language=language,
                    speakers=piece.speakers,
                )
            )
        return chunks

    def overall_tags(self, chunks: Sequence[Chunk], *, end_s: float = 0.0) -> tuple[Tag, ...]:
        vectors = [c.embedding for c in chunks]
        if vectors and len(vectors[0]) != self._binding.tagger.dimension:
            return ()  # embedded before an online model switch to another dimension
        return overall_tags(self._binding.tagger, vectors, end_s=end_s)

    async def analyze(self, tenant: str, item: TextInput) -> Analysis:
        language = self.detect_language(item.text)
        chunks = await self.embed_windows([Window(item.text)], fallback=language)
        # No await from here on: the chunks, tags and model name come from one binding.
        return Analysis(
            tenant=tenant,
            media_id=item.media_id,
            modality=Modality.TEXT,
            language=language,
            tags=self.overall_tags(chunks),
            chunks=tuple(chunks),
            embedding_model=self.model,
            created_at=time.time(),
            version=new_version(),
            metadata=dict(item.metadata),
        )
