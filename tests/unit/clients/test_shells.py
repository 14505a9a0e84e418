"""The SDK's sync and asyncio shells: the same surface, and the same behaviour for the same server answers.

A scripted stub stands in for the server (a unit test; tests/sdk/ runs both
clients against the real one): each RPC answers from a list of outcomes, a
response or an error per attempt, so retries, conversions and stream
re-opening can be compared between `Client` and `AsyncClient` exactly.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from tests.unit.clients.test_calls import RpcError
from understanding.v1 import admin_pb2, common_pb2, jobs_pb2
from understanding.v1 import understanding_pb2 as pb
from understanding_client import (
    AdminClient,
    AsyncAdminClient,
    AsyncClient,
    Client,
    DeadlineExceeded,
    InvalidArgument,
    JobState,
    NotFound,
    RetryPolicy,
    Unavailable,
)

FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.001)
UNAVAILABLE = RpcError(grpc.StatusCode.UNAVAILABLE, "restarting")


# ---------------------------------------------------------------- one surface
ASYNC_ONLY = {"live"}


def public_methods(cls: type) -> dict[str, Any]:
    return {name: fn for name, fn in inspect.getmembers(cls, callable) if not name.startswith("_")}


@pytest.mark.parametrize(("sync", "aio"), [(Client, AsyncClient), (AdminClient, AsyncAdminClient)])
def test_the_async_shell_has_the_sync_surface(sync: type, aio: type) -> None:
    sync_methods, aio_methods = public_methods(sync), public_methods(aio)
    # `live` exists only in the async shell: a live source is sent and read at once (README: Live streams).
    assert sync_methods.keys() == aio_methods.keys() - ASYNC_ONLY
    for name, fn in sync_methods.items():
        ours, theirs = inspect.signature(fn), inspect.signature(aio_methods[name])
        assert ours.parameters == theirs.parameters, name
        returns = str(ours.return_annotation).replace("Iterator[", "AsyncIterator[")
        assert returns == str(theirs.return_annotation), name
        if returns.startswith("AsyncIterator"):  # watch_job, iter_jobs, reindex: async iterators
            assert not inspect.iscoroutinefunction(aio_methods[name]), name
        else:
            assert inspect.iscoroutinefunction(aio_methods[name]), name


# ---------------------------------------------------------------- one behaviour
class Script:
    """Outcomes per RPC, one per attempt: a response, a list of streamed messages (optionally ending in an
    error), or an error. Records what each attempt sent."""

    def __init__(self, **outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.sent: list[tuple[str, Any, float | None]] = []

    def next(self, method: str, request: Any, timeout: float | None) -> Any:
        self.sent.append((method, request, timeout))
        outcome = self.outcomes[method].pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class SyncStub:
    def __init__(self, script: Script) -> None:
        self.script = script

    def __getattr__(self, method: str) -> Any:
        def send(request: Any, *, metadata: Any, timeout: float | None) -> Any:
            if isinstance(request, Iterator):
                request = list(request)
            outcome = self.script.next(method, request, timeout)
            return SyncStream(outcome) if isinstance(outcome, list) else outcome

        return send


class SyncStream:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            if isinstance(item, Exception):
                raise item
            yield item

    def cancel(self) -> None:
        pass


class AsyncStub:
    def __init__(self, script: Script) -> None:
        self.script = script

    def __getattr__(self, method: str) -> Any:
        def send(request: Any, *, metadata: Any, timeout: float | None) -> Any:
            if isinstance(request, AsyncIterator):
                return self._unary_after_stream(method, request, timeout)
            if method in ("WatchJob", "Reindex"):
                return AsyncStream(self.script.next(method, request, timeout))
            return self._unary(method, request, timeout)

        return send

    async def _unary(self, method: str, request: Any, timeout: float | None) -> Any:
        return self.script.next(method, request, timeout)

    async def _unary_after_stream(self, method: str, requests: AsyncIterator[Any], timeout: float | None) -> Any:
        return self.script.next(method, [r async for r in requests], timeout)


class AsyncStream:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    async def __aiter__(self) -> AsyncIterator[Any]:
        for item in self.items:
            if isinstance(item, Exception):
                raise item
            yield item

    def cancel(self) -> None:
        pass


def job(state: int, fraction: float = 0.0) -> jobs_pb2.Job:
    return jobs_pb2.Job(job_id="job-1", state=state, progress=jobs_pb2.JobProgress(fraction=fraction))


def scenario() -> Script:
    return Script(
        AnalyzeText=[UNAVAILABLE, pb.AnalyzeTextResponse(results=[common_pb2.Analysis(media_id="t-1")])],
        UploadMedia=[UNAVAILABLE, pb.UploadMediaResponse(upload_id="upl-1", size_bytes=5)],
        DeleteMedia=[UNAVAILABLE],
        GetJob=[RpcError(grpc.StatusCode.NOT_FOUND, "no job job-2")],
        WatchJob=[
            [job(jobs_pb2.JOB_STATE_QUEUED), UNAVAILABLE],
            [
                job(jobs_pb2.JOB_STATE_RUNNING, 0.5),
                job(jobs_pb2.JOB_STATE_SUCCEEDED, 1.0),
                job(jobs_pb2.JOB_STATE_SUCCEEDED),
            ],
        ],
        ListJobs=[
            pb.ListJobsResponse(jobs=[jobs_pb2.Job(job_id="a")], next_page_token="p2"),
            pb.ListJobsResponse(jobs=[jobs_pb2.Job(job_id="b")]),
        ],
    )


def run_sync(script: Script) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with Client("127.0.0.1:1", tenant="t", retry=FAST, timeout_s=9.0) as client:
        client._stub = SyncStub(script)
        seen["analyze"] = [a.media_id for a in client.analyze_text("hello")]
        seen["upload"] = client.upload_media(b"12345").upload_id
        with pytest.raises(Unavailable):
            client.delete_media("m")  # not idempotent: one attempt
        with pytest.raises(NotFound):
            client.get_job("job-2")
        seen["watch"] = [(j.state, j.progress.fraction) for j in client.watch_job("job-1", timeout=30)]
        seen["jobs"] = [j.job_id for j in client.iter_jobs(states=["succeeded"], page_size=1)]
    return seen


async def run_async(script: Script) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with AsyncClient("127.0.0.1:1", tenant="t", retry=FAST, timeout_s=9.0) as client:
        client._stub = AsyncStub(script)
        seen["analyze"] = [a.media_id for a in await client.analyze_text("hello")]
        seen["upload"] = (await client.upload_media(b"12345")).upload_id
        with pytest.raises(Unavailable):
            await client.delete_media("m")
        with pytest.raises(NotFound):
            await client.get_job("job-2")
        seen["watch"] = [(j.state, j.progress.fraction) async for j in client.watch_job("job-1", timeout=30)]
        seen["jobs"] = [j.job_id async for j in client.iter_jobs(states=["succeeded"], page_size=1)]
    return seen


async def test_sync_and_async_clients_behave_the_same() -> None:
    sync_script, async_script = scenario(), scenario()
    sync_seen = run_sync(sync_script)
    async_seen = await run_async(async_script)
    assert (
        sync_seen
        == async_seen
        == {
            "analyze": ["t-1"],
            "upload": "upl-1",
            # The dropped watch is re-opened and the terminal state ends it (the extra message is never read).
            "watch": [(JobState.QUEUED, 0.0), (JobState.RUNNING, 0.5), (JobState.SUCCEEDED, 1.0)],
            "jobs": ["a", "b"],
        }
    )
    assert (
        [m for m, _, _ in sync_script.sent]
        == [m for m, _, _ in async_script.sent]
        == [
            "AnalyzeText",
            "AnalyzeText",
            "UploadMedia",
            "UploadMedia",
            "DeleteMedia",
            "GetJob",
            "WatchJob",
            "WatchJob",
            "ListJobs",
            "ListJobs",
        ]
    )
    for script in (sync_script, async_script):
        uploads = [request for method, request, _ in script.sent if method == "UploadMedia"]
        assert uploads[0] == uploads[1] and uploads[0][1].chunk == b"12345"  # the retry re-sent it whole
        timeouts = {method: t for method, _, t in script.sent}
        assert timeouts["AnalyzeText"] == 9.0 and 0 < timeouts["WatchJob"] <= 30
        pages = [request.page_token for method, request, _ in script.sent if method == "ListJobs"]
        assert pages == ["", "p2"]
    assert sync_script.outcomes["WatchJob"] == async_script.outcomes["WatchJob"] == []


@pytest.mark.parametrize(("retry_deadline_exceeded", "attempts"), [(False, 1), (True, 2)])
def test_a_passed_deadline_is_retried_only_when_asked(retry_deadline_exceeded: bool, attempts: int) -> None:
    """DEADLINE_EXCEEDED is raised at once by default, even for an idempotent call (counted, not timed)."""
    answers = [RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), pb.TranscribeResponse()]
    script = Script(Transcribe=answers)
    policy = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.001, retry_deadline_exceeded=retry_deadline_exceeded)
    with Client("127.0.0.1:1", tenant="t", retry=policy, timeout_s=9.0) as client:
        client._stub = SyncStub(script)
        if attempts == 1:
            with pytest.raises(DeadlineExceeded):
                client.transcribe(b"RIFF audio bytes", media_id="a")
        else:
            client.transcribe(b"RIFF audio bytes", media_id="a")
    assert [method for method, _, _ in script.sent] == ["Transcribe"] * attempts


async def test_admin_clients_read_the_reindex_stream_to_its_end() -> None:
    def updates() -> list[Any]:
        return [
            admin_pb2.ReindexProgress(phase=admin_pb2.REINDEX_PHASE_COPYING, total_points=4, done_points=2),
            admin_pb2.ReindexProgress(phase=admin_pb2.REINDEX_PHASE_FAILED, message="model cannot be loaded"),
            RpcError(grpc.StatusCode.INVALID_ARGUMENT, "model cannot be loaded"),
        ]

    seen: list[list[str]] = []
    with AdminClient("127.0.0.1:1") as admin:
        admin._stub = SyncStub(Script(Reindex=[updates()]))
        phases: list[str] = []
        with pytest.raises(InvalidArgument, match="model cannot be loaded"):
            for p in admin.reindex("/m"):
                phases.append(p.phase.value)
        seen.append(phases)
    async with AsyncAdminClient("127.0.0.1:1") as aadmin:
        aadmin._stub = AsyncStub(Script(Reindex=[updates()]))
        phases = []
        with pytest.raises(InvalidArgument, match="model cannot be loaded"):
            async for p in aadmin.reindex("/m"):
                phases.append(p.phase.value)
        seen.append(phases)
    assert seen == [["copying", "failed"], ["copying", "failed"]]


def test_admin_client_reads_the_admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNDERSTANDING_API_KEY", "tenant-key")
    monkeypatch.setenv("UNDERSTANDING_TENANT", "acme")
    monkeypatch.delenv("UNDERSTANDING_ADMIN_API_KEY", raising=False)
    with AdminClient() as admin:
        assert admin.config.api_key == "tenant-key" and admin.config.tenant == ""
    monkeypatch.setenv("UNDERSTANDING_ADMIN_API_KEY", "admin-key")
    with AdminClient(api_key="given") as given, AdminClient() as from_env, Client() as client:
        assert (given.config.api_key, from_env.config.api_key) == ("given", "admin-key")
        assert client.config.api_key == "tenant-key" and client.config.tenant == "acme"
    with Client(timeout_s=None) as no_deadline:
        assert no_deadline.config.timeout_s is None


async def test_wait_ready_answers_whether_a_server_accepts_connections() -> None:
    server = grpc.server(ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with Client(f"127.0.0.1:{port}") as up:
            assert up.wait_ready(30)
        async with AsyncAdminClient(f"127.0.0.1:{port}") as aup:
            assert await aup.wait_ready(30)
    finally:
        server.stop(None)
    with Client(f"127.0.0.1:{port}") as down:
        assert not down.wait_ready(0.2)
    async with AsyncClient(f"127.0.0.1:{port}") as adown:
        assert not await adown.wait_ready(0.2)
