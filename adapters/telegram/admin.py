"""/admin … on Telegram, the ban gate every update passes, and the admin notices.

/admin is listed (setMyCommands with BotCommandScopeChat) only in the private chats of the
Telegram ids in ADMIN_IDS; anyone may type it, and the service refuses non-admins. Answers
and refusals go to the user's private chat, never into a group."""

from __future__ import annotations

import logging

from telegram import BotCommand, BotCommandScopeChat, Chat, Message, Update
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationHandlerStop, ContextTypes

from adapters.kit import Priority
from adapters.telegram.runtime import PLATFORM, Runtime, answer_query, asked
from adapters.telegram.texts import split_command
from bot.commands import Audience, Where, commands_on
from bot.i18n import t

log = logging.getLogger(__name__)


def admin_chats(rt: Runtime) -> list[int]:
    """The private chats of the Telegram admins in ADMIN_IDS (a user's id is that chat's id)."""
    chats = []
    for key in rt.settings.admin_ids:
        platform, _, user_id = key.partition(":")
        if platform == PLATFORM and user_id.lstrip("-").isdigit():
            chats.append(int(user_id))
    return chats


def admin_menu(locale: str, everyone: list[BotCommand]) -> list[BotCommand]:
    """The menu of an admin's private chat: everyone's commands, then the admin ones."""
    admin = commands_on(Where.TELEGRAM, Audience.ADMIN)
    return everyone + [
        BotCommand(c.name, t(locale, c.catalogue_key(Where.TELEGRAM))) for c in admin
    ]


async def register_admin_menus(app: Application, everyone: list[BotCommand]) -> None:
    """setMyCommands scoped to each admin's private chat (the chat must exist: an admin who
    never started the bot gets an error, logged and skipped)."""
    for chat_id in admin_chats(app.bot_data["runtime"]):
        try:
            await app.bot.set_my_commands(
                admin_menu("en", everyone), scope=BotCommandScopeChat(chat_id)
            )
        except TelegramError as exc:
            log.warning("admin menu for chat %s not set: %s", chat_id, type(exc).__name__)


def say_privately(rt: Runtime, message: Message, text: str, *, priority: Priority) -> None:
    """`text` only for the sender: a reply in their private chat, a DM from a group."""
    user = message.from_user
    if message.chat.type == Chat.PRIVATE or user is None:
        rt.answer(message, text, priority=priority)
    else:
        rt.say(user.id, text, priority=priority)


async def on_admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/admin SUBCOMMAND …: run by the service, answered privately."""
    if (found := await asked(update, context)) is None or found[1].text is None:
        return
    rt, message, requester = found
    _, rest = split_command(found[1].text, rt.username)
    text = await rt.service.admin(requester, rest.split())
    say_privately(rt, message, text, priority=Priority.NOTICE)


async def ban_gate(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A banned user's commands and presses get one private line per period, then nothing;
    their other messages nothing at all."""
    rt: Runtime = context.bot_data["runtime"]
    if not isinstance(update, Update) or update.effective_user is None:
        return
    requester = rt.requester(update.effective_user, update.effective_chat)
    notice = await rt.service.ban_notice(requester)
    if not notice.banned:
        return
    line = notice.line.render(requester.locale) if notice.line is not None else None
    query = update.callback_query
    if query is not None:
        await answer_query(query, line)
    elif update.message is not None and line is not None:
        message = update.message
        command, _ = split_command(message.text or message.caption, rt.username)
        if command or message.chat.type == Chat.PRIVATE:
            say_privately(rt, message, line, priority=Priority.REFUSAL)
    raise ApplicationHandlerStop


def send_notices(rt: Runtime) -> None:
    """Admin notices → each Telegram admin's private chat, through the outbox."""

    def notify(key: str, params: dict[str, object]) -> None:
        for chat_id in admin_chats(rt):
            rt.say(chat_id, t("en", key, **params), priority=Priority.NOTICE)

    rt.service.listen_notices(notify)
