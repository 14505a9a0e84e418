"""Prometheus metrics: one registry per Service, served over HTTP on the metrics port.

Counters and histograms are fed where the event happens (the RPC wrapper, the
batchers' `on_batch` hooks, the Whisper call); levels that already live in the
core (job states, outbox backlog, batcher queues) are read lazily by a
collector at scrape time, so no layer threads gauges through its code. A
dedicated `CollectorRegistry` per Service keeps several services in one
process (the tests) from sharing or clashing over metrics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from understanding.api.server import Observer
from understanding.domain import JobState

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class CoreLevels(Protocol):
    """Levels of the running core, read at scrape time (blocking reads are fine there)."""

    def job_state_counts(self) -> Mapping[JobState, int]: ...

    def outbox_levels(self) -> tuple[int, float]:
        """(events not yet acked by Kafka, age in seconds of the oldest)."""
        ...

    def relay_levels(self) -> tuple[int, bool] | None:
        """(events acked since start, producer connected), or None without Kafka."""
        ...

    def batcher_queues(self) -> Mapping[str, int]:
        """Items waiting per micro-batcher."""
        ...

    def store_index(self) -> tuple[str, int, int, bool] | None:
        """(collection, points, points outside the HNSW index, index build running) of the embedded
        store, or None for a store without one (remote Qdrant indexes by itself)."""
        ...


class Metrics(Observer):
    """Every metric of one Service. Implements the API's `Observer` hook (`rpc_*`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rpc_total = Counter(
            "understanding_rpc", "Finished RPCs by method and status code.", ["method", "code"], registry=r
        )
        self.rpc_seconds = Histogram(
            "understanding_rpc_seconds",
            "RPC latency by method and status code.",
            ["method", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rpc_in_flight = Gauge("understanding_rpc_in_flight", "RPCs being handled now.", ["method"], registry=r)
        self.rate_limited = Counter(
            "understanding_rate_limited", "RPCs refused by a per-tenant limit.", ["method", "limit"], registry=r
        )
        self.batch_size = Histogram(
            "understanding_batch_size", "Items per micro-batch.", ["batcher"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "understanding_batch_seconds",
            "Time to run one micro-batch (model forward pass, store or outbox write).",
            ["batcher"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_write_seconds = Histogram(
            "understanding_store_write_seconds",
            "Vector store write (stage + commit) per group commit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_seconds = Histogram(
            "understanding_model_seconds",
            "Model call latency by model and outcome (ok, cancelled, error).",
            ["model", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------ Observer hook
    def rpc_started(self, method: str) -> None:
        self.rpc_in_flight.labels(method).inc()

    def rpc_done(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        name = code.name
        self.rpc_total.labels(method, name).inc()
        self.rpc_seconds.labels(method, name).observe(seconds)
        self.rpc_in_flight.labels(method).dec()

    def rpc_refused(self, method: str, limit: str) -> None:
        self.rate_limited.labels(method, limit).inc()

    # ------------------------------------------------------------ feeds
    def on_batch(self, batcher: str) -> Callable[[int, float], None]:
        """An `on_batch(size, seconds)` hook for a MicroBatcher."""
        size, seconds = self.batch_size.labels(batcher), self.batch_seconds.labels(batcher)
        store = self.store_write_seconds if batcher == "store-writes" else None

        def observe(n: int, s: float) -> None:
            size.observe(n)
            seconds.observe(s)
            if store is not None:
                store.observe(s)

        return observe

    def model_call(self, model: str) -> Callable[[float, str], None]:
        """A `(seconds, outcome)` hook for a model call (e.g. a Whisper transcription)."""

        def observe(s: float, outcome: str) -> None:
            self.model_seconds.labels(model, outcome).observe(s)

        return observe

    def watch(self, levels: Callable[[], CoreLevels | None]) -> None:
        """Read the core's levels (jobs, outbox, queues) lazily at scrape time; None: not ready."""
        self.registry.register(_CoreCollector(levels))

    # ------------------------------------------------------------ lifecycle
    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (0 picks a free port); returns the bound port."""
        if self._server is not None:
            return self.port
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            raise RuntimeError(f"cannot serve metrics on {host}:{port}: {error}") from error
        self.port = int(self._server.server_port)
        return self.port

    def stop(self) -> None:
        """Stop the HTTP server; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class _CoreCollector(Collector):
    """Gauges computed from the running core at scrape time."""

    def __init__(self, levels: Callable[[], CoreLevels | None]) -> None:
        self._levels = levels

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # unchecked collector: families depend on the core's state

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        ready = GaugeMetricFamily("understanding_ready", "1 once the models are loaded and the core serves.")
        levels = self._levels()
        ready.add_metric([], 0.0 if levels is None else 1.0)
        yield ready
        if levels is None:
            return
        try:
            yield from self._core_metrics(levels)
        except Exception as error:  # noqa: BLE001 - a scrape must not fail because a store is closing
            log.debug("metrics collection failed: %r", error)

    def _core_metrics(self, levels: CoreLevels) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        counts = levels.job_state_counts()
        jobs = GaugeMetricFamily("understanding_jobs", "Jobs by state (job store).", labels=["state"])
        for state, count in counts.items():
            jobs.add_metric([state.value.lower()], float(count))
        yield jobs
        depth = GaugeMetricFamily("understanding_job_queue_depth", "Jobs waiting to run (state QUEUED).")
        depth.add_metric([], float(counts.get(JobState.QUEUED, 0)))
        yield depth
        backlog, oldest_s = levels.outbox_levels()
        pending = GaugeMetricFamily("understanding_outbox_pending", "Events in the outbox not yet acked by Kafka.")
        pending.add_metric([], float(backlog))
        yield pending
        lag = GaugeMetricFamily(
            "understanding_outbox_lag_seconds", "Age of the oldest unpublished event (Kafka publish lag)."
        )
        lag.add_metric([], oldest_s)
        yield lag
        relay = levels.relay_levels()
        if relay is not None:
            delivered = CounterMetricFamily("understanding_events_published", "Events acked by Kafka since start.")
            delivered.add_metric([], float(relay[0]))
            yield delivered
            connected = GaugeMetricFamily("understanding_kafka_connected", "1 while the outbox relay has a producer.")
            connected.add_metric([], 1.0 if relay[1] else 0.0)
            yield connected
        queued = GaugeMetricFamily(
            "understanding_batcher_queued", "Items waiting in a micro-batcher.", labels=["batcher"]
        )
        for name, depth_now in levels.batcher_queues().items():
            queued.add_metric([name], float(depth_now))
        yield queued
        index = levels.store_index()
        if index is not None:
            collection, points, unindexed, building = index
            stored = GaugeMetricFamily(
                "understanding_store_points", "Points in the serving collection.", labels=["collection"]
            )
            stored.add_metric([collection], float(points))
            yield stored
            exact = GaugeMetricFamily(
                "understanding_store_unindexed_points",
                "Points outside the HNSW index, searched exactly (each adds ~0.2 us per search until the "
                "background build swaps a new index in).",
                labels=["collection"],
            )
            exact.add_metric([collection], float(unindexed))
            yield exact
            build = GaugeMetricFamily(
                "understanding_store_index_building", "1 while an index build runs.", labels=["collection"]
            )
            build.add_metric([collection], 1.0 if building else 0.0)
            yield build
