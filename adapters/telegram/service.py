"""Build and run the Telegram bot: long polling by default, a webhook when TELEGRAM_WEBHOOK_URL
is set; TELEGRAM_API_BASE_URL points it at a self-hosted Bot API server (the tests' fake too)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Self
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from adapters.kit import AdapterStartError, Priority, token_of
from adapters.telegram.admin import ban_gate, on_admin, register_admin_menus, send_notices
from adapters.telegram.burst import on_cancel_burst
from adapters.telegram.buttons import on_action
from adapters.telegram.commands import (
    bot_commands,
    command_languages,
    on_cancel,
    on_help,
    on_models,
    on_models_page,
    on_queue,
    on_quota,
    on_start,
)
from adapters.telegram.describe import on_describe_command, on_draw_this
from adapters.telegram.draw import on_draw_command, on_picture, on_private_text
from adapters.telegram.history import on_history, on_history_page
from adapters.telegram.replier import TelegramReplier
from adapters.telegram.runtime import PLATFORM, Runtime, answer_query
from adapters.telegram.settings_menu import on_settings, on_settings_button
from adapters.telegram.texts import split_command
from bot.commands import Where, commands_on
from bot.i18n import t
from bot.logs import learn_secret
from bot.service import Service
from bot.settings import Settings

log = logging.getLogger(__name__)

ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


# one handler per command declared for Telegram in bot.commands
HANDLERS = {
    "start": on_start,
    "help": on_help,
    "draw": on_draw_command,
    "cancel": on_cancel,
    "queue": on_queue,
    "quota": on_quota,
    "models": on_models,
    "settings": on_settings,
    "admin": on_admin,
    "describe": on_describe_command,
    "history": on_history,
}


class TelegramStartError(AdapterStartError):
    """The bot could not start; the message is safe to log (it never holds the token)."""


def redact(text: str, token: str) -> str:
    """`text` with the bot token (and its secret half) masked."""
    if token:
        text = text.replace(token, "***")
        secret = token.partition(":")[2]
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class TelegramAdapter:
    """The Telegram bot as an Adapter: building it registers the reply factory, entering it
    initializes the Application (checking the token), registers the menu and starts polling
    or the webhook; leaving it stops all of that and cancels the status edits."""

    name = PLATFORM

    def __init__(self, service: Service, settings: Settings) -> None:
        self._token = token_of(settings.telegram_token, "TELEGRAM_TOKEN", TelegramStartError)
        self.rt = Runtime(service, settings)
        self.rt.resume_with(TelegramReplier.from_ref)
        send_notices(self.rt)
        self.app = build_application(self.rt, self._token)
        self._runner: web.AppRunner | None = None
        self._closed = asyncio.Event()

    async def __aenter__(self) -> Self:
        app, rt, settings = self.app, self.rt, self.rt.settings
        await rt.outbox.__aenter__()  # jobs resumed at start may already have queued replies
        failure = None
        try:
            await app.initialize()
        except InvalidToken:
            failure = (
                "Telegram refused TELEGRAM_TOKEN (getMe answered 401). Copy the token again from "
                "@BotFather."
            )
        except TelegramError as exc:
            failure = (
                f"Could not reach the Telegram Bot API at {settings.telegram_api_base_url}: "
                f"{redact(str(exc), self._token)} — check TELEGRAM_API_BASE_URL and the network."
            )
        if failure is not None:
            await rt.outbox.close()
            with contextlib.suppress(Exception):
                await app.bot.shutdown()
            # raised outside the except block: the library's exception (which quotes the token)
            # is not kept as __context__
            raise TelegramStartError(failure)
        try:
            rt.username = app.bot.username
            rt.set_ready(app.bot)
            await register_commands(app)
            await app.start()
            if settings.telegram_webhook_url:
                self._runner = await start_webhook(app, rt)
                log.info("telegram: @%s receiving updates by webhook", rt.username)
            else:
                assert app.updater is not None
                await app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
                log.info("telegram: @%s polling for updates", rt.username)
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    async def wait_closed(self) -> None:
        """Polling and the webhook run until the adapter is left."""
        await self._closed.wait()

    async def _stop(self) -> None:
        app = self.app
        try:
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            await self.rt.outbox.close()
            await self.rt.cancel_tasks()
            if app.running:
                await app.stop()
            await app.shutdown()
        finally:
            self._closed.set()
        log.info("telegram: stopped")


def build_application(rt: Runtime, token: str) -> Application:
    """The python-telegram-bot Application with every handler of drawbridge."""
    settings = rt.settings
    root = settings.telegram_api_base_url
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        .concurrent_updates(True)  # handlers download pictures; never hold up other chats
        .media_write_timeout(60.0)
        .build()
    )
    app.bot_data["runtime"] = rt
    messages = filters.UpdateType.MESSAGE
    # each group runs its first matching handler: chats first, then bans, then the commands
    app.add_handler(TypeHandler(Update, gate), group=-2)
    app.add_handler(TypeHandler(Update, ban_gate), group=-1)
    for command in commands_on(Where.TELEGRAM):
        app.add_handler(CommandHandler(command.name, HANDLERS[command.name], filters=messages))
    app.add_handler(MessageHandler(messages & (filters.PHOTO | filters.Document.ALL), on_picture))
    app.add_handler(
        MessageHandler(
            messages & filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND,
            on_private_text,
        )
    )
    app.add_handler(CallbackQueryHandler(on_action, pattern=r"^[rvuoxzwlgkjqfc]:"))
    app.add_handler(CallbackQueryHandler(on_cancel_burst, pattern=r"^X:"))
    app.add_handler(CallbackQueryHandler(on_draw_this, pattern=r"^p:"))
    app.add_handler(CallbackQueryHandler(on_history_page, pattern=r"^h:"))
    app.add_handler(CallbackQueryHandler(on_models_page, pattern=r"^m:"))
    app.add_handler(CallbackQueryHandler(on_settings_button, pattern=r"^s:"))
    app.add_handler(CallbackQueryHandler(on_stale_button))
    app.add_error_handler(on_error)
    return app


async def register_commands(app: Application) -> None:
    """setMyCommands in English (default) and every other catalogue language."""
    try:
        await app.bot.set_my_commands(bot_commands("en"))
        for lang in command_languages():
            await app.bot.set_my_commands(bot_commands(lang), language_code=lang)
    except TelegramError as exc:  # the menu is a convenience; the bot works without it
        log.warning("setMyCommands failed: %s", type(exc).__name__)
    await register_admin_menus(app, bot_commands("en"))


async def gate(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """TELEGRAM_ALLOWED_CHATS: updates from other chats stop here."""
    rt: Runtime = context.bot_data["runtime"]
    if not isinstance(update, Update):
        return
    chat, user = update.effective_chat, update.effective_user
    if user is None and update.message is not None:
        # an anonymous group admin (or a channel) writes as the chat: no user to charge
        command, _ = split_command(update.message.text or update.message.caption, rt.username)
        if command:
            text = t(None, "telegram.anonymous")
            rt.answer(update.message, text, priority=Priority.REFUSAL, key=("anonymous",))
        raise ApplicationHandlerStop
    if rt.chat_allowed(chat, user):
        return
    locale = user.language_code if user else None
    text = t(locale, "telegram.chat_not_allowed")
    if update.callback_query is not None:
        await answer_query(update.callback_query, text)
    elif update.message is not None:
        command, _ = split_command(update.message.text or update.message.caption, rt.username)
        if command:  # answer commands for us; stay quiet about everything else
            rt.answer(update.message, text, priority=Priority.REFUSAL, key=("not allowed",))
    raise ApplicationHandlerStop


async def on_stale_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button this version does not know: stop the spinner."""
    if update.callback_query is not None:
        await answer_query(update.callback_query)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log a handler failure (no token, no traceback text to users) and say sorry."""
    rt: Runtime = context.bot_data["runtime"]
    token = rt.settings.telegram_token.get_secret_value() if rt.settings.telegram_token else ""
    error = context.error
    log.error("telegram handler failed: %s", redact(f"{type(error).__name__}: {error}", token))
    if error is not None:  # the stack for whoever debugs (the root handler masks secrets)
        log.debug("telegram handler failure", exc_info=error)
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    user = update.effective_user
    locale = user.language_code if user else None
    text = t(locale, "error.internal")
    query = update.callback_query
    if query is not None:  # a press: answered privately, never in the chat
        with contextlib.suppress(Exception):
            await answer_query(query, text)
        return
    rt.say(update.effective_chat.id, text, key=("sorry",))


async def start_webhook(app: Application, rt: Runtime) -> web.AppRunner:
    """Listen on TELEGRAM_WEBHOOK_LISTEN and tell Telegram to POST updates to the public URL."""
    settings = rt.settings
    url = settings.telegram_webhook_url or ""
    path = urlsplit(url).path or "/"
    host, _, port = settings.telegram_webhook_listen.rpartition(":")
    secret = (
        settings.telegram_webhook_secret.get_secret_value()
        if settings.telegram_webhook_secret is not None
        else secrets.token_urlsafe(32)
    )
    learn_secret(secret)  # generated here when not set: the log's redaction must know it

    async def receive(request: web.Request) -> web.Response:
        if not secrets.compare_digest(request.headers.get(SECRET_HEADER, ""), secret):
            return web.Response(status=403)
        try:
            data = await request.json()
            update = Update.de_json(data, app.bot)
        except Exception:
            return web.Response(status=400)
        await app.update_queue.put(update)
        return web.Response()

    server = web.Application()
    server.router.add_post(path, receive)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
    try:
        await app.bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
    except BaseException:
        await runner.cleanup()
        raise
    return runner
