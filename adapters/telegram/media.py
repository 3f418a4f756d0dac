"""Pictures users send: which file a message carries, and its bytes.

Photos are taken at the largest size Telegram offers; image files are taken byte-exact, so a
PNG keeps its transparency. A reply to one of our own single results reuses the stored PNG
(through its 📄 Original key) instead of Telegram's recompressed JPEG.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from telegram import Bot, Message
from telegram.error import BadRequest, TelegramError

from adapters.telegram.keyboards import original_key
from bot.errors import DrawbridgeError, ImageError, NotFound
from bot.service import Service, not_a_picture

log = logging.getLogger(__name__)

TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # what a bot may download through the Bot API
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")


@dataclass(frozen=True)
class ImageRef:
    """A picture in a message, not yet downloaded."""

    file_id: str
    size: int | None
    kind: str  # "photo" | "document"
    original_key: str | None = None


def image_of(message: Message | None, bot_id: int | None = None) -> ImageRef | None:
    """The picture a message carries (largest photo size, or an image file), or None."""
    if message is None:
        return None
    ours = bot_id is not None and message.from_user is not None and message.from_user.id == bot_id
    key = original_key(message.reply_markup) if ours else None
    if message.photo:
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        return ImageRef(largest.file_id, largest.file_size, "photo", key)
    document = message.document
    if document is not None and is_image_file(document.mime_type, document.file_name):
        return ImageRef(document.file_id, document.file_size, "document", key)
    return None


def is_image_file(mime_type: str | None, file_name: str | None) -> bool:
    """Whether a document looks like a picture (by MIME type or name)."""
    if mime_type and mime_type.lower().startswith("image/"):
        return True
    return bool(file_name and file_name.lower().endswith(IMAGE_EXTENSIONS))


def not_an_image() -> DrawbridgeError:
    """The error for a file that is not a picture."""
    return not_a_picture()


async def fetch(bot: Bot, service: Service, ref: ImageRef, max_bytes: int) -> bytes:
    """The picture's bytes; raises a DrawbridgeError a user can act on."""
    if ref.original_key is not None:
        # one of our own results: the stored PNG, not Telegram's recompressed copy
        with contextlib.suppress(NotFound):
            return (await service.original(ref.original_key)).png
    limit = min(max_bytes, TELEGRAM_DOWNLOAD_LIMIT)
    if ref.size is not None and ref.size > limit:
        raise ImageError("image.too_large_file", size=_human(ref.size), limit=_human(limit))
    try:
        file = await bot.get_file(ref.file_id)
        return bytes(await file.download_as_bytearray())
    except BadRequest as exc:
        if "too big" in exc.message.lower():
            raise ImageError(
                "image.too_large_file", size=_human(ref.size or limit + 1), limit=_human(limit)
            ) from None
        log.warning("downloading a picture failed: %s", exc.message)
        raise DrawbridgeError("telegram.download_failed") from None
    except TelegramError as exc:
        log.warning("downloading a picture failed: %s", type(exc).__name__)
        raise DrawbridgeError("telegram.download_failed") from None


def _human(size: int) -> str:
    """A size as people read it: never "0.0 MB" for a small file or limit."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"
