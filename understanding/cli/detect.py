"""A file's modality from its content, so `notes.mp3` that is really text (or the reverse) goes the right way."""

from __future__ import annotations

import contextlib
from typing import Literal

FileModality = Literal["text", "speech", "video"]


def detect_modality(path: str) -> FileModality:
    """'text', 'speech' or 'video' from the file's content (not its extension)."""
    import av

    with contextlib.suppress(Exception), av.open(path) as container:  # not a media container: maybe text
        if any(s.type == "video" and s.frames != 1 for s in container.streams.video):
            return "video"
        if container.streams.audio:
            return "speech"
    with open(path, "rb") as fh:
        head = fh.read(65536)
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "speech"  # let the server say precisely why it cannot decode it
