"""Speakers end to end over gRPC: a real two-speaker call, a stereo call, jobs, video, search, bad input.

The recording is pyannote.audio 4.0.7's sample (a telephone call with its
authors' reference speaker turns; tests/fixtures/calls.py), not speech we made.
"""

from __future__ import annotations

import pathlib
import subprocess

import grpc
import numpy as np
import pytest

from benchmarks.der import diarization_error
from tests.fixtures import calls
from tests.support.jobs import job_requests, speech_spec, wait_terminal
from tests.support.server import ServerProcess
from tests.support.upload import upload_requests
from understanding.v1 import common_pb2, jobs_pb2
from understanding.v1 import understanding_pb2 as pb

MD = [("x-tenant-id", "e2e-speakers")]


def transcribe(server: ServerProcess, path: pathlib.Path, **header_fields) -> common_pb2.Analysis:  # type: ignore[no-untyped-def]
    header = pb.UploadHeader(filename=path.name, **header_fields)
    return server.stub.Transcribe(upload_requests(path, header), metadata=MD, timeout=300).analysis


def transcribe_error(server: ServerProcess, path: pathlib.Path, **header_fields) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as error:
        transcribe(server, path, **header_fields)
    return error.value


def segment_turns(transcript: common_pb2.Transcript) -> list[tuple[float, float, str]]:
    return [(s.start_s, s.end_s, s.speaker) for s in transcript.segments if s.speaker]


def word_accuracy(transcript: common_pb2.Transcript, reference: list[tuple[float, float, str]]) -> float:
    """Share of words whose speaker is the reference speaker at the word's middle, labels mapped one to one."""
    from scipy.optimize import linear_sum_assignment

    pairs = []
    for segment in transcript.segments:
        for w in segment.words:
            mid = 0.5 * (w.start_s + w.end_s)
            truth = [k for s, e, k in reference if s <= mid <= e]
            if len(truth) == 1:  # skip overlapped speech and words outside every turn
                pairs.append((truth[0], w.speaker))
    truths, labels = sorted({t for t, _ in pairs}), sorted({h for _, h in pairs})
    counts = np.array([[sum(1 for t, h in pairs if t == a and h == b) for b in labels] for a in truths])
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(pairs))


@pytest.fixture(scope="module")
def reference() -> list[tuple[float, float, str]]:
    return calls.reference_turns()


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory: pytest.TempPathFactory, reference: list[tuple[float, float, str]]) -> pathlib.Path:
    call = calls.stereo_call(calls.reference_audio(), reference)
    return calls.write_wav(tmp_path_factory.mktemp("calls") / "stereo-call.wav", call)


def test_two_speaker_call_gets_two_speakers_with_turns_near_the_reference(
    server: ServerProcess, reference: list[tuple[float, float, str]]
) -> None:
    a = transcribe(server, calls.reference_wav(), media_id="call-two", speech=pb.SpeechOptions(word_timestamps=True))
    t = a.transcript
    assert t.speaker_method == "clustering" and t.speaker_model.name.startswith("campplus")
    assert sorted(s.label for s in t.speakers) == ["S1", "S2"]
    assert all(s.channel == 0 and s.turns >= 3 for s in t.speakers)
    # Total speaking time per speaker near the reference's (labels mapped by the larger total).
    ref_totals = sorted((sum(e - s for s, e, k in reference if k == name) for name in calls.SPEAKERS), reverse=True)
    ours = [s.speaking_s for s in t.speakers]  # most talkative first
    assert ours == sorted(ours, reverse=True)
    assert all(abs(a_ - b) <= 3.0 for a_, b in zip(ours, ref_totals, strict=True)), (ours, ref_totals)
    # Every segment has one speaker and the words agree with it.
    assert all(s.speaker in ("S1", "S2") for s in t.segments)
    assert all(w.speaker in (s.speaker, "") for s in t.segments for w in s.words)
    assert word_accuracy(t, reference) >= 0.85
    # Turns read from the segments: errors are mostly Whisper's segment edges, not who spoke.
    der = diarization_error(reference, segment_turns(t), collar_s=0.25, end_s=t.duration_s)
    assert der.confusion_s / der.total_s <= 0.10 and der.der <= 0.35, der.rates()
    # Indexed windows have one speaker each, the one of the segments they were made from.
    assert a.chunks and all(len(c.speakers) == 1 for c in a.chunks)
    hits = server.stub.GetMedia(pb.GetMediaRequest(media_id="call-two"), metadata=MD).points
    assert [list(h.speakers) for h in hits] == [list(c.speakers) for c in a.chunks]


def test_stereo_call_gets_one_speaker_per_channel(
    server: ServerProcess, stereo_wav: pathlib.Path, reference: list[tuple[float, float, str]]
) -> None:
    a = transcribe(server, stereo_wav, media_id="call-stereo", speech=pb.SpeechOptions(word_timestamps=True))
    t = a.transcript
    assert t.speaker_method == "channels" and not t.HasField("speaker_model")
    assert {(s.label, s.channel) for s in t.speakers} == {("CH1", 1), ("CH2", 2)}
    side = {"CH1": calls.SPEAKERS[0], "CH2": calls.SPEAKERS[1]}
    # Words lie in their own channel's participant's reference turns (no crosstalk transcribed). By word,
    # not by segment: a segment may span the other side's turn between two of its words. The usual 0.25 s
    # scoring collar absorbs Whisper's word times being off by a few tenths of a second.
    collar = 0.25
    words = [(w, segment.speaker) for segment in t.segments for w in segment.words]
    assert words and all(w.speaker == label for w, label in words)
    own = [
        w
        for w, label in words
        if any(s - collar <= 0.5 * (w.start_s + w.end_s) <= e + collar for s, e, k in reference if k == side[label])
    ]
    assert len(own) >= 0.9 * len(words), [(w.text, w.start_s, w.speaker) for w, _ in words if w not in own]
    assert [s.start_s for s in t.segments] == sorted(s.start_s for s in t.segments)
    assert [s.index for s in t.segments] == list(range(len(t.segments)))
    # Each side once: about as many words as the mixed call, not twice as many.
    mono = transcribe(
        server, calls.reference_wav(), media_id="call-mono-words", speech=pb.SpeechOptions(disable_diarization=True)
    )
    n_stereo, n_mono = (
        len(" ".join(s.text for s in t.segments).split()),
        len(" ".join(s.text for s in mono.transcript.segments).split()),
    )
    assert 0.7 * n_mono <= n_stereo <= 1.3 * n_mono, (n_stereo, n_mono)
    assert mono.transcript.speaker_method == "" and not mono.transcript.speakers
    assert all(not s.speaker for s in mono.transcript.segments) and all(not c.speakers for c in mono.chunks)

    # The speaker is stored with every window and filterable.
    ch2 = server.stub.Search(
        pb.SearchRequest(
            text="the conversation", top_k=20, filter=pb.SearchFilter(media_ids=["call-stereo"], speakers=["CH2"])
        ),
        metadata=MD,
    ).hits
    assert ch2 and all(list(h.speakers) == ["CH2"] for h in ch2)
    both = server.stub.Search(
        pb.SearchRequest(text="the conversation", top_k=50, filter=pb.SearchFilter(media_ids=["call-stereo"])),
        metadata=MD,
    ).hits
    assert {h.speakers[0] for h in both} == {"CH1", "CH2"} and len(both) > len(ch2)


def test_a_speaker_count_hint_is_honoured_in_a_job(server: ServerProcess) -> None:
    spec = speech_spec(media_id="job-call", speech=pb.SpeechOptions(num_speakers=3))
    job = server.stub.SubmitJob(job_requests(spec, calls.reference_wav()), metadata=MD, timeout=60)
    done = wait_terminal(server.stub, job.job_id, MD, timeout_s=300)
    assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED, done.error
    t = done.result.transcript
    assert sorted(s.label for s in t.speakers) == ["S1", "S2", "S3"] and t.speaker_method == "clustering"
    assert {s.speaker for s in t.segments} <= {"S1", "S2", "S3"}
    one = transcribe(server, calls.reference_wav(), media_id="call-one", speech=pb.SpeechOptions(num_speakers=1))
    assert [s.label for s in one.transcript.speakers] == ["S1"] and one.transcript.speaker_method == "single"


def test_video_audio_track_has_speakers(server: ServerProcess, tmp_path: pathlib.Path) -> None:
    video = tmp_path / "call.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=160x120:r=5:d=30",
         "-i", str(calls.reference_wav()), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "64k", "-shortest", str(video)],
        check=True,
    )  # fmt: skip
    header = pb.UploadHeader(media_id="video-call", filename=video.name)
    a = server.stub.AnalyzeVideo(upload_requests(video, header), metadata=MD, timeout=300).analysis
    assert sorted(s.label for s in a.transcript.speakers) == ["S1", "S2"]
    spoken = [c for c in a.chunks if c.speakers]
    assert spoken and {s for c in spoken for s in c.speakers} <= {"S1", "S2"}


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("speech", "field"),
    [
        (pb.SpeechOptions(num_speakers=0), "speech.num_speakers"),
        (pb.SpeechOptions(num_speakers=1000), "speech.num_speakers"),
        (pb.SpeechOptions(num_speakers=2, disable_diarization=True), "speech.num_speakers"),
        (pb.SpeechOptions(channels=9), "speech.channels"),  # type: ignore[arg-type]
        (pb.SpeechOptions(channels=pb.CHANNEL_MODE_SEPARATE, disable_diarization=True), "speech.channels"),
    ],
    ids=["hint-0", "hint-1000", "hint-without-diarization", "unknown-channel-mode", "separate-without-diarization"],
)
def test_bad_speaker_options_name_the_field(server: ServerProcess, speech: pb.SpeechOptions, field: str) -> None:
    error = transcribe_error(server, calls.reference_wav(), speech=speech)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field in error.details(), error.details()
    with pytest.raises(grpc.RpcError) as job_error:
        server.stub.SubmitJob(job_requests(speech_spec(speech=speech), calls.reference_wav()), metadata=MD, timeout=60)
    assert job_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"spec.media.{field}" in job_error.value.details()
    assert server.health_status() == 1


def test_more_than_32_channels(server: ServerProcess, tmp_path: pathlib.Path) -> None:
    audio = calls.reference_audio()[: calls.SR * 6]
    wide = calls.write_wav(tmp_path / "33ch.wav", np.stack([audio] * 33))
    error = transcribe_error(server, wide, speech=pb.SpeechOptions(channels=pb.CHANNEL_MODE_SEPARATE))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "speech.channels" in error.details()
    assert "33 channels" in error.details()
    # Documented result in the default mode: mixed, speakers by the speaker model.
    mixed = transcribe(server, wide, media_id="wide-33").transcript
    assert mixed.speaker_method in ("clustering", "single", "none")
    assert all(s.channel == 0 for s in mixed.speakers)
    # 32 copies of one signal are one mixed signal too (no channel ever dominates).
    copies = transcribe(server, calls.write_wav(tmp_path / "32ch.wav", np.stack([audio] * 32)), media_id="wide-32")
    assert copies.transcript.speaker_method != "channels"


def test_mono_data_declared_as_eight_channels(server: ServerProcess, tmp_path: pathlib.Path) -> None:
    """A header claiming 8 channels over mono samples decodes to 8 near-identical channels, an eighth as long:
    documented result, one mixed signal (no channel-per-participant), not an error."""
    audio = calls.reference_audio()
    audio = audio[: audio.size - audio.size % 8]
    liar = calls.write_wav(tmp_path / "liar.wav", audio[None, :], declared_channels=8)
    t = transcribe(server, liar, media_id="liar-8").transcript
    assert t.speaker_method != "channels" and all(not s.label.startswith("CH") for s in t.speakers)
    assert t.duration_s == pytest.approx(audio.size / 8 / calls.SR, abs=0.1)


def test_silence_on_one_channel(server: ServerProcess, tmp_path: pathlib.Path) -> None:
    """Documented: a silent channel is nobody. Auto mode mixes (one channel carries sound, so it is not a
    call recorded per side) and the speaker model finds the two voices; separate mode gives the one
    channel that carries sound its participant, and only that one."""
    audio = calls.reference_audio()
    path = calls.write_wav(tmp_path / "half-silent.wav", np.stack([audio, np.zeros_like(audio)]))
    auto = transcribe(server, path, media_id="half-silent").transcript
    assert auto.speaker_method == "clustering" and len(auto.speakers) == 2
    separate = transcribe(
        server, path, media_id="half-silent-sep", speech=pb.SpeechOptions(channels=pb.CHANNEL_MODE_SEPARATE)
    )
    assert [(s.label, s.channel) for s in separate.transcript.speakers] == [("CH1", 1)]
    assert separate.transcript.segments and {s.speaker for s in separate.transcript.segments} == {"CH1"}
