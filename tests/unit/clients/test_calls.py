"""The SDK's request-building core (understanding_client._calls), without a server.

Each operation is described once there: the request, its validation, whether a
retry is safe, how the answer becomes typed results, and the retry decisions.
The shells that send these calls are tests/unit/clients/test_shells.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from typing import Any

import grpc
import pytest

from understanding.v1 import admin_pb2, common_pb2, jobs_pb2
from understanding.v1 import understanding_pb2 as pb
from understanding_client import (
    NO_RETRY,
    Analysis,
    InvalidArgument,
    Job,
    JobState,
    Modality,
    ReindexPhase,
    ReindexProgress,
    ResourceExhausted,
    RetryPolicy,
    SpeechOptions,
    TextItem,
    Unavailable,
    VideoOptions,
    _calls,
)
from understanding_client.upload import UploadSource


class RpcError(grpc.RpcError):
    """What gRPC raises for a failed call: a status code, details and trailers."""

    def __init__(self, code: grpc.StatusCode, details: str = "", trailers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(details)
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._trailers


def sent(call: _calls.Call[Any]) -> list[Any]:
    """The messages of one attempt of a client-streaming call."""
    return list(call.messages())


def upload_kwargs(**overrides: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "media_id": "",
        "language": "",
        "translate": False,
        "word_timestamps": False,
        "vad": True,
        "initial_prompt": "",
        "hotwords": "",
        "beam_size": 0,
        "diarize": True,
        "num_speakers": None,
        "channels": "auto",
        "metadata": None,
        "filename": None,
        "mime_type": "",
        "return_embeddings": False,
        "dry_run": False,
        "progress": None,
    }
    return defaults | overrides


def job_kwargs(**overrides: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "text": None,
        "source": None,
        "upload_id": "",
        "modality": None,
        "media_id": "",
        "idempotency_key": None,
        "speech": None,
        "video": None,
        "metadata": None,
        "filename": None,
        "mime_type": "",
        "progress": None,
    }
    return defaults | overrides


# ---------------------------------------------------------------- requests and conversion
def test_analyze_text_call() -> None:
    call = _calls.analyze_text(
        [TextItem("first", media_id="m-1", metadata={"k": "v"}), "second"],
        media_id="",
        metadata=None,
        return_embeddings=True,
        dry_run=False,
    )
    assert call.method == "AnalyzeText" and call.idempotent and not call.streaming
    request = call.messages()
    assert [(i.text, i.media_id, dict(i.metadata)) for i in request.items] == [
        ("first", "m-1", {"k": "v"}),
        ("second", "", {}),
    ]
    assert request.options.return_embeddings and not request.options.dry_run
    response = pb.AnalyzeTextResponse(
        results=[
            common_pb2.Analysis(media_id="m-1", modality=common_pb2.MODALITY_TEXT, tags=[common_pb2.Tag(label="x")])
        ]
    )
    [analysis] = call.convert(response)
    assert isinstance(analysis, Analysis) and analysis.modality is Modality.TEXT and analysis.tags[0].label == "x"
    assert analysis.raw is response.results[0]


def test_analyze_text_rejects_what_it_cannot_send() -> None:
    with pytest.raises(ValueError, match="single str"):
        _calls.analyze_text(["a", "b"], media_id="m", metadata=None, return_embeddings=False, dry_run=False)
    with pytest.raises(TypeError, match="str or TextItem"):
        _calls.analyze_text([b"bytes"], media_id="", metadata=None, return_embeddings=False, dry_run=False)  # type: ignore[list-item]


def test_upload_stream_is_header_chunks_end_and_replays_from_the_start() -> None:
    data = os.urandom(10_000)
    progress: list[tuple[int, int | None]] = []
    source = UploadSource(data, chunk_size=4096)
    call = _calls.transcribe(
        source,
        **upload_kwargs(
            media_id="m",
            language="de",
            translate=True,
            word_timestamps=True,
            filename="a.wav",
            progress=lambda s, t: progress.append((s, t)),
        ),
    )
    assert call.method == "Transcribe" and call.streaming and call.idempotent
    first = sent(call)
    header = first[0].header
    assert header.media_id == "m" and header.filename == "a.wav" and header.size_bytes == len(data)
    assert (
        header.speech.language == "de"
        and header.speech.task == pb.SPEECH_TASK_TRANSLATE
        and header.speech.word_timestamps
    )
    assert not header.HasField("text")  # no text options asked for: the server's defaults
    assert b"".join(m.chunk for m in first[1:-1]) == data and [len(m.chunk) for m in first[1:-1]] == [4096, 4096, 1808]
    assert first[-1].end.sha256 == hashlib.sha256(data).hexdigest()
    assert progress == [(0, 10_000), (4096, 10_000), (8192, 10_000), (10_000, 10_000)]
    # A retry makes a new stream from the start (and the progress starts over).
    assert sent(call) == first and progress[4] == (0, 10_000)
    assert call.convert(pb.TranscribeResponse(analysis=common_pb2.Analysis(media_id="m"))).media_id == "m"


def test_upload_of_a_pipe_is_sent_once_and_never_retried() -> None:
    read_fd, write_fd = os.pipe()
    os.close(write_fd)  # an empty stream that cannot be read twice
    with os.fdopen(read_fd, "rb") as pipe:
        call = _calls.upload_media(UploadSource(pipe), filename=None, mime_type="", media_id="", progress=None)
        assert not call.idempotent
        assert [m.WhichOneof("payload") for m in sent(call)] == ["header", "end"]
        with pytest.raises(Exception, match="not seekable"):
            sent(call)


def test_video_call_carries_video_and_speech_options() -> None:
    call = _calls.analyze_video(
        UploadSource(io.BytesIO(b"x" * 10)),
        media_id="v",
        sample_fps=4.0,
        return_keyframes=True,
        skip_audio=False,
        speech=SpeechOptions(language="en"),
        metadata={"a": "b"},
        filename="v.mp4",
        mime_type="video/mp4",
        return_embeddings=False,
        dry_run=True,
        progress=None,
    )
    header = sent(call)[0].header
    assert call.method == "AnalyzeVideo" and header.video.sample_fps == 4.0 and header.video.return_keyframes
    assert header.speech.language == "en" and header.text.dry_run and dict(header.metadata) == {"a": "b"}
    assert header.mime_type == "video/mp4" and header.size_bytes == 10


def test_submit_job_makes_up_a_key_so_a_retry_cannot_create_a_second_job() -> None:
    call = _calls.submit_job(**job_kwargs(text="some text"))
    [request] = sent(call)
    assert request.spec.idempotency_key.startswith("sdk-") and request.spec.modality == common_pb2.MODALITY_TEXT
    assert request.spec.text == "some text" and call.idempotent
    other = sent(_calls.submit_job(**job_kwargs(text="some text")))[0]
    assert other.spec.idempotency_key != request.spec.idempotency_key
    # No key at all ("") is never retried; the caller's key is kept.
    assert not _calls.submit_job(**job_kwargs(text="t", idempotency_key="")).idempotent
    assert sent(_calls.submit_job(**job_kwargs(text="t", idempotency_key="k-1")))[0].spec.idempotency_key == "k-1"
    job = call.convert(jobs_pb2.Job(job_id="job-1", state=jobs_pb2.JOB_STATE_QUEUED))
    assert isinstance(job, Job) and job.state is JobState.QUEUED and not job.done


def test_submit_job_with_media_and_by_reference() -> None:
    data = b"\x00" * 5000
    call = _calls.submit_job(
        **job_kwargs(
            source=UploadSource(data, chunk_size=2048),
            modality="speech",
            media_id="m",
            speech=SpeechOptions(word_timestamps=True),
            video=VideoOptions(sample_fps=1.0),
        )
    )
    messages = sent(call)
    spec = messages[0].spec
    assert (
        spec.modality == common_pb2.MODALITY_SPEECH
        and spec.media.size_bytes == 5000
        and spec.media.speech.word_timestamps
    )
    assert (
        b"".join(m.chunk for m in messages[1:-1]) == data
        and messages[-1].end.sha256 == hashlib.sha256(data).hexdigest()
    )
    by_ref = sent(_calls.submit_job(**job_kwargs(upload_id="upl-1", modality=Modality.VIDEO)))
    assert (
        len(by_ref) == 1
        and by_ref[0].spec.upload_id == "upl-1"
        and by_ref[0].spec.modality == common_pb2.MODALITY_VIDEO
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "t", "upload_id": "upl-1"}, "exactly one"),
        ({}, "exactly one"),
        ({"upload_id": "upl-1"}, "modality"),
        ({"upload_id": "upl-1", "modality": "smell"}, "unknown modality"),
    ],
)
def test_submit_job_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _calls.submit_job(**job_kwargs(**kwargs))


def test_unary_job_and_media_calls() -> None:
    assert _calls.get_job("job-1").messages() == pb.GetJobRequest(job_id="job-1")
    assert _calls.cancel_job("job-1").idempotent and _calls.cancel_job("job-1").method == "CancelJob"
    listing = _calls.list_jobs([JobState.SUCCEEDED, "failed"], 5, "tok")
    assert list(listing.messages().states) == [jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED]
    page = listing.convert(pb.ListJobsResponse(jobs=[jobs_pb2.Job(job_id="a")], next_page_token="n"))
    assert [j.job_id for j in page] == ["a"] and page.next_page_token == "n"
    media = _calls.get_media("m").convert(pb.GetMediaResponse(media_id="m", modality=common_pb2.MODALITY_SPEECH))
    assert media.modality is Modality.SPEECH
    delete = _calls.delete_media("m")
    assert not delete.idempotent and delete.convert(pb.DeleteMediaResponse(points_deleted=7)) == 7


def test_search_call() -> None:
    call = _calls.search(
        "music",
        vector=None,
        example=None,
        top_k=3,
        filters={"modalities": ["speech"], "tags_any": ["topic.music"], "mode": "dense", "score_threshold": None},
    )
    request = call.messages()
    assert request.text == "music" and request.top_k == 3 and request.mode == pb.SEARCH_MODE_DENSE
    assert list(request.filter.modalities) == [common_pb2.MODALITY_SPEECH] and list(request.filter.tags.any) == [
        "topic.music"
    ]
    assert not _calls.search("x", vector=None, example=None, top_k=1, filters={}).messages().HasField("filter")
    example = _calls.search(None, vector=None, example=("m", 2), top_k=1, filters={}).messages().example
    assert (example.media_id, example.chunk_index) == ("m", 2)
    with pytest.raises(ValueError, match="exactly one"):
        _calls.search("x", vector=[1.0], example=None, top_k=1, filters={})
    with pytest.raises(ValueError, match="mode"):
        _calls.search("x", vector=None, example=None, top_k=1, filters={"mode": "fuzzy"})


def test_watch_job_stops_at_a_terminal_state_and_may_resume() -> None:
    call = _calls.watch_job("job-1")
    assert call.method == "WatchJob" and call.resumable and call.request.job_id == "job-1"
    running = call.convert(jobs_pb2.Job(state=jobs_pb2.JOB_STATE_RUNNING))
    done = call.convert(jobs_pb2.Job(state=jobs_pb2.JOB_STATE_CANCELLED))
    assert not call.last(running) and call.last(done)


def test_reindex_calls() -> None:
    call = _calls.reindex("/models/x", batch_size=64, no_switch=True)
    assert call.method == "Reindex" and not call.resumable
    assert call.request == admin_pb2.ReindexRequest(model_path="/models/x", batch_size=64, no_switch=True)
    message = admin_pb2.ReindexProgress(
        phase=admin_pb2.REINDEX_PHASE_CATCHING_UP,
        alias="understanding",
        model=common_pb2.ModelRef(name="m", version="1"),
        total_points=10,
        done_points=4,
        passes=2,
        elapsed_seconds=1.5,
        write_pause_seconds=0.01,
    )
    progress = call.convert(message)
    assert isinstance(progress, ReindexProgress) and progress.phase is ReindexPhase.CATCHING_UP and not progress.done
    assert progress.model is not None and progress.model.name == "m" and progress.elapsed_s == 1.5
    # The stream is read to its end: a FAILED update is followed by the error status.
    assert not call.last(call.convert(admin_pb2.ReindexProgress(phase=admin_pb2.REINDEX_PHASE_FAILED)))
    assert ReindexProgress.from_pb(admin_pb2.ReindexProgress(phase=admin_pb2.REINDEX_PHASE_FAILED)).done
    assert ReindexPhase.from_pb(99) is ReindexPhase.UNSPECIFIED  # a phase added later does not break old clients
    with pytest.raises(ValueError, match="batch_size"):
        _calls.reindex("x", batch_size=-1, no_switch=False)
    assert _calls.get_reindex().idempotent and _calls.get_reindex().method == "GetReindex"


# ---------------------------------------------------------------- retry decisions
def test_attempts_retry_unavailable_until_the_policy_gives_up() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.5, multiplier=2.0, jitter=0.0)
    attempts = _calls.Attempts("GetJob", policy, retry=True)
    delays = []
    for _ in range(2):
        attempts.started()
        delays.append(attempts.failed(RpcError(grpc.StatusCode.UNAVAILABLE, "down")))
    assert delays == [0.5, 1.0]
    attempts.started()
    with pytest.raises(Unavailable) as error:
        attempts.failed(RpcError(grpc.StatusCode.UNAVAILABLE, "still down"))
    assert error.value.method == "GetJob" and error.value.details == "still down"
    assert isinstance(error.value.__cause__, RpcError)


def test_attempts_never_retry_what_is_not_idempotent_or_not_retriable() -> None:
    unsafe = _calls.Attempts("DeleteMedia", RetryPolicy(), retry=False)
    unsafe.started()
    with pytest.raises(Unavailable):
        unsafe.failed(RpcError(grpc.StatusCode.UNAVAILABLE))
    safe = _calls.Attempts("Search", RetryPolicy(), retry=True)
    safe.started()
    with pytest.raises(InvalidArgument):
        safe.failed(RpcError(grpc.StatusCode.INVALID_ARGUMENT, "text: empty"))
    no_retry = _calls.Attempts("Search", NO_RETRY, retry=True)
    no_retry.started()
    with pytest.raises(Unavailable):
        no_retry.failed(RpcError(grpc.StatusCode.UNAVAILABLE))


def test_attempts_wait_as_long_as_the_server_asks() -> None:
    attempts = _calls.Attempts("SubmitJob", RetryPolicy(max_retry_after_s=5.0), retry=True)
    attempts.started()
    assert attempts.failed(RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", (("retry-after-ms", "1500"),))) == 1.5
    attempts.started()
    assert attempts.failed(RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", (("retry-after-ms", "90000"),))) == 5.0
    attempts.started()
    with pytest.raises(ResourceExhausted) as error:  # a size limit: no hint, no retry
        attempts.failed(RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many items"))
    assert not error.value.retriable and error.value.retry_after_s is None


def test_a_stream_that_delivered_counts_its_failures_afresh() -> None:
    policy = RetryPolicy(max_attempts=2, jitter=0.0)
    attempts = _calls.Attempts("WatchJob", policy, retry=True)
    for _ in range(5):  # each re-opened stream delivers before it drops: never exhausted
        attempts.started()
        attempts.progressed()
        assert attempts.failed(RpcError(grpc.StatusCode.UNAVAILABLE)) == policy.initial_backoff_s
    attempts.started()
    attempts.failed(RpcError(grpc.StatusCode.UNAVAILABLE))
    attempts.started()
    with pytest.raises(Unavailable):
        attempts.failed(RpcError(grpc.StatusCode.UNAVAILABLE))


def test_backoff_grows_with_jitter_below_the_cap() -> None:
    policy = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=4.0, multiplier=2.0, jitter=0.5)
    rng = random.Random(7)
    error = Unavailable("down")
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)):
        delay = policy.delay_s(error, attempt, rng)
        assert full * 0.5 <= delay <= full


def test_deadline_spans_attempts() -> None:
    assert _calls.Deadline(None).remaining() is None
    remaining = _calls.Deadline(30.0).remaining()
    assert remaining is not None and 0 < remaining <= 30.0
    assert _calls.Deadline(0.0).remaining() == 0.0


def test_speaker_options_filter_and_results() -> None:
    speech = SpeechOptions(num_speakers=2, channels="separate").to_pb()
    assert speech.HasField("num_speakers") and speech.num_speakers == 2
    assert speech.channels == pb.CHANNEL_MODE_SEPARATE and not speech.disable_diarization
    default = SpeechOptions().to_pb()
    assert not default.HasField("num_speakers") and default.channels == pb.CHANNEL_MODE_AUTO
    assert SpeechOptions(diarize=False).to_pb().disable_diarization
    with pytest.raises(ValueError, match="channels"):
        SpeechOptions(channels="stereo").to_pb()
    header = sent(_calls.transcribe(UploadSource(b"x"), **upload_kwargs(num_speakers=3, channels="mix")))[0].header
    assert header.speech.num_speakers == 3 and header.speech.channels == pb.CHANNEL_MODE_MIX
    request = _calls.search("x", vector=None, example=None, top_k=1, filters={"speakers": ["CH2"]}).messages()
    assert list(request.filter.speakers) == ["CH2"]
    transcript = common_pb2.Transcript(
        segments=[common_pb2.Segment(text="hi", speaker="S1", words=[common_pb2.Word(text="hi", speaker="S1")])],
        speakers=[common_pb2.Speaker(label="S1", speaking_s=1.5, turns=1)],
        speaker_model=common_pb2.ModelRef(name="campplus", version="1"),
        speaker_method="clustering",
    )
    t = Analysis.from_pb(common_pb2.Analysis(media_id="m", transcript=transcript)).transcript
    assert t is not None and t.speaker_method == "clustering" and t.speaker_model is not None
    assert [(s.label, s.speaking_s, s.turns, s.channel) for s in t.speakers] == [("S1", 1.5, 1, 0)]
    assert t.segments[0].speaker == "S1" and t.segments[0].words[0].speaker == "S1"
    plain = Analysis.from_pb(common_pb2.Analysis(media_id="m", transcript=common_pb2.Transcript())).transcript
    assert plain is not None and plain.speaker_model is None and plain.speakers == ()
