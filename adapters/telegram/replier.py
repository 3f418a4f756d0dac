"""The Replier for one job in one chat: a status message edited in place, then the result.

Engine callbacks (`update`) come from the dispatcher's progress loop, so they only record what
the status should say and return; a background task edits the message at most once per
TELEGRAM_EDIT_INTERVAL and only when the text or the preview changed. `deliver` and `fail` take
over the status message and do wait for Telegram (the engine refunds if delivering fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import Any

from telegram import Bot, InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.error import BadRequest, Forbidden

from adapters.telegram.delivery import send_result
from adapters.telegram.keyboards import cancel_keyboard
from adapters.telegram.runtime import Runtime, reply_ref, send_kwargs
from adapters.telegram.texts import PHOTO_MAX_BYTES, status_text
from bot.errors import DrawbridgeError
from bot.i18n import t
from bot.images.ingest import image_size
from bot.types import JobResult, JobUpdate, Requester

log = logging.getLogger(__name__)

_View = tuple[str, bytes | None, bool]  # text, preview, with the cancel button


def _digest(data: bytes | None) -> str | None:
    return hashlib.blake2b(data, digest_size=16).hexdigest() if data is not None else None


def _usable_preview(data: bytes | None) -> bytes | None:
    """A preview Telegram will take as a photo, or None."""
    if not data or len(data) > PHOTO_MAX_BYTES:
        return None
    try:
        width, height = image_size(data)
    except Exception:
        return None
    if width + height > 10000 or max(width, height) > 20 * min(width, height):
        return None
    return data


class TelegramReplier:
    """Status message + result for one job; rebuilt from `reply_ref` after a restart."""

    def __init__(
        self,
        rt: Runtime,
        requester: Requester,
        *,
        chat_id: int,
        status_id: int | None,
        reply_to: int | None = None,
        thread_id: int | None = None,
        locale: str | None = None,
        notes: list[str] | None = None,
    ) -> None:
        self.rt = rt
        self.requester = requester
        self.chat_id = chat_id
        self.status_id = status_id
        self.reply_to = reply_to
        self.thread_id = thread_id
        self.locale = locale or requester.locale
        self.notes = list(notes or [])
        self.job_id: str | None = None
        self.status_is_photo = False
        self._want: _View | None = None
        self._preview: bytes | None = None
        self._shown: tuple[str, str | None, bool] | None = None
        self._cancel_markup: InlineKeyboardMarkup | None = None
        self._last_edit = 0.0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_ref(cls, rt: Runtime, requester: Requester, ref: dict[str, Any]) -> TelegramReplier:
        """The factory the engine uses for jobs resumed after a restart."""
        return cls(
            rt,
            requester,
            chat_id=int(ref.get("chat_id") or requester.chat_id),
            status_id=ref.get("status_id"),
            reply_to=ref.get("reply_to"),
            thread_id=ref.get("thread_id"),
            locale=ref.get("locale"),
            notes=ref.get("notes") or [],
        )

    def ref(self) -> dict[str, Any]:
        """What to store with the job so `from_ref` can rebuild this replier."""
        return reply_ref(
            self.chat_id, self.status_id, self.reply_to, self.thread_id, self.locale, self.notes
        )

    # --- engine callbacks ------------------------------------------------------------------
    async def update(self, update: JobUpdate) -> None:
        """Record the new status; a background task shows it (never blocks the caller)."""
        if self._closed:
            return
        self.job_id = update.job_id
        preview = _usable_preview(update.preview)
        if preview is not None:
            self._preview = preview
        text = status_text(self.locale, update, self.notes, self.rt.settings.max_attempts)
        self._want = (text, self._preview, not update.state.final)
        self._kick()

    async def deliver(self, result: JobResult) -> None:
        """Send the pictures with their buttons, then remove the status message."""
        bot = await self.rt.wait_bot()
        self._closed = True
        async with self._lock:
            await send_result(
                self.rt,
                bot,
                self.chat_id,
                result,
                locale=self.locale,
                notes=self.notes,
                reply_to=self.reply_to,
                thread_id=self.thread_id,
            )
            await self._delete_status(bot)

    async def fail(self, job_id: str, error: DrawbridgeError, refunded: int) -> None:
        """Cancelled: the status message says so. Failed: a new message says why."""
        bot = await self.rt.wait_bot()
        self._closed = True
        async with self._lock:
            if error.key == "queue.cancelled":
                text = error.render(self.locale)
                if await self._edit(bot, text, None):
                    return
                await self._send_text(bot, text)
                return
            reason = error.render(self.locale)
            text = t(self.locale, "queue.failed", reason=reason, credits=refunded)
            await self._send_text(bot, text)
            await self._delete_status(bot)

    # --- showing the status ----------------------------------------------------------------
    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = self.rt.spawn(self._flush())

    async def _flush(self) -> None:
        interval = self.rt.settings.telegram_edit_interval
        while True:
            wait = self._last_edit + interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self._lock:
                want = self._want
                if self._closed or want is None:
                    return
                text, preview, cancel = want
                shown = (text, _digest(preview), cancel)
                if shown == self._shown:
                    return
                try:
                    await self._show(text, preview, cancel)
                except Exception as exc:  # a status edit must never break the job
                    log.warning("status update for job %s failed: %s", self.job_id, _why(exc))
                self._shown = shown
                self._last_edit = time.monotonic()

    async def _show(self, text: str, preview: bytes | None, cancel: bool) -> None:
        bot = await self.rt.wait_bot()
        markup = await self._markup() if cancel else None
        new_preview = preview is not None and (
            self._shown is None or _digest(preview) != self._shown[1]
        )
        if new_preview and preview is not None and self.status_is_photo:
            media = InputMediaPhoto(preview, caption=text, filename="preview.png")
            await bot.edit_message_media(
                media, chat_id=self.chat_id, message_id=self.status_id, reply_markup=markup
            )
            return
        if new_preview and preview is not None:
            # a text message cannot become a photo: post the photo status, drop the text one
            sent = await bot.send_photo(
                self.chat_id,
                preview,
                caption=text,
                filename="preview.png",
                reply_markup=markup,
                **self._reply_kwargs(),
            )
            old, self.status_id, self.status_is_photo = self.status_id, sent.message_id, True
            if old is not None:
                with contextlib.suppress(BadRequest, Forbidden):
                    await bot.delete_message(self.chat_id, old)
            return
        if await self._edit(bot, text, markup):
            return
        sent = await self._send_text(bot, text, markup)
        self.status_id, self.status_is_photo = sent.message_id, False

    async def _edit(self, bot: Bot, text: str, markup: InlineKeyboardMarkup | None) -> bool:
        """Edit the status message in place; False when there is none (any more)."""
        if self.status_id is None:
            return False
        try:
            if self.status_is_photo:
                await bot.edit_message_caption(
                    chat_id=self.chat_id,
                    message_id=self.status_id,
                    caption=text,
                    reply_markup=markup,
                )
            else:
                await bot.edit_message_text(
                    text, chat_id=self.chat_id, message_id=self.status_id, reply_markup=markup
                )
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                return True
            if "not found" in exc.message.lower():
                self.status_id = None
                return False
            raise
        return True

    async def _markup(self) -> InlineKeyboardMarkup | None:
        if self._cancel_markup is None and self.job_id is not None:
            self._cancel_markup = await cancel_keyboard(
                self.rt.engine, self.locale, self.job_id, self.requester.user_id
            )
        return self._cancel_markup

    def _reply_kwargs(self) -> dict[str, Any]:
        return send_kwargs(self.reply_to, self.thread_id)

    async def _send_text(
        self, bot: Bot, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> Message:
        return await bot.send_message(
            self.chat_id, text, reply_markup=markup, **self._reply_kwargs()
        )

    async def _delete_status(self, bot: Bot) -> None:
        if self.status_id is None:
            return
        with contextlib.suppress(BadRequest, Forbidden):
            await bot.delete_message(self.chat_id, self.status_id)
        self.status_id = None


def _why(exc: BaseException) -> str:
    """An exception as one line for the log, without anything secret."""
    return f"{type(exc).__name__}: {exc}"
