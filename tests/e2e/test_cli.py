"""The CLI as a user runs it, against the real server."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from tests.fixtures import speech
from tests.support.server import ServerProcess


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "understanding", *args, "--server", server.target, "--tenant", "cli"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_analyze_text_and_search_json(server: ServerProcess) -> None:
    done = cli(
        server, "analyze", "--text", "The band played their new song at the concert", "--media-id", "cli-1", "--json"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["results"][0]
    assert result["media_id"] == "cli-1" and "topic.music" in {t["label"] for t in result["tags"]}
    done = cli(server, "search", "live music show", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hits"][0]["media_id"] == "cli-1"
    table = cli(server, "search", "live music show")
    assert table.returncode == 0 and "cli-1" in table.stdout


def test_analyze_audio_file_detects_modality(server: ServerProcess, tmp_path: pathlib.Path) -> None:
    wav = speech.make_speech_wav("Good morning everyone, the train to London leaves at nine.", tmp_path / "x.wav")
    mp3 = speech.convert(wav, "mp3", tmp_path / "renamed.txt")  # content decides, not the extension
    done = cli(server, "analyze", str(mp3), "--json", "--words")
    assert done.returncode == 0, done.stderr
    analysis = json.loads(done.stdout)["analysis"]
    assert analysis["modality"] == "MODALITY_SPEECH"
    text = " ".join(s["text"] for s in analysis["transcript"]["segments"]).lower()
    assert "london" in text and analysis["transcript"]["segments"][0]["words"]
    human = cli(server, "analyze", str(wav))
    assert human.returncode == 0 and "London" in human.stdout


def test_text_file_and_clear_errors(server: ServerProcess, tmp_path: pathlib.Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("Pizza and pasta for dinner tonight, I am cooking.")
    done = cli(server, "analyze", str(note), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["results"][0]["media_id"] == "note.txt"
    missing = cli(server, "analyze", str(tmp_path / "nope.wav"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    empty = cli(server, "search", " ")
    assert empty.returncode == 3 and "INVALID_ARGUMENT" in empty.stderr
    down = subprocess.run(
        [sys.executable, "-m", "understanding", "search", "x", "--server", "127.0.0.1:1", "--timeout", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 3 and "hint:" in down.stderr
