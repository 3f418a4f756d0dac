"""Work out an inpainting mask from what a chat user could actually send.

Three kinds, tried in this order:

* alpha     a picture with transparency: the transparent part (alpha < 128) is repainted;
* explicit  a mostly black-and-white picture: white is repainted;
* painted   the same picture painted over in a phone editor (and recompressed to JPEG by the
            chat app): the pixels that differ from the init image are repainted.

Masks are mode "L", 0 or 255, WHITE = repaint, the size of the init image. Only Pillow's C
filters touch every pixel (blurs, ImageChops, point LUTs, histograms), so a 1024×1024 picture
takes a small fraction of a second; the one Python loop (flood fill) runs on a thumbnail.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from bot.errors import ImageError
from bot.images.ingest import decode, normalise

MaskKind = Literal["explicit", "alpha", "painted"]

EMPTY_COVERAGE = 0.005  # below this the mask is refused as empty …
FULL_COVERAGE = 0.99  # … above this as covering everything
ALPHA_CUTOFF = 128  # alpha below this counts as transparent, i.e. repaint

# "Mostly black and white": this share of pixels is near black or near white and grey.
BW_FRACTION = 0.95
_DARK = 64  # brightest channel below this: near black
_LIGHT = 192  # darkest channel above this: near white
_GREY_CHROMA = 40  # max − min channel below this: no real colour

# Painted-over copies.
NOISE_FLOOR = 24  # never threshold the difference below this (JPEG q60 noise stays under)
NOISE_FACTOR = 4  # threshold = max(floor, factor × quiet median + offset)
NOISE_OFFSET = 8
_QUIET_BELOW = 64  # differences under this are "quiet" pixels used to estimate the noise
THRESHOLD_CAP = 64  # the adaptive threshold never exceeds this, so bright paint still shows
UNRELATED_CHANGED = 0.9  # more of the picture than this differs (after cleanup): unrelated
UNRELATED_QUIET = 16  # the unchanged part's median difference above this: unrelated
SPECK = 1  # opening radius: changed areas thinner than 2·SPECK+1 px are noise
_FILL_SIDE = 160  # enclosed holes are found on a thumbnail at most this large

_BINARY = [0] * 128 + [255] * 128


@dataclass(frozen=True)
class MaskResult:
    """A mask ready for the WebUI (L mode PNG, white = repaint) and how it was obtained."""

    mask_png: bytes
    kind: MaskKind
    coverage: float


def derive_mask(
    init_png: bytes,
    candidate: bytes | Image.Image,
    *,
    noise_floor: int = NOISE_FLOOR,
    blur_radius: float = 1.5,
    grow: int = 2,
    unrelated_changed: float = UNRELATED_CHANGED,
) -> MaskResult:
    """Turn a second picture into a mask for init_png: transparent, black-and-white or painted."""
    init = decode(init_png).convert("RGB")
    cand = normalise(candidate) if isinstance(candidate, Image.Image) else decode(candidate)

    alpha = _alpha_mask(cand)
    if alpha is not None:
        return _finish(_fit_mask(alpha, init.size), "alpha")

    cand = cand.convert("RGB")
    if _mostly_black_and_white(cand):
        explicit = _fit_mask(cand.convert("L"), init.size)
        # A black-and-white init (a text screenshot, a line drawing) painted over in a few
        # places also looks black and white; it is a painted copy if little of it changed.
        if not _mostly_black_and_white(init) or _changed_fraction(init, cand, noise_floor) > 0.5:
            return _finish(explicit, "explicit")

    painted = _painted_mask(
        init,
        cand,
        noise_floor=noise_floor,
        blur_radius=blur_radius,
        grow=grow,
        unrelated_changed=unrelated_changed,
    )
    return _finish(painted, "painted")


def mask_from_alpha(png: bytes) -> MaskResult | None:
    """The mask carried by a picture's own transparency, or None if it has none to speak of."""
    alpha = _alpha_mask(decode(png))
    return None if alpha is None else _finish(alpha, "alpha")


def _alpha_mask(img: Image.Image) -> Image.Image | None:
    if img.mode != "RGBA":
        return None
    mask = img.getchannel("A").point([255] * ALPHA_CUTOFF + [0] * (256 - ALPHA_CUTOFF))
    # A few transparent pixels (rounded screenshot corners, a stray eraser touch) are not a
    # mask the user meant; such a picture is treated as opaque.
    return None if _coverage(mask) < EMPTY_COVERAGE else mask


def _mostly_black_and_white(rgb: Image.Image) -> bool:
    hi, lo, chroma = _channel_stats(rgb)
    dark = hi.point([255] * _DARK + [0] * (256 - _DARK))
    light = lo.point([0] * _LIGHT + [255] * (256 - _LIGHT))
    grey = chroma.point([255] * _GREY_CHROMA + [0] * (256 - _GREY_CHROMA))
    bw = ImageChops.multiply(ImageChops.lighter(dark, light), grey)
    return _coverage(bw) > BW_FRACTION


def _channel_stats(rgb: Image.Image) -> tuple[Image.Image, Image.Image, Image.Image]:
    """Per pixel: brightest channel, darkest channel, and their difference (chroma)."""
    r, g, b = rgb.split()
    hi = ImageChops.lighter(ImageChops.lighter(r, g), b)
    lo = ImageChops.darker(ImageChops.darker(r, g), b)
    return hi, lo, ImageChops.subtract(hi, lo)


def _fit_mask(grey: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize a greyscale mask to the init size (NEAREST keeps it crisp) and binarise it."""
    if grey.size != size:
        grey = grey.resize(size, Image.Resampling.NEAREST)
    return grey.point(_BINARY)


def _difference(init: Image.Image, cand: Image.Image, blur_radius: float) -> Image.Image:
    """Largest per-channel difference, after a light blur that hides JPEG block noise."""
    if cand.size != init.size:
        cand = cand.resize(init.size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    if blur_radius > 0:
        blur = ImageFilter.GaussianBlur(blur_radius)
        init, cand = init.filter(blur), cand.filter(blur)
    hi, _lo, _chroma = _channel_stats(ImageChops.difference(init, cand))
    return hi


def _changed_fraction(init: Image.Image, cand: Image.Image, noise_floor: int) -> float:
    diff = _difference(init, cand, 1.5)
    return sum(diff.histogram()[noise_floor + 1 :]) / (diff.width * diff.height)


def _painted_mask(
    init: Image.Image,
    cand: Image.Image,
    *,
    noise_floor: int,
    blur_radius: float,
    grow: int,
    unrelated_changed: float,
) -> Image.Image:
    # Compare at the smaller of the two sizes: a copy the chat app shrank has lost the fine
    # detail, and upscaling it back would make every sharp edge of the picture "differ".
    if cand.width < init.width:
        work = init.resize(cand.size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    else:
        work = init
    diff = _difference(work, cand, blur_radius)
    hist = diff.histogram()

    # JPEG noise is estimated from the quiet pixels only, so a large painted area (even most
    # of the picture) does not raise the threshold; the floor covers clean PNG pairs.
    quiet_median = _percentile(hist[:_QUIET_BELOW], 0.5)
    if quiet_median > UNRELATED_QUIET:
        raise ImageError("mask.unrelated")  # even the unchanged part is not the same picture
    threshold = min(max(noise_floor, NOISE_FACTOR * quiet_median + NOISE_OFFSET), THRESHOLD_CAP)

    mask = diff.point([0] * (threshold + 1) + [255] * (255 - threshold))
    # Clean up at a scale that follows the picture: about 0.5 % of the shorter side.
    radius = max(2, min(8, round(min(mask.size) / 200)))
    mask = _dilate(_erode(mask, SPECK), SPECK)  # opening: JPEG specks along sharp edges go
    mask = _erode(_dilate(mask, radius), radius)  # closing: gaps in strokes are bridged
    mask = _fill_holes(mask)  # paint matching the colour underneath leaves holes
    if mask.size != init.size:
        mask = mask.resize(init.size, Image.Resampling.BILINEAR).point(_BINARY)
    if _coverage(mask) > unrelated_changed:
        # Different almost everywhere: another picture, a crop, or a wish to redraw it all.
        raise ImageError("mask.unrelated")
    return _dilate(mask, grow) if grow > 0 else mask


def _dilate(mask: Image.Image, radius: int) -> Image.Image:
    # A box blur is O(1) per pixel at any radius (MaxFilter is O(r²)): any white within the
    # box leaves a non-zero average. Exact for radius ≤ 10, which is all we use.
    return mask.filter(ImageFilter.BoxBlur(radius)).point([0] + [255] * 255)


def _erode(mask: Image.Image, radius: int) -> Image.Image:
    # Only a box that is white everywhere averages to exactly 255.
    return mask.filter(ImageFilter.BoxBlur(radius)).point([0] * 255 + [255])


def _fill_holes(mask: Image.Image) -> Image.Image:
    """Fill black regions that are entirely enclosed by white (found on a thumbnail)."""
    scale = min(1.0, _FILL_SIDE / max(mask.size))
    small_size = (max(1, round(mask.width * scale)), max(1, round(mask.height * scale)))
    small = mask.resize(small_size, Image.Resampling.BOX).point(_BINARY)
    # A black frame around the thumbnail connects all outside background into one region.
    framed = Image.new("L", (small.width + 2, small.height + 2), 0)
    framed.paste(small, (1, 1))
    ImageDraw.floodfill(framed, (0, 0), 128)
    holes = framed.crop((1, 1, small.width + 1, small.height + 1)).point([255] + [0] * 255)
    if holes.getbbox() is None:
        return mask
    return ImageChops.lighter(mask, holes.resize(mask.size, Image.Resampling.NEAREST))


def _percentile(hist: list[int], q: float) -> int:
    """The value below which a share q of the histogram's counts lie."""
    target = q * sum(hist)
    seen = 0
    for value, count in enumerate(hist):
        seen += count
        if seen >= target and seen > 0:
            return value
    return 0


def _coverage(mask: Image.Image) -> float:
    return mask.histogram()[255] / (mask.width * mask.height)


def _finish(mask: Image.Image, kind: MaskKind) -> MaskResult:
    coverage = _coverage(mask)
    if coverage < EMPTY_COVERAGE:
        raise ImageError("mask.empty")
    if coverage > FULL_COVERAGE:
        raise ImageError("mask.full")
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    return MaskResult(mask_png=buf.getvalue(), kind=kind, coverage=coverage)
