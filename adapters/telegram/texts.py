"""What the Telegram adapter writes: status lines, result captions, limits of the platform."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.i18n import t
from bot.texts import ELLIPSIS, model_label
from bot.texts import status_text as core_status_text
from bot.types import ImageResult, JobUpdate

CAPTION_MAX = 1024
TEXT_MAX = 4096
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDES = 10000
PHOTO_MAX_RATIO = 20
ALBUM_MAX = 10


def units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP is two)."""
    return len(text.encode("utf-16-le")) // 2


def cut(text: str, limit: int) -> str:
    """Text shortened to `limit` UTF-16 units (Telegram's count), with an ellipsis when cut."""
    if units(text) <= limit:
        return text
    encoded = text.encode("utf-16-le")[: 2 * max(0, limit - 1)]
    # a cut between the two halves of a surrogate pair drops the half
    return encoded.decode("utf-16-le", errors="ignore").rstrip() + ELLIPSIS


def fits_photo(png_size: int, width: int, height: int) -> bool:
    """Whether Telegram accepts the picture as a photo (else it goes as a document)."""
    if width <= 0 or height <= 0 or png_size > PHOTO_MAX_BYTES:
        return False
    return width + height <= PHOTO_MAX_SIDES and max(width, height) <= PHOTO_MAX_RATIO * min(
        width, height
    )


def status_text(locale: str | None, update: JobUpdate, max_attempts: int) -> str:
    """The status message of a queued or running job, cut to this platform's limit."""
    return cut(core_status_text(locale, update, max_attempts, CAPTION_MAX), CAPTION_MAX)


def meta_line(locale: str | None, image: ImageResult, model: str, elapsed: float | None) -> str:
    """'🌱 42 · 512×512 · model · 3 s'."""
    parts = [f"🌱 {image.seed}", f"{image.width}×{image.height}"]
    if model:
        parts.append(model_label(model))
    if elapsed is not None:
        parts.append(t(locale, "eta.seconds", n=f"{elapsed:.1f}"))
    return " · ".join(parts)


def result_caption(
    locale: str | None,
    prompt: str,
    meta: str,
    notes: Sequence[str] = (),
    *,
    index: int | None = None,
) -> str:
    """Prompt (cut so the whole caption fits 1024 characters), then seed, size and model."""
    head = f"#{index + 1} · {meta}" if index is not None else meta
    tail = "\n".join([head, *notes])
    room = CAPTION_MAX - units(tail) - 1
    if room < 20:
        return cut(tail, CAPTION_MAX)
    return f"{cut(prompt, room)}\n{tail}" if prompt else tail


def prompt_from_caption(caption: str | None) -> str:
    """The prompt back out of one of our result captions (its first line, uncut)."""
    if not caption:
        return ""
    first = caption.split("\n", 1)[0]
    if first.startswith(("🌱", "#")):
        return ""
    return first.removesuffix(ELLIPSIS).strip()


_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]+))?(?=\s|$)(.*)$", re.S)


def split_command(text: str | None, bot_username: str) -> tuple[str | None, str]:
    """('draw', 'a fox') for '/draw@bot a fox'; (None, text) when not a command.

    A command addressed to another bot gives ('', '') so callers ignore it.
    """
    text = text or ""
    match = _COMMAND.match(text)
    if match is None:
        return None, text.strip()
    command, target, rest = match.groups()
    if target and target.lower() != bot_username.lower():
        return "", ""
    return command.lower(), rest.strip()
