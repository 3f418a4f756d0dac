"""A burst's one status message on Telegram (adapters/kit/burst.py holds the logic): sent,
edited and deleted through the outbox, with ✖ Cancel all, and that button's press."""

from __future__ import annotations

import contextlib
import logging

from telegram import Message, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from adapters.telegram.keyboards import cancel_all_keyboard
from adapters.telegram.runtime import Runtime, answer_query, pressed, send_kwargs
from adapters.telegram.texts import TEXT_MAX, cut
from bot.errors import DrawbridgeError
from bot.i18n import t

log = logging.getLogger(__name__)


class TelegramBoard:
    """The calls for one burst's message in one chat (its topic, replying to the first
    command)."""

    def __init__(
        self,
        rt: Runtime,
        chat_id: int,
        owner: str,
        locale: str | None,
        reply_to: int | None,
        thread_id: int | None,
    ) -> None:
        self.rt = rt
        self.chat_id = chat_id
        self.owner = owner
        self.locale = locale
        self.reply_to = reply_to
        self.thread_id = thread_id

    async def show(self, message: int | None, text: str, cancel: int) -> int | None:
        """Edit the message (or send it); the message id shown."""
        bot = await self.rt.wait_ready()
        markup = cancel_all_keyboard(self.locale, self.owner, cancel) if cancel else None
        text = cut(text, TEXT_MAX)
        if message is not None:
            try:
                await bot.edit_message_text(
                    text, chat_id=self.chat_id, message_id=message, reply_markup=markup
                )
                return message
            except BadRequest as exc:
                if "not modified" in exc.message.lower():
                    return message
                if "not found" not in exc.message.lower():
                    raise
        sent = await bot.send_message(
            self.chat_id,
            text,
            reply_markup=markup,
            **send_kwargs(self.reply_to, self.thread_id),
        )
        return sent.message_id

    def drop(self, message: int) -> None:
        """Delete it (batched with the chat's other stale statuses)."""
        self.rt.drop_message(self.chat_id, message)


async def on_cancel_burst(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """✖ Cancel all: every job the burst's message lists (the owner's, or an admin's press)."""
    got = await pressed(update, context)
    if got is None:
        return
    rt, query, requester, data = got
    owner = data.partition(":")[2]
    if owner != requester.user_id and not requester.is_admin:
        await answer_query(query, t(requester.locale, "error.not_allowed"))
        return
    source = query.message
    chat_id = source.chat.id if source is not None else query.from_user.id
    thread_id = None
    if isinstance(source, Message) and source.is_topic_message:
        thread_id = source.message_thread_id
    burst = rt.bursts.find((chat_id, thread_id, owner))
    if burst is None:
        await answer_query(query, t(requester.locale, "queue.nothing_to_cancel"))
        return
    for job_id in burst.job_ids():
        with contextlib.suppress(DrawbridgeError):  # ended meanwhile: nothing to cancel
            await rt.service.cancel(requester, job_id)
    await answer_query(query)
