"""Every method of the sync Client against the real server (embedded store, real Kafka)."""

from __future__ import annotations

import hashlib
import io
import math
import os
import pathlib
import threading

import pytest

from tests.fixtures import speech
from tests.support.server import ServerProcess
from understanding.v1 import common_pb2
from understanding.v1 import understanding_pb2 as pb
from understanding_client import (
    NO_RETRY,
    AlreadyExists,
    Analysis,
    Client,
    DeadlineExceeded,
    Decision,
    FailedPrecondition,
    InvalidArgument,
    JobState,
    Modality,
    ModerationOptions,
    NotFound,
    ResourceExhausted,
    SearchResults,
    SpeechOptions,
    TextItem,
    UnderstandingError,
    Unimplemented,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAY = "The delivery truck will arrive at the warehouse tomorrow morning at eight."


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return speech.make_speech_wav(SAY, tmp_path_factory.mktemp("sdk") / "say.wav")


def test_analyze_text_typed_results(client: Client) -> None:
    results = client.analyze_text(
        [
            TextItem("Messi scored twice and Barcelona won the league", media_id="sdk-sports", metadata={"src": "t1"}),
            "A pasta recipe with garlic and olive oil",
        ],
        return_embeddings=True,
    )
    assert [type(r) for r in results] == [Analysis, Analysis]
    sports, food = results
    assert sports.media_id == "sdk-sports" and sports.modality is Modality.TEXT
    assert sports.tenant == client.config.tenant and sports.metadata == {"src": "t1"}
    assert "topic.sports" in {t.label for t in sports.tags} and "topic.food" in {t.label for t in food.tags}
    assert food.media_id.startswith("txt-")  # derived from the content by the server
    assert sports.language is not None and sports.language.code == "en"
    assert sports.created_at is not None and sports.created_at.tzinfo is not None and sports.version > 0
    chunk = sports.chunks[0]
    assert len(chunk.embedding) == 512 and chunk.point_id and chunk.text.startswith("Messi")
    assert (
        sports.embedding_model is not None
        and sports.embedding_model.name == "universal-sentence-encoder-multilingual-3"
    )
    # .raw is the protobuf message, kept out of equality and repr.
    assert isinstance(sports.raw, common_pb2.Analysis) and sports.raw.media_id == "sdk-sports"
    assert "raw=" not in repr(sports.chunks[0].tags[0])
    with pytest.raises(AttributeError):
        sports.media_id = "x"  # type: ignore[misc]  # frozen
    # A single string is one item; dry_run indexes nothing.
    [dry] = client.analyze_text("Nothing is stored for this text", dry_run=True)
    with pytest.raises(NotFound):
        client.get_media(dry.media_id)


def test_moderation_typed_decision_evidence_and_search_filter(client: Client) -> None:
    number = "+1 415 555 0132"
    text = f"Lovely chatting with you! Text me on {number} tonight."
    (plain,) = client.analyze_text(TextItem(text, media_id="sdk-mod-phone"))
    assert plain.moderation is not None and plain.moderation.decision is Decision.REVIEW
    assert "contact.phone" in plain.moderation.flagged
    (phone,) = [c for c in plain.moderation.categories if c.category == "contact.phone"]
    (evidence,) = phone.evidence
    assert evidence.span is not None and text[evidence.span[0] : evidence.span[1]] == number
    assert evidence.text == number and not evidence.redacted
    (masked,) = client.analyze_text(
        TextItem(text, media_id="sdk-mod-masked"), moderation=ModerationOptions(redact_pii=True)
    )
    assert masked.moderation is not None
    hidden = [e for c in masked.moderation.categories if c.category == "contact.phone" for e in c.evidence]
    assert hidden and all(e.redacted and e.text == "" for e in hidden)
    with pytest.raises(InvalidArgument):
        client.analyze_text(text, moderation=ModerationOptions(policy="no-such-policy"))
    hits = client.search("chatting tonight", top_k=10, decisions=[Decision.REVIEW, Decision.BLOCK])
    assert {"sdk-mod-phone", "sdk-mod-masked"} <= {h.media_id for h in hits.hits}
    assert all(h.decision in (Decision.REVIEW, Decision.BLOCK) for h in hits.hits)


def test_search_text_vector_example_filters_and_pages(client: Client) -> None:
    music, weather, _ = client.analyze_text(
        [
            TextItem("The band played their new song at the concert", media_id="s-music", metadata={"lang": "en"}),
            TextItem("Messi scored twice and Barcelona won the league", media_id="s-weather"),
            TextItem("The orchestra performed a symphony to a full hall", media_id="s-music-2"),
        ],
        return_embeddings=True,
    )
    hits = client.search("live music show", top_k=3)
    assert isinstance(hits, SearchResults) and hits[0].media_id in {"s-music", "s-music-2"}
    assert hits[0].modality is Modality.TEXT and hits[0].score > 0 and hits.embedding_model is not None
    assert isinstance(hits.raw, pb.SearchResponse)

    by_vector = client.search(vector=music.chunks[0].embedding, top_k=1, with_vectors=True)
    assert by_vector[0].media_id == "s-music" and len(by_vector[0].vector) == 512
    by_example = client.search(example="s-music", top_k=3)
    assert "s-music-2" in {h.media_id for h in by_example}

    only = client.search("music", media_ids=["s-weather"], top_k=5)
    assert {h.media_id for h in only} == {"s-weather"}
    assert weather.tags, "the sports text should be tagged"
    tagged = client.search("music", tags_any=[weather.tags[0].label], modalities=["text"], mode="dense", top_k=5)
    assert tagged.hits and {h.media_id for h in tagged} == {"s-weather"}
    meta = client.search("music", metadata={"lang": "en"}, mode="dense", top_k=5)
    assert {h.media_id for h in meta} == {"s-music"}

    first = client.search("music", top_k=1, mode="dense")
    assert len(first) == 1 and first.next_cursor
    second = client.search("music", top_k=1, mode="dense", cursor=first.next_cursor)
    assert second[0].point_id != first[0].point_id

    with pytest.raises(InvalidArgument) as err:
        client.search(" ")
    assert err.value.code == "INVALID_ARGUMENT" and "query" in err.value.details.lower() or "text" in err.value.details
    with pytest.raises(ValueError):
        client.search("x", vector=[1.0])


def test_get_and_delete_media(client: Client) -> None:
    client.analyze_text(TextItem("A short note about gardening and tomato plants", media_id="sdk-media-1"))
    media = client.get_media("sdk-media-1")
    assert media.media_id == "sdk-media-1" and media.modality is Modality.TEXT and media.version > 0
    assert media.points and media.points[0].text.startswith("A short note")
    assert client.delete_media("sdk-media-1") == len(media.points)
    with pytest.raises(NotFound) as err:
        client.get_media("sdk-media-1")
    assert err.value.code == "NOT_FOUND" and "sdk-media-1" in str(err.value)
    with pytest.raises(NotFound):
        client.delete_media("sdk-media-1")


def test_transcribe_path_file_object_bytes_with_progress(client: Client, wav: pathlib.Path) -> None:
    seen: list[tuple[int, int | None]] = []
    analysis = client.transcribe(
        wav,
        media_id="sdk-say",
        word_timestamps=True,
        metadata={"room": "r1"},
        progress=lambda sent, total: seen.append((sent, total)),
    )
    size = wav.stat().st_size
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert analysis.modality is Modality.SPEECH and analysis.media_id == "sdk-say"
    t = analysis.transcript
    assert t is not None and "warehouse" in t.text.lower() and t.language is not None and t.language.code == "en"
    words = [w for s in t.segments for w in s.words]
    assert words and all(w.start_s <= w.end_s for w in words)
    assert analysis.chunks and analysis.chunks[0].end_s > analysis.chunks[0].start_s

    with wav.open("rb") as fh:  # a file object, read in chunks
        from_file = client.transcribe(fh, media_id="sdk-say-file", language="en")
    assert from_file.transcript is not None and "warehouse" in from_file.transcript.text.lower()
    from_bytes = client.transcribe(wav.read_bytes(), filename="say.wav", dry_run=True)
    assert from_bytes.transcript is not None and from_bytes.transcript.segments

    with pytest.raises(InvalidArgument) as err:
        client.transcribe(b"this is not audio at all" * 100)
    assert "decodable" in err.value.details
    with pytest.raises(FileNotFoundError):
        client.transcribe(wav.with_name("missing.wav"))


def _video_implemented() -> bool:
    return "async def AnalyzeVideo" in (ROOT / "understanding" / "api" / "servicer.py").read_text()


def test_analyze_video(client: Client, wav: pathlib.Path, tmp_path: pathlib.Path) -> None:
    video = speech.make_video(tmp_path / "clip.mp4", audio=wav)
    seen: list[int] = []
    try:
        analysis = client.analyze_video(
            video, media_id="sdk-video", return_keyframes=True, progress=lambda sent, total: seen.append(sent)
        )
    except Unimplemented as error:
        assert not _video_implemented(), "the server implements AnalyzeVideo, yet it answered UNIMPLEMENTED"
        assert error.code == "UNIMPLEMENTED" and "upgrade the server" in str(error)
        return
    assert seen[-1] == video.stat().st_size
    assert analysis.modality is Modality.VIDEO and analysis.media_id == "sdk-video"
    assert analysis.video is not None and analysis.video.has_audio and analysis.video.duration_s > 1
    assert analysis.video.width == 64 and analysis.video.height == 48
    assert analysis.shots and analysis.shots[0].keyframe_jpeg[:2] == b"\xff\xd8"
    assert analysis.transcript is not None and "warehouse" in analysis.transcript.text.lower()


def test_upload_large_file_in_chunks_then_job(client: Client, tmp_path: pathlib.Path, wav: pathlib.Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 12345))
    size = big.stat().st_size
    calls: list[tuple[int, int | None]] = []
    small_chunks = Client(client.target, tenant=client.config.tenant, chunk_size=64 * 1024)
    try:
        upload = small_chunks.upload_media(big, progress=lambda sent, total: calls.append((sent, total)))
    finally:
        small_chunks.close()
    assert upload.upload_id.startswith("upl-") and upload.size_bytes == size
    assert upload.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert len(calls) == math.ceil(size / (64 * 1024)) + 1  # (0, total) first, then one per chunk
    sent = [s for s, _ in calls]
    assert sent == sorted(sent) and sent[-1] == size and {t for _, t in calls} == {size}

    # Real media uploaded, then referenced by a job.
    speech_upload = client.upload_media(wav)
    job = client.submit_job(upload_id=speech_upload.upload_id, modality="speech", media_id="sdk-by-ref")
    done = client.wait_job(job.job_id, timeout=180)
    assert done.state is JobState.SUCCEEDED and done.result is not None
    assert done.result.transcript is not None and "warehouse" in done.result.transcript.text.lower()


def test_jobs_submit_watch_get_list_cancel(client: Client, wav: pathlib.Path, tmp_path: pathlib.Path) -> None:
    text_job = client.submit_job(text="A pasta recipe with garlic and olive oil", idempotency_key="sdk-order-1")
    assert text_job.job_id.startswith("job-") and text_job.state is JobState.QUEUED
    assert text_job.modality is Modality.TEXT and text_job.idempotency_key == "sdk-order-1"
    again = client.submit_job(text="A pasta recipe with garlic and olive oil", idempotency_key="sdk-order-1")
    assert again.job_id == text_job.job_id
    with pytest.raises(AlreadyExists) as err:
        client.submit_job(text="Something else", idempotency_key="sdk-order-1")
    assert "idempotency_key" in err.value.details

    progress: list[tuple[JobState, float]] = []
    uploaded: list[int] = []
    speech_job = client.submit_job(
        source=wav,
        modality="speech",
        media_id="sdk-job-audio",
        speech=SpeechOptions(word_timestamps=True),
        progress=lambda sent, total: uploaded.append(sent),
    )
    assert uploaded[-1] == wav.stat().st_size
    for update in client.watch_job(speech_job.job_id, timeout=180):
        progress.append((update.state, update.progress.fraction))
    assert progress[-1][0] is JobState.SUCCEEDED and JobState.RUNNING in {s for s, _ in progress}
    fractions = [f for _, f in progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    final = client.get_job(speech_job.job_id)
    assert final.done and final.attempts == 1 and final.finished_at is not None and final.created_at is not None
    assert final.result is not None and final.result.transcript is not None
    assert client.wait_job(text_job.job_id, timeout=300).state is JobState.SUCCEEDED

    page = client.list_jobs(page_size=1)
    assert len(page) == 1 and page.next_page_token
    everything = list(client.iter_jobs(page_size=1))
    assert {j.job_id for j in everything} == {text_job.job_id, speech_job.job_id}
    succeeded = client.list_jobs(states=[JobState.SUCCEEDED, "failed"])
    assert {j.job_id for j in succeeded} == {text_job.job_id, speech_job.job_id}

    with pytest.raises(FailedPrecondition):
        client.cancel_job(text_job.job_id)
    parts: list[pathlib.Path | float] = []
    for i in range(6):
        parts += [
            speech.make_speech_wav(
                f"Paragraph {i}: the committee discussed the bridge design.", tmp_path / f"c{i}.wav"
            ),
            0.5,
        ]
    long_wav = tmp_path / "long.wav"
    speech.concat_with_silence(parts, long_wav)
    long_job = client.submit_job(source=long_wav, modality=Modality.SPEECH, media_id="sdk-cancel")
    cancelled = client.cancel_job(long_job.job_id)
    assert cancelled.state in (JobState.CANCELLED, JobState.RUNNING)
    # A running transcription stops at its next segment: a window of audio, slow on a busy machine.
    assert client.wait_job(long_job.job_id, timeout=600).state is JobState.CANCELLED

    with pytest.raises(NotFound):
        client.get_job("job-nope")
    with pytest.raises(NotFound):
        list(client.watch_job("job-nope"))
    with pytest.raises(ValueError, match="exactly one"):
        client.submit_job(text="x", source=wav)
    with pytest.raises(ValueError, match="modality"):
        client.submit_job(source=wav)


def test_limits_deadline_and_error_data(client: Client, wav: pathlib.Path) -> None:
    # The session server allows 16 texts per call: a permanent limit, no retry hint.
    with pytest.raises(ResourceExhausted) as err:
        client.analyze_text([f"text number {i}" for i in range(17)])
    assert err.value.retry_after_s is None and not err.value.retriable and "items" in err.value.details

    # A deadline that cannot be met: DEADLINE_EXCEEDED (raised without a retry by default:
    # tests/unit/clients/test_shells.py counts the attempts).
    with pytest.raises(DeadlineExceeded) as deadline:
        client.transcribe(wav, timeout=0.05)
    assert deadline.value.code == "DEADLINE_EXCEEDED"
    assert isinstance(deadline.value, UnderstandingError) and "timeout" in str(deadline.value)

    # A non-seekable source streams fine once (it is simply not retried).
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as w:
            w.write(wav.read_bytes())

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    with os.fdopen(read_fd, "rb") as pipe:
        got = client.transcribe(pipe, filename="say.wav", dry_run=True, timeout=120)
    writer.join(10)
    assert got.transcript is not None and "warehouse" in got.transcript.text.lower()


def test_no_retry_client_and_unavailable(tmp_path: pathlib.Path) -> None:
    from tests.support.server import free_port

    # Nobody listens: refused at once, so UNAVAILABLE (waiting out the deadline would be DEADLINE_EXCEEDED).
    with Client(f"127.0.0.1:{free_port()}", tenant="x", retry=NO_RETRY, timeout_s=120) as nobody:
        with pytest.raises(UnderstandingError) as err:
            nobody.analyze_text("hello")
    assert err.value.code == "UNAVAILABLE" and err.value.retriable
    assert "server is down" in str(err.value)


def test_file_object_at_an_offset(client: Client, wav: pathlib.Path) -> None:
    """A seekable file is uploaded from its current position (e.g. after a container header)."""
    data = b"JUNKJUNK" + wav.read_bytes()
    fh = io.BytesIO(data)
    fh.seek(8)
    got: list[int | None] = []
    analysis = client.transcribe(fh, dry_run=True, progress=lambda s, total: got.append(total))
    assert got[0] == len(data) - 8 and analysis.transcript is not None


def test_server_target_from_environment(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNDERSTANDING_SERVER", server.target)
    monkeypatch.setenv("UNDERSTANDING_TENANT", "sdk-env")
    with Client() as c:
        [a] = c.analyze_text("Configured from the environment", dry_run=True)
    assert c.target == server.target and a.tenant == "sdk-env"
