"""The CLI's client commands (jobs, media, upload, search filters) against the real server."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from tests.fixtures import speech
from tests.support.server import ServerProcess


def cli(server: ServerProcess, tenant: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "understanding", *args, "--server", server.target, "--tenant", tenant],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_jobs_media_upload_commands(server: ServerProcess, tenant: str, tmp_path: pathlib.Path) -> None:
    wav = speech.make_speech_wav("The museum opens at ten and closes at six on Sundays.", tmp_path / "museum.wav")
    watched = cli(server, tenant, "jobs", "submit", str(wav), "--media-id", "cli-museum", "--watch", "--json")
    assert watched.returncode == 0, watched.stderr
    updates = [json.loads(line) for line in watched.stdout.splitlines()]
    assert updates[-1]["state"] == "JOB_STATE_SUCCEEDED" and updates[-1]["modality"] == "MODALITY_SPEECH"
    assert "museum" in " ".join(s["text"] for s in updates[-1]["result"]["transcript"]["segments"]).lower()
    job_id = updates[-1]["job_id"]

    human = cli(server, tenant, "jobs", "get", job_id)
    assert human.returncode == 0 and job_id in human.stdout and "succeeded" in human.stdout
    listed = cli(server, tenant, "jobs", "list", "--state", "succeeded", "--json")
    assert [j["job_id"] for j in json.loads(listed.stdout)["jobs"]] == [job_id]
    table = cli(server, tenant, "jobs", "list")
    assert table.returncode == 0 and job_id in table.stdout
    cancel = cli(server, tenant, "jobs", "cancel", job_id)
    assert cancel.returncode == 3 and "FAILED_PRECONDITION" in cancel.stderr

    text_job = cli(server, tenant, "jobs", "submit", "--text", "Pizza and pasta for dinner tonight", "--key", "k-1")
    assert text_job.returncode == 0 and text_job.stdout.strip().startswith("job-") and "jobs watch" in text_job.stderr
    watch = cli(server, tenant, "jobs", "watch", text_job.stdout.strip())
    assert watch.returncode == 0 and "succeeded" in watch.stdout and "topic.food" in watch.stdout

    media = cli(server, tenant, "media", "get", "cli-museum", "--json")
    assert media.returncode == 0 and json.loads(media.stdout)["points"]
    assert "museum" in cli(server, tenant, "media", "get", "cli-museum").stdout.lower()
    found = cli(server, tenant, "search", "when does the museum open", "--modality", "speech", "--json")
    assert json.loads(found.stdout)["hits"][0]["media_id"] == "cli-museum"
    deleted = cli(server, tenant, "media", "delete", "cli-museum")
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    gone = cli(server, tenant, "media", "get", "cli-museum")
    assert gone.returncode == 3 and "NOT_FOUND" in gone.stderr and "hint:" in gone.stderr

    uploaded = cli(server, tenant, "upload", str(wav), "--json")
    upload_id = json.loads(uploaded.stdout)["upload_id"]
    by_ref = cli(server, tenant, "jobs", "submit", "--upload-id", upload_id, "--modality", "speech", "--watch")
    assert by_ref.returncode == 0, by_ref.stderr
    assert "succeeded" in by_ref.stdout and "museum" in by_ref.stdout.lower()

    usage = cli(server, tenant, "jobs", "submit", "--upload-id", upload_id)
    assert usage.returncode == 2 and "--modality" in usage.stderr
    nothing = cli(server, tenant, "jobs", "watch", "job-nope")
    assert nothing.returncode == 3 and "NOT_FOUND" in nothing.stderr


@pytest.mark.parametrize(
    "command", [["jobs", "--help"], ["jobs", "submit", "--help"], ["media", "--help"], ["upload", "--help"]]
)
def test_help(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "understanding", *command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage:" in done.stdout
