"""Result and status buttons: answered at once, then run through the service.

🔁 🎨 ⬆️ start new jobs charged to whoever pressed; 📄 sends the stored PNG as a document;
✖ cancels, and is refused politely (an alert, nothing else happens) for another user's job.
"""

from __future__ import annotations

import logging

from telegram import Message, Update
from telegram.ext import ContextTypes

from adapters.telegram.delivery import file_name
from adapters.telegram.keyboards import decode_action
from adapters.telegram.replier import TelegramReplier
from adapters.telegram.runtime import Runtime, send_kwargs
from adapters.telegram.texts import TEXT_MAX
from bot.errors import DrawbridgeError
from bot.i18n import t
from bot.texts import cut

log = logging.getLogger(__name__)


async def on_action(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """🔁 🎨 ⬆️ 📄 ✖."""
    rt: Runtime = context.bot_data["runtime"]
    query = update.callback_query
    if query is None or query.data is None:
        return
    press = decode_action(query.data)
    requester = rt.requester(query.from_user, update.effective_chat)
    locale = requester.locale
    if press is None:
        await query.answer()
        return
    if press.kind == "cancel" and press.owner not in (None, requester.user_id):
        if not requester.is_admin:
            await query.answer(t(locale, "error.not_allowed"), show_alert=True)
            return
    await query.answer()
    bot = context.bot
    source = query.message
    chat_id = source.chat.id if source is not None else query.from_user.id
    reply_id = source.message_id if source is not None else None
    thread_id = None
    if isinstance(source, Message) and source.is_topic_message:
        thread_id = source.message_thread_id
    kwargs = send_kwargs(reply_id, thread_id)
    if press.kind in ("cancel", "original"):
        try:
            if press.kind == "cancel":
                await rt.service.cancel(requester, press.key)  # the job id
                return
            original = await rt.service.original(press.key)
        except DrawbridgeError as exc:
            await bot.send_message(chat_id, cut(exc.render(locale), TEXT_MAX), **kwargs)
            return
        name = file_name(original.job_id, original.index)
        await bot.send_document(chat_id, original.png, filename=name, **kwargs)
        return
    # The job is stored first; its first status (sent by the replier) acknowledges it.
    replier = TelegramReplier(
        rt,
        requester,
        chat_id=chat_id,
        status_id=None,
        reply_to=reply_id,
        thread_id=thread_id,
        locale=locale,
    )
    try:
        await rt.service.press(
            requester, press.key, replier, reply_ref=replier.ref(), source=f"press:{query.id}"
        )
    except DrawbridgeError as exc:
        await bot.send_message(chat_id, cut(exc.render(locale), TEXT_MAX), **kwargs)
