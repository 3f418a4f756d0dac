"""Pictures for tests: encoding, decoding and comparing them."""

from __future__ import annotations

import base64
import io
import random

from PIL import Image


def png_bytes(image: Image.Image) -> bytes:
    """A picture as PNG bytes."""
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    """A picture as JPEG bytes."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def solid_png(width: int, height: int, colour: tuple[int, int, int] = (40, 90, 160)) -> bytes:
    """A solid PNG of the given size."""
    return png_bytes(Image.new("RGB", (width, height), colour))


def b64(data: bytes) -> str:
    """Plain base64 text, as the WebUI API takes images."""
    return base64.b64encode(data).decode("ascii")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes."""
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def decode(data: bytes | str) -> Image.Image:
    """An image from bytes or a base64 string (as the WebUI receives it)."""
    if isinstance(data, str):
        data = base64.b64decode(data.split(",", 1)[-1])
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute per-channel difference of two same-size pictures (0–255)."""
    assert a.size == b.size, (a.size, b.size)
    pa, pb = a.convert("RGB").tobytes(), b.convert("RGB").tobytes()
    return sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa)


def white_fraction(mask: Image.Image, box: tuple[int, int, int, int]) -> float:
    """Share of white pixels of a mask inside a box."""
    pixels = mask.convert("L").crop(box).tobytes()
    return sum(1 for p in pixels if p > 127) / len(pixels)


def sample_photo(width: int = 320, height: int = 240) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", (width, height), (30, 30, 200))
    image.paste((200, 30, 30), (0, 0, width // 2, height))
    return image


def noisy(width: int = 256, height: int = 256, seed: int = 1) -> bytes:
    """A PNG that compresses badly (random pixels), for the upload-limit tests."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    return png_bytes(image)
