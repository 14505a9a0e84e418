"""`Core`: builds everything below the API from the settings, starts in order, stops in reverse.

Two roles share one build, so a job runs exactly the pipelines an inline call
runs: `serve` (an API process: the store, the result sink, search, a job
backend and the online reindex) and `worker` (a Kafka job worker: the models
and pipelines; the store and sink only when a Qdrant URL lets workers write
vectors themselves).
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Literal, Protocol

from understanding.batching import BatchObserver
from understanding.config import Settings
from understanding.core.analyze import Analyzer
from understanding.core.embedding import EmbeddingFactory, EmbeddingSwitch, ServingEmbedding
from understanding.core.follow import AliasFollower
from understanding.core.live import LiveLimits, LiveStreams, SinkPublisher
from understanding.core.media import MediaCatalog
from understanding.core.moderate import Moderator
from understanding.core.reindex import OnlineReindex
from understanding.core.search import Searcher
from understanding.core.visual import VisualModelUnit, screening_settings
from understanding.domain import JobState
from understanding.faults import FaultInjector
from understanding.jobs.blobs import BlobStore
from understanding.jobs.kafka_io import JobTopics
from understanding.jobs.kafka_queue import KafkaJobService
from understanding.jobs.service import JobService, JobSettings
from understanding.jobs.store import SqliteJobStore
from understanding.media.live import FrameLimits
from understanding.media.sandbox import MediaDecoder, SandboxSettings
from understanding.models.language import LanguageDetector
from understanding.models.offensive import ProfanityCheckModel
from understanding.models.speaker import SpeakerEncoder, load_speaker_encoder
from understanding.models.whisper import Transcriber, resolve_whisper_model
from understanding.pipelines.image import ImagePipeline, ImageSettings
from understanding.pipelines.live import AsrSettings, EndpointSettings, LiveSettings
from understanding.pipelines.policy import PolicyError, PolicySet, load_policy
from understanding.pipelines.screening import ScreeningSettings, VisualModels
from understanding.pipelines.speakers import SpeakerSettings
from understanding.pipelines.speech import SpeechPipeline
from understanding.pipelines.text import TextPipeline
from understanding.pipelines.text_signals import TextSignals
from understanding.pipelines.video import VideoPipeline, VideoSettings
from understanding.pipelines.visual import FaceDetector
from understanding.sinks.outbox import Outbox
from understanding.sinks.relay import OutboxRelay
from understanding.sinks.results import ResultSink
from understanding.sinks.store import VectorStore

log = logging.getLogger(__name__)

Role = Literal["serve", "worker"]


class Telemetry(Protocol):
    """Hooks the core reports to (metrics.Metrics implements them)."""

    def on_batch(self, batcher: str) -> BatchObserver: ...

    def model_call(self, model: str) -> Callable[[float, str], None]: ...


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


def load_moderation_policy(settings: Settings) -> PolicySet:
    """The configured policy file (or the packaged one); a mistake names the setting and line."""
    try:
        return load_policy(settings.moderation_policy_path or None)
    except PolicyError as error:
        raise ValueError(f"UNDERSTANDING_MODERATION_POLICY_PATH: {error}") from error


def speaker_settings(settings: Settings) -> SpeakerSettings:
    """The speaker side of the speech pipeline; loads and warms the speaker model unless it is `off`."""
    encoder: SpeakerEncoder | None = None
    if settings.speaker_model.strip().lower() not in ("off", "none", ""):
        encoder = load_speaker_encoder(settings.speaker_model, threads=settings.speaker_threads)
        encoder.warm_up()
    return SpeakerSettings(
        encoder=encoder,
        max_speakers=settings.speaker_max_speakers,
        max_channel_audio_s=settings.speaker_max_channel_audio_s,
    )


def open_job_view(path: pathlib.Path) -> SqliteJobStore:
    """A local view of the job state topic: rebuilt from the topic on every start, so it
    never disagrees with it (and needs no fsync)."""
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    return SqliteJobStore(path, durable=False)


class Core:
    """Everything below the API, built once (`build`, blocking) and run (`start`/`stop`)."""

    def __init__(
        self,
        *,
        settings: Settings,
        factory: EmbeddingFactory,
        embedding: EmbeddingSwitch,
        analyzer: Analyzer,
        blobs: BlobStore,
        outbox: Outbox | None,
        relay: OutboxRelay | None,
        sink: ResultSink | None,
        searcher: Searcher | None,
        catalog: MediaCatalog | None,
        jobs: JobService | KafkaJobService | None,
        reindex: OnlineReindex | None,
        live: LiveStreams | None = None,
        visual: VisualModelUnit | None = None,
        follower: AliasFollower | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.embedding = embedding
        self.analyzer = analyzer
        self.blobs = blobs
        self.outbox = outbox
        self.relay = relay
        self.sink = sink
        self.searcher = searcher
        self.catalog = catalog
        self.jobs = jobs
        self.reindex = reindex
        self.live = live
        self.visual = visual
        self.follower = follower

    @property
    def spool_dir(self) -> pathlib.Path:
        return self.settings.data_path / "spool"

    @classmethod
    def build(cls, settings: Settings, *, telemetry: Telemetry | None = None, role: Role = "serve") -> Core:
        """Load and warm the models, open the stores (blocking: call from a worker thread)."""
        started = time.perf_counter()
        policies = load_moderation_policy(settings) if settings.moderation_enabled else None  # fails fast
        faults = FaultInjector.from_spec(settings.faults)
        spool = settings.data_path / "spool"
        spool.mkdir(parents=True, exist_ok=True)
        for leftover in (*spool.glob("upload-*"), *spool.glob("decoded-*")):  # from a crash: nobody owns them any more
            leftover.unlink(missing_ok=True)
        owns_store = role == "serve" or bool(settings.qdrant_url)
        factory = EmbeddingFactory(settings, on_batch=telemetry.on_batch("embed") if telemetry is not None else None)
        unit = factory.serving(with_store=owns_store)
        text = TextPipeline(
            embed=unit.batcher.submit_many,
            tagger=unit.tagger,
            language=LanguageDetector(),
            model=unit.model,
            chunk_max_words=settings.chunk_max_words,
            chunk_overlap_words=settings.chunk_overlap_words,
        )
        embedding = EmbeddingSwitch(unit)
        embedding.subscribe(lambda u: text.rebind(u.binding))
        outbox = relay = sink = None
        if unit.store is not None:
            outbox = Outbox(settings.data_path / "outbox.sqlite3")
            if settings.kafka_bootstrap:
                relay = OutboxRelay(
                    outbox,
                    bootstrap_servers=settings.kafka_bootstrap,
                    batch_size=settings.outbox_batch,
                    retry_max_s=settings.outbox_retry_max_s,
                )
            sink = ResultSink(
                store=unit.store,
                outbox=outbox,
                analysis_topic=settings.kafka_analysis_topic,
                moderation_topic=settings.kafka_moderation_topic,
                relay=relay,
                faults=faults,
            )
            result_sink = sink
            embedding.subscribe(
                lambda u: result_sink.switch_store(_store_of(u), model=u.model, embed=u.batcher.submit_many)
            )
            if telemetry is not None:
                for group_commit in sink.batchers:
                    group_commit.observe(telemetry.on_batch(group_commit.name))
        transcriber = Transcriber(
            model_path=resolve_whisper_model(settings.whisper_model, settings.cache_path / "models"),
            compute_type=settings.whisper_compute_type,
            cpu_threads=settings.whisper_cpu_threads,
            num_workers=settings.whisper_workers,
            batch_size=settings.whisper_batch_size,
        )
        transcriber.warm_up()
        if telemetry is not None:
            transcriber.on_call = telemetry.model_call("whisper")
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
            faults=faults,
        )
        decoder.warm_up()
        speech = SpeechPipeline(
            transcriber=transcriber,
            text=text,
            max_duration_s=settings.max_media_duration_s,
            decoder=decoder,
            speakers=speaker_settings(settings),
        )
        visual = VisualModelUnit(settings, on_batch=telemetry.on_batch if telemetry is not None else None)
        screening = screening_settings(settings)
        faces = FaceDetector()  # one BlazeFace for video frames and images
        video = VideoPipeline(
            speech=speech,
            text=text,
            settings=VideoSettings(
                sample_fps=settings.video_sample_fps,
                max_pixels=settings.video_max_pixels,
                max_duration_s=settings.max_media_duration_s,
                max_frames=settings.video_max_frames,
            ),
            faces=faces,
            models=visual.models,
            screening=screening,
        )
        moderator = None
        if policies is not None:
            offensive = ProfanityCheckModel()
            offensive.warm_up()
            moderator = Moderator(policies=policies, signals=TextSignals(offensive=offensive), text=text)
        image = ImagePipeline(
            decoder=decoder,
            text=text,
            faces=faces,
            models=visual.models,
            settings=ImageSettings(
                max_pixels=settings.image_max_pixels,
                max_side=settings.image_max_side,
                chunk_max_words=settings.chunk_max_words,
                chunk_overlap_words=settings.chunk_overlap_words,
            ),
            screening=screening,
        )
        analyzer = Analyzer(text=text, speech=speech, video=video, image=image, sink=sink, moderator=moderator)
        blobs = BlobStore(settings.blob_path)
        searcher = catalog = jobs = reindex = live = None
        if role == "serve":
            assert sink is not None and unit.store is not None
            live = _live_streams(
                settings, transcriber, text, speech, video, decoder, analyzer, moderator, sink, visual.models, screening
            )
            searcher = Searcher(unit.store, unit.batcher.submit, detect_language=text.detect_language)
            query_side = searcher
            embedding.subscribe(lambda u: query_side.rebind(_store_of(u), u.batcher.submit))
            catalog = MediaCatalog(sink)
            jobs = cls._job_backend(settings, blobs=blobs, sink=sink, analyzer=analyzer)
        follower = None
        if sink is not None:
            reindex = OnlineReindex(
                switch=embedding, factory=factory, sink=sink, handover_s=settings.reindex_handover_s
            )
            if settings.qdrant_url:  # other processes may reindex the same alias
                follower = AliasFollower(
                    switch=embedding, reindex=reindex, alias=factory.stores.alias, poll_s=settings.qdrant_alias_poll_s
                )
                sink.set_fence(follower.written)
        log.info("core ready", extra={"seconds": round(time.perf_counter() - started, 2), "role": role})
        return cls(
            settings=settings,
            factory=factory,
            embedding=embedding,
            analyzer=analyzer,
            blobs=blobs,
            outbox=outbox,
            relay=relay,
            sink=sink,
            searcher=searcher,
            catalog=catalog,
            jobs=jobs,
            reindex=reindex,
            live=live,
            visual=visual,
            follower=follower,
        )

    @staticmethod
    def _job_backend(
        settings: Settings, *, blobs: BlobStore, sink: ResultSink, analyzer: Analyzer
    ) -> JobService | KafkaJobService:
        if settings.job_backend == "kafka":
            return KafkaJobService(
                store=open_job_view(settings.data_path / "jobs-view.sqlite3"),
                blobs=blobs,
                sink=sink,
                topics=job_topics(settings),
                settings=job_settings(settings),
                run_indexer=settings.job_indexer and not settings.qdrant_url,
            )
        return JobService(
            store=SqliteJobStore(settings.data_path / "jobs.sqlite3"),
            blobs=blobs,
            sink=sink,
            analyzer=analyzer,
            settings=job_settings(settings),
        )

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.embedding.current.batcher.start()
        if self.visual is not None:
            await self.visual.start()
        if self.sink is not None:
            await self.sink.start()
        if self.relay is not None:
            await self.relay.start()
        if self.jobs is not None:
            await self.jobs.start()
        if self.follower is not None:
            await self.follower.start()

    async def stop(self) -> None:
        """Reverse order: alias follower, jobs, reindex, batchers (embedding, picture models), sink, relay (flushes for
        up to 5 s), stores."""
        if self.follower is not None:
            await self.follower.stop()
        if self.jobs is not None:
            await self.jobs.stop()
        if self.reindex is not None:
            await self.reindex.stop()
        await self.embedding.current.batcher.stop()
        if self.visual is not None:
            await self.visual.stop()
        if self.sink is not None:
            await self.sink.stop()
        if self.relay is not None:
            await self.relay.stop(flush_timeout_s=5.0)
        store = self.embedding.current.store
        if store is not None:
            await asyncio.to_thread(store.close)
        if self.outbox is not None:
            self.outbox.close()

    # ------------------------------------------------------------ levels (metrics.CoreLevels)
    def job_state_counts(self) -> Mapping[JobState, int]:
        counts = getattr(self.jobs, "state_counts", None)  # not every job backend counts locally
        return counts() if counts is not None else {}

    def outbox_levels(self) -> tuple[int, float]:
        return (self.outbox.size(), self.outbox.oldest_age_s()) if self.outbox is not None else (0, 0.0)

    def relay_levels(self) -> tuple[int, bool] | None:
        return (self.relay.delivered, self.relay.connected) if self.relay is not None else None

    def batcher_queues(self) -> Mapping[str, int]:
        embed = self.embedding.current.batcher
        queues = {embed.name: embed.queued}
        if self.visual is not None:
            queues.update({b.name: b.queued for b in self.visual.batchers})
        if self.sink is not None:
            queues.update({b.name: b.queued for b in self.sink.batchers})
        return queues

    def store_index(self) -> tuple[str, int, int, bool] | None:
        status = getattr(self.embedding.current.store, "index_status", None)  # the embedded store has one
        if status is None:
            return None
        current = status()
        return current.collection, current.points, current.unindexed, current.building


def _live_streams(
    settings: Settings,
    transcriber: Transcriber,
    text: TextPipeline,
    speech: SpeechPipeline,
    video: VideoPipeline,
    decoder: MediaDecoder,
    analyzer: Analyzer,
    moderator: Moderator | None,
    sink: ResultSink,
    pictures: VisualModels,
    screening: ScreeningSettings,
) -> LiveStreams:
    live = LiveSettings(
        asr=AsrSettings(
            step_s=settings.live_decode_step_s,
            prompt_chars=settings.live_prompt_chars,
            endpoint=EndpointSettings(end_silence_s=settings.live_end_silence_ms / 1000),
        ),
        frame_fps=settings.live_frame_fps,
        status_interval_s=settings.live_status_interval_s,
        max_ahead_s=settings.live_max_ahead_s,
    )
    limits = LiveLimits(
        max_streams=settings.live_max_streams,
        retry_after_s=settings.live_retry_after_s,
        idle_timeout_s=settings.live_idle_timeout_s,
        max_duration_s=settings.live_max_duration_s,
        stall_timeout_s=settings.live_stall_timeout_s,
        max_frame_bytes=settings.live_max_frame_bytes,
        drain_s=settings.live_drain_s,
    )
    return LiveStreams(
        settings=live,
        limits=limits,
        transcriber=transcriber,
        beam_size=settings.live_beam_size,
        partial_beam_size=settings.live_partial_beam_size,
        speakers=settings.live_speakers,
        speaker_labels=settings.live_speaker_labels,
        text=text,
        speech=speech,
        video=video,
        decoder=decoder,
        analyzer=analyzer,
        frame_limits=FrameLimits(max_pixels=settings.video_max_pixels),
        moderator=moderator,
        publisher=SinkPublisher(sink),
        pictures=pictures,
        screening=screening,
    )


def _store_of(unit: ServingEmbedding) -> VectorStore:
    if unit.store is None:
        raise RuntimeError("a serving embedding without a store cannot replace one with a store")
    return unit.store
