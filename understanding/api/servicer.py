"""The Understanding service's RPCs: validate, convert, call the core, convert back."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import pathlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from understanding import codec
from understanding.api import validation
from understanding.api.live import analyze_live
from understanding.api.server import Call
from understanding.api.upload import removing, spool_upload
from understanding.core.analyze import Analyzer
from understanding.core.live import LiveStreams
from understanding.core.media import MediaCatalog
from understanding.core.search import Searcher, SearchMode, SearchQuery
from understanding.domain import (
    Analysis,
    AnalysisOptions,
    Decision,
    InvalidInput,
    JobSpec,
    JobState,
    LimitExceeded,
    MediaRequest,
    Modality,
    ModelRef,
    NotFound,
    Unavailable,
)
from understanding.jobs.blobs import BlobStore
from understanding.jobs.kafka_queue import KafkaJobService
from understanding.jobs.service import JobService
from understanding.sinks.store import PointFilter, StoredPoint, public_point_id
from understanding.v1 import common_pb2, jobs_pb2
from understanding.v1 import understanding_pb2 as pb


def _hit_pb(
    point: StoredPoint, *, matched: tuple[str, ...] = (), group_hits: int = 0, with_vector: bool = False
) -> pb.SearchHit:
    p = point.payload
    items = p.get("tag_items")
    if items is None:  # points written before tag_items existed
        scores = p.get("tag_scores") or {}
        items = [{"label": label, "score": scores.get(label, 0.0)} for label in p.get("tags", [])]
    hit = pb.SearchHit(
        point_id=public_point_id(point),
        score=point.score,
        media_id=str(p.get("media_id", "")),
        modality=codec.MODALITY_TO_PROTO.get(_modality(p), common_pb2.MODALITY_UNSPECIFIED),
        chunk_index=int(p.get("chunk_index", 0)),
        start_s=float(p.get("start_s", 0.0)),
        end_s=float(p.get("end_s", 0.0)),
        text=str(p.get("text", "")),
        matched_terms=list(matched),
        tags=[
            common_pb2.Tag(
                label=str(t["label"]), group=str(t["label"]).split(".", 1)[0], score=float(t.get("score", 0.0))
            )
            for t in items
        ],
        language=common_pb2.Language(code=str(p.get("language", "und"))),
        metadata={str(k): str(v) for k, v in (p.get("metadata") or {}).items()},
        group_hits=group_hits,
        embedding_model=common_pb2.ModelRef(
            name=str(p.get("embedding_model", "")), version=str(p.get("embedding_model_version", ""))
        ),
        created_at=codec.timestamp(float(p.get("created_at", 0.0))),
        keyframe_s=float(p.get("keyframe_s", 0.0)),
        decision=_decision_pb(p.get("moderation_decision")),
        moderation_categories=[str(c) for c in p.get("moderation_categories") or ()],
        chunk_moderation_categories=[str(c) for c in p.get("chunk_moderation_categories") or ()],
        ocr_text=str(p.get("ocr_text", "")),
        nudity_score=float(p.get("nudity_score", 0.0)),
        speakers=[str(x) for x in p.get("speakers") or ()],
    )
    if with_vector and point.vector is not None:
        hit.vector.extend(float(x) for x in point.vector)
    return hit


def _decision_pb(value: Any) -> common_pb2.Decision:
    try:
        return codec.DECISION_TO_PROTO[Decision(value)] if value else common_pb2.DECISION_UNSPECIFIED
    except ValueError:
        return common_pb2.DECISION_UNSPECIFIED


def _modality(payload: Mapping[str, Any]) -> Modality:
    try:
        return Modality(payload.get("modality", "text"))
    except ValueError:
        return Modality.TEXT


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Per-request size limits the tenant API enforces before any work."""

    max_texts_per_call: int
    max_text_bytes: int
    max_upload_bytes: int


@dataclass(frozen=True, slots=True)
class UnderstandingPorts:
    """What the tenant API calls into; the composition root fills it once the core is ready."""

    analyzer: Analyzer
    jobs: JobService | KafkaJobService
    blobs: BlobStore
    searcher: Searcher
    catalog: MediaCatalog
    embedding_model: Callable[[], ModelRef]  # the model serving now (it changes on a reindex)
    spool_dir: pathlib.Path
    limits: RequestLimits
    live: LiveStreams | None = None  # None in processes that serve no live streams


class UnderstandingServicer:
    def __init__(self, ports: Callable[[], UnderstandingPorts | None]) -> None:
        self._get_ports = ports

    @property
    def _ports(self) -> UnderstandingPorts:
        ports = self._get_ports()
        if ports is None:
            raise Unavailable("the service is warming up; retry shortly")
        return ports

    # ------------------------------------------------------------ text
    async def AnalyzeText(self, request: pb.AnalyzeTextRequest, call: Call) -> pb.AnalyzeTextResponse:
        ports = self._ports
        limits = ports.limits
        if not request.items:
            raise InvalidInput("at least one item is required", field="items")
        if len(request.items) > limits.max_texts_per_call:
            raise LimitExceeded(
                f"{len(request.items)} items exceed the limit of {limits.max_texts_per_call} per call", field="items"
            )
        with validation.fields_under("options."):
            moderation = codec.moderation_options_from_pb(request.options.moderation)
            ports.analyzer.check(call.tenant, moderation)
        options = AnalysisOptions(moderation=moderation)
        requests = []
        for i, item in enumerate(request.items):
            size = len(item.text.encode("utf-8"))
            if not item.text.strip():
                raise InvalidInput("must not be empty or whitespace", field=f"items[{i}].text")
            if size > limits.max_text_bytes:
                raise LimitExceeded(
                    f"{size} bytes exceed the limit of {limits.max_text_bytes}", field=f"items[{i}].text"
                )
            mid = item.media_id or "txt-" + hashlib.sha256(item.text.encode()).hexdigest()[:24]
            validation.media_id(mid, f"items[{i}].media_id")
            requests.append(
                MediaRequest(
                    Modality.TEXT,
                    mid,
                    text=item.text,
                    options=options,
                    metadata=validation.metadata(item.metadata, f"items[{i}].metadata"),
                )
            )
        index = not request.options.dry_run
        analyses = await asyncio.gather(
            *(ports.analyzer.analyze_and_index(call.tenant, r, index=index, trace_id=call.trace_id) for r in requests)
        )
        return pb.AnalyzeTextResponse(
            results=[codec.analysis_pb(a, with_embeddings=request.options.return_embeddings) for a in analyses]
        )

    # ------------------------------------------------------------ uploads analysed inline
    async def _analyze_upload(
        self, requests: AsyncIterator[pb.UploadRequest], call: Call, modality: Modality, id_prefix: str
    ) -> tuple[Analysis, pb.UploadHeader]:
        """Spool the upload, analyse it (and index it unless a dry run), remove the spool file."""
        ports = self._ports
        parsed: dict[str, Any] = {}

        def on_header(header: pb.UploadHeader) -> None:
            if header.media_id:
                validation.media_id(header.media_id, "header.media_id")
            with validation.fields_under("header."):
                parsed["options"] = validation.analysis_options(header, video=modality is Modality.VIDEO)
                ports.analyzer.check(call.tenant, parsed["options"].moderation)
            parsed["metadata"] = validation.metadata(header.metadata, "header.metadata")

        spooled = await spool_upload(
            requests, spool_dir=ports.spool_dir, max_bytes=ports.limits.max_upload_bytes, on_header=on_header
        )
        header: pb.UploadHeader = spooled.header
        media = MediaRequest(
            modality,
            header.media_id or id_prefix + spooled.sha256[:24],
            path=spooled.path,
            options=parsed["options"],
            metadata=parsed["metadata"],
        )
        cancelled = threading.Event()
        try:
            with removing(spooled.path):
                analysis = await ports.analyzer.analyze_and_index(
                    call.tenant, media, cancelled=cancelled, index=not header.text.dry_run, trace_id=call.trace_id
                )
        except asyncio.CancelledError:
            cancelled.set()  # the client went away or its deadline passed: stop decoding
            raise
        return analysis, header

    async def Transcribe(self, requests: AsyncIterator[pb.UploadRequest], call: Call) -> pb.TranscribeResponse:
        analysis, header = await self._analyze_upload(requests, call, Modality.SPEECH, "aud-")
        return pb.TranscribeResponse(
            analysis=codec.analysis_pb(analysis, with_embeddings=header.text.return_embeddings)
        )

    async def AnalyzeVideo(self, requests: AsyncIterator[pb.UploadRequest], call: Call) -> pb.AnalyzeVideoResponse:
        analysis, header = await self._analyze_upload(requests, call, Modality.VIDEO, "vid-")
        return pb.AnalyzeVideoResponse(
            analysis=codec.analysis_pb(
                analysis, with_embeddings=header.text.return_embeddings, with_keyframes=header.video.return_keyframes
            )
        )

    async def AnalyzeImage(self, requests: AsyncIterator[pb.UploadRequest], call: Call) -> pb.AnalyzeImageResponse:
        analysis, header = await self._analyze_upload(requests, call, Modality.IMAGE, "img-")
        return pb.AnalyzeImageResponse(
            analysis=codec.analysis_pb(analysis, with_embeddings=header.text.return_embeddings)
        )

    # ------------------------------------------------------------ jobs
    async def UploadMedia(self, requests: AsyncIterator[pb.UploadRequest], call: Call) -> pb.UploadMediaResponse:
        ports = self._ports

        def on_header(header: pb.UploadHeader) -> None:
            if header.media_id:
                validation.media_id(header.media_id, "header.media_id")

        spooled = await spool_upload(
            requests, spool_dir=ports.spool_dir, max_bytes=ports.limits.max_upload_bytes, on_header=on_header
        )
        upload_id = "upl-" + uuid.uuid4().hex
        meta = {
            "tenant": call.tenant,
            "sha256": spooled.sha256,
            "size": spooled.size_bytes,
            "filename": spooled.header.filename,
        }
        try:
            await asyncio.to_thread(ports.blobs.put, upload_id, spooled.path, meta)
        finally:
            spooled.path.unlink(missing_ok=True)
        return pb.UploadMediaResponse(upload_id=upload_id, size_bytes=spooled.size_bytes, sha256=spooled.sha256)

    async def SubmitJob(self, requests: AsyncIterator[pb.SubmitJobRequest], call: Call) -> jobs_pb2.Job:
        ports = self._ports
        parsed: dict[str, Any] = {}

        def on_spec(spec: pb.JobSpec) -> None:
            parsed["spec"] = self._job_spec(spec)
            with validation.fields_under("spec.media."):
                ports.analyzer.check(call.tenant, parsed["spec"].options.moderation)

        spooled = await spool_upload(
            requests,
            spool_dir=ports.spool_dir,
            max_bytes=ports.limits.max_upload_bytes,
            header_field="spec",
            on_header=on_spec,
            allow_empty=True,
        )
        request: pb.JobSpec = spooled.header
        spec: JobSpec = parsed["spec"]
        media: pathlib.Path | None = spooled.path
        try:
            if spec.modality is Modality.TEXT:
                if spooled.size_bytes:
                    raise InvalidInput("text jobs carry their text in spec.text, not in chunks", field="chunk")
                media = None
            elif request.upload_id:
                if spooled.size_bytes:
                    raise InvalidInput("send either chunks or spec.upload_id, not both", field="spec.upload_id")
                meta = await asyncio.to_thread(ports.blobs.meta, request.upload_id)
                if meta.get("tenant") != call.tenant:
                    raise NotFound(f"no upload {request.upload_id!r}", field="spec.upload_id")
                media = await asyncio.to_thread(ports.blobs.path, request.upload_id)
                spec = dataclasses.replace(spec, media_sha256=str(meta.get("sha256", "")))
            elif spooled.size_bytes == 0:
                raise InvalidInput("no media bytes were uploaded (zero-length upload)", field="chunk")
            else:
                spec = dataclasses.replace(spec, media_sha256=spooled.sha256)
            if not spec.media_id:
                digest = spec.media_sha256 or hashlib.sha256(spec.text.encode()).hexdigest()
                spec = dataclasses.replace(spec, media_id=f"{spec.modality.value[:3]}-" + digest[:24])
            job, _ = await ports.jobs.submit(call.tenant, spec, idempotency_key=request.idempotency_key, media=media)
            media = None
            if request.upload_id:
                await asyncio.to_thread(ports.blobs.delete_meta, request.upload_id)
        finally:
            if spooled.path.exists():
                spooled.path.unlink()
        return codec.job_pb(job)

    def _job_spec(self, spec: pb.JobSpec) -> JobSpec:
        if spec.modality not in codec.MODALITY_FROM_PROTO:
            raise InvalidInput(
                "must be MODALITY_TEXT, MODALITY_SPEECH, MODALITY_VIDEO or MODALITY_IMAGE", field="spec.modality"
            )
        modality = codec.MODALITY_FROM_PROTO[spec.modality]
        if spec.idempotency_key and (len(spec.idempotency_key) > 128 or not spec.idempotency_key.isprintable()):
            raise InvalidInput("must be at most 128 printable characters", field="spec.idempotency_key")
        media_id = spec.media.media_id
        if media_id:
            validation.media_id(media_id, "spec.media.media_id")
        metadata = validation.metadata(spec.media.metadata, "spec.media.metadata")
        if modality is Modality.TEXT:
            if not spec.text.strip():
                raise InvalidInput("must not be empty for a text job", field="spec.text")
            max_bytes = self._ports.limits.max_text_bytes
            if len(spec.text.encode()) > max_bytes:
                raise LimitExceeded(f"exceeds {max_bytes} bytes", field="spec.text")
            with validation.fields_under("spec.media."):
                moderation = codec.moderation_options_from_pb(spec.media.moderation)
            return JobSpec(
                modality=modality,
                media_id=media_id,
                text=spec.text,
                options=AnalysisOptions(moderation=moderation),
                metadata=metadata,
            )
        with validation.fields_under("spec.media."):
            options = validation.analysis_options(spec.media, video=True)
        return JobSpec(
            modality=modality, media_id=media_id, filename=spec.media.filename, options=options, metadata=metadata
        )

    async def GetJob(self, request: pb.GetJobRequest, call: Call) -> jobs_pb2.Job:
        job = await asyncio.to_thread(self._ports.jobs.get, call.tenant, validation.job_id(request.job_id))
        return codec.job_pb(job)

    async def WatchJob(self, request: pb.WatchJobRequest, call: Call) -> AsyncIterator[jobs_pb2.Job]:
        async for job in self._ports.jobs.watch(call.tenant, validation.job_id(request.job_id)):
            yield codec.job_pb(job, with_result=job.state.terminal)

    async def CancelJob(self, request: pb.CancelJobRequest, call: Call) -> jobs_pb2.Job:
        return codec.job_pb(await self._ports.jobs.cancel(call.tenant, validation.job_id(request.job_id)))

    async def ListJobs(self, request: pb.ListJobsRequest, call: Call) -> pb.ListJobsResponse:
        states = []
        for value in request.states:
            if value not in codec.JOB_STATE_FROM_PROTO:
                raise InvalidInput(f"unknown job state {value}", field="states")
            states.append(JobState(codec.JOB_STATE_FROM_PROTO[value]))
        jobs, token = await asyncio.to_thread(
            self._ports.jobs.list,
            call.tenant,
            states=states,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListJobsResponse(jobs=[codec.job_pb(j, with_result=False) for j in jobs], next_page_token=token)

    # ------------------------------------------------------------ search
    async def Search(self, request: pb.SearchRequest, call: Call) -> pb.SearchResponse:
        """Text (hybrid by default), vector or example query over the caller's tenant.

        The tenant always comes from the caller's identity; every filter value
        is checked here and a malformed one is INVALID_ARGUMENT naming it.
        """
        kind = request.WhichOneof("query")
        if kind is None:
            raise InvalidInput("one of text, vector or example is required", field="query")
        modes = {
            pb.SEARCH_MODE_UNSPECIFIED: SearchMode.AUTO,
            pb.SEARCH_MODE_DENSE: SearchMode.DENSE,
            pb.SEARCH_MODE_HYBRID: SearchMode.HYBRID,
        }
        if request.mode not in modes:
            raise InvalidInput(f"unknown search mode {request.mode}", field="mode")
        f = request.filter
        max_values = 256

        def labels(values: Any, field: str) -> tuple[str, ...]:
            if len(values) > max_values:
                raise LimitExceeded(f"at most {max_values} values", field=field)
            for i, value in enumerate(values):
                if not value.strip() or len(value) > 128:
                    raise InvalidInput("must be 1 to 128 characters", field=f"{field}[{i}]")
            return tuple(values)

        modalities = []
        for i, value in enumerate(f.modalities):
            if value not in codec.MODALITY_FROM_PROTO:
                raise InvalidInput(f"unknown modality {value}", field=f"filter.modalities[{i}]")
            modalities.append(codec.MODALITY_FROM_PROTO[value].value)
        media_ids = labels(f.media_ids, "filter.media_ids")
        for i, mid in enumerate(media_ids):
            validation.media_id(mid, f"filter.media_ids[{i}]")
        time_range = f.time_range if f.HasField("time_range") else None
        flt = PointFilter(
            tenant=call.tenant,
            modalities=tuple(modalities),
            media_ids=media_ids,
            languages=tuple(code.strip().lower() for code in labels(f.languages, "filter.languages")),
            tags_any=labels(f.tags.any, "filter.tags.any"),
            tags_all=labels(f.tags.all, "filter.tags.all"),
            tags_min_score=f.tags.min_score or None,  # ranges checked by the searcher
            created_after=validation.timestamp_s(f.created_after, "filter.created_after")
            if f.HasField("created_after")
            else None,
            created_before=validation.timestamp_s(f.created_before, "filter.created_before")
            if f.HasField("created_before")
            else None,
            overlaps_start_s=time_range.start_s if time_range is not None else None,
            # end_s 0 leaves the range open-ended
            overlaps_end_s=time_range.end_s if time_range is not None and time_range.end_s != 0 else None,
            metadata=validation.metadata(f.metadata, "filter.metadata"),
            moderation_decisions=validation.decisions(f.decisions, "filter.decisions"),
            moderation_categories=validation.moderation_categories(
                labels(f.moderation_categories, "filter.moderation_categories"), "filter.moderation_categories"
            ),
            speakers=labels(f.speakers, "filter.speakers"),
        )
        query = SearchQuery(
            text=request.text if kind == "text" else None,
            vector=list(request.vector.values) if kind == "vector" else None,
            example_media_id=validation.media_id(request.example.media_id, "example.media_id")
            if kind == "example"
            else None,
            example_chunk_index=request.example.chunk_index,
            top_k=request.top_k or 10,
            offset=request.offset,
            cursor=request.cursor or None,
            score_threshold=request.score_threshold if request.score_threshold != 0 else None,
            group_by_media=request.group_by_media,
            with_vectors=request.with_vectors,
            mode=modes[request.mode],
        )
        page = await self._ports.searcher.search(query, flt)
        return pb.SearchResponse(
            hits=[
                _hit_pb(
                    h.point,
                    matched=h.matched_terms,
                    group_hits=h.group_hits if request.group_by_media else 0,
                    with_vector=request.with_vectors,
                )
                for h in page.hits
            ],
            next_cursor=page.next_cursor,
            embedding_model=codec.model_pb(self._ports.embedding_model()),
        )

    # ------------------------------------------------------------ media
    async def GetMedia(self, request: pb.GetMediaRequest, call: Call) -> pb.GetMediaResponse:
        """Every point of the media's published version: never half of a re-analysis."""
        mid = validation.media_id(request.media_id, "media_id")
        points = await self._ports.catalog.points(call.tenant, mid)
        if not points:
            raise NotFound(f"no media {mid!r}", field="media_id")
        first = points[0].payload
        return pb.GetMediaResponse(
            media_id=mid,
            modality=codec.MODALITY_TO_PROTO.get(_modality(first), common_pb2.MODALITY_UNSPECIFIED),
            points=[_hit_pb(p) for p in points],
            version=int(first.get("version", 0)),
        )

    async def DeleteMedia(self, request: pb.DeleteMediaRequest, call: Call) -> pb.DeleteMediaResponse:
        """Drop every point of the media (all versions) and publish a MediaDeletedEvent."""
        mid = validation.media_id(request.media_id, "media_id")
        deleted = await self._ports.catalog.delete(call.tenant, mid, trace_id=call.trace_id)
        if deleted == 0:
            raise NotFound(f"no media {mid!r}", field="media_id")
        return pb.DeleteMediaResponse(points_deleted=deleted)

    # ------------------------------------------------------------ live
    async def AnalyzeLive(self, requests: AsyncIterator[Any], call: Call) -> None:
        """A call or live stream analysed while it happens (see api/live.py)."""
        live = self._ports.live
        if live is None:
            raise Unavailable("this process serves no live streams")
        await analyze_live(live, requests, call)
