"""What every handler and replier of one running bot shares: engine, settings, the client, and
the channel rules (DMs, allow-list, NSFW-only, spoilers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import discord

from bot.engine import Engine
from bot.settings import Settings
from bot.tasks import TaskSet
from bot.types import Requester

log = logging.getLogger(__name__)

PLATFORM = "discord"
READY_TIMEOUT = 120.0  # a job resumed at startup waits this long for the login


class NotReady(RuntimeError):
    """The Discord client did not log in in time, so a reply cannot be sent."""


Channel = Any  # discord.py's channel union types; only id/parent_id/is_nsfw are used


@dataclass
class Runtime:
    """Shared state of one bot; `client` is set when it is built."""

    engine: Engine
    settings: Settings
    client: discord.Client | None = None
    logged_in: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: TaskSet = field(default_factory=TaskSet)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A background task (status edits) that shutdown cancels."""
        return self.tasks.spawn(coro)

    async def cancel_tasks(self) -> None:
        """Cancel what `spawn` started and wait for it."""
        await self.tasks.cancel_all()

    async def wait_client(self) -> discord.Client:
        """The logged-in client (jobs resumed at startup may finish before the login)."""
        if not self.logged_in.is_set():
            try:
                await asyncio.wait_for(self.logged_in.wait(), READY_TIMEOUT)
            except TimeoutError:
                raise NotReady("the Discord client did not log in") from None
        assert self.client is not None
        return self.client

    # --- who and where -----------------------------------------------------------------
    def requester(self, user: discord.abc.User, channel_id: int | None, locale: str) -> Requester:
        """The neutral Requester for a Discord user in a channel."""
        user_id = str(user.id)
        return Requester(
            platform=PLATFORM,
            user_id=user_id,
            display_name=user.display_name or user.name,
            chat_id=str(channel_id or ""),
            locale=locale,
            is_admin=self.settings.is_admin(f"{PLATFORM}:{user_id}"),
        )

    def refusal(self, channel: Channel, in_guild: bool) -> str | None:
        """Catalogue key of why we do not draw here, or None when we do."""
        settings = self.settings
        if not in_guild:
            return None if settings.discord_allow_dms else "discord.dms_off"
        allowed = settings.discord_allowed_channels
        if allowed:
            ids = {str(channel.id), str(getattr(channel, "parent_id", None) or "")}
            if not ids & set(allowed):
                return "discord.channel_not_allowed"
        if settings.discord_nsfw_only and not _nsfw(channel):
            return "discord.nsfw_only"
        return None

    def spoiler(self, channel: Channel, in_guild: bool) -> bool:
        """Whether pictures posted here are hidden behind a spoiler."""
        return self.settings.discord_spoiler_outside_nsfw and in_guild and not _nsfw(channel)

    async def locale_of(self, user: discord.abc.User, guild: discord.Guild | None) -> str:
        """A user's language outside interactions: the one their last command came in, else
        the server's."""
        row = await self.engine.db.users.get(f"{PLATFORM}:{user.id}")
        if row is not None and getattr(row, "locale", None):
            return str(row.locale)
        if guild is not None:
            return str(guild.preferred_locale)
        return "en"


def _nsfw(channel: Channel) -> bool:
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


class NullReplier:
    """For `engine.act` calls that start no job (cancel, delete)."""

    async def update(self, update: object) -> None:
        return None

    async def deliver(self, result: object) -> None:
        return None

    async def fail(self, job_id: str, error: object, refunded: int) -> None:
        return None
