"""The placeholder pictures: decoding inputs, drawing a seed-coloured card with the prompt on it,
previews, output sizes, and the infotext the WebUI writes beside each picture."""

from __future__ import annotations

import base64
import binascii
import colorsys
import functools
import io
import re
import textwrap
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from devwebui.fields import TXT2IMG_FIELDS
from devwebui.validation import HTTPError

# --- images ------------------------------------------------------------------------------------


def decode_image(text: str | None) -> Image.Image:
    """The WebUI's decode_base64_to_image: base64 or data URL; URLs are not fetched here."""
    text = text or ""
    if text.startswith(("http://", "https://")):
        host = text.split("/")[2].split(":")[0]
        if host in ("localhost", "127.0.0.1", "::1") or host.startswith(("10.", "192.168.")):
            raise HTTPError(500, "Request to local resource not allowed")
        raise HTTPError(500, "Requests not allowed")
    if text.startswith("data:image/"):
        text = text.split(";")[1].split(",")[1]  # IndexError -> 500, as the real one
    try:
        img = Image.open(io.BytesIO(base64.b64decode(text)))
        img.load()
    except (binascii.Error, ValueError, OSError) as exc:
        raise HTTPError(500, "Invalid encoded image") from exc
    return img


def encode_png(img: Image.Image, infotext: str | None = None) -> str:
    """Plain base64 PNG (no data: prefix) with the infotext in a tEXt 'parameters' chunk."""
    meta = PngInfo()
    if infotext:
        meta.add_text("parameters", infotext)
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=meta, compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


RGB = tuple[int, int, int]


def _rgb(hue: float, saturation: float, value: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return int(r * 255), int(g * 255), int(b * 255)


def seed_colours(seed: int) -> tuple[RGB, RGB]:
    """Top and bottom gradient colours for a seed (golden-ratio hues stay far apart)."""
    hue = (seed * 0.6180339887) % 1.0
    return _rgb(hue, 0.55, 0.92), _rgb(hue + 0.08, 0.75, 0.42)


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


@functools.lru_cache(maxsize=16)
def _gradient(size: tuple[int, int]) -> Image.Image:
    return Image.linear_gradient("L").resize(size)


def draw_placeholder(size: tuple[int, int], seed: int, prompt: str, note: str = "") -> Image.Image:
    """A seed-coloured gradient with 'PLACEHOLDER', the prompt and the seed written on it."""
    width, height = size
    top, bottom = seed_colours(seed)
    img = Image.composite(
        Image.new("RGB", size, bottom), Image.new("RGB", size, top), _gradient(size)
    )
    if min(size) < 64:
        return img
    font_size = max(10, min(width, height) // 22)
    font = _font(font_size)
    chars = max(8, int(width / (font_size * 0.55)))
    lines = ["PLACEHOLDER (dev-webui)"]
    lines += textwrap.wrap(prompt, chars)[:6] if prompt else []
    lines.append(f"seed {seed}  {width}x{height}" + (f"  {note}" if note else ""))
    draw = ImageDraw.Draw(img)
    y = font_size
    for line in lines:
        draw.text(
            (font_size, y), line, fill="white", font=font,
            stroke_width=max(1, font_size // 12), stroke_fill="black",
        )  # fmt: skip
        y += int(font_size * 1.35)
    return img


def preview_png(seed: int, fraction: float) -> str:
    """A small live preview that brightens as sampling advances."""
    hue = (seed * 0.6180339887) % 1.0
    return encode_png(Image.new("RGB", (64, 64), _rgb(hue, 0.55, 0.3 + 0.6 * fraction)))


def round8(n: int) -> int:
    """Latents are 1/8 of the pixels, so decoded images are a multiple of 8 (rounded down)."""
    return max(8, n // 8 * 8)


def hires_size(req: dict[str, Any]) -> tuple[int, int]:
    """Output size of a hires-fix job (processing.py calc of hr_upscale_to_x/y)."""
    width, height = int_value(req, "width"), int_value(req, "height")
    rx, ry = req.get("hr_resize_x") or 0, req.get("hr_resize_y") or 0
    if rx == 0 and ry == 0:
        scale = req["hr_scale"] if req.get("hr_scale") is not None else 2.0
        return round8(int(width * scale)), round8(int(height * scale))
    if ry == 0:
        return round8(rx), round8(rx * height // width)
    if rx == 0:
        return round8(ry * width // height), round8(ry)
    return round8(rx), round8(ry)


_NUMERIC_DEFAULTS = {f[0]: f[2] for f in TXT2IMG_FIELDS if f[1] == "integer"}


def int_value(req: dict[str, Any], key: str) -> int:
    """An integer request field, its model default when null (the real WebUI would crash)."""
    value = req.get(key)
    return int(_NUMERIC_DEFAULTS[key] if value is None else value)


# --- infotext ------------------------------------------------------------------------------------

_PARAM_RE = re.compile(r'\s*([\w ./-]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def infotext(prompt: str, negative: str, params: dict[str, Any]) -> str:
    """'<prompt>\\nNegative prompt: <neg>\\nSteps: 20, Sampler: …' with null values left out."""
    tail = ", ".join(f"{k}: {v}" for k, v in params.items() if v is not None)
    neg = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt}{neg}\n{tail}"


def parse_infotext(text: str) -> dict[str, Any]:
    """A small parse_generation_parameters: Prompt, Negative prompt, key: value pairs."""
    *lines, last = text.strip().split("\n") if text.strip() else [""]
    if len(_PARAM_RE.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    out: dict[str, Any] = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PARAM_RE.findall(last):
        key, value = key.strip(), value.strip()
        if key == "Size" and "x" in value:
            out["Size-1"], out["Size-2"] = value.split("x", 1)
        else:
            out[key] = value
    out.setdefault("Clip skip", "1")
    out.setdefault("Schedule type", "Automatic")
    return out
