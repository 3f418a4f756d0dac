"""/history (paged with ◀ ▶, newest first) and /history JOB (its pictures with their stored
buttons, which work after a restart, and its full parameters), always in the private chat
with the user: a group only hears that it was sent there."""

from __future__ import annotations

import logging

from telegram import Chat, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import ContextTypes

from adapters.kit import Priority
from adapters.telegram.delivery import file_name, send_picture
from adapters.telegram.keyboards import album_keyboard, result_keyboard
from adapters.telegram.runtime import Runtime, answer_query, pressed
from adapters.telegram.texts import CAPTION_MAX, TEXT_MAX, fits_photo, split_command
from bot.errors import DrawbridgeError
from bot.i18n import t
from bot.texts import cut, history_lines
from bot.types import HistoryPage, Requester

log = logging.getLogger(__name__)


def history_page(locale: str | None, found: HistoryPage) -> tuple[str, InlineKeyboardMarkup | None]:
    """One page's text and its ◀ ▶ buttons (``h:<page>``)."""
    text = cut("\n".join(history_lines(locale, found)), TEXT_MAX)
    buttons = []
    if found.page > 0:
        buttons.append(InlineKeyboardButton("◀", callback_data=f"h:{found.page - 1}"))
    if found.page + 1 < found.pages:
        buttons.append(InlineKeyboardButton("▶", callback_data=f"h:{found.page + 1}"))
    return text, InlineKeyboardMarkup([buttons]) if buttons else None


async def on_history(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/history or /history JOB."""
    rt: Runtime = context.bot_data["runtime"]
    message = update.effective_message
    if message is None or message.text is None or message.from_user is None:
        return
    requester = rt.requester(message.from_user, message.chat)
    if not await rt.admit_message(requester, message):
        return
    locale = requester.locale
    _, rest = split_command(message.text, rt.username)
    private = message.from_user.id  # the user's private chat with the bot
    try:
        if rest.strip():
            await _send_job(rt, requester, private, rest.strip())
        else:
            text, markup = history_page(locale, await rt.service.history(requester, 0))
            rt.say(private, text, markup=markup)
    except DrawbridgeError as exc:
        rt.answer(message, exc.render(locale), priority=Priority.REFUSAL)
        return
    if message.chat.type != Chat.PRIVATE:
        rt.answer(message, t(locale, "history.private"))


async def _send_job(rt: Runtime, requester: Requester, chat_id: int, job_id: str) -> None:
    found = await rt.service.history_job(requester, job_id)
    result = found.result
    locale = requester.locale
    single = len(result.images) == 1
    caption = cut(f"{result.job_id}\n{found.infotext}", CAPTION_MAX)
    for index, image in enumerate(result.images):
        last = index == len(result.images) - 1
        if single:
            markup: InlineKeyboardMarkup | None = result_keyboard(locale, result, 0)
        else:
            markup = album_keyboard(locale, result) if last else None
        name = file_name(result.job_id, index)
        png = image.png
        as_photo = fits_photo(len(png), image.width, image.height)

        async def send(
            png: bytes = png,
            name: str = name,
            markup: InlineKeyboardMarkup | None = markup,
            as_photo: bool = as_photo,
        ) -> Message:
            return await send_picture(
                rt, chat_id, png, name, as_photo=as_photo, caption=caption, markup=markup
            )

        rt.outbox.post(chat_id, send, what="history", priority=Priority.NOTICE)


async def on_history_page(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """◀ ▶ under /history: the page in place."""
    got = await pressed(update, context)
    if got is None:
        return
    rt, query, requester, data = got
    try:
        page = int(data.partition(":")[2])
        found = await rt.service.history(requester, page)
    except (ValueError, DrawbridgeError):
        await answer_query(query)
        return
    text, markup = history_page(requester.locale, found)
    await answer_query(query)
    if query.message is not None:
        rt.edit(query.message.chat.id, query.message.message_id, text, markup)
