"""bot.images.ingest: what users send becomes a safe, upright, 8-aligned PNG — or a clear refusal."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from bot.errors import ImageError
from bot.images.ingest import header_limit, image_size, ingest, snap8

MP = 1024 * 1024
LIMITS = {"max_pixels": MP, "max_bytes": 20 * 1024 * 1024}


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def decoded(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    img.load()
    return img


def halves(size: tuple[int, int], left: tuple[int, ...], right: tuple[int, ...]) -> Image.Image:
    """Left half one colour, right half another: easy to check orientation and scaling."""
    img = Image.new("RGB", size, left)
    img.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return img


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims any size; its pixel data is a few bytes of zeros."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def refused(data: bytes, key: str, **limits: int) -> str:
    """Ingest must refuse with this key; returns the English text a user would read."""
    with pytest.raises(ImageError) as caught:
        ingest(data, **{**LIMITS, **limits})
    assert caught.value.key == key
    text = caught.value.render("en")
    assert text != key, "the key must exist in the catalogue"
    assert caught.value.render("zh") != text
    return text


# --- accepted formats -----------------------------------------------------------------------


def test_png_passes_through_pixel_for_pixel() -> None:
    img = Image.effect_noise((640, 480), 60).convert("RGB")
    out = ingest(encode(img, "PNG"), **LIMITS)
    assert (out.width, out.height, out.mode) == (640, 480, "RGB")
    assert (out.original_format, out.has_alpha, out.downscaled) == ("PNG", False, False)
    assert decoded(out.png).tobytes() == img.tobytes()


@pytest.mark.parametrize(("fmt", "name"), [("JPEG", "JPEG"), ("WEBP", "WEBP"), ("GIF", "GIF")])
def test_other_formats_are_sniffed_from_content(fmt: str, name: str) -> None:
    img = halves((320, 240), (250, 10, 10), (10, 10, 250))
    out = ingest(encode(img, fmt), **LIMITS)
    assert (out.width, out.height, out.original_format) == (320, 240, name)
    png = decoded(out.png).convert("RGB")
    red, blue = png.getpixel((40, 120)), png.getpixel((280, 120))
    assert isinstance(red, tuple) and isinstance(blue, tuple)
    assert red[0] > 200 and red[2] < 60
    assert blue[2] > 200 and blue[0] < 60


def test_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (128, 128), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    out = ingest(buf.getvalue(), **LIMITS)
    assert decoded(out.png).convert("RGB").getpixel((64, 64)) == (255, 0, 0)


# --- refusals whose text says what to do ----------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        encode(Image.new("RGB", (128, 128)), "BMP"),
        encode(Image.new("RGB", (128, 128)), "TIFF"),
        b"this is a text file, not a picture\n" * 20,
        b"",
    ],
    ids=["bmp", "tiff", "text", "empty"],
)
def test_wrong_format_is_refused_with_the_formats_to_use(data: bytes) -> None:
    text = refused(data, "image.bad_format")
    assert "PNG, JPEG, WebP, GIF" in text and "send" in text


def test_file_over_max_bytes_is_refused_before_decoding() -> None:
    data = encode(Image.effect_noise((256, 256), 80).convert("RGB"), "PNG")
    text = refused(data, "image.too_large_file", max_bytes=10_000)
    assert "smaller picture" in text and "KB" in text


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any pixel decode fails the test: bombs must be refused from the header alone."""
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))


@pytest.mark.usefixtures("no_decoding")
def test_bomb_header_50000_square_is_refused() -> None:
    data = png_claiming(50_000, 50_000)
    assert len(data) < 200
    text = refused(data, "image.too_many_pixels")
    assert "smaller copy" in text and "megapixels" in text


@pytest.mark.usefixtures("no_decoding")
@pytest.mark.filterwarnings("error")  # Pillow's own bomb warning, raised, is ours too
def test_bomb_between_pillow_warning_and_error_is_refused() -> None:
    assert 10_000 * 10_000 > Image.MAX_IMAGE_PIXELS  # Pillow only warns about this size
    assert "smaller copy" in refused(png_claiming(10_000, 10_000), "image.too_many_pixels")


def test_compressible_big_image_is_refused_by_our_own_header_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20 MP of black compresses to a few KB and is below Pillow's limit, but above ours.
    data = encode(Image.new("L", (5000, 4000)), "PNG")
    assert len(data) < 100_000 and 5000 * 4000 > header_limit(MP)
    with monkeypatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
        assert "smaller copy" in refused(data, "image.too_many_pixels")
    # With a budget that covers it the same file is fine: the limit is MAX_PIXELS itself.
    assert ingest(data, max_pixels=5000 * 4000, max_bytes=LIMITS["max_bytes"]).width == 5000


def test_header_limit_is_max_pixels_itself_and_capped() -> None:
    # what is decoded never exceeds MAX_PIXELS (issue 11: 16 × let small PNGs cost 64 MB each)
    assert header_limit(MP) == MP
    # a JPEG decodes DCT-scaled (down to 1/8 a side), so its header may claim more
    assert header_limit(MP // 4, "JPEG") == 16 * MP
    assert header_limit(100 * MP) == header_limit(MP, "JPEG") == 64_000_000


def test_a_png_over_max_pixels_is_refused_without_decoding(monkeypatch) -> None:
    data = encode(Image.new("RGB", (1100, 1000)), "PNG")  # 1.1 MP > MP; 2 KB on the wire
    with monkeypatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
        assert "send it as a photo" in refused(data, "image.too_many_pixels")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_truncated_file_is_refused_as_corrupt(fmt: str) -> None:
    data = encode(Image.effect_noise((256, 256), 80).convert("RGB"), fmt)
    text = refused(data[: len(data) // 2], "image.corrupt")
    assert "damaged or incomplete" in text and "send it again" in text


def test_png_with_broken_pixel_data_is_corrupt() -> None:
    data = png_claiming(128, 128)  # IDAT holds far too few bytes for 128×128
    assert "send it again" in refused(data, "image.corrupt")


def png_with_garbage_second_idat() -> bytes:
    raw = b"".join(b"\0" + bytes(range(216)) for _ in range(72))  # 72 rows of 72 RGB pixels
    data = zlib.compress(raw)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 72, 72, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", data[:40])
        + png_chunk(b"[\xfe\xe8\x8c", data[40:])  # Pillow: SyntaxError, not OSError
        + png_chunk(b"IEND", b"")
    )


def gif_with_zero_width_frame() -> bytes:
    gif = bytearray(encode(Image.new("P", (128, 128)), "GIF"))
    frame = gif.index(b",")
    gif[frame + 5 : frame + 7] = struct.pack("<H", 0)  # Pillow: ValueError on load
    return bytes(gif)


@pytest.mark.parametrize("data", [png_with_garbage_second_idat(), gif_with_zero_width_frame()])
def test_decoder_errors_of_any_kind_are_corrupt(data: bytes) -> None:
    assert "send it again" in refused(data, "image.corrupt")


@pytest.mark.parametrize("size", [(0, 0), (0, 100), (100, 0)])
def test_zero_size_png_is_refused(size: tuple[int, int]) -> None:
    text = refused(png_claiming(*size), "image.zero_size")
    assert "no width or no height" in text and "send a normal photo" in text


def test_zero_size_gif_is_refused() -> None:
    gif = bytearray(encode(Image.new("P", (128, 128)), "GIF"))
    frame = gif.index(b",")  # image descriptor: Pillow falls back to its size, so zero both
    gif[6:10] = struct.pack("<HH", 0, 0)
    gif[frame + 5 : frame + 9] = struct.pack("<HH", 0, 0)
    assert "send a normal photo" in refused(bytes(gif), "image.zero_size")


@pytest.mark.parametrize("size", [(1, 10_000), (10_000, 1), (900, 100)])
def test_long_thin_strip_is_refused(size: tuple[int, int]) -> None:
    text = refused(encode(Image.new("L", size), "PNG"), "image.bad_aspect")
    assert f"{size[0]}×{size[1]}" in text and "crop it" in text and "8 times" in text


def test_tiny_picture_is_refused() -> None:
    text = refused(encode(Image.new("RGB", (40, 200)), "PNG"), "image.too_small")
    assert "at least 64 pixels on each side" in text


# --- orientation and colour modes -----------------------------------------------------------


def test_exif_rotated_photo_arrives_upright() -> None:
    stored = halves((160, 96), (255, 0, 0), (0, 0, 255))  # stored sideways: red left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the left edge becomes the top
    data = encode(stored, "JPEG", exif=exif, quality=95)
    assert image_size(data) == (96, 160)
    out = ingest(data, **LIMITS)
    assert (out.width, out.height) == (96, 160)
    img = decoded(out.png).convert("RGB")
    top, bottom = img.getpixel((48, 20)), img.getpixel((48, 140))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (128, 128), (0, 255, 255, 0))  # full magenta + yellow = red
    out = ingest(encode(cmyk, "JPEG", quality=95), **LIMITS)
    assert out.mode == "RGB"
    r, g, b = decoded(out.png).getpixel((64, 64))  # type: ignore[misc]
    assert r > 230 and g < 30 and b < 30


def test_palette_png_keeps_its_transparency() -> None:
    img = Image.new("P", (128, 128), 1)
    img.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    img.paste(0, (0, 0, 64, 128))  # index 0 is the transparent one
    out = ingest(encode(img, "PNG", transparency=0), **LIMITS)
    assert (out.mode, out.has_alpha) == ("RGBA", True)
    png = decoded(out.png)
    assert png.mode == "RGBA"
    assert png.getpixel((10, 10))[3] == 0  # type: ignore[index]
    assert png.getpixel((100, 10)) == (200, 30, 30, 255)


def test_la_image_with_transparency_becomes_rgba() -> None:
    img = Image.new("LA", (128, 128), (90, 255))
    img.paste((90, 0), (0, 0, 128, 32))
    out = ingest(encode(img, "PNG"), **LIMITS)
    assert out.mode == "RGBA"
    png = decoded(out.png)
    assert png.getpixel((5, 5))[3] == 0  # type: ignore[index]
    assert png.getpixel((5, 100)) == (90, 90, 90, 255)


def test_opaque_alpha_channel_is_dropped() -> None:
    out = ingest(encode(Image.new("RGBA", (128, 128), (1, 2, 3, 255)), "PNG"), **LIMITS)
    assert (out.mode, out.has_alpha) == ("RGB", False)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    img = Image.new("I;16", (128, 128), 32768)
    img.paste(65535, (0, 0, 64, 128))
    out = decoded(ingest(encode(img, "PNG"), **LIMITS).png)
    assert out.getpixel((10, 10)) == (255, 255, 255)
    assert out.getpixel((100, 10)) == (128, 128, 128)


def test_transparent_webp_keeps_alpha() -> None:
    img = Image.new("RGBA", (128, 128), (0, 200, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, 128, 40))
    out = ingest(encode(img, "WEBP", lossless=True), **LIMITS)
    assert out.has_alpha and decoded(out.png).getpixel((64, 10))[3] == 0  # type: ignore[index]


# --- downscaling and snapping ---------------------------------------------------------------


def test_snap8_rounds_down() -> None:
    assert snap8(1023, 769) == (1016, 768)
    assert snap8(512, 512) == (512, 512)
    assert snap8(7, 8) == (0, 8)


def test_odd_sizes_are_snapped_to_multiples_of_8() -> None:
    out = ingest(encode(Image.new("RGB", (203, 150), (9, 9, 9)), "PNG"), **LIMITS)
    assert (out.width, out.height) == (200, 144)
    assert not out.downscaled


@pytest.mark.parametrize("fmt", ["JPEG"])  # JPEG goes through the DCT-scaled decode
def test_downscale_keeps_aspect_and_snaps(fmt: str) -> None:
    img = halves((3000, 2000), (255, 0, 0), (0, 0, 255))
    out = ingest(encode(img, fmt, **({"quality": 90} if fmt == "JPEG" else {})), **LIMITS)
    assert out.downscaled
    assert out.width % 8 == 0 and out.height % 8 == 0
    assert out.width * out.height <= MP
    assert out.width * out.height > 0.97 * MP  # snapping loses under 3 % at this size
    assert out.width / out.height == pytest.approx(1.5, rel=0.01)
    png = decoded(out.png)
    assert png.size == (out.width, out.height)
    left, right = png.getpixel((10, 10)), png.getpixel((out.width - 10, 10))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert left[0] > 230 and right[2] > 230


def test_image_size_reads_the_header_and_refuses_junk() -> None:
    assert image_size(png_claiming(6000, 4000)) == (6000, 4000)  # header only: no pixel data
    with pytest.raises(ImageError) as caught:
        image_size(b"GIF? no")
    assert caught.value.key == "image.bad_format"


# --- arbitrary bytes ------------------------------------------------------------------------

_SEEDS = [
    encode(Image.effect_noise((72, 72), 50).convert("RGB"), fmt)
    for fmt in ("PNG", "JPEG", "WEBP", "GIF")
]


def _ingest_only_image_errors(data: bytes) -> None:
    try:
        out = ingest(data, max_pixels=256 * 256, max_bytes=100_000)
    except ImageError as exc:
        assert exc.render("en") != exc.key
    else:
        assert out.width % 8 == 0 and out.height % 8 == 0 and out.png.startswith(b"\x89PNG")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_image_error(data: bytes) -> None:
    _ingest_only_image_errors(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, 20_000),
)
def test_damaged_real_files_raise_only_image_error(
    seed: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(seed[: max(cut, 8)])
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    _ingest_only_image_errors(bytes(data))
