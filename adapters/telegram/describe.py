"""/describe: a picture with /describe as its caption, or /describe replying to a picture
(``/describe deepbooru`` for tags); the answer ends with the /draw line that ▶ Draw this starts
(read back from the message, so the button works after a restart)."""

from __future__ import annotations

import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import ContextTypes

from adapters.kit import Priority
from adapters.telegram.media import ImageRef, fetch, image_of
from adapters.telegram.replier import TelegramReplier
from adapters.telegram.runtime import Runtime, answer_query, pressed
from adapters.telegram.texts import TEXT_MAX, split_command
from bot.errors import DrawbridgeError
from bot.i18n import t
from bot.texts import cut, describe_text, draw_text_of

log = logging.getLogger(__name__)

DRAW_THIS = "p:d"  # the ▶ button's callback_data: the text is the message's own


async def on_describe_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/describe [clip|deepbooru], replying to a picture."""
    rt: Runtime = context.bot_data["runtime"]
    message = update.effective_message
    if message is None or message.text is None:
        return
    _, rest = split_command(message.text, rt.username)
    bot_id = message.get_bot().id
    await describe(rt, message, image_of(message.reply_to_message, bot_id), rest)


async def describe(rt: Runtime, message: Message, picture: ImageRef | None, words: str) -> None:
    """Describe `picture` for the sender of `message` (or say how to send one)."""
    requester = rt.requester(message.from_user, message.chat)
    if not await rt.admit_message(requester, message):
        return
    locale = requester.locale
    if picture is None:
        rt.answer(message, t(locale, "telegram.describe_needs_picture"), priority=Priority.REFUSAL)
        return
    try:
        data = await fetch(message.get_bot(), rt.service, picture, rt.settings.max_upload_bytes)
        found = await rt.service.describe(data, words.strip() or "clip")
    except DrawbridgeError as exc:
        rt.answer(message, exc.render(locale), priority=Priority.REFUSAL)
        return
    button = InlineKeyboardButton(t(locale, "telegram.btn.draw_this"), callback_data=DRAW_THIS)
    rt.answer(
        message,
        cut(describe_text(locale, found), TEXT_MAX),
        markup=InlineKeyboardMarkup([[button]]),
    )


async def on_draw_this(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """▶ Draw this: /draw the answer's last line, for whoever pressed, replying to it."""
    got = await pressed(update, context)
    if got is None:
        return
    rt, query, requester, _ = got
    locale = requester.locale
    source = query.message
    text = draw_text_of(source.text if isinstance(source, Message) else None)
    if text is None or not isinstance(source, Message):
        await answer_query(query, t(locale, "describe.gone"))
        return
    thread_id = source.message_thread_id if source.is_topic_message else None
    try:
        request = rt.service.parse(text)
        replier = TelegramReplier(
            rt,
            requester,
            chat_id=source.chat_id,
            status_id=None,
            reply_to=source.message_id,
            thread_id=thread_id,
            locale=locale,
        )
        await rt.service.draw(
            requester, request, replier, reply_ref=replier.ref(), source=f"press:{query.id}"
        )
    except DrawbridgeError as exc:
        await answer_query(query, exc.render(locale))
        return
    await answer_query(query)
