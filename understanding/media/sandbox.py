"""Decode untrusted media in a child process: a decoder that crashes, hangs or
allocates without bound costs one child, never the server.

FFmpeg parses whatever a caller uploads, in C. A demuxer bug that segfaults,
spins or asks for gigabytes would take the whole service (every tenant's RPCs,
the job queue, the outbox) down with it if it ran in the server process. So
`MediaDecoder` runs every parse of an upload in a fresh child:

- children fork from a `multiprocessing` forkserver that has already imported
  PyAV, NumPy and OpenCV, so a child costs a fork (~10-30 ms), not a Python
  start-up and an `import av`;
- each child gets an address-space limit (what it started with plus
  `memory_bytes`), a CPU-time limit and no core dumps;
- the parent waits with an idle timeout: a child that sends nothing (no
  progress, no frame, no result) for `timeout_s` is killed as hung, so a long
  but healthy decode is never cut short;
- decoded audio comes back through a temp file in `work_dir` (removed whatever
  happens), frames through a pipe one at a time (the pipe's buffer is the
  back-pressure: the child never runs ahead of the analysis by more than a few
  frames).

A crash or a hang becomes `InvalidInput` ("media could not be decoded: the
decoder crashed (SIGSEGV)"), running out of memory `LimitExceeded`: the same
media would fail the same way again, so neither is retriable. `isolate=False`
runs the same code in-process (unit tests, benchmarks).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import pathlib
import resource
import signal
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, fields
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.context import set_spawning_popen
from typing import Any

import numpy as np
import numpy.typing as npt

from understanding import domain
from understanding.domain import Cancelled, InvalidInput, LimitExceeded, UnderstandingError, VideoInfo
from understanding.media import audio as _audio
from understanding.media import channels as _channels
from understanding.media import image as _image
from understanding.media import live as _live
from understanding.media import video as _video

__all__ = ["MediaDecoder", "SandboxSettings", "StreamDecoder"]

log = logging.getLogger(__name__)

# Only our decoders, never the caller's main module: a main that imports grpc would make
# every child pay grpc's import or fork handlers (~300 ms); see `_Popen`.
_PRELOAD = ["understanding.media.sandbox"]
_context_lock = threading.Lock()
_context: Any = None
_POLL_S = 0.2  # how often a waiting parent looks at the caller's `cancelled`
_PROBE_CPU_S = 60  # a probe reads headers; a minute of CPU is already hostile
_IMAGE_CPU_S = 120  # a 50-megapixel JPEG decodes in ~1 s; two minutes is a hostile file


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    """How untrusted media is decoded (see the module docstring)."""

    isolate: bool = True
    timeout_s: float = 60.0  # longest a child may go without sending anything
    memory_bytes: int = 2 * 1024**3  # address space a child may add to its start-up size; 0: unbounded
    cpu_s: int = 3600  # CPU seconds per child; 0: unbounded
    max_expansion: float | None = 1000.0  # decoded audio bytes per input byte (past the floor)
    expansion_floor_bytes: int = 64 * 1024**2
    work_dir: pathlib.Path | None = None  # where decoded audio is handed back (the spool dir)


@dataclass
class _Faults:
    """Test-only misbehaviour of the next child (from `understanding.faults`)."""

    crash: bool = False
    hang: bool = False
    oom: bool = False


class MediaDecoder:
    """Probe and decode media, isolated in a child process unless `settings.isolate` is off."""

    def __init__(self, settings: SandboxSettings | None = None, *, faults: Any = None) -> None:
        self.settings = settings or SandboxSettings()
        self._faults = faults  # understanding.faults.FaultInjector | None

    def warm_up(self) -> None:
        """Start the forkserver now (it imports PyAV/OpenCV once, ~1 s) rather than on the first upload."""
        if self.settings.isolate:
            self._run("noop", (), {}, cpu_s=_PROBE_CPU_S)

    # ------------------------------------------------------------ audio
    def decode_audio(
        self,
        path: pathlib.Path,
        *,
        sample_rate: int = 16000,
        max_duration_s: float | None = None,
        cancelled: threading.Event | None = None,
    ) -> npt.NDArray[np.float32]:
        """`media.audio.decode_audio` with the expansion bound of the settings."""
        s = self.settings
        kwargs = {
            "sample_rate": sample_rate,
            "max_duration_s": max_duration_s,
            "max_expansion": s.max_expansion,
            "expansion_floor_bytes": s.expansion_floor_bytes,
        }
        if not s.isolate:
            return _audio.decode_audio(path, **kwargs)  # type: ignore[arg-type]
        _must_exist(path)
        work = s.work_dir or path.parent
        work.mkdir(parents=True, exist_ok=True)
        out = work / f"decoded-{uuid.uuid4().hex}.f32"
        try:
            count = self._run("audio", (str(path), str(out)), kwargs, cancelled=cancelled)
            audio = np.fromfile(out, dtype=np.float32)
            if audio.size != count:
                raise InvalidInput("media could not be decoded: the decoder's output is incomplete", field="chunk")
            return audio
        finally:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()

    def probe_audio(self, path: pathlib.Path, *, cancelled: threading.Event | None = None) -> _audio.AudioInfo:
        """`media.audio.probe_audio`: container facts of the best audio stream (channels, duration), nothing decoded."""
        if not self.settings.isolate:
            return _audio.probe_audio(path)
        _must_exist(path)
        info: _audio.AudioInfo = self._run("probe_audio", (str(path),), {}, cancelled=cancelled, cpu_s=_PROBE_CPU_S)
        return info

    def decode_channels(
        self,
        path: pathlib.Path,
        *,
        sample_rate: int = 16000,
        max_channels: int = _channels.MAX_CHANNELS,
        max_duration_s: float | None = None,
        cancelled: threading.Event | None = None,
    ) -> npt.NDArray[np.float32]:
        """`media.channels.decode_channels` with the expansion bound of the settings: (channels, samples).

        The child writes interleaved samples to a file as it decodes (its memory
        stays one block); the result is a (channels, samples) view of that file's
        contents, so the parent holds the audio once.
        """
        s = self.settings
        kwargs = {
            "sample_rate": sample_rate,
            "max_channels": max_channels,
            "max_duration_s": max_duration_s,
            "max_expansion": s.max_expansion,
            "expansion_floor_bytes": s.expansion_floor_bytes,
        }
        if not s.isolate:
            return _channels.decode_channels(path, **kwargs)  # type: ignore[arg-type]
        _must_exist(path)
        work = s.work_dir or path.parent
        work.mkdir(parents=True, exist_ok=True)
        out = work / f"decoded-{uuid.uuid4().hex}.f32"
        try:
            channels, count = self._run("channels", (str(path), str(out)), kwargs, cancelled=cancelled)
            packed = np.fromfile(out, dtype=np.float32)
            if channels < 1 or packed.size != channels * count:
                raise InvalidInput("media could not be decoded: the decoder's output is incomplete", field="chunk")
            interleaved: npt.NDArray[np.float32] = packed.reshape(count, channels).T
            return interleaved
        finally:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()

    # ------------------------------------------------------------ video
    def probe_video(self, path: pathlib.Path, limits: _video.VideoLimits | None = None) -> VideoInfo:
        if not self.settings.isolate:
            return _video.probe_video(path, limits)
        _must_exist(path)
        info: VideoInfo = self._run("probe_video", (str(path), limits), {}, cpu_s=_PROBE_CPU_S)
        return info

    def audio_offset_s(self, path: pathlib.Path) -> float:
        if not self.settings.isolate:
            return _video.audio_offset_s(path)
        _must_exist(path)
        return float(self._run("audio_offset_s", (str(path),), {}, cpu_s=_PROBE_CPU_S))

    def sample_frames(
        self,
        path: pathlib.Path,
        *,
        sample_fps: float,
        width: int,
        limits: _video.VideoLimits | None = None,
        stats: _video.DecodeStats | None = None,
        cancelled: threading.Event | None = None,
        detail_max_side: int = 0,
    ) -> Iterator[_video.SampledFrame]:
        """`media.video.sample_frames`, frames streamed from the child; `stats` kept current."""
        if not self.settings.isolate:
            yield from _video.sample_frames(
                path,
                sample_fps=sample_fps,
                width=width,
                limits=limits,
                stats=stats,
                cancelled=cancelled,
                detail_max_side=detail_max_side,
            )
            return
        _must_exist(path)
        kwargs = {"sample_fps": sample_fps, "width": width, "limits": limits, "detail_max_side": detail_max_side}
        stream = self._messages("frames", (str(path),), kwargs, cancelled=cancelled)
        try:
            for message in stream:
                kind = message[0]
                if kind == "frame":
                    _copy_stats(message[2], stats)
                    yield message[1]
                elif kind == "ok":
                    _copy_stats(message[1], stats)
                    return
        finally:
            stream.close()  # kills the child if the caller stopped early

    # ------------------------------------------------------------ live streams
    def stream_decoder(self, limits: _live.FrameLimits, *, opus: bool) -> StreamDecoder:
        """A decoder for one live stream's frames (and Opus packets): one child for the whole stream."""
        return StreamDecoder(self.settings, limits, opus=opus)

    # ------------------------------------------------------------ images
    def decode_image(
        self,
        path: pathlib.Path,
        limits: _image.ImageLimits | None = None,
        *,
        cancelled: threading.Event | None = None,
    ) -> _image.DecodedImage:
        """`media.image.decode_image`: header checks, then the first frame, in a child."""
        if not self.settings.isolate:
            return _image.decode_image(path, limits)
        _must_exist(path)
        decoded: _image.DecodedImage = self._run(
            "image", (str(path), limits), {}, cancelled=cancelled, cpu_s=_IMAGE_CPU_S
        )
        return decoded

    # ------------------------------------------------------------ plumbing
    def _run(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        cancelled: threading.Event | None = None,
        cpu_s: int | None = None,
    ) -> Any:
        stream = self._messages(task, args, kwargs, cancelled=cancelled, cpu_s=cpu_s)
        try:
            for message in stream:
                if message[0] == "ok":
                    return message[1]
        finally:
            stream.close()
        raise AssertionError("unreachable: the message stream ends with a result or raises")

    def _messages(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        cancelled: threading.Event | None = None,
        cpu_s: int | None = None,
    ) -> Generator[tuple[Any, ...], None, None]:
        """Start a child for `task` and yield what it sends, ending with ("ok", result).

        Raises the child's domain error, or InvalidInput/LimitExceeded for a
        crash, a hang or exhausted memory; the child is gone when this ends.
        """
        s = self.settings
        faults = _Faults()
        if self._faults is not None and task != "noop":  # one fault per child, in this order
            if self._faults.take("decode_crash"):
                faults.crash = True
            elif self._faults.take("decode_hang"):
                faults.hang = True
            elif self._faults.take("decode_oom"):
                faults.oom = True
        cpu = s.cpu_s if cpu_s is None else (min(cpu_s, s.cpu_s) if s.cpu_s else cpu_s)
        ctx = _forkserver()
        receiver, sender = ctx.Pipe(duplex=False)
        child = _DecoderProcess(
            target=_child_main,
            args=(sender, task, args, kwargs, s.memory_bytes, cpu, faults),
            name=f"decode-{task}",
            daemon=True,
        )
        started = time.monotonic()
        try:
            child.start()
            sender.close()
            idle_deadline = time.monotonic() + s.timeout_s
            while True:
                if cancelled is not None and cancelled.is_set():
                    raise Cancelled("decoding cancelled")
                left = idle_deadline - time.monotonic()
                if left <= 0:
                    log.warning("decoder child timed out", extra={"task": task, "timeout_s": s.timeout_s})
                    raise InvalidInput(
                        f"media could not be decoded: the decoder timed out (no progress for {s.timeout_s:g} s)",
                        field="chunk",
                    )
                if not receiver.poll(min(_POLL_S, left)):
                    continue
                try:
                    message = receiver.recv()
                except EOFError:
                    raise _died(child, task) from None
                idle_deadline = time.monotonic() + s.timeout_s
                kind = message[0]
                if kind == "error":
                    raise _rebuild(message)
                if kind == "memory":
                    raise LimitExceeded(
                        "media could not be decoded within the decoder's memory limit of "
                        f"{s.memory_bytes // 2**20} MiB",
                        field="chunk",
                    )
                if kind == "failed":
                    log.warning("decoder child failed", extra={"task": task, "reason": message[1]})
                    raise InvalidInput(f"media could not be decoded: {message[1]}", field="chunk")
                yield message
                if kind == "ok":
                    return
        finally:
            receiver.close()
            if child.is_alive():
                child.kill()
            if child.pid is not None:  # started
                child.join(5)
                with contextlib.suppress(ValueError):
                    child.close()
            log.debug("decoder child done", extra={"task": task, "seconds": round(time.monotonic() - started, 3)})


class StreamDecoder:
    """Decodes a live stream's JPEG frames and Opus packets in one long-lived child.

    A child per item would cost a fork per frame or per 20 ms packet; a live
    stream instead keeps one child for its lifetime (the Opus decoder's state
    lives there too). The child has the same limits as any decoder child; an
    item it crashes on or spends more than `item_timeout_s` on is
    InvalidInput, and the next item gets a fresh child. Calls are serialised;
    `close` ends the child (safe to call twice).
    """

    def __init__(
        self, settings: SandboxSettings, limits: _live.FrameLimits, *, opus: bool, item_timeout_s: float = 5.0
    ) -> None:
        self._settings = settings
        self._limits = limits
        self._opus = opus
        self._timeout_s = item_timeout_s
        self._lock = threading.Lock()
        self._child: Any = None
        self._conn: Any = None
        self._local: _LiveDecoding | None = _LiveDecoding(limits, opus) if not settings.isolate else None
        self.restarts = 0

    def image(self, data: bytes) -> _live.DecodedFrame:
        """BGR frame downscaled to the analysis width (and the detail copy when the limits ask),
        with the encoded width and height (InvalidInput if it is not an image)."""
        result: _live.DecodedFrame = self._call("image", data)
        return result

    def opus(self, packet: bytes) -> npt.NDArray[np.float32]:
        """16 kHz mono float32 samples of one Opus packet (InvalidInput if libopus rejects it)."""
        result: npt.NDArray[np.float32] = self._call("opus", packet)
        return result

    def close(self) -> None:
        with self._lock:
            self._stop_child()

    def _call(self, kind: str, payload: bytes) -> Any:
        with self._lock:
            if self._local is not None:
                return self._local.handle(kind, payload)
            if self._child is None:
                self._start_child()
            try:
                self._conn.send((kind, payload))
                if not self._conn.poll(self._timeout_s):
                    log.warning("live decoder child timed out", extra={"task": kind})
                    self._stop_child()
                    raise InvalidInput(
                        f"could not be decoded: the decoder timed out after {self._timeout_s:g} s", field=_FIELDS[kind]
                    )
                message = self._conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                child = self._child
                self._stop_child()
                raise _died(child, f"live-{kind}") from None
            if message[0] == "ok":
                return message[1]
            if message[0] == "error":
                raise _rebuild(message)
            if message[0] == "memory":
                self._stop_child()
                raise LimitExceeded("could not be decoded within the decoder's memory limit", field=_FIELDS[kind])
            raise InvalidInput(f"could not be decoded: {message[1]}", field=_FIELDS[kind])

    def _start_child(self) -> None:
        s = self._settings
        ctx = _forkserver()
        parent, child_end = ctx.Pipe(duplex=True)
        child = _DecoderProcess(
            target=_stream_main,
            args=(child_end, self._limits, self._opus, s.memory_bytes, s.cpu_s),
            name="decode-live",
            daemon=True,
        )
        child.start()
        child_end.close()
        self._child, self._conn = child, parent
        self.restarts += 1

    def _stop_child(self) -> None:
        child, conn = self._child, self._conn
        self._child = self._conn = None
        if conn is not None:
            conn.close()
        if child is not None:
            if child.is_alive():
                child.kill()
            child.join(5)
            with contextlib.suppress(ValueError):
                child.close()


_FIELDS = {"image": "frame.jpeg", "opus": "audio.data"}


class _LiveDecoding:
    """What the live decoder child runs (also in-process when isolation is off)."""

    def __init__(self, limits: _live.FrameLimits, opus: bool) -> None:
        self._limits = limits
        self._opus = _live.OpusDecoder() if opus else None

    def handle(self, kind: str, payload: bytes) -> Any:
        if kind == "image":
            return _live.decode_image(payload, self._limits)
        if kind == "opus" and self._opus is not None:
            return self._opus.decode(payload)
        raise InvalidInput(f"unexpected {kind} item", field=_FIELDS.get(kind))


def _stream_main(
    conn: multiprocessing.connection.Connection, limits: _live.FrameLimits, opus: bool, memory_bytes: int, cpu_s: int
) -> None:
    _let_forkserver_go()
    _confine(memory_bytes, cpu_s)
    decoding = _LiveDecoding(limits, opus)
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", decoding.handle(kind, payload)))
        except UnderstandingError as exc:
            conn.send(("error", type(exc).__name__, exc.message, exc.field, getattr(exc, "retry_after_s", None)))
        except MemoryError:
            conn.send(("memory",))
            return
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            conn.send(("failed", f"{type(exc).__name__}: {exc}"[:500]))


def _must_exist(path: pathlib.Path) -> None:
    if not path.is_file():
        # Our own storage lost it: not the caller's fault, so not InvalidInput.
        raise FileNotFoundError(path)


def _forkserver() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(_PRELOAD)
            _context = ctx
        return _context


class _Popen(popen_forkserver.Popen):
    """A forkserver launch that leaves out the parent's main module.

    multiprocessing re-imports the parent's `__main__` in every child (unless
    it is a package's `__main__`), so a benchmark script or any `python -m
    some.module` caller would cost each decode an import of whatever that
    module imports. Decoder children need only what the forkserver preloaded.
    (Mirrors CPython's popen_forkserver.Popen._launch, 3.11-3.13.)
    """

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_name", None)
        prep_data.pop("init_main_from_path", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]  # CPython internals
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))  # type: ignore[attr-defined]
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _DecoderProcess(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _Popen(process_obj)


def _died(child: Any, task: str) -> InvalidInput:
    child.join(5)
    code = child.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        how = "ran out of CPU time" if name == "SIGXCPU" else f"crashed ({name})"
    else:
        how = f"exited with status {code}"
    log.warning("decoder child died", extra={"task": task, "exitcode": code})
    return InvalidInput(f"media could not be decoded: the decoder {how}", field="chunk")


def _rebuild(message: tuple[Any, ...]) -> UnderstandingError:
    _, name, text, field_name, retry_after_s = message
    cls = getattr(domain, name, None)
    if not (isinstance(cls, type) and issubclass(cls, UnderstandingError)):
        cls = InvalidInput
    if issubclass(cls, LimitExceeded):
        return cls(text, field=field_name, retry_after_s=retry_after_s)
    return cls(text, field=field_name)


def _copy_stats(values: dict[str, Any], stats: _video.DecodeStats | None) -> None:
    if stats is not None:
        for name, value in values.items():
            setattr(stats, name, value)


def _stats_dict(stats: _video.DecodeStats) -> dict[str, Any]:
    return {f.name: getattr(stats, f.name) for f in fields(stats)}


# ------------------------------------------------------------ the child side
def _child_main(
    conn: multiprocessing.connection.Connection,
    task: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    memory_bytes: int,
    cpu_s: int,
    faults: _Faults,
) -> None:
    try:
        _let_forkserver_go()
        _confine(memory_bytes, cpu_s)
        if faults.crash:
            os.kill(os.getpid(), signal.SIGSEGV)
        if faults.hang:
            time.sleep(3600)
        if faults.oom and memory_bytes > 0:
            hoard = [bytearray(64 * 2**20) for _ in range(memory_bytes // (32 * 2**20) + 1)]  # past the limit
            del hoard
        conn.send(("ok", _TASKS[task](conn, *args, **kwargs)))
    except UnderstandingError as exc:
        conn.send(("error", type(exc).__name__, exc.message, exc.field, getattr(exc, "retry_after_s", None)))
    except MemoryError:
        conn.send(("memory",))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        conn.send(("failed", f"{type(exc).__name__}: {exc}"[:500]))
    finally:
        conn.close()


def _let_forkserver_go() -> None:
    """Drop this child's copy of the forkserver's "alive" pipe.

    CPython hands every forkserver child the pipe's write end, so the forkserver
    lives while any child does; ours die with the forkserver (PR_SET_PDEATHSIG in
    `_confine`). Keeping both, a child hung in hostile media would keep the
    forkserver alive after the server was SIGKILLed (or OOM-killed), and the
    forkserver would keep the child: both forever. Without it, the forkserver sees
    its server gone, exits, and takes its children with it.
    """
    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(fd, int):
        with contextlib.suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None  # type: ignore[union-attr]


def _confine(memory_bytes: int, cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Each thread's malloc arena reserves 64 MiB of address space; FFmpeg's
    # decoder threads would spend the memory limit on reservations alone.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")  # glibc; ctypes.util.find_library would run ldconfig
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        # Die with the forkserver, which dies with the server: a hung child must not outlive a killed server.
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if memory_bytes > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = _address_space() + memory_bytes
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    if cpu_s > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = cpu_s if hard == resource.RLIM_INFINITY else min(cpu_s, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def _task_noop(conn: Any) -> None:
    return None


def _task_audio(conn: Any, path: str, out: str, **kwargs: Any) -> int:
    samples = _audio.decode_audio(pathlib.Path(path), on_progress=lambda n: conn.send(("progress", n)), **kwargs)
    samples.tofile(out)
    return int(samples.size)


def _task_probe_audio(conn: Any, path: str) -> _audio.AudioInfo:
    return _audio.probe_audio(pathlib.Path(path))


def _task_channels(conn: Any, path: str, out: str, **kwargs: Any) -> tuple[int, int]:
    """Decode every channel, writing interleaved float32 as it goes; (channels, samples per channel)."""
    channels = samples = reported = 0
    with open(out, "wb") as handle:
        for block in _channels.iter_channel_blocks(pathlib.Path(path), **kwargs):
            channels = block.shape[0]
            handle.write(np.ascontiguousarray(block.T).tobytes())
            samples += block.shape[1]
            if samples - reported >= _audio._Samples.block:  # every 30 s: the parent's idle timer restarts
                conn.send(("progress", samples))
                reported = samples
    return channels, samples


def _task_probe_video(conn: Any, path: str, limits: _video.VideoLimits | None) -> VideoInfo:
    return _video.probe_video(pathlib.Path(path), limits)


def _task_audio_offset_s(conn: Any, path: str) -> float:
    return _video.audio_offset_s(pathlib.Path(path))


def _task_image(conn: Any, path: str, limits: _image.ImageLimits | None) -> _image.DecodedImage:
    return _image.decode_image(pathlib.Path(path), limits)


def _task_frames(conn: Any, path: str, **kwargs: Any) -> dict[str, Any]:
    stats = _video.DecodeStats()
    for frame in _video.sample_frames(pathlib.Path(path), stats=stats, **kwargs):
        conn.send(("frame", frame, _stats_dict(stats)))
        del frame
    return _stats_dict(stats)


_TASKS: dict[str, Any] = {
    "noop": _task_noop,
    "audio": _task_audio,
    "probe_audio": _task_probe_audio,
    "channels": _task_channels,
    "probe_video": _task_probe_video,
    "audio_offset_s": _task_audio_offset_s,
    "frames": _task_frames,
    "image": _task_image,
}
