"""The serving embedding: one model as the service uses it, swapped as one unit.

A `ServingEmbedding` is an encoder, the micro-batcher in front of it, the tagger
built on its vectors and the store collection holding them. Start-up and the
online reindex build it with the same `EmbeddingFactory`; `EmbeddingSwitch`
holds the current one and, on a swap, rebinds every component that embeds,
tags or searches in one event-loop step.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

from understanding.batching import BatchObserver, MicroBatcher
from understanding.config import Settings
from understanding.domain import InvalidInput, ModelRef, Vector
from understanding.models.embedder import (
    DEFAULT_MODEL,
    EmbeddingModel,
    TextEncoder,
    load_text_encoder,
    packaged_model_refs,
    resolve_model,
)
from understanding.pipelines.tagging import Tagger, Taxonomy
from understanding.pipelines.text import EmbeddingBinding
from understanding.sinks.store import SharedCollection, VectorStore, collection_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServingEmbedding:
    """An embedding model with its batcher, tagger and collection (`store` is None in a
    worker that hands results to the store owner)."""

    encoder: TextEncoder
    batcher: MicroBatcher[str, Vector]
    tagger: Tagger
    store: VectorStore | None
    model_path: str  # what the alias records: a packaged model's name or a model directory

    @property
    def model(self) -> ModelRef:
        return self.encoder.model_ref

    @property
    def binding(self) -> EmbeddingBinding:
        return EmbeddingBinding(self.batcher.submit_many, self.tagger, self.model)

    @property
    def collection(self) -> str:
        return self.store.collection if self.store is not None else ""


class StoreOpener:
    """Opens the collections of the configured backend (remote Qdrant, else embedded Qdrant Edge).

    Every embedding model has its own collection, `<alias>__<model>__<version>`,
    and readers go through the alias (a Qdrant alias remotely, a pointer file in
    the embedded store).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.alias = settings.qdrant_collection

    def _backend(self) -> tuple[str | None, str, bool, Callable[[str, int | None], VectorStore]]:
        """(collection the alias points at, model path recorded with it, a pre-alias
        collection exists, how to open a collection)."""
        settings, alias = self._settings, self.alias
        if settings.qdrant_url:
            from understanding.sinks.qdrant_remote import MODEL_PATH_KEY, QdrantClientStore, connect

            client = connect(
                settings.qdrant_url,
                api_key=settings.qdrant_api_key,
                prefer_grpc=settings.qdrant_prefer_grpc,
                grpc_port=settings.qdrant_grpc_port,
                timeout_s=settings.qdrant_timeout_s,
            )
            current = QdrantClientStore.alias_target(client, alias)

            def remote(name: str, dim: int | None) -> VectorStore:
                return QdrantClientStore(
                    dimension=dim, collection=name, client=client, timeout_s=settings.qdrant_timeout_s
                )

            recorded = ""
            if current is not None:
                recorded = str(QdrantClientStore.collection_metadata(client, current).get(MODEL_PATH_KEY, ""))
            # Not `collection_exists(alias)`: it also says yes once another process starting at the
            # same time has made the alias since `current` was read (seen in CI: a worker took it
            # for a collection from before per-model collections and exited).
            legacy = current is None and QdrantClientStore.has_collection(client, alias)
            return current, recorded, legacy, remote
        from understanding.sinks.edge_store import EdgeVectorStore, read_alias

        root = settings.data_path / "qdrant-edge"
        pointer = read_alias(root, alias)

        def edge(name: str, dim: int | None) -> VectorStore:
            return EdgeVectorStore(root, dimension=dim, collection=name)

        current = pointer.collection if pointer else None
        return current, pointer.model_path if pointer else "", current is None and (root / alias).is_dir(), edge

    def current(self) -> VectorStore:
        """The alias's collection whatever its model (a reindex's source)."""
        current, _, _, make = self._backend()
        if current is None:
            raise LookupError(f"alias {self.alias!r} points at no collection yet: nothing to reindex")
        return make(current, None)

    def open(self, collection: str) -> tuple[VectorStore, str]:
        """An existing collection and the model path recorded with it (a follower's new store)."""
        _, _, _, make = self._backend()
        store = make(collection, None)
        return store, self.recorded_model(store)

    @staticmethod
    def recorded_model(store: VectorStore) -> str:
        return _spec_name(store.recorded_model_path()) if isinstance(store, SharedCollection) else ""

    def model_spec_for(self, collection: str, recorded: str) -> str:
        """The model spec to load for `collection`: the recorded one, else the packaged model
        whose collection it is ("" when neither)."""
        if recorded:
            return _spec_name(recorded)
        return next(
            (name for name, ref in packaged_model_refs().items() if collection_name(self.alias, ref) == collection), ""
        )

    def target(self, model: ModelRef, dimension: int) -> VectorStore:
        """`model`'s collection, created if needed; the alias is left alone (a reindex's target)."""
        _, _, _, make = self._backend()
        return make(collection_name(self.alias, model), dimension)

    def serving(self, model: ModelRef, dimension: int, *, model_path: str) -> VectorStore:
        """The alias's collection, which must hold `model`'s vectors; on the first start it is
        created and the alias pointed at it (recording `model_path`)."""
        current, recorded, legacy, make = self._backend()
        wanted = collection_name(self.alias, model)
        if current is None:
            if legacy:
                if self._settings.qdrant_url:
                    raise RuntimeError(
                        f"Qdrant has a collection named {self.alias!r} from before per-model collections; "
                        "delete it or set UNDERSTANDING_QDRANT_COLLECTION to another alias name"
                    )
                log.warning("the pre-hybrid collection %r is not served; its data needs re-indexing", self.alias)
            store = make(wanted, dimension)
            try:
                store.promote(self.alias, model_path=model_path)
            except Exception:
                # Replicas and workers starting at once all find no alias and make the same
                # collection; the server may refuse every alias creation but the first.
                if self._backend()[0] != wanted:
                    raise
                log.info("alias made meanwhile by another process", extra={"collection": wanted})
            return store
        if current != wanted:
            hint = (
                f"set UNDERSTANDING_EMBEDDING_MODEL={_spec_name(recorded)} (the model the alias was switched to; "
                f"with the default `{DEFAULT_MODEL}` the server follows the alias by itself)"
                if recorded
                else "configure the model that collection was built with"
            )
            raise RuntimeError(
                f"alias {self.alias!r} points at collection {current!r}, but the configured embedding model "
                f"{model.name} ({model.version}) uses {wanted!r}: {hint}, "
                "or run `understanding reindex --to-model PATH` to move the alias"
            )
        return make(current, dimension)

    def serving_model_spec(self) -> str:
        """The embedding model to serve: the configured one, unless it is the default.

        A server left at the default follows the alias: to the model a reindex
        switched it to (recorded in the embedded store's alias pointer, in a
        Qdrant server's collection metadata), or to the packaged model whose
        collection the alias names (what a collection recorded nothing tells:
        deployments from before the multilingual default serve MiniLM this way
        until `reindex` moves them). An explicitly
        configured model wins, and `serving` refuses a mismatch with the model to set.
        """
        settings = self._settings
        spec = settings.embedding_model.strip().lower()
        if spec not in ("", DEFAULT_MODEL):
            return settings.embedding_model
        current, recorded, _, _ = self._backend()
        if current is None:
            return DEFAULT_MODEL
        followed = _spec_name(recorded) if recorded else ""
        if followed and followed not in _PACKAGED_NAMES and not pathlib.Path(followed).is_dir():
            log.warning(
                "the alias was switched to a model directory that is gone; serving the default model",
                extra={"model_path": followed, "collection": current},
            )
            return DEFAULT_MODEL
        if not followed:
            followed = self.model_spec_for(current, "")
        if followed and followed != DEFAULT_MODEL:
            log.warning(
                "serving the model the alias follows, not the default: `understanding reindex --to-model "
                f"{DEFAULT_MODEL}` moves this deployment to the multilingual model",
                extra={"model": followed, "collection": current},
            )
            return followed
        return DEFAULT_MODEL


_PACKAGED_NAMES = ("multilingual", "minilm")


def _spec_name(recorded: str) -> str:
    """What an alias record means today: `packaged` was MiniLM's name before the multilingual default."""
    return "minilm" if recorded == "packaged" else recorded


class EmbeddingFactory:
    """Builds serving embeddings from model specs with the configured backend and batching."""

    def __init__(self, settings: Settings, *, on_batch: BatchObserver | None = None) -> None:
        self._settings = settings
        self._on_batch = on_batch
        self.stores = StoreOpener(settings)

    def resolve(self, spec: str) -> EmbeddingModel:
        """The model a setting (or an admin request) names; InvalidInput for a bad one."""
        try:
            return resolve_model(spec)
        except (FileNotFoundError, ImportError, OSError) as error:
            raise InvalidInput(f"{error}", field="model_path") from error

    def load_encoder(self, model: EmbeddingModel) -> TextEncoder:
        """Load and warm the encoder (blocking)."""
        settings = self._settings
        try:
            encoder = load_text_encoder(
                model,
                backend=settings.embedding_backend,
                device=settings.embedding_device,
                cache_dir=settings.cache_path / "models",
                threads=settings.embedding_threads,
            )
        except ValueError as error:
            raise InvalidInput(str(error), field="model_path") from error
        encoder.warm_up()
        return encoder

    def assemble(self, encoder: TextEncoder, store: VectorStore | None, model_path: str) -> ServingEmbedding:
        """Batcher and tagger around a loaded encoder (blocking: the tagger embeds the taxonomy)."""
        settings = self._settings
        batcher: MicroBatcher[str, Vector] = MicroBatcher(
            encoder.encode,
            name="embed",
            max_batch_size=settings.embed_max_batch,
            max_wait_ms=settings.embed_max_wait_ms,
            max_queue=settings.embed_queue_size,
            on_batch=self._on_batch,
        )
        tagger = Tagger(Taxonomy.load(settings.taxonomy_path or None), encoder.encode, model=encoder.model_ref.name)
        return ServingEmbedding(encoder=encoder, batcher=batcher, tagger=tagger, store=store, model_path=model_path)

    def serving(self, *, with_store: bool = True) -> ServingEmbedding:
        """The embedding to serve at start-up (blocking): the configured model, or the one the
        alias follows, with its collection."""
        spec = self.stores.serving_model_spec() if with_store else self._settings.embedding_model
        model = self.resolve(spec)
        encoder = self.load_encoder(model)
        store = self.stores.serving(encoder.model_ref, encoder.dimension, model_path=model.spec) if with_store else None
        return self.assemble(encoder, store, model.spec)


Rebind = Callable[[ServingEmbedding], None]


class EmbeddingSwitch:
    """Holds the current serving embedding and moves every consumer to a new one at once."""

    def __init__(self, current: ServingEmbedding) -> None:
        self.current = current
        self._consumers: list[Rebind] = []

    def subscribe(self, rebind: Rebind) -> None:
        """`rebind(unit)` runs on every swap (synchronously: no await between consumers)."""
        self._consumers.append(rebind)

    def swap(self, unit: ServingEmbedding) -> ServingEmbedding:
        """Make `unit` current for every consumer in one step; returns the previous unit."""
        previous, self.current = self.current, unit
        for rebind in self._consumers:
            rebind(unit)
        return previous
