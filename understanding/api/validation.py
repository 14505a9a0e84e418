"""Request validation shared by the RPCs: precise field names in every message."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from understanding import codec
from understanding.domain import (
    CATEGORIES,
    AnalysisOptions,
    InvalidInput,
    LimitExceeded,
    SpeechOptions,
    UnderstandingError,
)
from understanding.v1 import understanding_pb2 as pb

MEDIA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 1024
_METADATA_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def media_id(value: str, field: str) -> str:
    if not value:
        raise InvalidInput("must not be empty", field=field)
    if not MEDIA_ID_RE.match(value):
        raise InvalidInput("must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}", field=field)
    return value


def metadata(values: Mapping[str, str], field: str) -> dict[str, str]:
    if len(values) > MAX_METADATA_ENTRIES:
        raise LimitExceeded(f"at most {MAX_METADATA_ENTRIES} entries", field=field)
    out = {}
    for key, value in values.items():
        if not _METADATA_KEY_RE.match(key):
            raise InvalidInput(f"key {key[:64]!r} must match [A-Za-z_][A-Za-z0-9_.-]{{0,63}}", field=field)
        if len(value) > MAX_METADATA_VALUE:
            raise LimitExceeded(f"value of {key!r} is longer than {MAX_METADATA_VALUE} chars", field=field)
        out[key] = value
    return out


MAX_JOB_ID = 128


def job_id(value: str, field: str = "job_id") -> str:
    """Any printable id up to 128 characters (unknown ones are NOT_FOUND later); an id
    that cannot exist is named as such instead of being echoed back at length."""
    if not value:
        raise InvalidInput("must not be empty", field=field)
    if len(value) > MAX_JOB_ID or not value.isprintable():
        raise InvalidInput(f"must be at most {MAX_JOB_ID} printable characters", field=field)
    return value


def timestamp_s(value: Any, field: str) -> float:
    """A google.protobuf.Timestamp as seconds; out-of-range seconds or nanos are INVALID_ARGUMENT."""
    try:
        return float(value.ToNanoseconds()) / 1e9
    except ValueError as error:
        raise InvalidInput(f"is not a valid timestamp ({error})", field=field) from None


def speech_options(options: pb.SpeechOptions) -> SpeechOptions:
    """Validated speech options; errors name `speech.<field>`."""
    return codec.speech_options_from_pb(options)


def analysis_options(header: pb.UploadHeader, *, video: bool) -> AnalysisOptions:
    """The typed options of an upload header (video options only where they apply)."""
    return AnalysisOptions(
        speech=speech_options(header.speech),
        video=codec.video_options_from_pb(header.video) if video else AnalysisOptions().video,
        moderation=codec.moderation_options_from_pb(header.moderation),
        image=codec.image_options_from_pb(header.image),
    )


def moderation_categories(values: Any, field: str) -> tuple[str, ...]:
    """Category names as search filters take them: known ones only (a typo would match nothing)."""
    out = []
    for i, value in enumerate(values):
        name = value.strip()
        if name not in CATEGORIES:
            raise InvalidInput(
                f"unknown moderation category {value[:64]!r} (known: {', '.join(CATEGORIES)})", field=f"{field}[{i}]"
            )
        out.append(name)
    return tuple(out)


def decisions(values: Any, field: str) -> tuple[str, ...]:
    out = []
    for i, value in enumerate(values):
        if value not in codec.DECISION_FROM_PROTO:
            raise InvalidInput(
                f"must be DECISION_ALLOW, DECISION_REVIEW or DECISION_BLOCK, not {value}", field=f"{field}[{i}]"
            )
        out.append(codec.DECISION_FROM_PROTO[value].value)
    return tuple(out)


@contextlib.contextmanager
def fields_under(prefix: str) -> Iterator[None]:
    """Name fields from the request's root: `speech.language` inside a job spec is
    `spec.media.speech.language`."""
    try:
        yield
    except UnderstandingError as error:
        if error.field and not error.field.startswith(prefix):
            error.field = prefix + error.field
        raise
