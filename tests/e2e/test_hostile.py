"""A bad-input corpus against every RPC of a real server.

Hostile media (noise, cuts, bit flips, headers that lie about samples,
channels, resolution and duration, decompression bombs, decoders that crash,
hang or blow up their memory), abused upload streams (oversized messages,
wrong message types, lying sizes) and hostile values (SQL, path traversal,
NUL, ANSI escapes, RTL overrides, very long strings, extreme numbers, unknown
enums) in ids, metadata and filters.

For each: a precise status naming the field, and afterwards the server is
still SERVING, a normal RPC works, and the spool directory is empty. At the
end the server's memory has stayed bounded. (tests/e2e/test_bad_input.py
covers the basic validation of AnalyzeText and Search; this does not repeat it.)
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import psutil
import pytest

from tests.fixtures import hostile, speech
from tests.fixtures import video as fx
from tests.support.jobs import job_requests, speech_spec, wait_terminal
from tests.support.server import ServerProcess
from tests.support.upload import upload_requests
from tests.support.waiting import wait_until
from understanding.v1 import common_pb2, jobs_pb2
from understanding.v1 import understanding_pb2 as pb

MD = [("x-tenant-id", "hostile")]
MAX_UPLOAD = 8 * 1024 * 1024
RSS_GROWTH_MAX = 300 * 2**20
SERVING = 1

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Its own server: small limits, and the first three decoder children told to crash, hang
    and exhaust memory (in that order). The decoder's idle timeout is what ends the hang; it
    is also what every other decode here must never reach, busy machine or not, hence 30 s."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("hostile-server"),
        env={
            "UNDERSTANDING_DECODE_TIMEOUT_S": "30",
            "UNDERSTANDING_DECODE_MEMORY_MB": "512",
            "UNDERSTANDING_DECODE_EXPANSION_FLOOR_MB": "8",
            "UNDERSTANDING_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
            "UNDERSTANDING_MAX_MEDIA_DURATION_S": "600",
            "UNDERSTANDING_METRICS_PORT": "0",
            "UNDERSTANDING_JOB_MAX_ATTEMPTS": "1",
            "UNDERSTANDING_FAULTS": "decode_crash=1,decode_hang=1,decode_oom=1",
        },
    ).start()
    try:
        proc.wait_serving()
        yield proc
    finally:
        code = proc.stop()
        assert code == 0, f"server exited with {code}:\n{proc.log()}"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("hostile-media")
    wav = speech.make_speech_wav(
        "The hostile media test keeps one good clip to prove the server still works.", d / "good.wav"
    )
    return {
        "wav": wav,
        "mp3": speech.convert(wav, "mp3", d / "good.mp3"),
        "m4a": speech.convert(wav, "m4a", d / "good.m4a"),
        "bomb": hostile.silence_bomb_flac(d / "bomb.flac", 3600),
        "long_mp3": hostile.long_quiet_mp3(d / "long.mp3", 660),
        "shots": fx.make_shots_video(d / "shots.mp4"),
        "shots_tail": fx.make_shots_video(d / "shots-tail.mp4", faststart=False),
        "huge_res": fx.make_color_video(d / "huge-res.mp4", width=8192, height=4320, seconds=0.2, fps=5),
        "long_video": fx.make_color_video(d / "long-video.mp4", width=16, height=16, seconds=3600, fps=1),
    }


@pytest.fixture(scope="module")
def baseline_rss(server: ServerProcess) -> int:
    server.stub.AnalyzeText(
        pb.AnalyzeTextRequest(items=[pb.TextItem(text="warm up")], options=pb.TextOptions(dry_run=True)),
        metadata=MD,
        timeout=60,
    )
    return int(psutil.Process(server.proc.pid).memory_info().rss)  # type: ignore[union-attr]


@pytest.fixture(autouse=True)
def still_healthy(server: ServerProcess, baseline_rss: int) -> Iterator[None]:
    """After every case: SERVING, a normal RPC answers, nothing left in the spool."""
    yield
    assert server.proc is not None and server.proc.poll() is None, f"server died:\n{server.log()}"
    assert server.health_status() == SERVING
    ok = server.stub.AnalyzeText(
        pb.AnalyzeTextRequest(items=[pb.TextItem(text="still answering")], options=pb.TextOptions(dry_run=True)),
        metadata=MD,
        timeout=60,
    )
    assert len(ok.results) == 1
    assert spool_files(server) == []


def spool_files(server: ServerProcess) -> list[str]:
    spool = server.data_dir / "spool"
    return sorted(p.name for p in spool.iterdir()) if spool.exists() else []


def rpc_error(fn: Callable[..., Any], request: Any, timeout: float = 120) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn(request, metadata=MD, timeout=timeout)
    return err.value


def assert_status(error: grpc.RpcError, code: grpc.StatusCode, *needles: str) -> None:
    details = error.details() or ""
    assert error.code() == code, (error.code(), details)
    for needle in needles:
        assert needle in details, details
    # Messages quote what they reject with escapes: no raw control characters reach a log or terminal.
    assert all(c.isprintable() for c in details), repr(details)


def upload(data: bytes | pathlib.Path, **header: Any) -> Iterator[pb.UploadRequest]:
    return upload_requests(data, pb.UploadHeader(filename="upload.bin", **header))


# ---------------------------------------------------------------- decoder faults (first: they use up the faults)
def test_decoder_crash_hang_and_memory_blowup_fail_one_request(
    server: ServerProcess, media: dict[str, pathlib.Path]
) -> None:
    clip = media["wav"]
    assert_status(
        rpc_error(server.stub.Transcribe, upload(clip)),
        INVALID,
        "chunk:",
        "media could not be decoded",
        "crashed (SIGSEGV)",
    )
    # Ended by the idle timeout (the child sleeps for an hour), not by the call's deadline.
    assert_status(
        rpc_error(server.stub.Transcribe, upload(clip)),
        INVALID,
        "media could not be decoded",
        "timed out (no progress for 30 s)",
    )
    assert_status(rpc_error(server.stub.Transcribe, upload(clip)), EXHAUSTED, "memory limit of 512 MiB")
    # The same clip, now that the faults are used up, is transcribed normally.
    response = server.stub.Transcribe(upload(clip), metadata=MD, timeout=120)
    assert "hostile" in response.analysis.transcript.segments[0].text.lower() or response.analysis.transcript.segments


# ---------------------------------------------------------------- hostile audio
AUDIO_CASES: dict[str, tuple[Callable[[dict[str, pathlib.Path]], bytes], grpc.StatusCode | None, tuple[str, ...]]] = {
    "random-bytes": (lambda m: hostile.random_bytes(65536), INVALID, ("chunk:", "not decodable audio")),
    "wav-header-only": (lambda m: m["wav"].read_bytes()[:44], INVALID, ("chunk:", "no audio samples")),
    "wav-zero-sample-rate": (
        lambda m: hostile.patch(m["wav"].read_bytes(), 24, 0),
        INVALID,
        ("chunk:", "not decodable audio"),
    ),
    "wav-65535-channels": (lambda m: hostile.wav_claiming_channels(m["wav"].read_bytes(), 65535), INVALID, ("chunk:",)),
    "m4a-truncated": (lambda m: m["m4a"].read_bytes()[:20000], INVALID, ("chunk:", "not decodable audio")),
    "mp4-header-then-zeros": (lambda m: b"\x00\x00\x00\x18ftypmp42" + bytes(5000), INVALID, ("chunk:",)),
    "flac-bomb-1h-in-20kB": (
        lambda m: m["bomb"].read_bytes(),
        EXHAUSTED,
        ("decompression_ratio:", "decompression bomb"),
    ),
    "mp3-11-minutes": (lambda m: m["long_mp3"].read_bytes(), EXHAUSTED, ("duration:", "600 s limit")),
    # Damage the decoder can read past is not an error: the audio before/around it is kept.
    "wav-claims-1e9-samples": (lambda m: hostile.wav_claiming_samples(m["wav"].read_bytes(), 10**9), None, ()),
    "mp3-bit-flips": (lambda m: hostile.flip_bits(m["mp3"].read_bytes(), 200), None, ()),
    "m4a-bit-flips": (lambda m: hostile.flip_bits(m["m4a"].read_bytes(), 200), None, ()),
}


@pytest.mark.parametrize("case", sorted(AUDIO_CASES))
def test_hostile_audio(server: ServerProcess, media: dict[str, pathlib.Path], case: str) -> None:
    make, code, needles = AUDIO_CASES[case]
    data = make(media)
    if code is None:
        response = server.stub.Transcribe(upload(data), metadata=MD, timeout=120)
        real_s = speech.wav_duration(media["wav"])
        assert 0 < response.analysis.transcript.duration_s <= real_s + 1.0  # never what the header claimed
        return
    assert_status(rpc_error(server.stub.Transcribe, upload(data)), code, *needles)


# ---------------------------------------------------------------- hostile video
VIDEO_CASES: dict[str, tuple[Callable[[dict[str, pathlib.Path]], bytes], grpc.StatusCode | None, tuple[str, ...]]] = {
    "random-bytes": (lambda m: hostile.random_bytes(65536, seed=2), INVALID, ("chunk:", "not decodable video")),
    "moov-at-end-truncated": (
        lambda m: m["shots_tail"].read_bytes()[:150000],
        INVALID,
        ("chunk:", "not decodable video"),
    ),
    "audio-only": (lambda m: m["m4a"].read_bytes(), INVALID, ("chunk:", "no video stream")),
    "8192x4320": (lambda m: m["huge_res"].read_bytes(), EXHAUSTED, ("video.resolution:", "8192x4320")),
    "1-hour-in-50kB": (lambda m: m["long_video"].read_bytes(), EXHAUSTED, ("video.duration:", "600 s")),
    "truncated-half": (lambda m: m["shots"].read_bytes()[: m["shots"].stat().st_size // 2], None, ()),
    "bit-flips": (lambda m: hostile.flip_bits(m["shots"].read_bytes(), 300), None, ()),
}


@pytest.mark.parametrize("case", sorted(VIDEO_CASES))
def test_hostile_video(server: ServerProcess, media: dict[str, pathlib.Path], case: str) -> None:
    make, code, needles = VIDEO_CASES[case]
    data = make(media)
    header = {"video": pb.VideoOptions(skip_audio=True), "text": pb.TextOptions(dry_run=True)}
    if code is None:
        response = server.stub.AnalyzeVideo(upload(data, **header), metadata=MD, timeout=180)
        assert 0 < response.analysis.video.duration_s <= 15.5 and response.analysis.shots
        return
    assert_status(rpc_error(server.stub.AnalyzeVideo, upload(data, **header), timeout=180), code, *needles)


# ---------------------------------------------------------------- hostile media through the job path
def test_hostile_media_as_jobs_fail_with_the_same_status(server: ServerProcess, media: dict[str, pathlib.Path]) -> None:
    noise = server.stub.SubmitJob(
        job_requests(speech_spec(media_id="noise-job"), hostile.random_bytes(30000, seed=5)), metadata=MD
    )
    bomb_upload = server.stub.UploadMedia(upload(media["bomb"]), metadata=MD)
    bomb = server.stub.SubmitJob(iter([pb.SubmitJobRequest(spec=pb.JobSpec(
        modality=common_pb2.MODALITY_SPEECH, upload_id=bomb_upload.upload_id, media=pb.UploadHeader(media_id="bomb-job")))]), metadata=MD)  # fmt: skip
    failed = wait_terminal(server.stub, noise.job_id, MD)
    assert (
        failed.state == jobs_pb2.JOB_STATE_FAILED
        and failed.error.code == "INVALID_ARGUMENT"
        and not failed.error.retriable
    )
    assert "not decodable audio" in failed.error.message
    failed = wait_terminal(server.stub, bomb.job_id, MD)
    assert failed.state == jobs_pb2.JOB_STATE_FAILED and failed.error.code == "RESOURCE_EXHAUSTED"
    assert "decompression bomb" in failed.error.message
    # Job media is deleted just after the terminal state is recorded.
    wait_until(lambda: not list((server.data_dir / "blobs").glob("**/*.*")), what="the jobs' media removed")


# ---------------------------------------------------------------- abused upload streams
def raw_stream(server: ServerProcess, method: str) -> Callable[..., Any]:
    return server.channel.stream_unary(
        f"/understanding.v1.Understanding/{method}", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )


def test_upload_stream_abuse(server: ServerProcess, media: dict[str, pathlib.Path]) -> None:
    stub = server.stub
    # One message over the 8 MiB message limit.
    assert_status(
        rpc_error(
            stub.Transcribe,
            iter([pb.UploadRequest(header=pb.UploadHeader()), pb.UploadRequest(chunk=bytes(9 * 2**20))]),
        ),
        EXHAUSTED,
    )
    # Many small messages adding up to more than the upload limit.
    assert_status(
        rpc_error(stub.Transcribe, upload(bytes(MAX_UPLOAD + 1))), EXHAUSTED, "chunk:", f"limit of {MAX_UPLOAD} bytes"
    )
    # A header declaring a huge size is refused before any byte is stored.
    assert_status(rpc_error(stub.AnalyzeVideo, upload(b"x", size_bytes=10**15)), EXHAUSTED, "size_bytes:")
    # Chunks before the header, two headers, a wrong end digest, nothing at all.
    assert_status(rpc_error(stub.Transcribe, iter([pb.UploadRequest(chunk=b"abc")])), INVALID, "header:")
    assert_status(
        rpc_error(stub.Transcribe, iter([pb.UploadRequest(header=pb.UploadHeader())] * 2)), INVALID, "header:"
    )
    bad_end = [
        pb.UploadRequest(header=pb.UploadHeader()),
        pb.UploadRequest(chunk=b"abc"),
        pb.UploadRequest(end=pb.UploadEnd(sha256="0" * 64)),
    ]
    assert_status(rpc_error(stub.UploadMedia, iter(bad_end)), INVALID, "end.sha256:")
    assert_status(rpc_error(stub.Transcribe, iter([])), INVALID, "header:")
    # Invalid UTF-8 in a string field of a stream item and of a unary request.
    header = pb.UploadRequest(header=pb.UploadHeader(media_id="abc")).SerializeToString().replace(b"abc", b"a\xffc")
    with pytest.raises(grpc.RpcError) as err:
        raw_stream(server, "Transcribe")(iter([header]), metadata=MD, timeout=30)
    assert_status(err.value, INVALID, "UploadRequest")
    search = pb.SearchRequest(text="abc").SerializeToString().replace(b"abc", b"a\xffc")
    unary = server.channel.unary_unary(
        "/understanding.v1.Understanding/Search", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    with pytest.raises(grpc.RpcError) as err:
        unary(search, metadata=MD, timeout=30)
    assert_status(err.value, INVALID, "SearchRequest")
    # Wrong types: bytes of another message, and bytes of no message at all, as stream items.
    other = pb.AnalyzeTextRequest(items=[pb.TextItem(text="a\x00b", media_id="x")]).SerializeToString()
    for method in ("Transcribe", "AnalyzeVideo", "UploadMedia", "SubmitJob"):
        for item in (other, b"\xff\xff\xff\xff", hostile.random_bytes(300, seed=9)):
            with pytest.raises(grpc.RpcError) as err:
                raw_stream(server, method)(iter([item, item]), metadata=MD, timeout=30)
            assert err.value.code() == INVALID, (method, err.value.details())


def test_hostile_upload_headers(server: ServerProcess, media: dict[str, pathlib.Path]) -> None:
    clip = media["wav"]
    cases = [
        ({"media_id": "../../etc/passwd"}, "header.media_id:"),
        ({"media_id": "a\x00b"}, "header.media_id:"),
        ({"metadata": {"bad\x00key": "v"}}, "header.metadata:"),
        ({"metadata": {f"k{i}": "v" for i in range(40)}}, "header.metadata:"),
        ({"speech": pb.SpeechOptions(task=99)}, "speech.task:"),
        ({"speech": pb.SpeechOptions(initial_prompt="p" * 5000)}, "speech.initial_prompt:"),
    ]
    for header, needle in cases:
        error = rpc_error(server.stub.Transcribe, upload(clip, **header))
        assert error.code() in (INVALID, EXHAUSTED) and needle in error.details(), (header, error.details())
    error = rpc_error(server.stub.AnalyzeVideo, upload(media["shots"], video=pb.VideoOptions(sample_fps=1e9)))
    assert_status(error, INVALID, "video.sample_fps:")
    for spec, needle in (
        (pb.JobSpec(modality=99), "spec.modality:"),
        (
            pb.JobSpec(modality=common_pb2.MODALITY_TEXT, text="t", idempotency_key="k\x1b[2J" + "k" * 200),
            "spec.idempotency_key:",
        ),
        (pb.JobSpec(modality=common_pb2.MODALITY_SPEECH, upload_id="../../blobs/other-tenant"), "upload_id"),
    ):
        error = rpc_error(server.stub.SubmitJob, iter([pb.SubmitJobRequest(spec=spec)]))
        assert error.code() in (INVALID, NOT_FOUND) and needle in error.details(), (spec, error.details())


# ---------------------------------------------------------------- hostile values in ids, metadata and filters
HOSTILE_STRINGS = {
    "path-traversal": "../../etc/passwd",
    "sql": "'; DROP TABLE points; --",
    "nul": "a\x00b",
    "ansi": "\x1b[31mred\x1b[0m",
    "rtl-override": "\u202eevil\u202c",
    "very-long": "x" * 5000,
    "format-string": "%s%s%n",
    "glob": "*",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_STRINGS))
def test_hostile_strings_in_every_id_and_filter(server: ServerProcess, name: str) -> None:
    value = HOSTILE_STRINGS[name]
    stub = server.stub
    assert_status(rpc_error(stub.GetMedia, pb.GetMediaRequest(media_id=value)), INVALID, "media_id:")
    assert_status(rpc_error(stub.DeleteMedia, pb.DeleteMediaRequest(media_id=value)), INVALID, "media_id:")
    for fn, request in (
        (stub.GetJob, pb.GetJobRequest(job_id=value)),
        (stub.CancelJob, pb.CancelJobRequest(job_id=value)),
    ):
        error = rpc_error(fn, request)
        assert error.code() in (INVALID, NOT_FOUND) and "job_id:" in error.details()
        assert all(c.isprintable() for c in error.details()) and len(error.details()) < 300
    with pytest.raises(grpc.RpcError) as watch:
        list(stub.WatchJob(pb.WatchJobRequest(job_id=value), metadata=MD, timeout=30))
    assert watch.value.code() in (INVALID, NOT_FOUND)
    assert_status(rpc_error(stub.ListJobs, pb.ListJobsRequest(page_token=value)), INVALID, "page_token:")
    assert_status(rpc_error(stub.Search, pb.SearchRequest(text="x", cursor=value)), INVALID, "cursor:")
    for flt, needle in (
        (pb.SearchFilter(media_ids=[value]), "filter.media_ids[0]:"),
        (pb.SearchFilter(languages=[value]), "filter.languages[0]:"),
        (pb.SearchFilter(metadata={value: "v"}), "filter.metadata:"),
    ):
        error = rpc_error(stub.Search, pb.SearchRequest(text="x", filter=flt))
        assert error.code() in (INVALID, EXHAUSTED) and needle in error.details(), error.details()
    # As a tag, metadata value or query text it is just data: no error unless it is too long, no match.
    for request in (
        pb.SearchRequest(text="x", filter=pb.SearchFilter(tags=pb.TagFilter(any=[value]))),
        pb.SearchRequest(text="x", filter=pb.SearchFilter(metadata={"k": value})),
        pb.SearchRequest(text=value if value.strip("\x00") else "x"),
    ):
        try:
            hits = stub.Search(request, metadata=MD, timeout=30).hits
        except grpc.RpcError as error:
            assert error.code() in (INVALID, EXHAUSTED) and name == "very-long", error.details()
        else:
            assert all(h.metadata.get("k") != value for h in hits) or value == ""


def test_hostile_values_are_stored_and_returned_verbatim(server: ServerProcess) -> None:
    """Metadata values and text are data, never interpreted: what goes in comes back byte for byte."""
    values = {f"k_{name.replace('-', '_')}": v[:1024] for name, v in HOSTILE_STRINGS.items()}
    text = "Quarterly review " + " ".join(v[:100] for v in HOSTILE_STRINGS.values())
    server.stub.AnalyzeText(
        pb.AnalyzeTextRequest(items=[pb.TextItem(media_id="verbatim-1", text=text, metadata=values)]),
        metadata=MD,
        timeout=60,
    )
    got = server.stub.GetMedia(pb.GetMediaRequest(media_id="verbatim-1"), metadata=MD, timeout=30)
    assert dict(got.points[0].metadata) == values
    for key, value in values.items():
        hits = server.stub.Search(
            pb.SearchRequest(text="quarterly review", filter=pb.SearchFilter(metadata={key: value})),
            metadata=MD,
            timeout=30,
        ).hits
        assert [h.media_id for h in hits] == ["verbatim-1"], key
    # Another tenant asking for the same filter sees nothing.
    other = server.stub.Search(
        pb.SearchRequest(text="quarterly review", filter=pb.SearchFilter(metadata={"k_sql": values["k_sql"]})),
        metadata=[("x-tenant-id", "other")],
        timeout=30,
    )
    assert list(other.hits) == []


NUMBER_CASES = {
    "top-k-max": (pb.SearchRequest(text="x", top_k=2**32 - 1), INVALID, "top_k:"),
    "offset-max": (pb.SearchRequest(text="x", offset=2**32 - 1), INVALID, "offset:"),
    "threshold-nan": (pb.SearchRequest(text="x", score_threshold=float("nan")), INVALID, "score_threshold:"),
    "threshold-inf": (pb.SearchRequest(text="x", score_threshold=float("-inf")), INVALID, "score_threshold:"),
    "min-score-7": (
        pb.SearchRequest(text="x", filter=pb.SearchFilter(tags=pb.TagFilter(any=["a"], min_score=7))),
        INVALID,
        "filter.tags.min_score:",
    ),
    "time-range-negative": (
        pb.SearchRequest(text="x", filter=pb.SearchFilter(time_range=pb.TimeRange(start_s=-1e30, end_s=-5))),
        INVALID,
        "filter.time_range",
    ),
    "time-range-nan": (
        pb.SearchRequest(text="x", filter=pb.SearchFilter(time_range=pb.TimeRange(start_s=float("nan")))),
        INVALID,
        "filter.time_range",
    ),
    "timestamp-year-100000": (
        pb.SearchRequest(text="x", filter=pb.SearchFilter(created_after={"seconds": 2534023007990})),
        INVALID,
        "filter.created_after:",
    ),
    "timestamp-negative-nanos": (
        pb.SearchRequest(text="x", filter=pb.SearchFilter(created_before={"seconds": 1, "nanos": -5})),
        INVALID,
        "filter.created_before:",
    ),
    "vector-inf": (pb.SearchRequest(vector=pb.Vector(values=[float("inf")] * 384)), INVALID, "vector:"),
    "vector-overflowing": (pb.SearchRequest(vector=pb.Vector(values=[3e38] * 384)), INVALID, "vector:"),
    "vector-10k-dims": (pb.SearchRequest(vector=pb.Vector(values=[0.1] * 10000)), INVALID, "vector:"),
    "example-chunk-max": (
        pb.SearchRequest(example=pb.Example(media_id="none-such", chunk_index=2**32 - 1)),
        NOT_FOUND,
        "example",
    ),
    "unknown-mode": (pb.SearchRequest(text="x", mode=42), INVALID, "mode:"),
    "unknown-modality": (
        pb.SearchRequest(text="x", filter=pb.SearchFilter(modalities=[42])),
        INVALID,
        "filter.modalities[0]:",
    ),
    "page-size-max": (pb.ListJobsRequest(page_size=2**32 - 1), INVALID, "page_size:"),
    "unknown-job-state": (pb.ListJobsRequest(states=[99]), INVALID, "states:"),
}


@pytest.mark.parametrize("case", sorted(NUMBER_CASES))
def test_extreme_numbers_and_unknown_enums(server: ServerProcess, case: str) -> None:
    request, code, needle = NUMBER_CASES[case]
    fn = server.stub.Search if isinstance(request, pb.SearchRequest) else server.stub.ListJobs
    assert_status(rpc_error(fn, request), code, needle)


def test_hostile_tenant_headers(server: ServerProcess) -> None:
    for tenant in ("../../etc", "a" * 200, "*", "tenant;drop", "%00"):
        error = rpc_error(
            lambda r, tenant=tenant, **kw: server.stub.GetMedia(r, **{**kw, "metadata": [("x-tenant-id", tenant)]}),
            pb.GetMediaRequest(media_id="m"),
        )
        assert_status(error, INVALID, "x-tenant-id:")


def test_memory_stayed_bounded(server: ServerProcess, baseline_rss: int) -> None:
    """Last: everything above ran; the server grew by less than RSS_GROWTH_MAX (decoding happens in children)."""
    rss = int(psutil.Process(server.proc.pid).memory_info().rss)  # type: ignore[union-attr]
    assert rss - baseline_rss < RSS_GROWTH_MAX, f"RSS grew by {(rss - baseline_rss) / 2**20:.0f} MiB"
    assert spool_files(server) == []
