"""Request validation shared by the RPCs: precise field names in every message."""

from __future__ import annotations

import re
from typing import Mapping

from understanding.domain import InvalidInput, LimitExceeded

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
