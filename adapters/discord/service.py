"""Build and run the Discord bot: log in, sync slash commands only when their declaration
changed, answer interactions and replies until the adapter is left, close cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import aiohttp
import discord
import discord.http
from discord import app_commands

from adapters.discord.actions import on_press
from adapters.discord.admin import ban_gate, send_notices
from adapters.discord.commands import build_tree
from adapters.discord.draw import ephemeral, refuse_after_defer
from adapters.discord.replier import DiscordReplier
from adapters.discord.replies import on_message
from adapters.discord.runtime import PLATFORM, Runtime
from adapters.discord.slash import CatalogueTranslator, DeclarationError, declaration_problems
from adapters.discord.views import ActionButton
from adapters.kit import AdapterStartError, token_of
from bot.i18n import t
from bot.service import Service
from bot.settings import Settings

log = logging.getLogger(__name__)

API_VERSION_PATH = re.compile(r"/api/v\d+$")
HASH_FILE = "discord-commands.json"
CLOSE_GRACE = 5.0  # how long shutdown waits for a login in progress to finish first


class DiscordStartError(AdapterStartError):
    """The bot could not start; the message is safe to log (it never holds the token)."""


class DrawbridgeClient(discord.Client):
    """discord.Client with drawbridge's commands, buttons and reply handling."""

    def __init__(self, rt: Runtime) -> None:
        # Default intents: guilds, guild messages and DMs. No message-content intent: replies to
        # our results ping the bot, and Discord delivers their content for that.
        super().__init__(
            intents=discord.Intents.default(),
            guild_ready_timeout=rt.settings.discord_guild_ready_timeout,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.rt = rt
        self.tree = build_tree(self, rt)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(ActionButton)
        await self.tree.set_translator(CatalogueTranslator())
        await sync_commands(self.tree, self.rt.settings.data_dir)
        self.rt.set_ready(self)

    async def on_ready(self) -> None:
        self.rt.gateway_ready.set()
        log.info("discord: logged in as %s (%d servers)", self.user, len(self.guilds))

    async def on_message(self, message: discord.Message) -> None:
        await on_message(self.rt, message)

    async def on_action_press(self, interaction: discord.Interaction, kind: str, key: str) -> None:
        try:
            if not await ban_gate(self.rt, interaction):
                return
            await on_press(self.rt, interaction, kind, key)
        except Exception as exc:
            log.error("discord button %s failed: %s: %s", kind, type(exc).__name__, exc)
            text = t(str(interaction.locale), "error.internal")
            with contextlib.suppress(discord.HTTPException):
                if interaction.response.is_done():
                    await refuse_after_defer(interaction, text)
                else:
                    await ephemeral(interaction, text)


# --- commands ---------------------------------------------------------------------------------


async def command_payload(tree: app_commands.CommandTree[Any]) -> list[dict[str, Any]]:
    """Exactly what `tree.sync()` sends (translations included)."""
    translator = tree.translator
    commands = tree.get_commands()
    if translator is None:
        return [c.to_dict(tree) for c in commands]
    return [await c.get_translated_payload(tree, translator) for c in commands]


async def sync_commands(tree: app_commands.CommandTree[Any], data_dir: Path) -> bool:
    """Sync the global commands when their payload differs from the last synced one (Discord
    limits how many commands a day may be created); returns whether it synced."""
    app_id = tree.client.application_id
    payload = await command_payload(tree)
    problems = declaration_problems(payload)
    if problems:  # Discord would refuse the whole sync: say what to change instead
        raise DeclarationError("; ".join(problems[:5]))
    text = json.dumps({"application": app_id, "commands": payload}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    path = data_dir / HASH_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        stored = None
    if stored == digest:
        log.info("discord: slash commands unchanged; not syncing")
        return False
    synced = await tree.sync()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"application": app_id, "sha256": digest}), encoding="utf-8")
    log.info("discord: synced %d commands", len(synced))
    return True


# --- logs and the REST root -----------------------------------------------------------------------

_TOKEN_URL = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._\-]{20,}")


class InteractionTokenFilter(logging.Filter):
    """Masks interaction tokens in the URLs discord.py logs (rate-limit warnings, debug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _TOKEN_URL.sub(r"\1***", message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_LOGGERS = ("discord.http", "discord.webhook.async_")


def _mask_tokens() -> Callable[[], None]:
    token_filter = InteractionTokenFilter()
    for name in _LOGGERS:
        logging.getLogger(name).addFilter(token_filter)

    def undo() -> None:
        for name in _LOGGERS:
            logging.getLogger(name).removeFilter(token_filter)

    return undo


def api_base(root: str) -> str:
    """discord.py's REST base for DISCORD_API_BASE_URL (a root, or a root ending in /api/vN)."""
    root = root.rstrip("/")
    return root if API_VERSION_PATH.search(root) else f"{root}/api/v10"


# --- running ----------------------------------------------------------------------------------


class DiscordAdapter:
    """The Discord bot as an Adapter: building it registers the reply factory, entering it
    logs in (raising DiscordStartError with a sentence when that fails), leaving it closes the
    gateway connection and cancels the status edits."""

    name = PLATFORM

    def __init__(self, service: Service, settings: Settings) -> None:
        self._token = token_of(settings.discord_token, "DISCORD_TOKEN", DiscordStartError)
        self.rt = Runtime(service, settings)
        self.rt.resume_with(DiscordReplier.from_ref)
        send_notices(self.rt)
        self._runner: asyncio.Task[None] | None = None
        self._old_base = discord.http.Route.BASE
        self._unmask: Callable[[], None] | None = None

    async def __aenter__(self) -> Self:
        rt, settings = self.rt, self.rt.settings
        if settings.discord_api_base_url:
            discord.http.Route.BASE = api_base(settings.discord_api_base_url)
        self._unmask = _mask_tokens()
        await rt.outbox.__aenter__()  # jobs resumed at start may already have queued replies
        client = DrawbridgeClient(rt)
        rt.client = client
        self._runner = runner = asyncio.create_task(client.start(self._token))
        logged_in = asyncio.create_task(rt.wait_ready())
        try:
            await asyncio.wait([runner, logged_in], return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            logged_in.cancel()
            await self._stop()
            raise
        logged_in.cancel()
        if runner.done():
            failure = _start_failure(runner, settings, self._token)
            await self._stop()
            # raised outside any except block: the library's exception is not kept as context
            raise DiscordStartError(failure)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    async def wait_closed(self) -> None:
        """Return when the gateway connection ended by itself; raise why it failed."""
        assert self._runner is not None
        await asyncio.wait([self._runner])
        raise DiscordStartError(_start_failure(self._runner, self.rt.settings, self._token))

    async def _stop(self) -> None:
        rt, runner = self.rt, self._runner
        client = rt.client
        try:
            if runner is not None and not runner.done() and not rt.gateway_ready.is_set():
                # closing in the middle of the login/handshake can leave it hanging
                ready = asyncio.ensure_future(rt.gateway_ready.wait())
                await asyncio.wait(
                    [runner, ready], timeout=CLOSE_GRACE, return_when=asyncio.FIRST_COMPLETED
                )
                ready.cancel()
            await rt.outbox.close()
            await rt.cancel_tasks()
            if client is not None:
                await client.close()
            if runner is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(runner, CLOSE_GRACE)
        finally:
            discord.http.Route.BASE = self._old_base
            if self._unmask is not None:
                self._unmask()
                self._unmask = None
        log.info("discord: stopped")


def _start_failure(runner: asyncio.Task[None], settings: Settings, token: str) -> str:
    exc = runner.exception() if not runner.cancelled() else None
    if exc is None:
        return "the connection to Discord closed"
    if isinstance(exc, discord.LoginFailure):
        return (
            "Discord refused DISCORD_TOKEN (401 Unauthorized). Copy the token again from the "
            "Developer Portal (your application → Bot → Reset Token)."
        )
    if isinstance(exc, DeclarationError):
        return (
            f"the slash commands break Discord's rules, so they cannot be registered: {exc}. "
            "Shorten the preset names or descriptions in PRESETS_FILE."
        )
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return "Discord refused the gateway intents; drawbridge needs no privileged intent."
    base = settings.discord_api_base_url or "https://discord.com"
    detail = f"{type(exc).__name__}: {exc}".replace(token, "***")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return (
            f"Could not reach Discord at {base}: {detail} — check the network, or "
            "DISCORD_API_BASE_URL if you use a REST proxy."
        )
    return f"Discord stopped: {detail}"
