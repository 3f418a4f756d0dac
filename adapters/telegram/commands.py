"""/start, /help, /cancel, /queue, /quota, /models and the menu given to setMyCommands (derived
from bot.commands)."""

from __future__ import annotations

import logging

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from adapters.kit import Priority
from adapters.telegram.runtime import Runtime, answer_query, asked, pressed
from adapters.telegram.texts import TEXT_MAX, cut, split_command
from bot.commands import Audience, Where, commands_on
from bot.errors import DrawbridgeError
from bot.i18n import LANGUAGES, t
from bot.texts import catalogue_lines, queue_lines, quota_text

log = logging.getLogger(__name__)

MODELS_PAGE_LINES = 20
MENU_FIRST = ("start", "help")  # Telegram's global commands lead the menu, as its clients expect


def bot_commands(locale: str) -> list[BotCommand]:
    """The command menu in one language: every declared Telegram command for everyone, /start
    and /help first, the rest in declaration order."""
    declared = commands_on(Where.TELEGRAM, Audience.EVERYONE)
    first = [c for name in MENU_FIRST for c in declared if c.name == name]
    ordered = first + [c for c in declared if c not in first]
    return [BotCommand(c.name, t(locale, c.catalogue_key(Where.TELEGRAM))) for c in ordered]


def command_languages() -> list[str]:
    """Languages the command menu is registered in besides the default (English)."""
    return [lang for lang in LANGUAGES if lang != "en"]


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """What the bot does, in the user's language."""
    if (found := await asked(update, context)) is None:
        return
    rt, message, requester = found
    text = t(requester.locale, "telegram.welcome", name=requester.display_name)
    rt.answer(message, text)


async def on_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Every /draw option, generated from the one declaration."""
    if (found := await asked(update, context)) is None:
        return
    rt, message, requester = found
    locale = requester.locale
    lines = rt.service.help_lines(locale)
    lines += ["", t(locale, "telegram.help_images"), t(locale, "telegram.help_commands")]
    rt.answer(message, "\n".join(lines))


async def on_cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/cancel [job]: the newest job, or the one named."""
    if (found := await asked(update, context)) is None or found[1].text is None:
        return
    rt, message, requester = found
    _, rest = split_command(found[1].text, rt.username)
    job_id = rest.split()[0] if rest.split() else None
    try:
        cancelled = await rt.service.cancel(requester, job_id)
    except DrawbridgeError as exc:
        rt.answer(message, exc.render(requester.locale), priority=Priority.REFUSAL)
        return
    text = t(
        requester.locale,
        "telegram.cancelled_reply",
        job=cancelled.job_id,
        credits=cancelled.refunded,
    )
    rt.answer(message, text)


async def on_queue(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Queue summary and the user's own jobs with position and estimated start."""
    if (found := await asked(update, context)) is None:
        return
    rt, message, requester = found
    locale = requester.locale
    lines = queue_lines(rt.service.queue(requester), locale)
    rt.answer(message, "\n".join(lines))


async def on_quota(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The user's credits."""
    if (found := await asked(update, context)) is None:
        return
    rt, message, requester = found
    view = await rt.service.quota(requester.key, requester)
    text = quota_text(requester.locale, view, requester.display_name)
    rt.answer(message, text)


# --- /models ---------------------------------------------------------------------------


async def model_lines(rt: Runtime, locale: str | None) -> list[str]:
    """Checkpoints, samplers and LoRAs the backends offer."""
    found = await rt.service.catalogue()
    return catalogue_lines(locale, found, "telegram.models_checkpoints", "telegram.models_samplers")


def models_page(
    lines: list[str], page: int, locale: str | None
) -> tuple[str, InlineKeyboardMarkup | None]:
    """One page of the /models list, with ◀ ▶ buttons when there are several."""
    pages = max(1, -(-len(lines) // MODELS_PAGE_LINES))
    page = min(max(page, 0), pages - 1)
    chunk = lines[page * MODELS_PAGE_LINES : (page + 1) * MODELS_PAGE_LINES]
    if pages == 1:
        return "\n".join(chunk), None
    footer = t(locale, "telegram.models_page", page=page + 1, pages=pages)
    buttons = []
    if page > 0:
        buttons.append(InlineKeyboardButton("◀", callback_data=f"m:{page - 1}"))
    if page < pages - 1:
        buttons.append(InlineKeyboardButton("▶", callback_data=f"m:{page + 1}"))
    return cut("\n".join([*chunk, "", footer]), TEXT_MAX), InlineKeyboardMarkup([buttons])


async def on_models(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/models: the first page."""
    if (found := await asked(update, context)) is None:
        return
    rt, message, requester = found
    locale = requester.locale
    lines = await model_lines(rt, locale)
    if not lines:
        rt.answer(message, t(locale, "models.none"))
        return
    text, markup = models_page(lines, 0, locale)
    rt.answer(message, text, markup=markup)


async def on_models_page(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """◀ ▶ under /models."""
    got = await pressed(update, context)
    if got is None:
        return
    rt, query, requester, data = got
    await answer_query(query)
    locale = requester.locale
    try:
        page = int(data.partition(":")[2])
    except ValueError:
        return
    lines = await model_lines(rt, locale)
    message = query.message
    if not lines or message is None:
        return
    text, markup = models_page(lines, page, locale)
    rt.edit(message.chat.id, message.message_id, text, markup)
