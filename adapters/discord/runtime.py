"""What every handler and replier of one running bot shares: the kit's runtime (service,
settings, the logged-in client, background tasks) and the channel rules (DMs, allow-list,
NSFW-only, spoilers)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import discord

from adapters.discord.edge import make_outbox
from adapters.kit import Outbox
from adapters.kit import Runtime as KitRuntime
from bot.service import Service
from bot.settings import Settings
from bot.types import Requester

log = logging.getLogger(__name__)

PLATFORM = "discord"

Channel = Any  # discord.py's channel union types; only id/parent_id/is_nsfw are used


class Runtime(KitRuntime[discord.Client]):
    """Shared state of one bot; `set_ready(client)` once it has logged in."""

    platform = PLATFORM
    token_setting = "discord_token"

    def __init__(self, service: Service, settings: Settings) -> None:
        super().__init__(service, settings)
        self.gateway_ready = asyncio.Event()  # the gateway's READY (servers known)

    def make_outbox(self) -> Outbox:
        """Discord's order and retries (discord.py keeps the rate-limit buckets)."""
        return make_outbox(self.settings)

    # --- who and where -----------------------------------------------------------------
    def requester(
        self,
        user: discord.abc.User,
        channel_id: int | None,
        locale: str,
        channel: Channel | None = None,
    ) -> Requester:
        """The neutral Requester for a Discord user in a channel (given the channel itself,
        whether it is an NSFW one: NSFW_CHECK leaves those alone)."""
        user_id = str(user.id)
        name = user.display_name or user.name
        requester = self.make_requester(user_id, name, str(channel_id or ""), locale)
        # role ids as the interaction's member carries them (tiers); the guild's role cache
        # may not know them all, the member's id list does
        roles = tuple(str(r) for r in getattr(user, "_roles", ()))
        nsfw = channel is not None and _nsfw(channel)
        if roles or nsfw:
            return dataclasses.replace(requester, roles=roles, nsfw=nsfw).shared()
        return requester

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
        last = await self.service.last_locale(f"{PLATFORM}:{user.id}")
        if last:
            return last
        if guild is not None:
            return str(guild.preferred_locale)
        return "en"


def _nsfw(channel: Channel) -> bool:
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False
