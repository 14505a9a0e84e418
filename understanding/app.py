"""Composition root: the processes `understanding serve` and `understanding worker` run.

`Service` (serve): start the gRPC server answering health NOT_SERVING, build and
warm the core in a worker thread, flip health to SERVING. Stop (SIGTERM): health
NOT_SERVING, stop accepting and let in-flight RPCs finish within the grace
period, then stop the core (jobs back to the queue, batchers drained, outbox
flushed to Kafka for up to 5 s, stores closed).

`WorkerProcess` (worker): the same core in the worker role plus a Kafka job
consumer; no gRPC server.

Both run under `run_until_signalled`. Only the entry points (cli) import this
module; everything below receives the collaborators it uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import signal
import socket
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from understanding import tracing
from understanding.api.admin import ADMIN_SERVICE, ADMIN_SERVICE_NAME, AdminServicer
from understanding.api.identity import AdminIdentity, Identity, parse_admin_keys, parse_api_keys
from understanding.api.limits import TenantRateLimiter, TenantStreams
from understanding.api.server import SERVICE_NAME, Limits, Observer, build_handler
from understanding.api.servicer import RequestLimits, UnderstandingPorts, UnderstandingServicer
from understanding.api.tls import server_credentials
from understanding.api.upload import SpoolGuard, guard_spool
from understanding.config import Settings
from understanding.core.runtime import Core, job_settings, job_topics, load_moderation_policy, open_job_view
from understanding.domain import UnderstandingError
from understanding.faults import FaultInjector
from understanding.jobs.state_topic import JobStateLog
from understanding.jobs.worker import JobWorker
from understanding.metrics import Metrics
from understanding.models.offensive import OffensiveModelError
from understanding.models.speaker import SpeakerModelError
from understanding.models.whisper import WhisperModelError
from understanding.sinks.outbox import Outbox

log = logging.getLogger(__name__)


class StartupError(Exception):
    """A start-up failure the operator fixes with a setting: one line, no traceback."""


def _build_core(settings: Settings, metrics: Metrics | None, role: str) -> Core:
    """`Core.build`, with the usual configuration mistakes named by their setting."""
    try:
        return Core.build(settings, telemetry=metrics, role="worker" if role == "worker" else "serve")
    except WhisperModelError as error:
        raise StartupError(f"UNDERSTANDING_WHISPER_MODEL={settings.whisper_model!r}: {error}") from error
    except OffensiveModelError as error:
        raise StartupError(
            f"the offensive-language model (UNDERSTANDING_MODERATION_ENABLED=false skips it): {error}"
        ) from error
    except SpeakerModelError as error:
        raise StartupError(f"UNDERSTANDING_SPEAKER_MODEL={settings.speaker_model!r}: {error}") from error
    except UnderstandingError as error:
        if error.field == "model_path":
            raise StartupError(
                f"UNDERSTANDING_EMBEDDING_MODEL={settings.embedding_model!r}: {error.message}"
            ) from error
        raise StartupError(error.message) from error
    except (FileNotFoundError, ValueError) as error:
        raise StartupError(str(error)) from error


class Service:
    """The running `serve` process: gRPC server + health + core, with an explicit lifecycle."""

    def __init__(self, settings: Settings, *, observer: Observer | None = None) -> None:
        self.settings = settings
        self.identity = Identity(parse_api_keys(settings.api_keys))
        self.admin_identity = AdminIdentity(
            parse_admin_keys(settings.admin_api_keys), tenant_auth=self.identity.enabled
        )
        self.health = health.aio.HealthServicer()
        self.core: Core | None = None
        self.ports: UnderstandingPorts | None = None
        self.port: int = 0
        self.metrics = Metrics()
        self.metrics_port = 0
        self.tracing = tracing.from_settings(
            settings.otel_endpoint, settings.otel_service_name
        )  # raises if not installed
        self._observer = observer or self.metrics
        self._limits = Limits(
            rate=TenantRateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)
            if settings.rate_limit_rps > 0
            else None,
            upload_streams=TenantStreams(settings.tenant_max_upload_streams)
            if settings.tenant_max_upload_streams > 0
            else None,
        )
        self._server: grpc.aio.Server | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        settings = self.settings
        options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
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
        address = f"{settings.grpc_host}:{settings.grpc_port}"
        credentials = server_credentials(settings)
        cause: RuntimeError | None = None
        try:
            self.port = (
                server.add_insecure_port(address)
                if credentials is None
                else server.add_secure_port(address, credentials)
            )
        except RuntimeError as error:
            self.port, cause = 0, error
        if self.port == 0:
            raise StartupError(
                f"cannot listen on {address} (UNDERSTANDING_GRPC_HOST/UNDERSTANDING_GRPC_PORT): "
                f"{cause or 'the address is in use or not local'}"
            )
        metrics_port = settings.metrics_bind_port(self.port)
        servicer = UnderstandingServicer(lambda: self.ports)
        server.add_generic_rpc_handlers(
            (build_handler(servicer, self.identity, self._observer, self._limits, tracing=self.tracing),)
        )
        admin = AdminServicer(lambda: self.core.reindex if self.core is not None else None)
        server.add_generic_rpc_handlers(
            (build_handler(admin, self.admin_identity, self._observer, service=ADMIN_SERVICE, tracing=self.tracing),)
        )
        if metrics_port is not None:
            self.metrics.watch(lambda: self.core)
            host = settings.metrics_host or settings.grpc_host
            try:
                self.metrics_port = self.metrics.serve(host, metrics_port)
            except RuntimeError as error:
                raise StartupError(f"{error} (UNDERSTANDING_METRICS_PORT={settings.metrics_port})") from error
            log.info("metrics listening", extra={"metrics_host": host, "metrics_port": self.metrics_port})
        await server.start()
        log.info(
            "grpc listening (warming up)",
            extra={"port": self.port, "tls": credentials is not None, "mtls": bool(settings.tls_client_ca_file)},
        )
        core = await asyncio.to_thread(_build_core, settings, self.metrics, "serve")
        self.core = core
        guard_spool(
            core.spool_dir,
            SpoolGuard(
                min_free_bytes=settings.spool_min_free_mb * 2**20, faults=FaultInjector.from_spec(settings.faults)
            ),
        )
        await core.start()
        assert core.jobs is not None and core.searcher is not None and core.catalog is not None
        self.ports = UnderstandingPorts(
            analyzer=core.analyzer,
            jobs=core.jobs,
            blobs=core.blobs,
            searcher=core.searcher,
            catalog=core.catalog,
            embedding_model=lambda: core.embedding.current.model,
            spool_dir=core.spool_dir,
            limits=RequestLimits(
                max_texts_per_call=settings.max_texts_per_call,
                max_text_bytes=settings.max_text_bytes,
                max_upload_bytes=settings.max_upload_bytes,
            ),
            live=core.live,
        )
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
        if self.core is not None and self.core.live is not None:
            # Live streams never end by themselves: end them now (final events, indexing, summary).
            await self.core.live.drain()
        server, self._server = self._server, None
        await server.stop(grace)
        self.ports = None
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


class WorkerProcess:
    """`understanding worker`: the core in the worker role and a Kafka job consumer; no gRPC server.

    Jobs run exactly the pipelines the inline RPCs run. The process keeps a
    private data directory, `<data_dir>/worker-<host>-<pid>` (its job view, and
    with a Qdrant URL its outbox), removed on a clean stop when nothing is left
    in the outbox.
    """

    def __init__(self, settings: Settings) -> None:
        self.name = f"worker-{socket.gethostname()}-{os.getpid()}"
        self.base_settings = settings
        self.settings = dataclasses.replace(
            settings, data_dir=str(settings.data_path / self.name), blob_dir=str(settings.blob_path)
        )
        self.core: Core | None = None
        self.worker: JobWorker | None = None

    async def start(self) -> None:
        settings, base = self.settings, self.base_settings
        topics = job_topics(base)
        self.core = core = await asyncio.to_thread(_build_core, settings, None, "worker")
        await core.start()
        self.worker = JobWorker(
            topics=topics,
            state=JobStateLog(
                topics=topics, store=open_job_view(settings.data_path / "jobs-view.sqlite3"), client_id=self.name
            ),
            blobs=core.blobs,
            analyzer=core.analyzer,
            settings=job_settings(base),
            concurrency=base.job_workers,
            max_run_s=base.job_max_run_s,
            client_id=self.name,
            direct_sink=core.sink,
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
            left = 0
            if core.outbox is not None and core.outbox.path.exists():
                pending = Outbox(core.outbox.path)
                left = pending.size()
                pending.close()
            if left == 0:
                shutil.rmtree(self.settings.data_path, ignore_errors=True)
        log.info("worker stopped")


class Process(Protocol):
    async def start(self) -> None: ...

    async def stop(self, grace_s: float | None = None) -> None: ...


async def run_until_signalled(process: Process) -> None:
    """Start `process` and run it until SIGTERM/SIGINT, then stop it (also when start-up fails
    or is interrupted)."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    start = asyncio.create_task(process.start())
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
        await process.stop()


async def serve(settings: Settings) -> None:
    """Run the gRPC service until SIGTERM/SIGINT, then drain."""
    await run_until_signalled(Service(settings))


async def work(settings: Settings) -> None:
    """Run a job worker until SIGTERM/SIGINT, then drain."""
    await run_until_signalled(WorkerProcess(settings))


EXIT_STARTUP = 2


def run_process(role: str, **overrides: Any) -> int:
    """Entry point of `understanding serve` / `understanding worker`: settings from the
    environment (with CLI overrides), logging, then run until signalled. A start-up problem
    (bad setting, port taken, missing model) prints one line naming the setting and exits 2."""
    import sys

    from understanding import logs

    try:
        settings = Settings.from_env(**overrides)
        if role == "worker" and not settings.kafka_bootstrap:
            raise StartupError("a worker needs Kafka: set UNDERSTANDING_KAFKA_BOOTSTRAP")
        if settings.moderation_enabled:
            load_moderation_policy(settings)  # a bad policy file: one line before anything starts
        logs.configure(settings.log_level, json_lines=settings.log_json)
        asyncio.run(work(settings) if role == "worker" else serve(settings))
    except (StartupError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_STARTUP
    except KeyboardInterrupt:
        return 130
    return 0
