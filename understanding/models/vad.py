"""Speech probability per 32 ms of audio, streamed: Silero VAD v6 as faster-whisper packages it.

faster-whisper's `get_speech_timestamps` wants the whole recording. The
model it runs scores 512-sample windows (32 ms at 16 kHz), each with the 64
samples before it, and runs its recurrent state through the batch in order
(returning the state after the last window). Keeping the last 64 samples and
that state between calls therefore gives the probabilities of scoring the
whole recording at once, window by window as the audio arrives.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from faster_whisper.vad import get_vad_model

__all__ = ["WINDOW_SAMPLES", "StreamingVad"]

WINDOW_SAMPLES = 512
_CONTEXT = 64


class StreamingVad:
    """Feed 16 kHz mono float32 audio in any pieces; get one probability per complete window.

    One per stream (it keeps the stream's tail); the ONNX session behind it is
    shared by every stream and is safe to call from several threads.
    """

    name = "silero-vad-v6"

    def __init__(self) -> None:
        self._model = get_vad_model()
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)

    def push(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Speech probabilities of the windows completed by `samples` (possibly none)."""
        audio = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        n = audio.size // WINDOW_SAMPLES
        self._pending = audio[n * WINDOW_SAMPLES :]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        windows = audio[: n * WINDOW_SAMPLES].reshape(n, WINDOW_SAMPLES)
        contexts = np.empty((n, _CONTEXT), dtype=np.float32)
        contexts[0] = self._context
        contexts[1:] = windows[:-1, -_CONTEXT:]
        self._context = windows[-1, -_CONTEXT:].copy()
        batch = np.concatenate([contexts, windows], axis=1)
        output, self._h, self._c = self._model.session.run(None, {"input": batch, "h": self._h, "c": self._c})
        return np.asarray(output, dtype=np.float32).reshape(-1)[:n]
