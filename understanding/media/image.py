"""Decode an untrusted image (JPEG, PNG, WebP) into BGR pixels, refusing what is not one.

Run inside the decoder sandbox (media/sandbox.py) like every other upload. The order
of the checks is the defence:

1. **Sniff** the first bytes: only JPEG, PNG and WebP go on to Pillow (and Pillow is
   told to try only those plugins), so a GIF, a TIFF or a video named `photo.jpg` is
   refused by name before any parser of ours or Pillow's touches it.
2. **Header**: Pillow reads only the header on open; width x height over the pixel
   budget is `LimitExceeded(field="image.resolution")` before a single pixel is
   decoded (a 30,000 x 30,000 PNG of zeros is 100 KB on the wire and 900 MB in memory).
   Pillow's own bomb check is switched off for that moment so the message is ours.
3. **Decode** the first frame only (animated WebP/APNG and multi-picture JPEGs say how
   many frames they have); large JPEGs are decoded straight at 1/2, 1/4 or 1/8 scale
   (libjpeg's DCT scaling) when the result would be downscaled anyway. A truncated or
   damaged file is `InvalidInput` naming the cause; the sandbox's memory limit catches
   any bomb the header did not give away.
4. **Normalise**: EXIF orientation applied (phones store portrait photos sideways),
   every colour mode to BGR (CMYK, palette, 16-bit grey; transparency over white, so
   dark text on a transparent background stays readable), long side capped at
   `max_side` (the models never need more; boxes are scaled back by the caller).
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

# The plugins of the accepted formats, registered at import: the decoder's forkserver
# preloads them (no plugin scan per upload), and Pillow never loads the others for us.
from PIL import (
    Image,
    ImageOps,
    JpegImagePlugin,
    MpoImagePlugin,
    PngImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from understanding.domain import ImageInfo, InvalidInput, LimitExceeded

_PLUGINS = (JpegImagePlugin, MpoImagePlugin, PngImagePlugin, WebPImagePlugin)
__all__ = ["FORMATS", "DecodedImage", "ImageLimits", "decode_image", "sniff_format"]

# Pillow format name -> ours. MPO is a multi-picture JPEG (camera stereo/depth shots).
FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp"}
_ACCEPTED = "JPEG, PNG and WebP images are accepted"
_EXIF_ORIENTATION = 0x0112
# Recognised only to name them in the refusal.
_OTHER_SIGNATURES = (
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
    (b"\x1aE\xdf\xa3", "Matroska/WebM video"),
    (b"ID3", "MP3 audio"),
    (b"OggS", "Ogg"),
    (b"fLaC", "FLAC audio"),
)


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_pixels: int | None = None  # width * height stated by the header
    max_side: int = 4096  # long side of the pixels handed back (downscaled, never upscaled)


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """The first frame as BGR uint8, upright, at most `max_side` on its long side. `info`
    holds the facts (sizes as displayed, before the cap); `scale` = image px / original px."""

    info: ImageInfo
    image: npt.NDArray[np.uint8]

    @property
    def scale(self) -> float:
        return self.image.shape[1] / self.info.width if self.info.width else 1.0


def sniff_format(head: bytes) -> str:
    """`jpeg`, `png` or `webp` from the first bytes; InvalidInput naming anything else."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        if head[12:16] == b"IHDR" and len(head) >= 24:
            width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
            if width == 0 or height == 0:
                raise InvalidInput(f"image has a zero width or height ({width}x{height})", field="chunk")
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("latin-1").strip()
        kind = "HEIF/AVIF image" if brand in ("heic", "heix", "mif1", "msf1", "avif", "avis") else "MP4/QuickTime media"
        raise InvalidInput(f"media is a {kind}, not a supported image: {_ACCEPTED}", field="chunk")
    for signature, name in _OTHER_SIGNATURES:
        if head.startswith(signature):
            raise InvalidInput(f"media is a {name} file, not a supported image: {_ACCEPTED}", field="chunk")
    raise InvalidInput(f"media is not a supported image: {_ACCEPTED}", field="chunk")


@contextlib.contextmanager
def _own_bomb_check() -> Iterator[None]:
    """Pillow's decompression-bomb check off while a header is read: ours follows with the
    dimensions and the configured budget in the message (this runs in a one-shot child)."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def decode_image(path: pathlib.Path, limits: ImageLimits | None = None) -> DecodedImage:
    """The first frame of the image at `path`; see the module docstring for the checks."""
    limits = limits or ImageLimits()
    if not path.is_file():
        # Our own storage lost it: not the caller's fault, so not InvalidInput.
        raise FileNotFoundError(path)
    with path.open("rb") as fh:
        head = fh.read(64)
    kind = sniff_format(head)
    try:
        with _own_bomb_check():
            picture = Image.open(path, formats=["JPEG", "PNG", "WEBP"])  # JPEG opens MPO too
    except UnidentifiedImageError:
        raise InvalidInput(f"{kind.upper()} image header is damaged or unreadable", field="chunk") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{kind.upper()} image header is damaged: {_reason(exc)}", field="chunk") from None
    with picture:
        width, height = picture.size
        if width <= 0 or height <= 0:
            raise InvalidInput(f"image has a zero width or height ({width}x{height})", field="chunk")
        if limits.max_pixels is not None and width * height > limits.max_pixels:
            raise LimitExceeded(
                f"image is {width}x{height} ({width * height} pixels), over the limit of {limits.max_pixels} pixels",
                field="image.resolution",
            )
        frames = int(getattr(picture, "n_frames", 1) or 1)
        mode = picture.mode
        if picture.format == "JPEG" or picture.format == "MPO":
            # Decode at 1/2..1/8 scale when the result is downscaled to max_side anyway (libjpeg DCT scaling).
            scale = limits.max_side / max(width, height)
            if scale < 1:
                picture.draft(None, (max(1, round(width * scale)), max(1, round(height * scale))))
        try:
            orientation = int(picture.getexif().get(_EXIF_ORIENTATION, 1) or 1)
            picture.load()
            if orientation != 1:
                ImageOps.exif_transpose(picture, in_place=True)
            bgr = _to_bgr(picture)
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
            raise InvalidInput(f"{kind.upper()} image is truncated or damaged: {_reason(exc)}", field="chunk") from None
    # Sizes as displayed: orientations 5-8 turn the picture by 90 degrees.
    shown_w, shown_h = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    bgr = _cap(bgr, limits.max_side)
    info = ImageInfo(width=shown_w, height=shown_h, format=kind, color_mode=mode, frame_count=frames)
    return DecodedImage(info=info, image=bgr)


def _to_bgr(picture: Image.Image) -> npt.NDArray[np.uint8]:
    """Any Pillow mode as 3-channel BGR uint8; transparency composited over white."""
    mode = picture.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(picture, dtype=np.uint32)
        peak = 65535 if mode.startswith("I;16") else max(1, int(grey.max()))
        picture = Image.fromarray((grey * 255 // peak).astype(np.uint8), "L")
    elif mode == "F":
        values = np.nan_to_num(np.asarray(picture, dtype=np.float32))
        span = float(values.max() - values.min()) or 1.0
        picture = Image.fromarray(((values - values.min()) * 255 / span).astype(np.uint8), "L")
    if picture.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(white, rgba)
    rgb = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _cap(image: npt.NDArray[np.uint8], max_side: int) -> npt.NDArray[np.uint8]:
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)


def _reason(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:200]
