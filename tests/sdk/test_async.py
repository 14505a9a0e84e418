"""Every method of the AsyncClient against the real server."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from tests.fixtures import speech
from understanding_client import (
    AsyncClient,
    FailedPrecondition,
    JobState,
    Modality,
    NotFound,
    TextItem,
    Unimplemented,
)

SAY = "Please remember to water the tomato plants in the garden every evening."


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return speech.make_speech_wav(SAY, tmp_path_factory.mktemp("sdk-aio") / "garden.wav")


async def test_text_search_media(aclient: AsyncClient) -> None:
    results = await asyncio.gather(
        aclient.analyze_text(TextItem("Messi scored twice and Barcelona won the league", media_id="aio-sports")),
        aclient.analyze_text(["A pasta recipe with garlic and olive oil"], return_embeddings=True),
    )
    [sports], [food] = results
    assert sports.media_id == "aio-sports" and "topic.sports" in {t.label for t in sports.tags}
    assert len(food.chunks[0].embedding) == 512  # the default multilingual model
    hits = await aclient.search("football match result", top_k=2)
    assert hits[0].media_id == "aio-sports"
    by_vector = await aclient.search(vector=food.chunks[0].embedding, top_k=1)
    assert by_vector[0].media_id == food.media_id
    by_example = await aclient.search(example=("aio-sports", 0), top_k=5)
    assert by_example.hits and "aio-sports" not in {h.media_id for h in by_example}  # more like it, not itself
    media = await aclient.get_media("aio-sports")
    assert media.modality is Modality.TEXT and media.points
    assert await aclient.delete_media("aio-sports") == len(media.points)
    with pytest.raises(NotFound):
        await aclient.get_media("aio-sports")


async def test_transcribe_upload_and_video(aclient: AsyncClient, wav: pathlib.Path, tmp_path: pathlib.Path) -> None:
    seen: list[int] = []
    analysis = await aclient.transcribe(wav, media_id="aio-garden", progress=lambda sent, total: seen.append(sent))
    assert seen[-1] == wav.stat().st_size
    assert analysis.transcript is not None and "tomato" in analysis.transcript.text.lower()
    with wav.open("rb") as fh:
        upload = await aclient.upload_media(fh)
    assert upload.size_bytes == wav.stat().st_size and upload.upload_id.startswith("upl-")
    video = speech.make_video(tmp_path / "clip.mp4", audio=wav)
    try:
        result = await aclient.analyze_video(video, media_id="aio-video")
    except Unimplemented:
        return  # tests/sdk/test_client.py::test_analyze_video says whether that is expected
    assert result.modality is Modality.VIDEO and result.video is not None


async def test_jobs(aclient: AsyncClient, wav: pathlib.Path) -> None:
    job = await aclient.submit_job(source=wav, modality="speech", media_id="aio-job")
    states = [update.state async for update in aclient.watch_job(job.job_id, timeout=180)]
    assert states[-1] is JobState.SUCCEEDED and JobState.RUNNING in states
    done = await aclient.get_job(job.job_id)
    assert done.result is not None and done.result.transcript is not None
    text_job = await aclient.submit_job(text="The orchestra performed a symphony to a full hall")
    assert (await aclient.wait_job(text_job.job_id, timeout=300)).state is JobState.SUCCEEDED
    page = await aclient.list_jobs(states=["succeeded"])
    assert {j.job_id for j in page} == {job.job_id, text_job.job_id}
    assert {j.job_id async for j in aclient.iter_jobs(page_size=1)} == {job.job_id, text_job.job_id}
    with pytest.raises(FailedPrecondition):
        await aclient.cancel_job(job.job_id)
    with pytest.raises(NotFound):
        async for _ in aclient.watch_job("job-nope"):
            pass
