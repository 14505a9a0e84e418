"""Composition root: builds everything from Settings, starts in order, stops in reverse.

Start: open the store and outbox, start the gRPC server answering health
NOT_SERVING, load and warm the models in a worker thread, then flip health to
SERVING. Stop (SIGTERM): health NOT_SERVING, stop accepting and let in-flight
RPCs finish within the grace period, drain the batchers, try to flush the
outbox to Kafka, close the store.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import signal
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from understanding.api.identity import Identity, parse_api_keys
from understanding.api.server import SERVICE_NAME, Observer, build_handler
from understanding.api.servicer import UnderstandingServicer
from understanding.config import Settings
from understanding.domain import ModelRef, Vector
from understanding.faults import FaultInjector
from understanding.jobs.blobs import BlobStore
from understanding.jobs.runner import PipelineExecutor
from understanding.jobs.service import JobService, JobSettings
from understanding.jobs.store import SqliteJobStore
from understanding.models.batcher import MicroBatcher
from understanding.models.embedder import Embedder, resolve_embedding_model
from understanding.models.language import LanguageDetector
from understanding.pipelines.tagging import Taxonomy, Tagger
from understanding.models.whisper import Transcriber, resolve_whisper_model
from understanding.pipelines.speech import SpeechPipeline
from understanding.pipelines.text import TextPipeline
from understanding.pipelines.video import VideoInput, VideoPipeline, VideoSettings
from understanding.search import Searcher
from understanding.sinks.outbox import Outbox
from understanding.sinks.relay import OutboxRelay
from understanding.sinks.results import ResultSink
from understanding.sinks.store import VectorStore

log = logging.getLogger(__name__)


def open_store(
    settings: Settings, dimension: int | None, model: ModelRef | None, *, role: str = "serve"
) -> VectorStore:
    """Remote Qdrant when a URL is configured, else the embedded Qdrant Edge store.

    Every embedding model has its own collection, `<alias>__<model>__<version>`,
    and readers go through the alias `settings.qdrant_collection` (a Qdrant
    alias remotely, a pointer file in the embedded store). `role`:
      - "serve": the alias's collection, which must hold `model`'s vectors; on
        the first start it is created and the alias pointed at it;
      - "current": the alias's collection whatever its model (reindex source);
      - "target": `model`'s collection, created if needed, alias untouched
        (reindex target; `promote` moves the alias once it is filled).
    """
    from understanding.sinks.store import collection_name

    alias = settings.qdrant_collection
    if settings.qdrant_url:
        from qdrant_client import QdrantClient

        from understanding.sinks.qdrant_remote import QdrantClientStore

        client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None, timeout=30)
        current = QdrantClientStore.alias_target(client, alias)
        legacy = current is None and client.collection_exists(alias)

        def make(name: str, dim: int | None) -> VectorStore:
            return QdrantClientStore(dimension=dim, collection=name, client=client)

    else:
        from understanding.sinks.edge_store import EdgeVectorStore, read_alias

        root = settings.data_path / "qdrant-edge"
        pointer = read_alias(root, alias)
        current = pointer.collection if pointer else None
        legacy = current is None and (root / alias).is_dir()

        def make(name: str, dim: int | None) -> VectorStore:
            return EdgeVectorStore(root, dimension=dim, collection=name)

    if role == "current":
        if current is None:
            raise LookupError(f"alias {alias!r} points at no collection yet: nothing to reindex")
        return make(current, None)
    if model is None or dimension is None:
        raise ValueError(f"role {role!r} needs the embedding model and its dimension")
    wanted = collection_name(alias, model)
    if role == "target":
        return make(wanted, dimension)
    if current is None:
        if legacy:
            if settings.qdrant_url:
                raise RuntimeError(
                    f"Qdrant has a collection named {alias!r} from before per-model collections; "
                    "delete it or set UNDERSTANDING_QDRANT_COLLECTION to another alias name"
                )
            log.warning("the pre-hybrid collection %r is not served; its data needs re-indexing", alias)
        store = make(wanted, dimension)
        store.promote(alias)
        return store
    if current != wanted:
        raise RuntimeError(
            f"alias {alias!r} points at collection {current!r}, but the configured embedding model "
            f"{model.name} ({model.version}) uses {wanted!r}: configure the model that collection was "
            "built with, or run `understanding reindex --to-model PATH` to move the alias"
        )
    return make(current, dimension)


@dataclass
class Core:
    """Everything below the API, built once and shared by all RPCs."""

    settings: Settings
    embedder: Embedder
    embed_batcher: MicroBatcher[str, Vector]
    text: TextPipeline
    store: VectorStore
    outbox: Outbox
    relay: OutboxRelay | None
    sink: ResultSink
    searcher: Searcher
    speech: SpeechPipeline
    jobs: JobService
    blobs: BlobStore
    video: VideoPipeline

    @property
    def spool_dir(self) -> pathlib.Path:
        return self.settings.data_path / "spool"

    @property
    def embedding_model(self) -> ModelRef:
        return self.embedder.model_ref

    async def delete_media(self, tenant: str, media_id: str, *, trace_id: str = "") -> int:
        return await self.sink.delete_media(tenant, media_id, trace_id=trace_id)

    @classmethod
    def build(cls, settings: Settings) -> Core:
        """Load models and open stores (blocking: call from a worker thread)."""
        started = time.perf_counter()
        spool = settings.data_path / "spool"
        spool.mkdir(parents=True, exist_ok=True)
        for leftover in spool.glob("upload-*"):  # from a crash: nobody owns them any more
            leftover.unlink(missing_ok=True)
        embedder = Embedder(resolve_embedding_model(settings.embedding_model), device=settings.embedding_device)
        embedder.warm_up()
        batcher: MicroBatcher[str, Vector] = MicroBatcher(
            lambda texts: embedder.encode(texts),
            name="embed",
            max_batch_size=settings.embed_max_batch,
            max_wait_ms=settings.embed_max_wait_ms,
            max_queue=settings.embed_queue_size,
        )
        tagger = Tagger(Taxonomy.load(settings.taxonomy_path or None), embedder.encode)
        text = TextPipeline(
            embed=batcher.submit_many,
            tagger=tagger,
            language=LanguageDetector(),
            model=embedder.model_ref,
            chunk_max_words=settings.chunk_max_words,
            chunk_overlap_words=settings.chunk_overlap_words,
        )
        store = open_store(settings, embedder.dimension, embedder.model_ref)
        outbox = Outbox(settings.data_path / "outbox.sqlite3")
        relay = (
            OutboxRelay(
                outbox,
                bootstrap_servers=settings.kafka_bootstrap,
                batch_size=settings.outbox_batch,
                retry_max_s=settings.outbox_retry_max_s,
            )
            if settings.kafka_bootstrap
            else None
        )
        sink = ResultSink(
            store=store,
            outbox=outbox,
            analysis_topic=settings.kafka_analysis_topic,
            relay=relay,
            faults=FaultInjector.from_spec(settings.faults),
        )
        searcher = Searcher(store, batcher.submit)
        transcriber = Transcriber(
            model_path=resolve_whisper_model(settings.whisper_model, settings.cache_path / "models"),
            compute_type=settings.whisper_compute_type,
            cpu_threads=settings.whisper_cpu_threads,
            num_workers=settings.whisper_workers,
        )
        transcriber.warm_up()
        speech = SpeechPipeline(transcriber=transcriber, text=text, max_duration_s=settings.max_media_duration_s)
        video = VideoPipeline(
            speech=speech,
            text=text,
            settings=VideoSettings(
                sample_fps=settings.video_sample_fps,
                max_pixels=settings.video_max_pixels,
                max_duration_s=settings.max_media_duration_s,
                max_frames=settings.video_max_frames,
            ),
        )
        blobs = BlobStore(settings.data_path / "blobs")
        jobs = JobService(
            store=SqliteJobStore(settings.data_path / "jobs.sqlite3"),
            blobs=blobs,
            sink=sink,
            execute=PipelineExecutor(text=text, speech=speech, video=video),
            settings=JobSettings(
                workers=settings.job_workers,
                queue_size=settings.job_queue_size,
                tenant_inflight=settings.job_tenant_inflight,
                max_attempts=settings.job_max_attempts,
                backoff_s=settings.job_backoff_s,
                status_topic=settings.kafka_job_status_topic,
                dead_letter_topic=settings.kafka_job_dlq_topic,
            ),
        )
        log.info("core ready", extra={"seconds": round(time.perf_counter() - started, 2)})
        return cls(settings, embedder, batcher, text, store, outbox, relay, sink, searcher, speech, jobs, blobs, video)

    async def start(self) -> None:
        await self.embed_batcher.start()
        await self.sink.start()
        if self.relay is not None:
            await self.relay.start()
        await self.jobs.start()

    async def stop(self) -> None:
        await self.jobs.stop()
        await self.embed_batcher.stop()
        await self.sink.stop()
        if self.relay is not None:
            await self.relay.stop(flush_timeout_s=5.0)
        await asyncio.to_thread(self.store.close)
        self.outbox.close()


class Service:
    """The running process: gRPC server + health + core, with an explicit lifecycle."""

    def __init__(self, settings: Settings, *, observer: Observer | None = None) -> None:
        self.settings = settings
        self.identity = Identity(parse_api_keys(settings.api_keys))
        self.health = health.aio.HealthServicer()
        self.core: Core | None = None
        self.port: int = 0
        self._observer = observer or Observer()
        self._server: grpc.aio.Server | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        options = [
            ("grpc.max_receive_message_length", self.settings.max_message_bytes),
            ("grpc.max_send_message_length", self.settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.aio.server(options=options)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._server = server
        # Health answers at once; the service answers UNAVAILABLE until the core is built.
        self.port = server.add_insecure_port(f"{self.settings.grpc_host}:{self.settings.grpc_port}")
        if self.port == 0:
            raise RuntimeError(f"cannot bind {self.settings.grpc_host}:{self.settings.grpc_port}")
        servicer = UnderstandingServicer(lambda: self.core)
        server.add_generic_rpc_handlers((build_handler(servicer, self.identity, self._observer),))
        await server.start()
        log.info("grpc listening (warming up)", extra={"port": self.port})
        self.core = await asyncio.to_thread(Core.build, self.settings)
        await self.core.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"port": self.port})

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain and stop; safe to call twice."""
        if self._server is None:
            return
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        await self.health.enter_graceful_shutdown()
        server, self._server = self._server, None
        await server.stop(grace)
        if self.core is not None:
            await self.core.stop()
        self._stopped.set()
        log.info("stopped")

    async def wait(self) -> None:
        await self._stopped.wait()


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain."""
    service = Service(settings)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    start = asyncio.create_task(service.start())
    waiter = asyncio.create_task(stop_requested.wait())
    done, _ = await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
    try:
        if start in done:
            start.result()  # raises if start-up failed
            await waiter
        else:
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
        log.info("shutdown requested")
    finally:
        waiter.cancel()
        await service.stop()
