"""Composition root: builds everything from Settings, starts in order, stops in reverse.

Start: open the store and outbox, start the gRPC server answering health
NOT_SERVING, load and warm the models in a worker thread, then flip health to
SERVING. Stop (SIGTERM): health NOT_SERVING, stop accepting and let in-flight
RPCs finish within the grace period, drain the batchers, try to flush the
outbox to Kafka, close the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pathlib
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from understanding.api.admin import ADMIN_SERVICE, ADMIN_SERVICE_NAME, AdminServicer
from understanding.api.identity import AdminIdentity, Identity, parse_admin_keys, parse_api_keys
from understanding.api.limits import TenantRateLimiter, TenantStreams
from understanding.api.server import SERVICE_NAME, Limits, Observer, build_handler
from understanding.api.tls import server_credentials
from understanding.api.servicer import UnderstandingServicer
from understanding.config import Settings
from understanding.domain import ModelRef, Vector
from understanding.faults import FaultInjector
from understanding.jobs.blobs import BlobStore
from understanding.jobs.runner import PipelineExecutor
from understanding.jobs.kafka_io import JobTopics
from understanding.jobs.kafka_queue import KafkaJobService
from understanding.jobs.service import JobService, JobSettings
from understanding.jobs.state_topic import JobStateLog
from understanding.jobs.worker import JobWorker
from understanding.jobs.store import SqliteJobStore
from understanding.media.sandbox import MediaDecoder, SandboxSettings
from understanding.api.upload import SpoolGuard, guard_spool
from understanding.metrics import Metrics
from understanding import tracing
from understanding.models.batcher import MicroBatcher
from understanding.models.embedder import TextEncoder, load_embedder, resolve_embedding_model
from understanding.models.language import LanguageDetector
from understanding.pipelines.tagging import Taxonomy, Tagger
from understanding.models.whisper import Transcriber, resolve_whisper_model
from understanding.pipelines.speech import SpeechPipeline
from understanding.pipelines.text import TextPipeline
from understanding.pipelines.video import VideoInput, VideoPipeline, VideoSettings
from understanding.reindex import OnlineReindex, model_spec_of
from understanding.search import Searcher
from understanding.sinks.outbox import Outbox
from understanding.sinks.relay import OutboxRelay
from understanding.sinks.results import ResultSink
from understanding.sinks.store import VectorStore

log = logging.getLogger(__name__)


def open_store(
    settings: Settings, dimension: int | None, model: ModelRef | None, *, role: str = "serve", model_path: str = ""
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
    `model_path` (`packaged` or a directory) is recorded with the alias when
    "serve" creates it (see `serving_model_spec`).
    """
    from understanding.sinks.store import collection_name

    alias = settings.qdrant_collection
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
        legacy = current is None and client.collection_exists(alias)
        recorded = ""

        def make(name: str, dim: int | None) -> VectorStore:
            return QdrantClientStore(dimension=dim, collection=name, client=client, timeout_s=settings.qdrant_timeout_s)

    else:
        from understanding.sinks.edge_store import EdgeVectorStore, read_alias

        root = settings.data_path / "qdrant-edge"
        pointer = read_alias(root, alias)
        current = pointer.collection if pointer else None
        recorded = pointer.model_path if pointer else ""
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
        store.promote(alias, model_path=model_path)
        return store
    if current != wanted:
        hint = (
            f"set UNDERSTANDING_EMBEDDING_MODEL={recorded} (the model the alias was switched to; "
            "with the default `packaged` the server follows the alias by itself)"
            if recorded
            else "configure the model that collection was built with"
        )
        raise RuntimeError(
            f"alias {alias!r} points at collection {current!r}, but the configured embedding model "
            f"{model.name} ({model.version}) uses {wanted!r}: {hint}, "
            "or run `understanding reindex --to-model PATH` to move the alias"
        )
    return make(current, dimension)


def serving_model_spec(settings: Settings) -> str:
    """The embedding model to serve: the configured one, unless it is the default.

    A reindex that switches the alias (online through the Admin RPC, or
    offline) records the model directory with the embedded store's alias. A
    server left at the default `packaged` follows that record, so a restart
    after a live switch serves the new collection without a config change; an
    explicitly configured model wins, and `open_store` refuses a mismatch with
    the model to set. (A remote Qdrant alias records nothing: configure the
    model explicitly there.)
    """
    spec = settings.embedding_model
    if spec not in ("", "packaged") or settings.qdrant_url:
        return spec
    from understanding.sinks.edge_store import read_alias

    pointer = read_alias(settings.data_path / "qdrant-edge", settings.qdrant_collection)
    if pointer is None or not pointer.model_path or pointer.model_path == "packaged":
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


def job_settings(settings: Settings) -> JobSettings:
    if settings.job_backend not in ("embedded", "kafka"):
        raise ValueError(f"UNDERSTANDING_JOB_BACKEND={settings.job_backend!r}: use `embedded` or `kafka`")
    return JobSettings(
        workers=settings.job_workers,
        queue_size=settings.job_queue_size,
        tenant_inflight=settings.job_tenant_inflight,
        max_attempts=settings.job_max_attempts,
        backoff_s=settings.job_backoff_s,
        status_topic=settings.kafka_job_status_topic,
        dead_letter_topic=settings.kafka_job_dlq_topic,
    )


def job_topics(settings: Settings) -> JobTopics:
    if not settings.kafka_bootstrap:
        raise ValueError("the kafka job backend needs UNDERSTANDING_KAFKA_BOOTSTRAP")
    return JobTopics(
        bootstrap=settings.kafka_bootstrap,
        jobs=settings.kafka_jobs_topic,
        state=settings.kafka_job_state_topic,
        results=settings.kafka_results_topic,
        status=settings.kafka_job_status_topic,
        dead_letter=settings.kafka_job_dlq_topic,
        partitions=settings.kafka_job_partitions,
        worker_group=settings.kafka_worker_group,
        indexer_group=settings.kafka_indexer_group,
    )


def open_job_view(settings: Settings) -> SqliteJobStore:
    """The local view of the job state topic: rebuilt from the topic on every start, so it
    never disagrees with it (and needs no fsync)."""
    path = settings.data_path / "jobs-view.sqlite3"
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    return SqliteJobStore(path, durable=False)


@dataclass
class Core:
    """Everything below the API, built once and shared by all RPCs."""

    settings: Settings
    embedder: TextEncoder
    embed_batcher: MicroBatcher[str, Vector]
    text: TextPipeline
    store: VectorStore
    outbox: Outbox
    relay: OutboxRelay | None
    sink: ResultSink
    searcher: Searcher
    speech: SpeechPipeline
    jobs: JobService | KafkaJobService
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

    def batchers(self) -> tuple[MicroBatcher[Any, Any], ...]:
        """Every micro-batcher (embedder, store and outbox group commits), for metrics."""
        return (self.embed_batcher, *self.sink.batchers)

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics | None = None) -> Core:
        """Load models and open stores (blocking: call from a worker thread)."""
        started = time.perf_counter()
        spool = settings.data_path / "spool"
        spool.mkdir(parents=True, exist_ok=True)
        for leftover in (*spool.glob("upload-*"), *spool.glob("decoded-*")):  # from a crash: nobody owns them any more
            leftover.unlink(missing_ok=True)
        model_spec = serving_model_spec(settings)
        model_dir = resolve_embedding_model(model_spec)
        embedder = load_embedder(
            model_dir,
            backend=settings.embedding_backend,
            device=settings.embedding_device,
            cache_dir=settings.cache_path / "models",
            threads=settings.embedding_threads,
        )
        embedder.warm_up()
        batcher: MicroBatcher[str, Vector] = MicroBatcher(
            lambda texts: embedder.encode(texts),
            name="embed",
            max_batch_size=settings.embed_max_batch,
            max_wait_ms=settings.embed_max_wait_ms,
            max_queue=settings.embed_queue_size,
            on_batch=metrics.on_batch("embed") if metrics is not None else None,
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
        store = open_store(
            settings, embedder.dimension, embedder.model_ref, model_path=model_spec_of(model_spec, model_dir)
        )
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
            batch_size=settings.whisper_batch_size,
        )
        transcriber.warm_up()
        if metrics is not None:
            transcriber.on_call = metrics.model_call("whisper")
            for group_commit in sink.batchers:
                group_commit.observe(metrics.on_batch(group_commit.name))
        decoder = MediaDecoder(
            SandboxSettings(
                isolate=settings.decode_isolation,
                timeout_s=settings.decode_timeout_s,
                memory_bytes=settings.decode_memory_mb * 2**20,
                cpu_s=settings.decode_cpu_s,
                max_expansion=settings.decode_max_expansion or None,
                expansion_floor_bytes=settings.decode_expansion_floor_mb * 2**20,
                work_dir=spool,
            ),
            faults=FaultInjector.from_spec(settings.faults),
        )
        decoder.warm_up()
        guard_spool(
            spool,
            SpoolGuard(min_free_bytes=settings.spool_min_free_mb * 2**20, faults=FaultInjector.from_spec(settings.faults)),
        )
        speech = SpeechPipeline(
            transcriber=transcriber, text=text, max_duration_s=settings.max_media_duration_s, decoder=decoder
        )
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
        blobs = BlobStore(settings.blob_path)
        jobs: JobService | KafkaJobService
        if settings.job_backend == "kafka":
            jobs = KafkaJobService(
                store=open_job_view(settings),
                blobs=blobs,
                sink=sink,
                topics=job_topics(settings),
                settings=job_settings(settings),
                run_indexer=settings.job_indexer and not settings.qdrant_url,
            )
        else:
            jobs = JobService(
                store=SqliteJobStore(settings.data_path / "jobs.sqlite3"),
                blobs=blobs,
                sink=sink,
                execute=PipelineExecutor(text=text, speech=speech, video=video),
                settings=job_settings(settings),
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
        self.admin_identity = AdminIdentity(parse_admin_keys(settings.admin_api_keys), tenant_auth=self.identity.enabled)
        self.health = health.aio.HealthServicer()
        self.core: Core | None = None
        self.port: int = 0
        self.metrics = Metrics()
        self.reindex = OnlineReindex(lambda: self.core, settings, on_batch=self.metrics.on_batch("embed"))
        self.metrics_port = 0
        self.tracing = tracing.from_settings(settings.otel_endpoint, settings.otel_service_name)  # raises if not installed
        self._observer = observer or self.metrics
        self._limits = Limits(
            rate=TenantRateLimiter(settings.rate_limit_rps, settings.rate_limit_burst) if settings.rate_limit_rps > 0 else None,
            upload_streams=TenantStreams(settings.tenant_max_upload_streams) if settings.tenant_max_upload_streams > 0 else None,
        )
        self._server: grpc.aio.Server | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        options = [
            ("grpc.max_receive_message_length", self.settings.max_message_bytes),
            ("grpc.max_send_message_length", self.settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.max_concurrent_streams", self.settings.max_streams_per_connection),
        ]
        server = grpc.aio.server(options=options)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, ADMIN_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._server = server
        # Health answers at once; the service answers UNAVAILABLE until the core is built.
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        credentials = server_credentials(self.settings)
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        if self.port == 0:
            raise RuntimeError(f"cannot bind {address}")
        servicer = UnderstandingServicer(lambda: self.core)
        server.add_generic_rpc_handlers((build_handler(servicer, self.identity, self._observer, self._limits, tracing=self.tracing),))
        admin = AdminServicer(self.reindex)
        server.add_generic_rpc_handlers(
            (build_handler(admin, self.admin_identity, self._observer, service=ADMIN_SERVICE, tracing=self.tracing),)
        )
        if self.settings.metrics_port >= 0:
            self.metrics.watch_core(lambda: self.core)
            host = self.settings.metrics_host or self.settings.grpc_host
            self.metrics_port = self.metrics.serve(host, self.settings.metrics_port)
            log.info("metrics listening", extra={"metrics_host": host, "metrics_port": self.metrics_port})
        await server.start()
        log.info(
            "grpc listening (warming up)",
            extra={"port": self.port, "tls": credentials is not None, "mtls": bool(self.settings.tls_client_ca_file)},
        )
        self.core = await asyncio.to_thread(Core.build, self.settings, self.metrics)
        await self.core.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"port": self.port})

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain and stop; safe to call twice."""
        if self._server is None:
            self._stop_telemetry()
            return
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        await self.health.enter_graceful_shutdown()
        server, self._server = self._server, None
        await server.stop(grace)
        await self.reindex.stop()
        if self.core is not None:
            await self.core.stop()
        self._stop_telemetry()
        self._stopped.set()
        log.info("stopped")

    def _stop_telemetry(self) -> None:
        self.metrics.stop()
        if self.tracing is not None:
            self.tracing.shutdown()  # flushes the last spans

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


class WorkerProcess:
    """`understanding worker`: the models and pipelines of `serve`, no gRPC server; runs Kafka jobs.

    It builds the same `Core` as `serve` (so jobs run exactly the pipelines the
    inline RPCs run) in a private data directory, `<data_dir>/worker-<host>-<pid>`:
    the embedded store and outbox there stay unused unless a Qdrant URL is set
    (then results and their events go out from here), and the directory is
    removed on a clean stop when nothing is left in its outbox.
    """

    def __init__(self, settings: Settings) -> None:
        self.name = f"worker-{socket.gethostname()}-{os.getpid()}"
        self.base_settings = settings
        self.settings = dataclasses.replace(
            settings,
            job_backend="embedded",  # the Core's own job service is never started
            data_dir=str(settings.data_path / self.name),
            blob_dir=str(settings.blob_path),
        )
        self.core: Core | None = None
        self.worker: JobWorker | None = None

    async def start(self) -> None:
        settings, base = self.settings, self.base_settings
        topics = job_topics(base)
        self.core = core = await asyncio.to_thread(Core.build, settings)
        await core.embed_batcher.start()
        await core.sink.start()
        if core.relay is not None:
            await core.relay.start()
        self.worker = JobWorker(
            topics=topics,
            state=JobStateLog(topics=topics, store=open_job_view(settings), client_id=self.name),
            blobs=core.blobs,
            execute=PipelineExecutor(text=core.text, speech=core.speech, video=core.video),
            settings=job_settings(base),
            concurrency=base.job_workers,
            max_run_s=base.job_max_run_s,
            client_id=self.name,
            direct_sink=core.sink if base.qdrant_url else None,
        )
        await self.worker.start()
        log.info("worker ready", extra={"worker": self.name})

    async def stop(self, grace_s: float | None = None) -> None:
        """Finish the jobs in hand within the grace period (else they are redelivered), then close."""
        if self.worker is not None:
            await self.worker.drain(self.base_settings.shutdown_grace_s if grace_s is None else grace_s)
            await self.worker.stop()
            self.worker = None
        core, self.core = self.core, None
        if core is not None:
            await core.stop()
            if core.outbox.path.exists():
                pending = Outbox(core.outbox.path)
                left = pending.size()
                pending.close()
            else:
                left = 0
            if left == 0:
                shutil.rmtree(self.settings.data_path, ignore_errors=True)
        log.info("worker stopped")


async def work(settings: Settings) -> None:
    """Run a job worker until SIGTERM/SIGINT, then drain."""
    worker = WorkerProcess(settings)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    start = asyncio.create_task(worker.start())
    waiter = asyncio.create_task(stop_requested.wait())
    done, _ = await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
    try:
        if start in done:
            start.result()
            await waiter
        else:
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
        log.info("shutdown requested")
    finally:
        waiter.cancel()
        await worker.stop()
