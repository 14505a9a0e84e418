"""Job records: what a job asks for and where it stands."""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from understanding.domain import Modality


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
    """What to run. `options` is plain JSON (speech/video/text options, metadata)."""

    modality: Modality
    media_id: str
    text: str = ""
    filename: str = ""
    blob: str = ""  # key of the media in the blob store (empty for text jobs)
    media_sha256: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Identity of the request, to tell a retry from a different job under the same key."""
        doc = {
            "modality": self.modality.value,
            "media_id": self.media_id,
            "text": hashlib.sha256(self.text.encode()).hexdigest(),
            "media": self.media_sha256,
            "options": self.options,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "modality": self.modality.value,
            "media_id": self.media_id,
            "text": self.text,
            "filename": self.filename,
            "blob": self.blob,
            "media_sha256": self.media_sha256,
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> JobSpec:
        return cls(
            modality=Modality(doc["modality"]),
            media_id=doc["media_id"],
            text=doc.get("text", ""),
            filename=doc.get("filename", ""),
            blob=doc.get("blob", ""),
            media_sha256=doc.get("media_sha256", ""),
            options=doc.get("options", {}),
        )


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

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the state topic's value): readable from any language."""
        return {
            "job_id": self.job_id,
            "tenant": self.tenant,
            "spec": self.spec.to_json(),
            "state": self.state.value,
            "created_at": self.created_at,
            "idempotency_key": self.idempotency_key,
            "fingerprint": self.fingerprint,
            "progress": self.progress,
            "stage": self.stage,
            "attempts": self.attempts,
            "error": None if self.error is None else [self.error.code, self.error.message, self.error.retriable],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "not_before": self.not_before,
            "result": None if self.result is None else base64.b64encode(self.result).decode(),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Job:
        err = doc.get("error")
        result = doc.get("result")
        return cls(
            job_id=doc["job_id"],
            tenant=doc["tenant"],
            spec=JobSpec.from_json(doc["spec"]),
            state=JobState(doc["state"]),
            created_at=float(doc["created_at"]),
            idempotency_key=doc.get("idempotency_key", ""),
            fingerprint=doc.get("fingerprint", ""),
            progress=float(doc.get("progress", 0.0)),
            stage=doc.get("stage", ""),
            attempts=int(doc.get("attempts", 0)),
            error=None if err is None else JobError(err[0], err[1], bool(err[2])),
            started_at=doc.get("started_at"),
            finished_at=doc.get("finished_at"),
            not_before=float(doc.get("not_before", 0.0)),
            result=None if result is None else base64.b64decode(result),
        )


def new_job_id(tenant: str, idempotency_key: str) -> str:
    """Deterministic for an idempotency key (any replica derives the same id), random otherwise."""
    if idempotency_key:
        return "job-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"job/{tenant}/{idempotency_key}"))
    return "job-" + str(uuid.uuid4())
