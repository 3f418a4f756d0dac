"""Fitting results under Discord's upload limit: the PNG when it fits, else lossless WebP (the
same pixels), else high-quality lossy WebP, and only then a smaller picture; each says so.

CPU-heavy: call `fit_all` off the event loop (`asyncio.to_thread`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from adapters.discord.texts import human_size
from bot.i18n import t

UPLOAD_LIMIT = 10 * 1024 * 1024  # Discord's upload limit per message without boosts
LOSSY_QUALITIES = (95, 90, 85, 80, 70, 60, 50)
SHRINK = 0.75
SMALLEST_SIDE = 16


class CannotFit(ValueError):
    """Not even a thumbnail fits the limit (a limit of a few hundred bytes)."""


@dataclass(frozen=True)
class Encoded:
    """One picture as it will be uploaded."""

    data: bytes
    extension: str
    note_key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def note(self, locale: str | None, limit: int) -> str | None:
        """What was done to make it fit, in the reader's language; None for the PNG itself."""
        if self.note_key is None:
            return None
        return t(locale, self.note_key, limit=human_size(limit), **self.params)


def _webp(image: Image.Image, **options: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="WEBP", method=4, **options)
    return buf.getvalue()


def fit(png: bytes, budget: int) -> Encoded:
    """The picture in at most `budget` bytes, losing as little as possible."""
    if len(png) <= budget:
        return Encoded(png, "png")
    with Image.open(io.BytesIO(png)) as opened:
        opened.load()
        has_alpha = opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info
        image = opened.convert("RGBA" if has_alpha else "RGB")
    data = _webp(image, lossless=True, quality=90, exact=True)
    if len(data) <= budget:
        return Encoded(data, "webp", "discord.reencoded_lossless")
    for quality in LOSSY_QUALITIES:
        data = _webp(image, quality=quality)
        if len(data) <= budget:
            return Encoded(data, "webp", "discord.reencoded_lossy", {"quality": quality})
    width, height = image.size
    while min(width, height) * SHRINK >= SMALLEST_SIDE:
        width, height = round(width * SHRINK), round(height * SHRINK)
        data = _webp(image.resize((width, height), Image.Resampling.LANCZOS), quality=80)
        if len(data) <= budget:
            return Encoded(
                data, "webp", "discord.reencoded_smaller", {"width": width, "height": height}
            )
    raise CannotFit(f"{len(png)} bytes cannot be made to fit in {budget}")


def fit_all(pngs: list[bytes], limit: int = UPLOAD_LIMIT) -> list[Encoded]:
    """Every picture of one message: all PNGs when together they fit, else each one squeezed
    into an equal share of the limit (those already small enough stay PNG)."""
    if sum(len(png) for png in pngs) <= limit:
        return [Encoded(png, "png") for png in pngs]
    budget = limit // max(1, len(pngs))
    return [fit(png, budget) for png in pngs]
