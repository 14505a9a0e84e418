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
from understanding.models.embedder import TextEncoder, load_embedder, resolve_embedding_model
from understanding.pipelines.tagging import Tagger, Taxonomy
from understanding.pipelines.text import EmbeddingBinding
from understanding.sinks.store import VectorStore, collection_name

log = logging.getLogger(__name__)

PACKAGED = "packaged"


def model_spec_of(spec: str, model_dir: pathlib.Path) -> str:
    """What the alias records for a model: `packaged`, or the absolute model directory."""
    return PACKAGED if spec.strip() in ("", PACKAGED) else str(model_dir.expanduser().resolve())


@dataclass(frozen=True, slots=True)
class ServingEmbedding:
    """An embedding model with its batcher, tagger and collection (`store` is None in a
    worker that hands results to the store owner)."""

    encoder: TextEncoder
    batcher: MicroBatcher[str, Vector]
    tagger: Tagger
    store: VectorStore | None
    model_path: str  # what the alias records: `packaged` or a model directory

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
            from understanding.sinks.qdrant_remote import QdrantClientStore, connect

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

            return current, "", current is None and client.collection_exists(alias), remote
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
            store.promote(self.alias, model_path=model_path)
            return store
        if current != wanted:
            hint = (
                f"set UNDERSTANDING_EMBEDDING_MODEL={recorded} (the model the alias was switched to; "
                "with the default `packaged` the server follows the alias by itself)"
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

        A reindex that switches the alias records the model directory with the
        embedded store's alias. A server left at the default `packaged` follows
        that record, so a restart after a live switch serves the new collection
        without a config change; an explicitly configured model wins, and
        `serving` refuses a mismatch with the model to set. (A remote Qdrant
        alias records nothing: configure the model explicitly there.)
        """
        settings = self._settings
        spec = settings.embedding_model
        if spec not in ("", PACKAGED) or settings.qdrant_url:
            return spec
        from understanding.sinks.edge_store import read_alias

        pointer = read_alias(settings.data_path / "qdrant-edge", self.alias)
        if pointer is None or not pointer.model_path or pointer.model_path == PACKAGED:
            return spec
        if not pathlib.Path(pointer.model_path).is_dir():
            log.warning(
                "the alias was switched to a model directory that is gone; serving the packaged model",
                extra={"model_path": pointer.model_path, "collection": pointer.collection},
            )
            return spec
        log.info(
            "following the alias to the model it was switched to",
            extra={"model_path": pointer.model_path, "collection": pointer.collection},
        )
        return pointer.model_path


class EmbeddingFactory:
    """Builds serving embeddings from model specs with the configured backend and batching."""

    def __init__(self, settings: Settings, *, on_batch: BatchObserver | None = None) -> None:
        self._settings = settings
        self._on_batch = on_batch
        self.stores = StoreOpener(settings)

    def resolve(self, spec: str) -> tuple[pathlib.Path, str]:
        """(model directory, what the alias records for it); InvalidInput for a bad spec."""
        try:
            model_dir = resolve_embedding_model(spec.strip())
        except (FileNotFoundError, ImportError, OSError) as error:
            raise InvalidInput(f"{error}", field="model_path") from error
        return model_dir, model_spec_of(spec, model_dir)

    def load_encoder(self, model_dir: pathlib.Path) -> TextEncoder:
        """Load and warm the encoder (blocking)."""
        settings = self._settings
        encoder = load_embedder(
            model_dir,
            backend=settings.embedding_backend,
            device=settings.embedding_device,
            cache_dir=settings.cache_path / "models",
            threads=settings.embedding_threads,
        )
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
        tagger = Tagger(Taxonomy.load(settings.taxonomy_path or None), encoder.encode)
        return ServingEmbedding(encoder=encoder, batcher=batcher, tagger=tagger, store=store, model_path=model_path)

    def serving(self, *, with_store: bool = True) -> ServingEmbedding:
        """The embedding to serve at start-up (blocking): the configured model, or the one the
        alias follows, with its collection."""
        spec = self.stores.serving_model_spec() if with_store else self._settings.embedding_model
        model_dir, recorded = self.resolve(spec)
        encoder = self.load_encoder(model_dir)
        store = (
            self.stores.serving(encoder.model_ref, encoder.dimension, model_path=recorded) if with_store else None
        )
        return self.assemble(encoder, store, recorded)


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

