"""Zoom out, pan and make square: the padded canvas and its mask for an outpainting inpaint.

The picture is placed on a larger canvas (downscaled first when the canvas would exceed
MAX_PIXELS), the new border is filled with the picture's own colours smoothed out (what
"fill" starts from; "latent noise" replaces it anyway), and the mask is white on the border
and black over the picture, with a soft seam: the last SEAM pixels of the picture along each
side that gets new content fade from black to white, so the new part blends into the old.
Canvas sides are multiples of 8, as the WebUI draws them.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageFilter

from bot.images.ingest import decode

SEAM = 32  # pixels of the old picture the seam fades over
BACKDROP = 8  # the border's colours: the picture shrunk to this and stretched back

# kind → (width factor, height factor, where the old picture sits: 0 left/top … 1 right/bottom)
GROWTH: dict[str, tuple[float, float, float, float]] = {
    "zoom15": (1.5, 1.5, 0.5, 0.5),
    "zoom2": (2.0, 2.0, 0.5, 0.5),
    "pan_left": (1.5, 1.0, 1.0, 0.5),
    "pan_right": (1.5, 1.0, 0.0, 0.5),
    "pan_up": (1.0, 1.5, 0.5, 1.0),
    "pan_down": (1.0, 1.5, 0.5, 0.0),
}
KINDS = (*GROWTH, "square")


@dataclass(frozen=True)
class Canvas:
    """The init picture and mask (PNG bytes) of one outpainting, and where the old picture is."""

    init_png: bytes
    mask_png: bytes
    size: tuple[int, int]
    box: tuple[int, int, int, int]  # the old picture on the canvas (left, top, right, bottom)


@dataclass(frozen=True)
class Plan:
    """Canvas size and the old picture's box on it, before any pixel is touched."""

    size: tuple[int, int]
    box: tuple[int, int, int, int]


def is_square(width: int, height: int) -> bool:
    """Whether Make square has nothing to add."""
    return width == height


def plan(kind: str, width: int, height: int, max_pixels: int) -> Plan:
    """Where the picture goes on the canvas of `kind` (zoom15, zoom2, pan_*, square)."""
    if kind == "square":
        side = max(width, height)
        fw, fh, ax, ay = side / width, side / height, 0.5, 0.5
    else:
        fw, fh, ax, ay = GROWTH[kind]
    canvas_w, canvas_h = width * fw, height * fh
    shrink = min(1.0, math.sqrt(max_pixels / (canvas_w * canvas_h)))  # downscale first
    cw = max(64, math.floor(canvas_w * shrink / 8) * 8)
    ch = max(64, math.floor(canvas_h * shrink / 8) * 8)
    pw = min(cw, max(1, round(width * cw / canvas_w)))
    ph = min(ch, max(1, round(height * ch / canvas_h)))
    left, top = round((cw - pw) * ax), round((ch - ph) * ay)
    return Plan((cw, ch), (left, top, left + pw, top + ph))


def canvas(png: bytes, kind: str, max_pixels: int) -> Canvas:
    """The padded canvas and the soft-seamed mask for outpainting `png` (CPU work: call it
    off the event loop)."""
    picture = decode(png).convert("RGB")
    layout = plan(kind, picture.width, picture.height, max_pixels)
    left, top, right, bottom = layout.box
    inner = picture.resize((right - left, bottom - top), Image.Resampling.LANCZOS)
    backdrop = picture.resize((BACKDROP, BACKDROP), Image.Resampling.BOX)
    init = backdrop.resize(layout.size, Image.Resampling.BILINEAR)
    init.paste(inner, (left, top))
    return Canvas(_png(init), _png(_mask(layout)), layout.size, layout.box)


def _mask(layout: Plan) -> Image.Image:
    """White = repaint: the border, and a fade over the old picture's edges that border it."""
    width, height = layout.size
    left, top, right, bottom = layout.box
    hard = Image.new("L", layout.size, 255)
    hard.paste(0, layout.box)
    seam = min(SEAM, (right - left) // 4, (bottom - top) // 4)
    half = seam // 2
    # a step halfway into the seam, blurred by half the seam: 0 at `seam` pixels in, 255 at
    # the picture's edge
    step = (
        left + (half if left > 0 else 0),
        top + (half if top > 0 else 0),
        right - (half if right < width else 0),
        bottom - (half if bottom < height else 0),
    )
    soft = Image.new("L", layout.size, 255)
    soft.paste(0, step)
    if half > 0:
        soft = soft.filter(ImageFilter.BoxBlur(half))
    return ImageChops.lighter(soft, hard)  # the border stays fully white


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
