"""Turn whatever picture a chat user sent into a safe, upright, 8-aligned PNG.

Everything here is synchronous and CPU-bound; the core calls it through asyncio.to_thread.
Untrusted bytes never reach a full decode before their header has been checked: Image.open is
lazy, so the size, format and aspect ratio are refused first, and JPEGs are decoded at a reduced
scale (libjpeg DCT scaling) when they will be downscaled anyway.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.errors import ImageError

# Pillow plugin ids we let Image.open try; everything else is refused by content, not by name.
_PLUGINS = ("PNG", "JPEG", "WEBP", "GIF")
# MPO is what Pillow calls the multi-picture JPEGs some phones write; it is still a JPEG.
_FORMAT_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WEBP", "GIF": "GIF"}
FORMATS_TEXT = "PNG, JPEG, WebP, GIF"

MAX_ASPECT = 8.0  # longer side / shorter side; beyond this nothing useful can be drawn
MIN_SIDE = 64  # after downscaling and snapping; smaller is useless for Stable Diffusion
# What is decoded never exceeds MAX_PIXELS: a PNG, WebP or GIF header is checked against it
# as it stands; a JPEG against the size its DCT-scaled decode (draft, 1/2 … 1/8 a side)
# produces, so phone photos are still taken and downscaled. Nothing over HEADER_CAP is opened.
HEADER_FACTOR = 1
JPEG_DRAFT_FACTOR = 64  # a JPEG header may claim this many times MAX_PIXELS (1/8 a side) …
HEADER_CAP = 64_000_000  # … but never more than this (64 MP ≈ 190 MB of RGB when decoded)

_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}  # rotated by 90° or 270°: width and height swap
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)


@dataclass(frozen=True)
class Ingested:
    """A picture ready for the WebUI: PNG bytes, RGB or RGBA, both sides multiples of 8."""

    png: bytes
    width: int
    height: int
    mode: str
    has_alpha: bool
    original_format: str
    downscaled: bool


def snap8(width: int, height: int) -> tuple[int, int]:
    """Round both sides down to a multiple of 8, as Stable Diffusion needs."""
    return width // 8 * 8, height // 8 * 8


def header_limit(max_pixels: int, image_format: str = "PNG") -> int:
    """The largest pixel count a header may claim before we refuse to decode it."""
    factor = JPEG_DRAFT_FACTOR if image_format == "JPEG" else HEADER_FACTOR
    return min(factor * max_pixels, HEADER_CAP)


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height as displayed (EXIF rotation applied), read from the header only."""
    img = _open(data, HEADER_CAP)
    width, height = img.size
    if _orientation(img) in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    return width, height


def ingest(data: bytes, *, max_pixels: int, max_bytes: int) -> Ingested:
    """Check, decode, rotate, convert, downscale and snap an uploaded picture; PNG out."""
    if len(data) > max_bytes:
        raise ImageError("image.too_large_file", size=_human(len(data)), limit=_human(max_bytes))
    img = _open(data, HEADER_CAP)
    original_format = _FORMAT_NAMES[str(img.format)]
    width, height = img.size
    limit = header_limit(max_pixels, original_format)
    _check_header(width, height, limit)
    if _orientation(img) in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    target = fit(width, height, max_pixels)
    if min(target) < MIN_SIDE:
        raise ImageError("image.too_small", width=width, height=height, min_side=MIN_SIDE)

    out = _decode(img, draft_to=target, limit=limit)
    downscaled = width * height > max_pixels  # not merely snapped to multiples of 8
    if out.size != target:
        # One LANCZOS resample does both the downscale and the snap to multiples of 8: the
        # whole frame is kept (no crop), so a painted copy of another size lines up exactly;
        # the snap stretches by at most 7 px, under 1 % at usual sizes.
        out = out.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    # compress_level 3: a third of the time of the default (6); photos barely compress anyway.
    out.save(buf, "PNG", compress_level=3)
    return Ingested(
        png=buf.getvalue(),
        width=out.width,
        height=out.height,
        mode=out.mode,
        has_alpha=out.mode == "RGBA",
        original_format=original_format,
        downscaled=downscaled,
    )


def decode(data: bytes, *, max_header_pixels: int = HEADER_CAP) -> Image.Image:
    """Decode untrusted bytes to an upright RGB/RGBA image, refusing bombs; no resizing."""
    img = _open(data, max_header_pixels)
    _check_header(*img.size, max_header_pixels)
    return _decode(img, draft_to=None, limit=max_header_pixels)


def fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The output size: scaled down to max_pixels keeping the aspect ratio, then snapped."""
    if width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        width, height = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
        while width * height > max_pixels:  # guard against float rounding up
            if width >= height:
                width -= 1
            else:
                height -= 1
    return snap8(width, height)


def normalise(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, or RGBA when some pixel is actually transparent."""
    if img.mode == "I" or img.mode.startswith("I;16"):
        # 16-bit greyscale PNGs: a plain convert("L") would clip everything above 255 to white.
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    transparent = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if not transparent:
        return img if img.mode == "RGB" else img.convert("RGB")
    img = img.convert("RGBA")
    opaque = img.getchannel("A").histogram()[255] == img.width * img.height
    # An alpha channel that is opaque everywhere carries no mask; drop it.
    return img.convert("RGB") if opaque else img


def _open(data: bytes, limit: int) -> Image.Image:
    """Image.open (header only) with every failure mapped to an ImageError."""
    sniffed = _sniff(data)
    try:
        img = Image.open(io.BytesIO(data), formats=_PLUGINS)
    except UnidentifiedImageError:
        if sniffed is None:
            raise ImageError("image.bad_format", formats=FORMATS_TEXT) from None
        if _claims_zero_size(data, sniffed):
            raise ImageError("image.zero_size") from None
        raise ImageError("image.corrupt") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("image.too_many_pixels", limit=_megapixels(limit)) from None
    except Exception:  # Pillow plugins raise many kinds of error on malformed headers
        raise ImageError("image.corrupt") from None
    if img.format not in _FORMAT_NAMES:
        raise ImageError("image.bad_format", formats=FORMATS_TEXT)
    return img


def _check_header(width: int, height: int, limit: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError("image.zero_size")
    if width * height > limit:
        raise ImageError("image.too_many_pixels", limit=_megapixels(limit))
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError("image.bad_aspect", width=width, height=height, max_ratio=int(MAX_ASPECT))


def _decode(img: Image.Image, *, draft_to: tuple[int, int] | None, limit: int) -> Image.Image:
    try:
        if draft_to is not None and img.format in ("JPEG", "MPO"):
            # DCT scaling decodes a 12 MP photo at 1/2–1/8 size: less memory, much faster.
            # draft() keeps the result at least as large as asked, in stored orientation.
            if _orientation(img) in _SWAPPING_ORIENTATIONS:
                draft_to = (draft_to[1], draft_to[0])
            # (the header limit keeps even a 1/8 decode within MAX_PIXELS)
            img.draft(img.mode, draft_to)
        img.load()
        upright = ImageOps.exif_transpose(img) or img
        return normalise(upright)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("image.too_many_pixels", limit=_megapixels(limit)) from None
    except Exception:  # truncated data, bad chunks, broken EXIF: all "send it again"
        raise ImageError("image.corrupt") from None


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block is ignored, as phones' galleries do
        return 1
    return value if isinstance(value, int) else 1


def _sniff(data: bytes) -> str | None:
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _claims_zero_size(data: bytes, sniffed: str) -> bool:
    # Pillow refuses 0-sized PNG/GIF as "cannot identify"; read the header to say why.
    try:
        if sniffed == "PNG" and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return width == 0 or height == 0
        if sniffed == "GIF":
            width, height = struct.unpack("<HH", data[6:10])
            return width == 0 or height == 0
    except struct.error:
        return False
    return False


def _human(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.0f}"
