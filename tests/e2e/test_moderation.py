"""Moderation end to end: real server, real models (alt-profanity-check, contact parsers, the
embedder's zero-shot labels), embedded Qdrant, real Kafka."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import grpc
import pytest

from tests.support.kafka import collect
from tests.support.server import ROOT, ServerProcess
from understanding.v1 import common_pb2, events_pb2, moderation_pb2
from understanding.v1 import understanding_pb2 as pb

OFFENSIVE = "You are a fucking idiot and a worthless piece of shit, shut up."
ORDINARY = "The meeting is moved to Thursday at 3 pm in room 204, please bring the quarterly report."
NUMBER = "+1 415 555 0132"
EMAIL = "jo.doe@example.org"
PHONE_TEXT = f"Lovely chatting with you! Text me on {NUMBER} tonight."
PII_TEXT = f"Lovely chatting with you! Text me on {NUMBER} or mail {EMAIL}, kisses from the lighthouse"


def md(tenant: str) -> list[tuple[str, str]]:
    return [("x-tenant-id", tenant)]


def analyze(
    server: ServerProcess, tenant: str, *items: tuple[str, str], **moderation: object
) -> list[common_pb2.Analysis]:
    request = pb.AnalyzeTextRequest(
        items=[pb.TextItem(media_id=mid, text=text) for mid, text in items],
        options=pb.TextOptions(moderation=pb.ModerationOptions(**moderation)),  # type: ignore[arg-type]
    )
    return list(server.stub.AnalyzeText(request, metadata=md(tenant), timeout=60).results)


def categories(analysis: common_pb2.Analysis) -> dict[str, common_pb2.CategoryResult]:
    return {c.category: c for c in analysis.moderation.categories}


def test_offensive_is_blocked_and_ordinary_allowed(server: ServerProcess) -> None:
    offensive, ordinary = analyze(server, "mod-basic", ("msg-bad", OFFENSIVE), ("msg-ok", ORDINARY))
    assert offensive.moderation.decision == common_pb2.DECISION_BLOCK
    assert offensive.moderation.policy == "default" and offensive.moderation.policy_version
    found = categories(offensive)["offensive"]
    assert found.severity == common_pb2.DECISION_BLOCK and found.score >= 0.9
    evidence = found.evidence[0]
    assert evidence.model.name == "alt-profanity-check" and evidence.model.version
    assert evidence.modality == common_pb2.MODALITY_TEXT and evidence.HasField("chunk_index")
    assert OFFENSIVE[evidence.span.start : evidence.span.end] == evidence.text and "idiot" in evidence.text
    assert ordinary.moderation.decision == common_pb2.DECISION_ALLOW
    assert [c for c in ordinary.moderation.categories if c.severity != common_pb2.DECISION_ALLOW] == []


def test_phone_number_is_review_with_its_span_and_strict_policy_blocks(server: ServerProcess) -> None:
    (result,) = analyze(server, "mod-phone", ("msg-phone", PHONE_TEXT))
    assert result.moderation.decision == common_pb2.DECISION_REVIEW
    phone = categories(result)["contact.phone"]
    assert phone.severity == common_pb2.DECISION_REVIEW
    evidence = phone.evidence[0]
    assert evidence.text == NUMBER and PHONE_TEXT[evidence.span.start : evidence.span.end] == NUMBER
    assert evidence.detail.startswith("phone") and evidence.model.name == "understanding-contacts"
    assert not evidence.redacted and result.chunks[evidence.chunk_index].text == PHONE_TEXT
    (strict,) = analyze(server, "mod-phone", ("msg-phone-strict", PHONE_TEXT), policy="strict")
    assert strict.moderation.policy == "strict" and strict.moderation.decision == common_pb2.DECISION_BLOCK
    with pytest.raises(grpc.RpcError) as error:
        analyze(server, "mod-phone", ("msg-x", PHONE_TEXT), policy="lenient")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "options.moderation.policy" in str(error.value.details()) and "lenient" in str(error.value.details())


async def test_redaction_masks_everywhere_and_keeps_the_evidence(
    server: ServerProcess, kafka_bootstrap: str, analysis_topic: str, moderation_topic: str
) -> None:
    (result,) = analyze(server, "mod-redact", ("msg-pii", PII_TEXT), redact_pii=True)
    text = result.chunks[0].text
    assert len(text) == len(PII_TEXT) and NUMBER not in text and EMAIL not in text and "lighthouse" in text
    found = categories(result)
    for category in ("contact.phone", "contact.email"):
        evidence = found[category].evidence[0]
        assert found[category].severity == common_pb2.DECISION_REVIEW
        assert evidence.redacted and evidence.text == "" and evidence.span.end > evidence.span.start
        assert set(text[evidence.span.start : evidence.span.end]) <= {"*", " "}
    # The stored payload: what GetMedia and Search return.
    media = server.stub.GetMedia(pb.GetMediaRequest(media_id="msg-pii"), metadata=md("mod-redact"), timeout=30)
    assert [p.text for p in media.points] == [text]
    hits = server.stub.Search(
        pb.SearchRequest(text="kisses from the lighthouse", top_k=3), metadata=md("mod-redact")
    ).hits
    assert hits and hits[0].media_id == "msg-pii" and hits[0].text == text
    # Lexical search cannot find the number either.
    digits = server.stub.Search(
        pb.SearchRequest(text="4155550132 415 555 0132", top_k=3, mode=pb.SEARCH_MODE_HYBRID), metadata=md("mod-redact")
    ).hits
    assert all(NUMBER not in h.text for h in digits)
    # Both events, from the real broker: no raw value in any byte.
    analysis_records = await collect(
        kafka_bootstrap, analysis_topic, until=lambda rs: any(r.key == b"msg-pii" for r in rs)
    )
    moderation_records = await collect(
        kafka_bootstrap, moderation_topic, until=lambda rs: any(r.key == b"msg-pii" for r in rs)
    )
    for record in [r for r in analysis_records + moderation_records if r.key == b"msg-pii"]:
        assert (
            NUMBER.encode() not in record.value
            and b"4155550132" not in record.value
            and EMAIL.encode() not in record.value
        )
    event = moderation_pb2.ModerationEvent.FromString(next(r.value for r in moderation_records if r.key == b"msg-pii"))
    assert {c.category for c in event.moderation.categories} >= {"contact.phone", "contact.email"}
    assert all(e.redacted for c in event.moderation.categories if c.category.startswith("contact.") for e in c.evidence)
    analysis_event = events_pb2.AnalysisEvent.FromString(next(r.value for r in analysis_records if r.key == b"msg-pii"))
    assert analysis_event.analysis.chunks[0].text == text


async def test_moderation_event_on_its_own_topic(
    server: ServerProcess, kafka_bootstrap: str, moderation_topic: str
) -> None:
    (result,) = analyze(server, "mod-events", ("msg-event-bad", OFFENSIVE))
    records = await collect(
        kafka_bootstrap, moderation_topic, until=lambda rs: any(r.key == b"msg-event-bad" for r in rs)
    )
    mine = [r for r in records if r.key == b"msg-event-bad"]
    assert len(mine) == 1
    headers = dict(mine[0].headers)
    assert headers["schema"] == b"understanding.v1.ModerationEvent" and headers["tenant"] == b"mod-events"
    assert headers["content-type"] == b"application/x-protobuf"
    event = moderation_pb2.ModerationEvent.FromString(mine[0].value)
    assert event.schema_version == 1 and event.event_id and not event.partial
    assert (event.tenant, event.media_id, event.version) == ("mod-events", "msg-event-bad", result.version)
    assert event.modality == common_pb2.MODALITY_TEXT
    assert event.moderation == result.moderation


def test_search_by_decision_and_category_tenant_enforced(server: ServerProcess) -> None:
    items = (("s-bad", OFFENSIVE), ("s-phone", PHONE_TEXT), ("s-ok", ORDINARY))
    analyze(server, "mod-search", *items)
    analyze(server, "mod-search-other", *items)

    def search(tenant: str, **flt: object) -> list[str]:
        request = pb.SearchRequest(text="a message", top_k=20, filter=pb.SearchFilter(**flt))  # type: ignore[arg-type]
        return sorted({h.media_id for h in server.stub.Search(request, metadata=md(tenant), timeout=30).hits})

    assert search("mod-search", decisions=[common_pb2.DECISION_BLOCK]) == ["s-bad"]
    assert search("mod-search", decisions=[common_pb2.DECISION_REVIEW, common_pb2.DECISION_BLOCK]) == [
        "s-bad",
        "s-phone",
    ]
    assert search("mod-search", decisions=[common_pb2.DECISION_ALLOW]) == ["s-ok"]
    assert search("mod-search", moderation_categories=["contact.phone"]) == ["s-phone"]
    assert search("mod-search", moderation_categories=["offensive"], decisions=[common_pb2.DECISION_BLOCK]) == ["s-bad"]
    assert search("mod-search-nobody", decisions=[common_pb2.DECISION_BLOCK]) == []
    hit = server.stub.Search(
        pb.SearchRequest(
            text="text me tonight", top_k=1, filter=pb.SearchFilter(moderation_categories=["contact.phone"])
        ),
        metadata=md("mod-search"),
    ).hits[0]
    assert hit.decision == common_pb2.DECISION_REVIEW and "contact.phone" in hit.moderation_categories
    assert "contact.phone" in hit.chunk_moderation_categories
    for flt, field in (
        (pb.SearchFilter(moderation_categories=["nudes"]), "filter.moderation_categories[0]"),
        (pb.SearchFilter(decisions=[7]), "filter.decisions[0]"),  # type: ignore[list-item]
    ):
        with pytest.raises(grpc.RpcError) as error:
            server.stub.Search(pb.SearchRequest(text="x", filter=flt), metadata=md("mod-search"))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in str(error.value.details())


def test_text_job_with_redaction(server: ServerProcess) -> None:
    spec = pb.JobSpec(
        modality=common_pb2.MODALITY_TEXT,
        text=PHONE_TEXT,
        media=pb.UploadHeader(media_id="job-pii", moderation=pb.ModerationOptions(redact_pii=True)),
    )
    job = server.stub.SubmitJob(iter([pb.SubmitJobRequest(spec=spec)]), metadata=md("mod-job"), timeout=30)
    final = list(server.stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), metadata=md("mod-job"), timeout=120))[-1]
    assert final.state == 3, final  # SUCCEEDED
    assert NUMBER not in final.result.chunks[0].text
    assert categories(final.result)["contact.phone"].evidence[0].redacted
    bad = pb.JobSpec(
        modality=common_pb2.MODALITY_TEXT,
        text="hi",
        media=pb.UploadHeader(moderation=pb.ModerationOptions(policy="nope")),
    )
    with pytest.raises(grpc.RpcError) as error:
        server.stub.SubmitJob(iter([pb.SubmitJobRequest(spec=bad)]), metadata=md("mod-job"), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.media.moderation.policy" in str(error.value.details())


BAD_POLICIES = [
    (
        'version = "1"\n[policy.default.category.offensive]\nreview = 0.5\n[policy.default.category.nudes]\nreview = 1\n',
        "line 4: unknown category 'nudes'",
    ),
    ('version = "1"\n[policy.default.category.offensive]\nreview = "high"\n', "line 3: `review` must be a score"),
    ('version = "1"\n[policy.default.category.offensive\n', "line 2: not valid TOML"),
]


@pytest.mark.parametrize(("content", "expected"), BAD_POLICIES)
def test_bad_policy_file_is_a_one_line_startup_error(tmp_path: pathlib.Path, content: str, expected: str) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSTANDING_") or k == "UNDERSTANDING_CACHE"}
    env.update(
        {"UNDERSTANDING_MODERATION_POLICY_PATH": str(policy), "UNDERSTANDING_DATA_DIR": str(tmp_path / "data"),
         "UNDERSTANDING_GRPC_PORT": "0", "UNDERSTANDING_METRICS_PORT": "off"}
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "understanding", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: UNDERSTANDING_MODERATION_POLICY_PATH: ") and str(policy) in lines[0]
    assert expected in lines[0], lines[0]
