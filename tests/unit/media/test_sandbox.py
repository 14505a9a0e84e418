"""MediaDecoder: the same results as in-process decoding, and a crash, hang,
memory blow-up or decompression bomb in a decoder child fails one call with a
precise error while the caller (the server) carries on. No temp file outlives a call."""

from __future__ import annotations

import dataclasses
import multiprocessing
import pathlib
import subprocess
import threading

import numpy as np
import pytest

from tests.fixtures import video as fx
from tests.fixtures.speech import convert, make_speech_wav
from understanding.domain import Cancelled, InvalidInput, LimitExceeded
from understanding.faults import FaultInjector
from understanding.media import video
from understanding.media.audio import decode_audio
from understanding.media.sandbox import MediaDecoder, SandboxSettings

SENTENCE = "Please send the quarterly report to the finance team before the meeting on Monday."


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("sandbox-media")


@pytest.fixture(scope="module")
def wav(media: pathlib.Path) -> pathlib.Path:
    return make_speech_wav(SENTENCE, media / "speech.wav")


@pytest.fixture(scope="module")
def shots(media: pathlib.Path) -> pathlib.Path:
    return fx.make_shots_video(media / "shots.mp4")


# The idle timeout is what ends a hang, so the hang cases need a short one; every other
# call gets one no busy machine can reach (a child waiting for a core sends nothing either).
HANG_TIMEOUT_S = 2.0
PATIENT_TIMEOUT_S = 600.0


def decoder(work: pathlib.Path, faults: str = "", **kw: object) -> MediaDecoder:
    settings = SandboxSettings(work_dir=work, **{"timeout_s": PATIENT_TIMEOUT_S, **kw})  # type: ignore[arg-type]
    return MediaDecoder(settings, faults=FaultInjector.from_spec(faults))


def decoder_children() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("decode-")]


def silence_flac(path: pathlib.Path, seconds: float) -> pathlib.Path:
    """Digital silence in 65535-sample FLAC frames: ~17 bytes per 4 s, decoding ~4000x larger."""
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", str(seconds),
         "-c:a", "flac", "-sample_fmt", "s16", "-frame_size", "65535", str(path)],
        check=True,
    )  # fmt: skip
    return path


def test_isolated_audio_equals_in_process(wav: pathlib.Path, media: pathlib.Path, tmp_path: pathlib.Path) -> None:
    mp3 = convert(wav, "mp3", media / "speech.mp3")
    for path in (wav, mp3):
        isolated = decoder(tmp_path).decode_audio(path, max_duration_s=60)
        assert np.array_equal(isolated, decode_audio(path, max_duration_s=60))
    assert list(tmp_path.iterdir()) == []


def test_isolated_video_equals_in_process(shots: pathlib.Path, tmp_path: pathlib.Path) -> None:
    d = decoder(tmp_path)
    limits = video.VideoLimits(max_pixels=3840 * 2160, max_duration_s=600, max_frames=10_000)
    assert d.probe_video(shots, limits) == video.probe_video(shots, limits)
    stats, direct_stats = video.DecodeStats(), video.DecodeStats()
    frames = list(d.sample_frames(shots, sample_fps=2.0, width=320, limits=limits, stats=stats))
    direct = list(video.sample_frames(shots, sample_fps=2.0, width=320, limits=limits, stats=direct_stats))
    assert stats == direct_stats and len(frames) == len(direct) > 0
    assert all(a.t_s == b.t_s and np.array_equal(a.image, b.image) for a, b in zip(frames, direct, strict=True))
    assert d.audio_offset_s(shots) == video.audio_offset_s(shots)


def test_domain_errors_cross_the_boundary(wav: pathlib.Path, media: pathlib.Path, tmp_path: pathlib.Path) -> None:
    d = decoder(tmp_path)
    noise = media / "noise.mp3"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidInput) as err:
        d.decode_audio(noise)
    assert err.value.field == "chunk" and "not decodable audio" in err.value.message
    with pytest.raises(LimitExceeded) as limit:
        d.decode_audio(wav, max_duration_s=1.0)
    assert limit.value.field == "duration"
    with pytest.raises(LimitExceeded) as big:
        d.probe_video(fx.make_shots_video(media / "shots-limit.mp4"), video.VideoLimits(max_pixels=100))
    assert big.value.field == "video.resolution"
    with pytest.raises(FileNotFoundError):
        d.decode_audio(media / "gone.wav")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fault", "timeout_s", "error", "needle"),
    [
        ("decode_crash", PATIENT_TIMEOUT_S, InvalidInput, "the decoder crashed (SIGSEGV)"),
        ("decode_hang", HANG_TIMEOUT_S, InvalidInput, "the decoder timed out (no progress for 2 s)"),
        ("decode_oom", PATIENT_TIMEOUT_S, LimitExceeded, "memory limit of 256 MiB"),
    ],
)
def test_a_misbehaving_child_fails_one_call(
    fault: str, timeout_s: float, error: type[Exception], needle: str, wav: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    d = decoder(tmp_path, f"{fault}=1", timeout_s=timeout_s, memory_bytes=256 * 2**20)
    # The message names the cause: a crash and a blow-up are seen as such (their timeout is
    # out of reach), a hang is cut by the idle timeout, not by the child's hour-long sleep.
    with pytest.raises(error) as err:
        d.decode_audio(wav)
    assert needle in str(err.value), err.value
    assert not decoder_children()  # killed and reaped, whatever it was doing
    # The next call is served as if nothing happened (with a timeout a busy machine cannot trip).
    d.settings = dataclasses.replace(d.settings, timeout_s=PATIENT_TIMEOUT_S)
    assert d.decode_audio(wav).size > 0
    assert list(tmp_path.iterdir()) == []


def test_decompression_bomb_is_refused(media: pathlib.Path, tmp_path: pathlib.Path) -> None:
    bomb = silence_flac(media / "silence-1h.flac", 3600)
    assert bomb.stat().st_size < 100_000  # an hour of audio in a few kilobytes
    with pytest.raises(LimitExceeded) as err:
        decoder(tmp_path).decode_audio(bomb)  # default bound: 1000x past 64 MiB
    assert err.value.field == "decompression_ratio" and "decompression bomb" in err.value.message
    # With no expansion bound, the duration limit still applies.
    with pytest.raises(LimitExceeded) as too_long:
        decoder(tmp_path, max_expansion=None).decode_audio(bomb, max_duration_s=600)
    assert too_long.value.field == "duration"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("call", ["decode_audio", "probe_audio"])
def test_cancel_kills_the_child(tmp_path: pathlib.Path, wav: pathlib.Path, call: str) -> None:
    # The child hangs and its idle timeout is out of reach: only the cancel can end the call
    # (the channel probe comes first in the speech path, so it must take the cancel too).
    d = decoder(tmp_path, "decode_hang=1")
    cancelled = threading.Event()
    threading.Timer(0.5, cancelled.set).start()  # early or late, the call must end Cancelled
    with pytest.raises(Cancelled):
        getattr(d, call)(wav, cancelled=cancelled)
    assert not decoder_children()
    assert list(tmp_path.iterdir()) == []


def test_stopping_frames_early_ends_the_child(shots: pathlib.Path, tmp_path: pathlib.Path) -> None:
    frames = decoder(tmp_path).sample_frames(shots, sample_fps=2.0, width=160)
    first = next(frames)
    frames.close()  # the caller stopped (an error elsewhere): the child must not linger
    assert first.image.shape[1] == 160
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("decode-")]


def test_isolated_channels_equal_in_process(wav: pathlib.Path, media: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Per-channel decoding crosses the boundary as (channels, samples), with its checks and limits."""
    from tests.fixtures.calls import write_wav
    from understanding.media.audio import probe_audio
    from understanding.media.channels import decode_channels

    mono = decode_audio(wav)
    stereo = write_wav(media / "stereo.wav", np.stack([mono, np.zeros_like(mono)]))
    d = decoder(tmp_path)
    isolated = d.decode_channels(stereo, max_duration_s=60)
    assert isolated.shape == (2, mono.size)
    assert np.array_equal(isolated, decode_channels(stereo, max_duration_s=60))
    assert d.probe_audio(stereo) == probe_audio(stereo) and d.probe_audio(stereo).channels == 2
    wide = write_wav(media / "wide.wav", np.zeros((33, 1600), dtype=np.float32))
    with pytest.raises(InvalidInput) as err:
        d.decode_channels(wide)
    assert err.value.field == "speech.channels" and "33 channels" in err.value.message
    with pytest.raises(LimitExceeded) as limit:
        d.decode_channels(stereo, max_duration_s=1.0)
    assert limit.value.field == "duration"
    assert list(tmp_path.iterdir()) == []


_HANGING_SERVER = """
import sys, threading, time, pathlib
from understanding.faults import FaultInjector
from understanding.media.sandbox import MediaDecoder, SandboxSettings
d = MediaDecoder(SandboxSettings(work_dir=pathlib.Path(sys.argv[1]), timeout_s=3600), faults=FaultInjector.from_spec("decode_hang=1"))
threading.Thread(target=d.decode_audio, args=(pathlib.Path(sys.argv[2]),), daemon=True).start()
print("decoding", flush=True)
time.sleep(3600)
"""


def test_a_killed_server_takes_its_hung_decoder_child_and_forkserver_with_it(
    tmp_path: pathlib.Path, wav: pathlib.Path
) -> None:
    """SIGKILL (or the OOM killer) gives the server no chance to clean up: the forkserver and
    a child hung in hostile media must still end, not live on holding memory forever."""
    import signal
    import sys
    import time

    import psutil

    server = subprocess.Popen(
        [sys.executable, "-c", _HANGING_SERVER, str(tmp_path), str(wav)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "decoding"
        parent = psutil.Process(server.pid)
        deadline = time.monotonic() + 120
        while True:  # the forkserver (the server's child) and the hung decoder (the forkserver's)
            forkservers = [p for p in parent.children() if "forkserver" in " ".join(_cmdline(p))]
            family = forkservers + [c for f in forkservers for c in f.children()]
            if len(family) >= 2:
                break
            assert time.monotonic() < deadline, f"no hung decoder child: {family}"
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    gone, alive = psutil.wait_procs(family, timeout=60)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]


def _cmdline(process: object) -> list[str]:
    import psutil

    try:
        return list(process.cmdline())  # type: ignore[attr-defined]
    except psutil.Error:
        return []
