"""/start, /help, /cancel, /queue, /quota, /models and the list given to setMyCommands."""

from __future__ import annotations

import contextlib
import logging

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from adapters.telegram.runtime import Runtime
from adapters.telegram.texts import TEXT_MAX, split_command
from bot.errors import DrawbridgeError
from bot.i18n import LANGUAGES, t
from bot.options import help_lines
from bot.texts import cut, queue_lines

log = logging.getLogger(__name__)

COMMANDS = ("start", "help", "draw", "cancel", "queue", "quota", "models", "settings")
MODELS_PAGE_LINES = 20


def bot_commands(locale: str) -> list[BotCommand]:
    """The command menu in one language."""
    return [BotCommand(name, t(locale, f"telegram.cmd.{name}")) for name in COMMANDS]


def command_languages() -> list[str]:
    """Languages the command menu is registered in besides the default (English)."""
    return [lang for lang in LANGUAGES if lang != "en"]


def _rt(context: ContextTypes.DEFAULT_TYPE) -> Runtime:
    runtime: Runtime = context.bot_data["runtime"]
    return runtime


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """What the bot does, in the user's language."""
    rt = _rt(context)
    message = update.effective_message
    if message is None:
        return
    requester = rt.requester(update.effective_user, update.effective_chat)
    text = t(requester.locale, "telegram.welcome", name=requester.display_name)
    await message.reply_text(text, do_quote=True)


async def on_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Every /draw option, generated from the one declaration."""
    rt = _rt(context)
    message = update.effective_message
    if message is None:
        return
    locale = rt.requester(update.effective_user, update.effective_chat).locale
    lines = help_lines(rt.engine.options, rt.engine.presets, locale)
    lines += ["", t(locale, "telegram.help_images"), t(locale, "telegram.help_commands")]
    await message.reply_text(cut("\n".join(lines), TEXT_MAX), do_quote=True)


async def on_cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/cancel [job]: the newest job, or the one named."""
    rt = _rt(context)
    message = update.effective_message
    if message is None or message.text is None:
        return
    requester = rt.requester(update.effective_user, update.effective_chat)
    _, rest = split_command(message.text, rt.username)
    job_id = rest.split()[0] if rest.split() else None
    if job_id is None:
        mine = rt.engine.user_jobs(requester.key)
        job_id = mine[-1].id if mine else None
    try:
        refunded = await rt.engine.cancel(requester, job_id)
    except DrawbridgeError as exc:
        await message.reply_text(exc.render(requester.locale), do_quote=True)
        return
    text = t(requester.locale, "telegram.cancelled_reply", job=job_id, credits=refunded)
    await message.reply_text(text, do_quote=True)


async def on_queue(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Queue summary and the user's own jobs with position and estimated start."""
    rt = _rt(context)
    message = update.effective_message
    if message is None:
        return
    requester = rt.requester(update.effective_user, update.effective_chat)
    locale = requester.locale
    lines = queue_lines(rt.engine, requester.key, locale)
    await message.reply_text("\n".join(lines), do_quote=True)


async def on_quota(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The user's credits."""
    rt = _rt(context)
    message = update.effective_message
    if message is None:
        return
    requester = rt.requester(update.effective_user, update.effective_chat)
    view = await rt.engine.quotas.show(requester.key)
    text = t(
        requester.locale,
        "quota.show",
        user=requester.display_name,
        balance=view.available,
        allowance=view.allowance,
        bonus=view.bonus,
        reserved=view.reserved,
        reset=rt.engine.quotas.reset_label(),
    )
    await message.reply_text(text, do_quote=True)


# --- /models ---------------------------------------------------------------------------


async def model_lines(rt: Runtime, locale: str | None) -> list[str]:
    """Checkpoints, samplers and LoRAs the backends offer."""
    found = await rt.engine.catalogue()
    if not found.checkpoints and not found.samplers:
        return []
    lines = [t(locale, "telegram.models_checkpoints"), *(f"• {n}" for n in found.checkpoints)]
    lines += [t(locale, "telegram.models_samplers"), *(f"• {n}" for n in found.samplers)]
    if found.loras:
        lines += [t(locale, "models.loras"), *(f"• {n}" for n in found.loras)]
    return lines


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
    rt = _rt(context)
    message = update.effective_message
    if message is None:
        return
    locale = rt.requester(update.effective_user, update.effective_chat).locale
    lines = await model_lines(rt, locale)
    if not lines:
        await message.reply_text(t(locale, "models.none"), do_quote=True)
        return
    text, markup = models_page(lines, 0, locale)
    await message.reply_text(text, reply_markup=markup, do_quote=True)


async def on_models_page(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """◀ ▶ under /models."""
    rt = _rt(context)
    query = update.callback_query
    if query is None or query.data is None:
        return
    await query.answer()
    locale = rt.requester(query.from_user, update.effective_chat).locale
    try:
        page = int(query.data.partition(":")[2])
    except ValueError:
        return
    lines = await model_lines(rt, locale)
    if not lines:
        return
    text, markup = models_page(lines, page, locale)
    with contextlib.suppress(BadRequest):  # pressed twice: "message is not modified"
        await query.edit_message_text(text, reply_markup=markup)
