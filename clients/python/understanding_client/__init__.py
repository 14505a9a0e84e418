"""Python client for the understanding service.

    from understanding_client import Client

    with Client("127.0.0.1:50051", tenant="acme") as client:
        [analysis] = client.analyze_text("Messi scored twice")
        hits = client.search("football", top_k=5)

`AsyncClient` is the asyncio twin; `AdminClient` / `AsyncAdminClient` call
the Admin service (online reindex); `understanding_client.events` decodes the
service's Kafka events. Results are frozen dataclasses (`.raw` holds the
protobuf message); failures raise `UnderstandingError` subclasses.
"""

from understanding_client._channel import ConnectionConfig
from understanding_client._requests import SpeechOptions, VideoOptions
from understanding_client.aio import AsyncAdminClient, AsyncClient
from understanding_client.client import AdminClient, Client
from understanding_client.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    UnderstandingError,
    Unimplemented,
    UploadSourceError,
)
from understanding_client.live import (
    AudioChunk,
    FileSource,
    Frame,
    LiveEvent,
    LiveFinal,
    LiveModeration,
    LivePartial,
    LiveSignals,
    LiveStatus,
    LiveSummary,
)
from understanding_client.retry import NO_RETRY, RetryPolicy
from understanding_client.types import (
    Analysis,
    CategoryResult,
    Chunk,
    Decision,
    Evidence,
    Job,
    JobError,
    JobPage,
    JobProgress,
    JobState,
    Language,
    Media,
    Modality,
    ModelRef,
    Moderation,
    ModerationOptions,
    ReindexPhase,
    ReindexProgress,
    SearchHit,
    SearchResults,
    Segment,
    Shot,
    Speaker,
    Tag,
    TextItem,
    Transcript,
    Upload,
    VideoInfo,
    Word,
)

__version__ = "0.1.0"

__all__ = [
    "NO_RETRY",
    "AdminClient",
    "AlreadyExists",
    "Analysis",
    "AsyncAdminClient",
    "AsyncClient",
    "AudioChunk",
    "Cancelled",
    "CategoryResult",
    "Chunk",
    "Client",
    "ConnectionConfig",
    "DeadlineExceeded",
    "Decision",
    "Evidence",
    "FailedPrecondition",
    "FileSource",
    "Frame",
    "InternalError",
    "InvalidArgument",
    "Job",
    "JobError",
    "JobPage",
    "JobProgress",
    "JobState",
    "Language",
    "LiveEvent",
    "LiveFinal",
    "LiveModeration",
    "LivePartial",
    "LiveSignals",
    "LiveStatus",
    "LiveSummary",
    "Media",
    "Modality",
    "ModelRef",
    "Moderation",
    "ModerationOptions",
    "NotFound",
    "PermissionDenied",
    "ReindexPhase",
    "ReindexProgress",
    "ResourceExhausted",
    "RetryPolicy",
    "SearchHit",
    "SearchResults",
    "Segment",
    "Shot",
    "Speaker",
    "SpeechOptions",
    "Tag",
    "TextItem",
    "Transcript",
    "Unauthenticated",
    "Unavailable",
    "UnderstandingError",
    "Unimplemented",
    "Upload",
    "UploadSourceError",
    "VideoInfo",
    "VideoOptions",
    "Word",
    "__version__",
]
