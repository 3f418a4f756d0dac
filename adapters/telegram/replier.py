"""The Replier for one job in one chat: a status message edited in place, then the result.

The kit's StatusMessage coalesces and throttles the status (at most once per
TELEGRAM_EDIT_INTERVAL, only when the text or the preview changed); this module says how
Telegram shows it. `deliver` and `fail` take over the status message and do wait for Telegram
(the service refunds if delivering fails).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from telegram import Bot, InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.error import BadRequest, Forbidden

from adapters.kit import StatusMessage, StatusView
from adapters.telegram.delivery import send_result
from adapters.telegram.keyboards import cancel_keyboard
from adapters.telegram.runtime import Runtime, reply_ref, send_kwargs
from adapters.telegram.texts import PHOTO_MAX_BYTES, status_text
from bot.errors import DrawbridgeError
from bot.i18n import t
from bot.service import picture_size
from bot.types import JobResult, JobUpdate, Requester

log = logging.getLogger(__name__)


def _usable_preview(data: bytes | None) -> bytes | None:
    """A preview Telegram will take as a photo, or None."""
    if not data or len(data) > PHOTO_MAX_BYTES:
        return None
    try:
        width, height = picture_size(data)
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
        status_is_photo: bool = False,
    ) -> None:
        self.rt = rt
        self.requester = requester
        self.chat_id = chat_id
        self.status_id = status_id
        self.reply_to = reply_to
        self.thread_id = thread_id
        self.locale = locale or requester.locale
        self.job_id: str | None = None
        self.status_is_photo = status_is_photo
        self.status = StatusMessage(
            self._show, rt.spawn, interval=rt.settings.telegram_edit_interval
        )

    @classmethod
    def from_ref(cls, rt: Runtime, requester: Requester, ref: dict[str, Any]) -> TelegramReplier:
        """The factory the service uses for jobs resumed after a restart."""
        return cls(
            rt,
            requester,
            chat_id=int(ref.get("chat_id") or requester.chat_id),
            status_id=ref.get("status_id"),
            reply_to=ref.get("reply_to"),
            thread_id=ref.get("thread_id"),
            locale=ref.get("locale"),
            status_is_photo=bool(ref.get("photo")),
        )

    def ref(self) -> dict[str, Any]:
        """What to store with the job so `from_ref` can rebuild this replier."""
        ref = reply_ref(self.chat_id, self.status_id, self.reply_to, self.thread_id, self.locale)
        if self.status_is_photo:
            ref["photo"] = True  # a photo status is edited by caption, not text
        return ref

    # --- engine callbacks ------------------------------------------------------------------
    async def update(self, update: JobUpdate) -> None:
        """Record the new status; a background task shows it (never blocks the caller)."""
        self.job_id = self.status.label = update.job_id
        text = status_text(self.locale, update, self.rt.settings.max_attempts)
        self.status.want(text, _usable_preview(update.preview), cancel=not update.state.final)

    async def deliver(self, result: JobResult) -> None:
        """Send the pictures with their buttons, then remove the status message."""
        bot = await self.rt.wait_ready()
        self.status.close()
        async with self.status.lock:
            await send_result(
                bot,
                self.chat_id,
                result,
                locale=self.locale,
                reply_to=self.reply_to,
                thread_id=self.thread_id,
            )
            await self._delete_status(bot)

    async def fail(self, job_id: str, error: DrawbridgeError, refunded: int) -> None:
        """Cancelled: the status message says so. Failed: a new message says why."""
        bot = await self.rt.wait_ready()
        self.status.close()
        async with self.status.lock:
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
    async def _show(self, view: StatusView) -> None:
        bot = await self.rt.wait_ready()
        markup = self._markup() if view.cancel else None
        text, preview = view.text, view.preview
        if view.preview_changed and preview is not None and self.status_is_photo:
            media = InputMediaPhoto(preview, caption=text, filename="preview.png")
            await bot.edit_message_media(
                media, chat_id=self.chat_id, message_id=self.status_id, reply_markup=markup
            )
            return
        if view.preview_changed and preview is not None:
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
            await self._moved()
            if old is not None:
                with contextlib.suppress(BadRequest, Forbidden):
                    await bot.delete_message(self.chat_id, old)
            return
        if await self._edit(bot, text, markup):
            return
        sent = await self._send_text(bot, text, markup)
        self.status_id, self.status_is_photo = sent.message_id, False
        await self._moved()

    async def _moved(self) -> None:
        """The status message is a new one: the job's stored reply_ref must name it."""
        if self.job_id is not None:
            await self.rt.service.remember_reply(self.job_id, self.ref())

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

    def _markup(self) -> InlineKeyboardMarkup | None:
        if self.job_id is None:
            return None
        return cancel_keyboard(self.locale, self.job_id, self.requester.user_id)

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
