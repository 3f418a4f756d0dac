"""Result and status buttons: run through the service, answered privately.

🔁 🎨 ⬆️ start new jobs charged to whoever pressed; 📄 sends the stored PNG as a document;
✖ cancels. Every refusal (another user's job, nothing to cancel, an expired button, no
credits, too many presses) is an alert only the presser sees: never a public message.
"""

from __future__ import annotations

import logging

from telegram import Message, Update
from telegram.ext import ContextTypes

from adapters.kit import Priority
from adapters.telegram.delivery import file_name
from adapters.telegram.keyboards import decode_action
from adapters.telegram.replier import TelegramReplier
from adapters.telegram.runtime import answer_query, pressed, send_kwargs
from bot.errors import DrawbridgeError
from bot.i18n import t

log = logging.getLogger(__name__)


async def on_action(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """🔁 🎨 ⬆️ 📄 ✖."""
    got = await pressed(update, context)
    if got is None:
        return
    rt, query, requester, data = got
    locale = requester.locale
    press = decode_action(data)
    if press is None:
        await answer_query(query)
        return
    if press.kind == "cancel" and press.owner not in (None, requester.user_id):
        if not requester.is_admin:
            await answer_query(query, t(locale, "error.not_allowed"))
            return
    source = query.message
    chat_id = source.chat.id if source is not None else query.from_user.id
    reply_id = source.message_id if source is not None else None
    thread_id = None
    if isinstance(source, Message) and source.is_topic_message:
        thread_id = source.message_thread_id
    try:
        if press.kind == "cancel":
            await rt.service.cancel(requester, press.key)  # the job id
            await answer_query(query)
            return
        if press.kind in ("original", "control_map"):
            if press.kind == "control_map":  # 🦴: the preprocessor's detected map, free
                original = await rt.service.control_map(press.key)
            else:
                original = await rt.service.original(press.key)
            await answer_query(query)
            name = file_name(original.job_id, original.index)
            if press.kind == "control_map":
                name = name.replace(".png", "-control.png")

            async def document() -> Message:
                bot = await rt.wait_ready()
                return await bot.send_document(
                    chat_id, original.png, filename=name, **send_kwargs(reply_id, thread_id)
                )

            rt.outbox.post(chat_id, document, what="original", priority=Priority.NOTICE)
            return
        replier = TelegramReplier(
            rt,
            requester,
            chat_id=chat_id,
            status_id=None,
            reply_to=reply_id,
            thread_id=thread_id,
            locale=locale,
        )
        await rt.service.press(
            requester,
            press.key,
            replier,
            kind=press.kind,
            reply_ref=replier.ref(),
            source=f"press:{query.id}",
        )
    except DrawbridgeError as exc:
        await answer_query(query, exc.render(locale))
        return
    await answer_query(query)
