"""Multilingual end to end over gRPC with the real default model (USE multilingual v3).

Korean, Japanese, Arabic and German texts get their topic tag and language
(per analysis and per chunk); an English query finds each of them (dense
side across languages, the lexical side gated); German speech gets a
language per segment; and an existing MiniLM deployment moves to the
multilingual model with the online reindex while searches keep working.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
import threading
from collections.abc import Iterator

import grpc
import pytest

from tests.fixtures import speech
from tests.support.server import ServerProcess
from tests.support.upload import upload_requests
from understanding.sinks.edge_store import read_alias
from understanding.v1 import common_pb2
from understanding.v1 import understanding_pb2 as pb

MULTILINGUAL = "universal-sentence-encoder-multilingual-3"
MINILM = "all-MiniLM-L6-v2"
# (media id, language, text, topic it is about, an English query that must find it)
TEXTS = [
    ("ko-football", "ko", "오늘 축구 경기 정말 재미있었어. 손흥민이 두 골을 넣었고 우리 팀이 이겼어.", "topic.sports",
     "football match, two goals and our team won"),
    ("ja-flight", "ja", "東京行きの飛行機が三時間も遅れたので、空港近くのホテルに泊まりました。", "topic.travel",
     "our flight to Tokyo was delayed and we stayed at an airport hotel"),
    ("ar-recipe", "ar", "وصفة سهلة: نطبخ الأرز مع الدجاج والبصل والثوم، ثم نضيف الملح والبهارات.", "topic.food",
     "an easy recipe for rice with chicken, onion and garlic"),
    ("de-bayern", "de", "Das Spiel war fantastisch, Bayern hat 3:0 gewonnen und die Fans feierten im Stadion.", "topic.sports",
     "Bayern won the game three to nil"),
]  # fmt: skip
# English neighbours, so a cross-lingual hit has to beat same-language text.
ENGLISH = {
    "en-meeting": "The meeting is moved to Thursday at 3 pm in room 204, please bring the quarterly report.",
    "en-printer": "The printer on the second floor is out of toner again, please order a new cartridge.",
    "en-garden": "Remember to water the tomato plants in the garden every evening this week.",
}
MD = [("x-tenant-id", "e2e-multilingual")]


@pytest.fixture(scope="module")
def indexed(server: ServerProcess) -> dict[str, common_pb2.Analysis]:
    items = [pb.TextItem(media_id=m, text=t) for m, _, t, _, _ in TEXTS]
    items += [pb.TextItem(media_id=m, text=t) for m, t in ENGLISH.items()]
    response = server.stub.AnalyzeText(pb.AnalyzeTextRequest(items=items), metadata=MD, timeout=120)
    return {r.media_id: r for r in response.results}


@pytest.mark.parametrize(("media_id", "language", "topic"), [(m, lang, topic) for m, lang, _, topic, _ in TEXTS])
def test_each_language_gets_its_topic_tag_and_language(
    indexed: dict[str, common_pb2.Analysis], media_id: str, language: str, topic: str
) -> None:
    result = indexed[media_id]
    assert result.embedding_model.name == MULTILINGUAL
    assert result.language.code == language and result.language.probability > 0.5
    assert [c.language.code for c in result.chunks] == [language]
    assert topic in {t.label for t in result.tags}, [(t.label, t.score) for t in result.tags]
    assert not [t for t in result.tags if t.group == "safety"], result.tags


def test_english_texts_stay_untagged(indexed: dict[str, common_pb2.Analysis]) -> None:
    for media_id in ENGLISH:
        assert not indexed[media_id].tags, (media_id, indexed[media_id].tags)


@pytest.mark.parametrize(("media_id", "language", "query"), [(m, lang, q) for m, lang, _, _, q in TEXTS])
def test_an_english_query_finds_each_language(
    server: ServerProcess, indexed: dict[str, common_pb2.Analysis], media_id: str, language: str, query: str
) -> None:
    for mode in (pb.SEARCH_MODE_UNSPECIFIED, pb.SEARCH_MODE_DENSE):  # hybrid (the default) and dense
        hits = server.stub.Search(pb.SearchRequest(text=query, top_k=3, mode=mode), metadata=MD, timeout=60).hits
        assert hits and hits[0].media_id == media_id, (mode, [h.media_id for h in hits])
        assert hits[0].language.code == language
    # The stored language is filterable.
    only = server.stub.Search(
        pb.SearchRequest(text=query, top_k=10, filter=pb.SearchFilter(languages=[language])), metadata=MD, timeout=60
    ).hits
    assert {h.media_id for h in only} == {m for m, lang, *_ in TEXTS if lang == language}


def test_a_keyword_finds_its_sentence_in_unspaced_scripts(
    server: ServerProcess, indexed: dict[str, common_pb2.Analysis]
) -> None:
    for query, media_id in (("飛行機", "ja-flight"), ("손흥민", "ko-football"), ("Bayern", "de-bayern")):
        hits = server.stub.Search(pb.SearchRequest(text=query, top_k=3), metadata=MD, timeout=60).hits
        assert hits and hits[0].media_id == media_id, (query, [h.media_id for h in hits])
        assert query.lower() in hits[0].matched_terms, hits[0].matched_terms


def test_german_speech_gets_a_language_per_segment(server: ServerProcess, tmp_path: pathlib.Path) -> None:
    said = "Das Spiel war fantastisch. Die Mannschaft hat drei zu null gewonnen und die Fans haben gefeiert."
    wav = speech.make_speech_wav(said, tmp_path / "de.wav", voice="de")
    header = pb.UploadHeader(filename=wav.name, media_id="de-call")
    analysis = server.stub.Transcribe(upload_requests(wav, header), metadata=MD, timeout=300).analysis
    transcript = analysis.transcript
    assert transcript.language.code == "de"
    assert transcript.segments and all(s.language.code == "de" for s in transcript.segments)
    assert analysis.chunks and all(c.language.code == "de" for c in analysis.chunks)
    hits = server.stub.Search(
        pb.SearchRequest(text="the team won three to nothing", top_k=5, filter=pb.SearchFilter(modalities=[2])),
        metadata=MD,
        timeout=60,
    ).hits
    assert hits and hits[0].media_id == "de-call" and hits[0].language.code == "de"


# ---------------------------------------------------------------- an existing MiniLM deployment moves
ADMIN_KEY = "admin-key-multilingual"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def minilm_deployment(tmp_path: pathlib.Path) -> Iterator[ServerProcess]:
    """A data directory written by MiniLM, as deployments from before the multilingual default have it."""
    env = {"UNDERSTANDING_ADMIN_API_KEYS": f"ops:{_sha(ADMIN_KEY)}"}
    old = ServerProcess(tmp_path / "data", env={**env, "UNDERSTANDING_EMBEDDING_MODEL": "minilm"}).start()
    try:
        old.wait_serving(timeout_s=240)
        items = [pb.TextItem(media_id=m, text=t) for m, _, t, _, _ in TEXTS]
        items += [pb.TextItem(media_id=m, text=t) for m, t in ENGLISH.items()]
        old.stub.AnalyzeText(pb.AnalyzeTextRequest(items=items), metadata=MD, timeout=120)
    finally:
        assert old.stop() == 0, old.log()
    # The upgrade: same data, settings left at their defaults.
    server = ServerProcess(tmp_path / "data", env=env).start()
    try:
        server.wait_serving(timeout_s=240)
        yield server
    finally:
        server.stop()


def test_an_existing_minilm_deployment_moves_to_the_multilingual_model(minilm_deployment: ServerProcess) -> None:
    server = minilm_deployment
    alias = read_alias(server.data_dir / "qdrant-edge", "understanding")
    assert alias is not None and MINILM in alias.collection
    # At the default setting the server keeps serving the model its data was built with.
    before = server.stub.Search(pb.SearchRequest(text="printer toner cartridge", top_k=3), metadata=MD, timeout=60)
    assert before.embedding_model.name == MINILM and before.hits[0].media_id == "en-printer"
    assert "moves this deployment to the multilingual model" in server.log_path.read_text()

    errors: list[str] = []
    models_seen: set[str] = set()
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                response = server.stub.Search(pb.SearchRequest(text="printer toner", top_k=3), metadata=MD, timeout=60)
                models_seen.add(response.embedding_model.name)
                if not response.hits or response.hits[0].media_id != "en-printer":
                    errors.append(f"search during the reindex: {[h.media_id for h in response.hits]}")
            except grpc.RpcError as error:
                errors.append(f"Search: {error.code().name} {error.details()}")

    thread = threading.Thread(target=reader)
    thread.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSTANDING_") or k == "UNDERSTANDING_CACHE"}
    try:
        moved = subprocess.run(
            [sys.executable, "-m", "understanding", "reindex", "--to-model", "multilingual", "--server", server.target,
             "--api-key", ADMIN_KEY, "--json"],
            env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    finally:
        done.set()
        thread.join(120)
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert not errors, errors[:5]
    assert MULTILINGUAL in models_seen and models_seen <= {MINILM, MULTILINGUAL}, models_seen

    # Every point was re-embedded: an English query now finds the Korean and Japanese texts.
    for media_id, _, _, _, query in TEXTS:
        hits = server.stub.Search(pb.SearchRequest(text=query, top_k=3), metadata=MD, timeout=60).hits
        assert hits[0].media_id == media_id and hits[0].embedding_model.name == MULTILINGUAL
    alias = read_alias(server.data_dir / "qdrant-edge", "understanding")
    assert alias is not None and MULTILINGUAL in alias.collection and alias.model_path == "multilingual"
    # A restart, still at the default setting, serves the multilingual model.
    assert server.stop() == 0
    server.start()
    server.wait_serving(timeout_s=240)
    tagged = server.stub.AnalyzeText(
        pb.AnalyzeTextRequest(items=[pb.TextItem(media_id="ko-2", text=TEXTS[0][2])]), metadata=MD, timeout=60
    ).results[0]
    assert tagged.embedding_model.name == MULTILINGUAL and "topic.sports" in {t.label for t in tagged.tags}
