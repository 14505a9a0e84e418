"""Image decoding: what is accepted, what is refused and how precisely, in-process and in
the sandbox child."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from tests.fixtures import images as fx
from tests.fixtures import video as vfx
from understanding.domain import InvalidInput, LimitExceeded
from understanding.media.image import ImageLimits, decode_image, sniff_format
from understanding.media.sandbox import MediaDecoder, SandboxSettings

LIMITS = ImageLimits(max_pixels=50_000_000, max_side=4096)


def test_formats_are_decoded_to_upright_bgr(tmp_path: pathlib.Path) -> None:
    for fmt, kind in (("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")):
        decoded = decode_image(fx.text_image(tmp_path / f"poster.{fmt.lower()}", fmt=fmt), LIMITS)
        assert (decoded.info.format, decoded.info.width, decoded.info.height) == (kind, 960, 540)
        assert decoded.image.shape == (540, 960, 3) and decoded.image.dtype == np.uint8
        assert decoded.info.frame_count == 1 and decoded.info.color_mode == "RGB"
        # Background is the poster's cream (BGR order), ink is dark.
        assert np.allclose(decoded.image[5, 5], (230, 242, 245), atol=6)
        assert decoded.image.min() < 60


def test_the_content_decides_not_the_extension(tmp_path: pathlib.Path) -> None:
    png_named_jpg = fx.text_image(tmp_path / "photo.jpg", fmt="PNG")
    assert decode_image(png_named_jpg, LIMITS).info.format == "png"
    video_named_jpg = vfx.make_color_video(tmp_path / "clip.jpg")
    with pytest.raises(InvalidInput, match="MP4/QuickTime media, not a supported image"):
        decode_image(video_named_jpg, LIMITS)
    with pytest.raises(InvalidInput, match="GIF file, not a supported image: JPEG, PNG and WebP"):
        decode_image(fx.gif(tmp_path / "a.png"), LIMITS)
    (tmp_path / "notes.webp").write_text("just some text, not an image at all")
    with pytest.raises(InvalidInput, match="not a supported image") as err:
        decode_image(tmp_path / "notes.webp", LIMITS)
    assert err.value.field == "chunk"


def test_cmyk_palette_transparency_and_16_bit_become_rgb(tmp_path: pathlib.Path) -> None:
    cmyk = decode_image(fx.cmyk_jpeg(tmp_path / "print.jpg"), LIMITS)
    assert cmyk.info.color_mode == "CMYK"
    assert np.allclose(cmyk.image[5, 5], (230, 242, 245), atol=12)  # the cream survives CMYK and back
    clear = decode_image(fx.transparent_png(tmp_path / "clear.png"), LIMITS)
    assert clear.info.color_mode == "RGBA"
    assert (clear.image[5, 5] == 255).all()  # transparent -> white, so the dark text stays readable
    assert clear.image.min() < 40
    grey = decode_image(fx.grey16_png(tmp_path / "grey.png"), LIMITS)
    assert grey.info.color_mode.startswith("I")
    assert grey.image[0, 0, 0] == 0 and grey.image[0, -1, 0] == 255


def test_animated_images_are_analysed_on_their_first_frame(tmp_path: pathlib.Path) -> None:
    for fmt in ("WEBP", "PNG"):
        decoded = decode_image(fx.animated(tmp_path / f"anim.{fmt.lower()}", fmt), LIMITS)
        assert decoded.info.frame_count == 3, fmt
        assert np.allclose(decoded.image[5, 5], (230, 242, 245), atol=12), fmt  # the poster, not a later colour


def test_exif_orientation_is_applied(tmp_path: pathlib.Path) -> None:
    decoded = decode_image(fx.rotated_jpeg(tmp_path / "phone.jpg"), LIMITS)
    assert (decoded.info.width, decoded.info.height) == (960, 540)  # stored 540x960, shown landscape
    assert decoded.image.shape == (540, 960, 3)


def test_large_images_are_capped_and_report_their_own_size(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "big.jpg"
    fx.render_lines(fx.POSTER_LINES, size=(5000, 3000), font_px=120).save(path, "JPEG")
    decoded = decode_image(path, ImageLimits(max_pixels=50_000_000, max_side=1000))
    assert (decoded.info.width, decoded.info.height) == (5000, 3000)
    assert decoded.image.shape == (600, 1000, 3) and decoded.scale == pytest.approx(0.2)


def test_refusals_are_precise(tmp_path: pathlib.Path) -> None:
    with pytest.raises(LimitExceeded) as bomb:
        decode_image(fx.bomb_png(tmp_path / "bomb.png"), LIMITS)
    assert bomb.value.field == "image.resolution"
    assert "30000x30000 (900000000 pixels), over the limit of 50000000 pixels" in bomb.value.message
    with pytest.raises(InvalidInput, match=r"zero width or height \(0x0\)"):
        decode_image(fx.zero_size_png(tmp_path / "zero.png"), LIMITS)
    jpeg = fx.photo(tmp_path / "face.jpg")
    with pytest.raises(InvalidInput, match="JPEG image is truncated or damaged"):
        decode_image(fx.truncated(jpeg, tmp_path / "cut.jpg", 0.4), LIMITS)
    png = fx.photo(tmp_path / "face.png", fmt="PNG")
    with pytest.raises(InvalidInput, match="PNG image is truncated or damaged"):
        decode_image(fx.truncated(png, tmp_path / "cut.png", 0.6), LIMITS)
    with pytest.raises(InvalidInput, match="WEBP image header is damaged"):
        decode_image(fx.truncated(fx.photo(tmp_path / "face.webp", fmt="WEBP"), tmp_path / "cut.webp", 0.02), LIMITS)


def test_sniffing_names_what_it_sees() -> None:
    assert sniff_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    with pytest.raises(InvalidInput, match="HEIF/AVIF image"):
        sniff_format(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(InvalidInput, match="PDF file"):
        sniff_format(b"%PDF-1.7")


def test_the_sandbox_decodes_images_in_a_child_and_refuses_the_same(tmp_path: pathlib.Path) -> None:
    decoder = MediaDecoder(SandboxSettings(isolate=True, timeout_s=120, work_dir=tmp_path))
    decoded = decoder.decode_image(fx.cmyk_jpeg(tmp_path / "print.jpg"), LIMITS)
    assert decoded.info.color_mode == "CMYK" and decoded.image.shape == (540, 960, 3)
    with pytest.raises(LimitExceeded) as bomb:
        decoder.decode_image(fx.bomb_png(tmp_path / "bomb.png"), LIMITS)
    assert bomb.value.field == "image.resolution"
    with pytest.raises(InvalidInput, match="truncated or damaged"):
        decoder.decode_image(fx.truncated(fx.photo(tmp_path / "f.jpg"), tmp_path / "cut.jpg", 0.4), LIMITS)
    # Without the header check, the decoder's memory limit still stops a bomb.
    tight = MediaDecoder(SandboxSettings(isolate=True, timeout_s=120, memory_bytes=256 * 2**20, work_dir=tmp_path))
    with pytest.raises(LimitExceeded, match="memory limit"):
        tight.decode_image(tmp_path / "bomb.png", ImageLimits(max_pixels=None, max_side=4096))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("decoded-")) == []
