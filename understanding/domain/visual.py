"""What the moderation models see in pictures: images, and the sampled frames of a video.

Boxes are in the pixels of the media as displayed (an image after its EXIF orientation,
a video frame at the video's own resolution), whatever size the models ran at, so a
client can draw them on the original. `frame_s` is the time of the frame within the
media (0 for an image).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BodyPart", "Box", "ImageInfo", "ImageOptions", "TextLine"]


@dataclass(frozen=True, slots=True)
class Box:
    """Axis-aligned rectangle: top-left corner and size, in pixels."""

    x: float
    y: float
    width: float
    height: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.width, self.height)


@dataclass(frozen=True, slots=True)
class TextLine:
    """One line of text read by OCR; `score` is its mean character confidence."""

    text: str
    score: float
    box: Box
    frame_s: float = 0.0


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One detection of the nudity detector (NudeNet labels such as `FEMALE_BREAST_EXPOSED`)."""

    label: str
    score: float
    box: Box
    frame_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image's facts (from its header) and what the frame analysis found in it.

    `frame_count` > 1 is an animated image (WebP, APNG) or a multi-picture JPEG: only the
    first frame is analysed. `color_mode` is the stored one (e.g. `CMYK`, `P`, `RGBA`);
    every image is analysed as RGB (transparency over white).
    """

    width: int
    height: int
    format: str  # "jpeg", "png" or "webp"
    color_mode: str
    frame_count: int = 1
    face_count: int = 0
    nudity_score: float = 0.0
    nudity_parts: tuple[BodyPart, ...] = ()
    ocr_text: str = ""
    text_lines: tuple[TextLine, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """Which moderation models look at an image (or at a video's frames). Both run by default;
    a caller that only wants search can skip OCR, the costly one."""

    skip_ocr: bool = False
    skip_nudity: bool = False
