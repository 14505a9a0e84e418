"""Structured logging: one JSON object per line, with any `extra` fields.

Every line also carries the ids of the work it belongs to (request_id,
trace_id, tenant, method for an RPC; job_id for a job), taken from a context
variable, so a log line deep in a pipeline can be tied to its request without
passing ids down every call. asyncio tasks and `asyncio.to_thread` copy the
context, so worker threads inherit it too. Credentials are never put there:
only the resolved tenant, never the API key or other metadata.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
import types
from collections.abc import Iterator, Mapping

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "understanding_log_context", default=types.MappingProxyType({})
)


def bind(**fields: str) -> contextvars.Token[Mapping[str, str]]:
    """Add fields to every log line of the current task (and tasks/threads it starts)."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})


def unbind(token: contextvars.Token[Mapping[str, str]]) -> None:
    _context.reset(token)


@contextlib.contextmanager
def context(**fields: str) -> Iterator[None]:
    """`bind` for the duration of a block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current() -> Mapping[str, str]:
    """The fields bound for the current task."""
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (explicit `extra` fields win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """Human-readable lines, with the bound ids appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{k}={getattr(record, k)}" for k in ("request_id", "job_id", "tenant") if hasattr(record, k))
        return f"{line} [{ids}]" if ids else line


def configure(level: str = "INFO", *, json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json_lines else _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "httpx", "sentence_transformers", "transformers", "faster_whisper"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
