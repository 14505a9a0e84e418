"""Jobs: what a job asks for (`JobSpec`) and where it stands (`Job`)."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from understanding.domain.media import Modality
from understanding.domain.options import AnalysisOptions

# Speech options that did not exist when fingerprints were first computed, with their defaults.
_SPEECH_DEFAULTS_ADDED: dict[str, object] = {
    "diarize": True,
    "num_speakers": None,
    "channels": "auto",
    "fallback": True,
}


class JobState(enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What to run: the media (text inline, or a blob key) and its typed options."""

    modality: Modality
    media_id: str
    text: str = ""
    filename: str = ""
    blob: str = ""  # key of the media in the blob store (empty for text jobs)
    media_sha256: str = ""
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    metadata: Mapping[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Identity of the request, to tell a retry from a different job under the same key.

        The document hashed is the one earlier versions hashed (options as plain
        JSON), so an idempotency key used before an upgrade still matches.
        """
        options: dict[str, Any] = {"metadata": dict(self.metadata)}
        if self.modality is not Modality.TEXT:
            video = self.options.video
            speech = dataclasses.asdict(self.options.speech)
            # Options added later are hashed only when set, so a key used before they existed still matches.
            for name, default in _SPEECH_DEFAULTS_ADDED.items():
                if speech.get(name) == default:
                    del speech[name]
            options["speech"] = speech
            options["video"] = {
                "sample_fps": video.sample_fps or 0.0,
                "return_keyframes": video.return_keyframes,
                "skip_audio": video.skip_audio,
            }
        moderation = self.options.moderation
        if moderation.policy is not None or moderation.redact_pii:  # absent when default: older hashes hold
            options["moderation"] = {"policy": moderation.policy or "", "redact_pii": moderation.redact_pii}
        image = self.options.image
        if image.skip_ocr or image.skip_nudity:  # absent when default: older hashes hold
            options["image"] = {"skip_ocr": image.skip_ocr, "skip_nudity": image.skip_nudity}
        doc = {
            "modality": self.modality.value,
            "media_id": self.media_id,
            "text": hashlib.sha256(self.text.encode()).hexdigest(),
            "media": self.media_sha256,
            "options": options,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class JobError:
    code: str
    message: str
    retriable: bool


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    tenant: str
    spec: JobSpec
    state: JobState
    created_at: float
    idempotency_key: str = ""
    fingerprint: str = ""
    progress: float = 0.0
    stage: str = ""
    attempts: int = 0
    error: JobError | None = None
    started_at: float | None = None
    finished_at: float | None = None
    not_before: float = 0.0  # retry back-off: do not run before this time
    result: bytes | None = None  # serialized understanding.v1.Analysis

    @property
    def version(self) -> int:
        """Analysis version of this job's result: stable across retries and redeliveries,
        so a re-run overwrites the same points and re-emits the same event id."""
        return int(self.created_at * 1_000_000)

    def with_(self, **changes: Any) -> Job:
        return replace(self, **changes)


def new_job_id(tenant: str, idempotency_key: str) -> str:
    """Deterministic for an idempotency key (any replica derives the same id), random otherwise."""
    if idempotency_key:
        return "job-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"job/{tenant}/{idempotency_key}"))
    return "job-" + str(uuid.uuid4())
