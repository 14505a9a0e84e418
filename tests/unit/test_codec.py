"""The codecs: domain <-> public protobuf, and the internal topics' records (plus the JSON
of earlier versions, which a new process must still read during a rolling upgrade)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from understanding import codec
from understanding.codec import records
from understanding.domain import (
    SPEECH_LANGUAGES,
    Analysis,
    AnalysisOptions,
    BodyPart,
    Box,
    Chunk,
    ImageInfo,
    ImageOptions,
    InvalidInput,
    Job,
    JobError,
    JobSpec,
    JobState,
    Language,
    Modality,
    ModelRef,
    Segment,
    Shot,
    Speaker,
    SpeechOptions,
    Tag,
    TextLine,
    Transcript,
    VideoInfo,
    VideoOptions,
    Word,
)
from understanding.v1 import understanding_pb2 as pb


def _analysis() -> Analysis:
    return Analysis(
        tenant="t", media_id="m", modality=Modality.VIDEO, language=Language("en", 0.75),
        tags=(Tag("topic.sports", "topic", 0.5, 1.0, 2.0),),
        chunks=(
            Chunk(index=0, text="goal", embedding=np.linspace(-1, 1, 8, dtype=np.float32), tags=(Tag("a.b", "a", 0.25),),
                  start_s=0.5, end_s=1.5, language=Language("en", 0.5), extra={"keyframe_s": 1.0, "face_count": 2},
                  speakers=("S2", "S1")),
        ),
        embedding_model=ModelRef("mini", "1"), created_at=12.5, version=12_500_000, metadata={"k": "v"},
        transcript=Transcript(
            segments=(Segment(0, 0.0, 1.0, "goal", -0.25, 0.125, (Word("goal", 0.0, 0.5, 0.75, "S2"),), "S2"),),
            language=Language("en", 0.75), duration_s=1.0, task="transcribe", model=ModelRef("whisper", "base"),
            speakers=(Speaker("S2", 0.5, 1), Speaker("S1", 0.25, 2)), speaker_model=ModelRef("campplus", "sha256:1"),
            speaker_method="clustering",
        ),
        video=VideoInfo(2.0, 25.0, 64, 48, "h264", True, 50, 4),
        shots=(Shot(0, 0.0, 2.0, 1.0, (Tag("x.y", "x", 0.5),), 1, "goal", b"\xff\xd8jpeg", ocr_text="CALL 555",
                    nudity_score=0.25, nudity_frame_s=1.5, text_lines=(TextLine("CALL 555", 0.75, Box(1, 2, 30, 8), 1.5),),
                    nudity_parts=(BodyPart("FACE_FEMALE", 0.5, Box(4, 4, 16, 16), 1.5),)),),
        visual_models=(ModelRef("open-nsfw", "0.1.0+ab"), ModelRef("pp-ocrv4-mobile", "1.4.4+cd")),
    )  # fmt: skip


def _image_analysis() -> Analysis:
    line = TextLine("Lighthouse keepers", 0.875, Box(10.5, 20.25, 300.0, 24.0))
    part = BodyPart("FACE_FEMALE", 0.625, Box(40, 50, 60, 70))
    return Analysis(
        tenant="t", media_id="img-1", modality=Modality.IMAGE, language=Language("en", 0.5), tags=(),
        chunks=(Chunk(index=0, text="Lighthouse keepers", embedding=np.ones(4, np.float32) / 2,
                      extra={"ocr_text": "Lighthouse keepers", "nudity_score": 0.0625}),),
        embedding_model=ModelRef("mini", "1"), created_at=3.0, version=3_000_000,
        image=ImageInfo(640, 360, "jpeg", "CMYK", frame_count=3, face_count=1, nudity_score=0.0625,
                        nudity_parts=(part,), ocr_text="Lighthouse keepers", text_lines=(line,)),
        visual_models=(ModelRef("nudenet-320n", "3.4.2+ef"),),
    )  # fmt: skip


def test_public_analysis_round_trips_with_embeddings_and_keyframes() -> None:
    analysis = _analysis()
    back = codec.analysis_from_pb(codec.analysis_pb(analysis, with_embeddings=True, with_keyframes=True))
    assert np.array_equal(back.chunks[0].embedding, analysis.chunks[0].embedding)
    # The public Chunk carries neither the chunk language nor the extra payload (the records do).
    expected_chunk = Chunk(
        **{f: getattr(analysis.chunks[0], f) for f in Chunk.__slots__ if f not in ("language", "extra")}
    )
    assert back.chunks[0].text == expected_chunk.text and back.chunks[0].tags == expected_chunk.tags
    assert back.chunks[0].speakers == ("S2", "S1")
    assert back.shots == analysis.shots and back.transcript == analysis.transcript and back.video == analysis.video
    assert (back.tenant, back.media_id, back.version, back.metadata) == ("t", "m", 12_500_000, {"k": "v"})


def test_images_and_visual_findings_round_trip_publicly_and_in_records() -> None:
    image = _image_analysis()
    public = codec.analysis_pb(image)
    assert public.modality == codec.MODALITY_TO_PROTO[Modality.IMAGE] and public.image.color_mode == "CMYK"
    back = codec.analysis_from_pb(public)
    assert back.image == image.image and back.visual_models == image.visual_models
    _, exact = records.decode_result(records.encode_result(_job(), image))
    assert exact.image == image.image and exact.visual_models == image.visual_models
    assert exact.chunks[0].extra == {"ocr_text": "Lighthouse keepers", "nudity_score": 0.0625}
    video = _analysis()
    assert codec.analysis_from_pb(codec.analysis_pb(video)).image is None
    _, exact_video = records.decode_result(records.encode_result(_job(), video))
    assert exact_video.shots[0].text_lines == video.shots[0].text_lines
    assert exact_video.shots[0].nudity_parts == video.shots[0].nudity_parts


def test_image_options_travel_in_job_records_and_change_the_fingerprint_only_when_set() -> None:
    plain = _job().spec
    skipping = JobSpec(**{**{f: getattr(plain, f) for f in JobSpec.__slots__},
                          "options": AnalysisOptions(plain.options.speech, plain.options.video, image=ImageOptions(skip_ocr=True))})  # fmt: skip
    assert records.job_spec_from_record(records.job_spec_record(skipping)).options.image == ImageOptions(skip_ocr=True)
    assert skipping.fingerprint() != plain.fingerprint()
    # Default image options leave the hashed document as earlier releases wrote it.
    assert plain.fingerprint() == JobSpec(**{**{f: getattr(plain, f) for f in JobSpec.__slots__},
                                             "options": AnalysisOptions(plain.options.speech, plain.options.video)}).fingerprint()  # fmt: skip
    assert codec.image_options_from_pb(codec.image_options_pb(ImageOptions(True, True))) == ImageOptions(True, True)


def test_speech_options_cross_the_edge_both_ways() -> None:
    options = SpeechOptions(
        language="de", task="translate", word_timestamps=True, vad=False, hotwords="Bayern", beam_size=3
    )
    assert codec.speech_options_from_pb(codec.speech_options_pb(options)) == options
    assert codec.speech_options_from_pb(pb.SpeechOptions(language=" EN-us ")).language == "en"
    with pytest.raises(InvalidInput) as bad:
        codec.speech_options_from_pb(pb.SpeechOptions(language="klingon"))
    assert bad.value.field == "speech.language"
    with pytest.raises(InvalidInput) as bad_task:
        codec.speech_options_from_pb(pb.SpeechOptions(task=99))  # type: ignore[arg-type]
    assert bad_task.value.field == "speech.task"
    assert codec.video_options_from_pb(pb.VideoOptions(sample_fps=0)) == VideoOptions()
    speakers = SpeechOptions(num_speakers=3, channels="separate")
    assert codec.speech_options_from_pb(codec.speech_options_pb(speakers)) == speakers
    assert codec.speech_options_from_pb(pb.SpeechOptions(disable_diarization=True)).diarize is False
    unset = codec.speech_options_from_pb(pb.SpeechOptions())
    assert (unset.diarize, unset.num_speakers, unset.channels) == (True, None, "auto")
    for hint in (0, 33, 1000):  # an explicit 0 is not "detect": leaving the field out is
        with pytest.raises(InvalidInput) as bad_hint:
            codec.speech_options_from_pb(pb.SpeechOptions(num_speakers=hint))
        assert bad_hint.value.field == "speech.num_speakers"
    with pytest.raises(InvalidInput) as bad_channels:
        codec.speech_options_from_pb(pb.SpeechOptions(channels=7))  # type: ignore[arg-type]
    assert bad_channels.value.field == "speech.channels"
    with pytest.raises(InvalidInput):
        codec.video_options_from_pb(pb.VideoOptions(sample_fps=31))


def test_the_speech_language_list_is_whispers_own() -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert SPEECH_LANGUAGES == frozenset(_LANGUAGE_CODES)


def _job(**changes: object) -> Job:
    spec = JobSpec(
        modality=Modality.VIDEO, media_id="vid-1", filename="a.mp4", blob="job-1", media_sha256="ab" * 32,
        options=AnalysisOptions(SpeechOptions(language="ko", word_timestamps=True), VideoOptions(1.5, True, False)),
        metadata={"room": "42"},
    )  # fmt: skip
    return Job(job_id="job-1", tenant="t", spec=spec, state=JobState.RUNNING, created_at=100.25, idempotency_key="k",
               fingerprint=spec.fingerprint(), progress=0.5, stage="transcribe", attempts=2,
               error=JobError("UNAVAILABLE", "down", True), started_at=101.0, not_before=0.0).with_(**changes)  # fmt: skip


def test_job_records_round_trip() -> None:
    for job in (_job(), _job(result=b"\x00\x01", finished_at=130.0, state=JobState.SUCCEEDED, error=None)):
        assert records.decode_job(records.encode_job(job)) == job
    text = Job(
        job_id="j", tenant="t", spec=JobSpec(Modality.TEXT, "m", text="hello"), state=JobState.QUEUED, created_at=1.0
    )
    assert records.decode_job(records.encode_job(text)) == text


def test_result_records_round_trip_exactly() -> None:
    job, back = records.decode_result(records.encode_result(_job(), _analysis()))
    assert job == _job()
    analysis = _analysis()
    assert np.array_equal(back.chunks[0].embedding, analysis.chunks[0].embedding)
    assert [c.extra for c in back.chunks] == [{"keyframe_s": 1.0, "face_count": 2}]
    assert back.chunks[0].speakers == ("S2", "S1") and back.transcript == analysis.transcript
    assert isinstance(back.chunks[0].extra["face_count"], int)
    strip = lambda a: a.__class__(**{**{f: getattr(a, f) for f in a.__slots__}, "chunks": ()})  # noqa: E731
    assert strip(back) == strip(analysis)


def test_records_written_by_earlier_versions_as_json_still_decode() -> None:
    """What an API replica of the previous release produced (the JSON it wrote, verbatim)."""
    legacy_job = {
        "job_id": "job-1", "tenant": "t", "state": "QUEUED", "created_at": 100.25, "idempotency_key": "k",
        "fingerprint": "f", "progress": 0.0, "stage": "queued", "attempts": 0, "error": None, "started_at": None,
        "finished_at": None, "not_before": 0.0, "result": base64.b64encode(b"\x01").decode(),
        "spec": {"modality": "speech", "media_id": "aud-1", "text": "", "filename": "a.wav", "blob": "job-1",
                 "media_sha256": "cd", "options": {
                     "speech": {"language": "ja", "task": "transcribe", "word_timestamps": True, "vad": True,
                                "initial_prompt": None, "hotwords": None, "beam_size": 5},
                     "video": {"sample_fps": 0.0, "return_keyframes": False, "skip_audio": False},
                     "metadata": {"k": "v"}}},
    }  # fmt: skip
    job = records.decode_job(json.dumps(legacy_job).encode())
    assert job.spec.options.speech == SpeechOptions(language="ja", word_timestamps=True)
    assert job.spec.options.video == VideoOptions() and job.spec.metadata == {"k": "v"} and job.result == b"\x01"
    # The fingerprint is computed from the same document as before, so an idempotency key still matches.
    assert job.spec.fingerprint() == _legacy_fingerprint(legacy_job["spec"])  # type: ignore[arg-type]
    vector = base64.b64encode(np.ones(4, dtype="<f4").tobytes()).decode()
    legacy_analysis = {
        "tenant": "t", "media_id": "aud-1", "modality": "speech", "language": ["ja", 0.9], "tags": [],
        "chunks": [{"index": 0, "text": "こんにちは", "embedding": vector, "tags": [["x.y", "x", 0.5, 0.0, 1.0]],
                    "start_s": 0.0, "end_s": 1.0, "language": None, "extra": {}}],
        "embedding_model": ["mini", "1"], "created_at": 1.0, "version": 1, "metadata": {}, "transcript": None,
        "video": None, "shots": [],
    }  # fmt: skip
    decoded_job, analysis = records.decode_result(json.dumps({"job": legacy_job, "analysis": legacy_analysis}).encode())
    assert decoded_job == job and analysis.chunks[0].text == "こんにちは"
    assert np.array_equal(analysis.chunks[0].embedding, np.ones(4, dtype=np.float32))


def test_fingerprints_ignore_speaker_options_left_at_their_defaults() -> None:
    """A key used before speaker options existed still matches; setting one makes a different job."""
    plain = JobSpec(Modality.SPEECH, "aud-1", options=AnalysisOptions(SpeechOptions(language="ja")))
    legacy = {"modality": "speech", "media_id": "aud-1", "media_sha256": "", "options": {
        "speech": {"language": "ja", "task": "transcribe", "word_timestamps": False, "vad": True,
                   "initial_prompt": None, "hotwords": None, "beam_size": 5},
        "video": {"sample_fps": 0.0, "return_keyframes": False, "skip_audio": False}, "metadata": {}}}  # fmt: skip
    assert plain.fingerprint() == _legacy_fingerprint(legacy)
    hinted = JobSpec(Modality.SPEECH, "aud-1", options=AnalysisOptions(SpeechOptions(language="ja", num_speakers=2)))
    assert hinted.fingerprint() != plain.fingerprint()


def _legacy_fingerprint(spec: dict[str, object]) -> str:
    import hashlib

    doc = {"modality": spec["modality"], "media_id": spec["media_id"], "text": hashlib.sha256(b"").hexdigest(),
           "media": spec["media_sha256"], "options": spec["options"]}  # fmt: skip
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
