"""Property-based fuzzing of request parsing and validation, RPC by RPC.

Requests arrive as bytes: random bytes, bytes of another message type, and
well-formed messages full of hostile values (NUL, path traversal, SQL, ANSI
escapes, RTL overrides, lone surrogates' replacements, huge and negative
numbers, unknown enum values). Each goes through the server's own parsing
(`_lenient` + `check`) and the servicer method, with a core that stops at the
first real work. Every outcome must be a precise status (a domain error or the
parse error), or the request reaching the core: never an unexpected exception.

Bounded for CI; `UNDERSTANDING_FUZZ_SCALE=50` (make soak) runs 50x longer.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import grpc
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzz import fuzz_settings
from understanding.api import server as api_server
from understanding.api.servicer import RequestLimits, UnderstandingServicer
from understanding.api.validation import speech_options
from understanding.config import Settings
from understanding.domain import InvalidInput, LimitExceeded, NotFound, UnderstandingError
from understanding.v1 import common_pb2
from understanding.v1 import understanding_pb2 as pb

HOSTILE = [
    "", " ", "\x00", "a\x00b", "../../etc/passwd", "..\\..\\windows", "'; DROP TABLE points; --", "\" OR 1=1 --",
    "\x1b[31mred\x1b[0m", "\u202eevil\u202c", "\ufeff", "%s%s%n", "${jndi:ldap://x}", "a" * 129, "x" * 70_000,
    "tenant:other", "*", "\ud7ff", "emoji-\U0001f600", "NaN", "-1", "9" * 40,
]  # fmt: skip
hostile_text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=300))
big_int = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([-(2**31), 2**31 - 1, -1, 0]))
big_uint = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31, 2**32 - 1]))
any_float = st.floats(allow_nan=True, allow_infinity=True, width=32)
enum_value = st.integers(-5, 2**31 - 1)
metadata = st.dictionaries(hostile_text, hostile_text, max_size=40)

ALLOWED = {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "NOT_FOUND"}


class Reached(Exception):
    """The request passed validation and got to real work."""


def _reach(*args: Any, **kwargs: Any) -> Any:
    raise Reached()


async def _areach(*args: Any, **kwargs: Any) -> Any:
    raise Reached()


def _no_job(tenant: str, job_id: str, *a: Any, **k: Any) -> Any:
    raise NotFound(f"no job {job_id!r}", field="job_id")


async def _ano_job(tenant: str, job_id: str, *a: Any, **k: Any) -> Any:
    raise NotFound(f"no job {job_id!r}", field="job_id")


_SETTINGS = Settings()
PORTS = SimpleNamespace(
    analyzer=SimpleNamespace(analyze_and_index=_areach, check=lambda *a, **k: None),
    searcher=SimpleNamespace(search=_areach),
    catalog=SimpleNamespace(
        points=lambda *a, **k: asyncio.sleep(0, result=[]), delete=lambda *a, **k: asyncio.sleep(0, result=0)
    ),
    jobs=SimpleNamespace(get=_no_job, cancel=_ano_job, list=_reach),
    embedding_model=lambda: SimpleNamespace(name="m", version="1"),
    limits=RequestLimits(_SETTINGS.max_texts_per_call, _SETTINGS.max_text_bytes, _SETTINGS.max_upload_bytes),
)
SERVICER = UnderstandingServicer(lambda: PORTS)  # type: ignore[arg-type, return-value]
CALL = SimpleNamespace(tenant="fuzz", trace_id="t", request_id="r", caller=None, grpc=None)
UNARY = {
    "AnalyzeText": pb.AnalyzeTextRequest,
    "Search": pb.SearchRequest,
    "GetMedia": pb.GetMediaRequest,
    "DeleteMedia": pb.DeleteMediaRequest,
    "GetJob": pb.GetJobRequest,
    "CancelJob": pb.CancelJobRequest,
    "ListJobs": pb.ListJobsRequest,
}


def outcome(method: str, data: bytes) -> str:
    """Run `data` through parsing and the servicer; the status name, or "reached"."""
    request = api_server._lenient(UNARY[method])(data)

    async def run() -> Any:
        return await getattr(SERVICER, method)(api_server.check(request), CALL)

    try:
        asyncio.run(run())
    except Reached:
        return "reached"
    except api_server._Abort as error:
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and UNARY[method].DESCRIPTOR.full_name in error.message
        return "INVALID_ARGUMENT"
    except UnderstandingError as error:
        assert error.status in ALLOWED, (method, error.status, error.message)
        assert error.field or error.message, error
        return error.status
    return "ok"


text_items = st.lists(st.builds(pb.TextItem, media_id=hostile_text, text=hostile_text, metadata=metadata), max_size=70)
messages = st.one_of(
    st.builds(lambda items: pb.AnalyzeTextRequest(items=items), text_items),
    st.builds(
        lambda text, top_k, offset, mode, mods, ids, langs, tags, md, thr, cursor: pb.SearchRequest(
            text=text,
            top_k=top_k,
            offset=offset,
            mode=mode,
            cursor=cursor,
            score_threshold=thr,
            filter=pb.SearchFilter(
                modalities=mods, media_ids=ids, languages=langs, tags=pb.TagFilter(any=tags, min_score=thr), metadata=md
            ),
        ),
        hostile_text,
        big_uint,
        big_uint,
        enum_value,
        st.lists(enum_value, max_size=4),
        st.lists(hostile_text, max_size=5),
        st.lists(hostile_text, max_size=5),
        st.lists(hostile_text, max_size=300),
        metadata,
        any_float,
        hostile_text,
    ),  # fmt: skip
    st.builds(lambda v: pb.SearchRequest(vector=pb.Vector(values=v)), st.lists(any_float, max_size=400)),
    st.builds(lambda m, i: pb.SearchRequest(example=pb.Example(media_id=m, chunk_index=i)), hostile_text, big_uint),
    st.builds(lambda m: pb.GetMediaRequest(media_id=m), hostile_text),
    st.builds(lambda m: pb.DeleteMediaRequest(media_id=m), hostile_text),
    st.builds(lambda j: pb.GetJobRequest(job_id=j), hostile_text),
    st.builds(lambda j: pb.CancelJobRequest(job_id=j), hostile_text),
    st.builds(
        lambda s, n, t: pb.ListJobsRequest(states=s, page_size=n, page_token=t),
        st.lists(enum_value, max_size=5),
        big_uint,
        hostile_text,
    ),
)


@fuzz_settings(300)
@given(method=st.sampled_from(sorted(UNARY)), data=st.binary(max_size=512))
def test_random_bytes_get_a_precise_status(method: str, data: bytes) -> None:
    assert outcome(method, data) in ALLOWED | {"reached", "ok"}


@fuzz_settings(400)
@given(method=st.sampled_from(sorted(UNARY)), message=messages)
def test_hostile_and_foreign_messages_get_a_precise_status(method: str, message: Any) -> None:
    # Sent to its own RPC and, as a wrong type, to a random other one.
    data = message.SerializeToString()
    assert outcome(method, data) in ALLOWED | {"reached", "ok"}
    own = next(name for name, cls in UNARY.items() if isinstance(message, cls))
    assert outcome(own, data) in ALLOWED | {"reached", "ok"}


@fuzz_settings(200)
@given(items=text_items)
def test_analyze_text_passes_only_what_it_validated(items: list[pb.TextItem]) -> None:
    """A request that reaches the core obeys every documented limit."""
    result = outcome("AnalyzeText", pb.AnalyzeTextRequest(items=items).SerializeToString())
    if result == "reached":
        settings = Settings()
        assert 1 <= len(items) <= settings.max_texts_per_call
        for item in items:
            assert item.text.strip() and len(item.text.encode()) <= settings.max_text_bytes
            assert not item.media_id or ("/" not in item.media_id and "\x00" not in item.media_id)
            assert len(item.metadata) <= 32 and all("\x00" not in k for k in item.metadata)


@fuzz_settings(200)
@given(
    task=enum_value, language=hostile_text, prompt=hostile_text, hotwords=hostile_text, beam=big_uint,
)  # fmt: skip
def test_speech_options_validate(task: int, language: str, prompt: str, hotwords: str, beam: int) -> None:
    options = pb.SpeechOptions(task=task, language=language, initial_prompt=prompt, hotwords=hotwords, beam_size=beam)
    try:
        speech_options(options)
    except (InvalidInput, LimitExceeded) as error:
        assert error.field and error.field.startswith("speech.")


@fuzz_settings(200)
@given(
    modality=enum_value, key=hostile_text, media_id=hostile_text, text=hostile_text, fps=any_float, md=metadata,
)  # fmt: skip
def test_job_specs_validate(modality: int, key: str, media_id: str, text: str, fps: float, md: dict[str, str]) -> None:
    spec = pb.JobSpec(
        modality=modality, idempotency_key=key, text=text,
        media=pb.UploadHeader(media_id=media_id, metadata=md, video=pb.VideoOptions(sample_fps=fps)),
    )  # fmt: skip
    try:
        SERVICER._job_spec(spec)
    except (InvalidInput, LimitExceeded) as error:
        assert error.field and error.field.startswith("spec")


def test_unknown_enum_values_are_named() -> None:
    assert outcome("Search", pb.SearchRequest(text="x", mode=99).SerializeToString()) == "INVALID_ARGUMENT"
    bad_modality = pb.SearchRequest(
        text="x", filter=pb.SearchFilter(modalities=[common_pb2.Modality.Value("MODALITY_TEXT"), 77])
    )
    assert outcome("Search", bad_modality.SerializeToString()) == "INVALID_ARGUMENT"
    assert outcome("ListJobs", pb.ListJobsRequest(states=[1234]).SerializeToString()) == "INVALID_ARGUMENT"
