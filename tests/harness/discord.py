"""Harness for the Discord adapter's end-to-end tests.

`discord_env` runs what `drawbridge run` runs: the service, then `adapters.discord.DiscordAdapter`
with the real discord.py talking to the fake Discord (tests/fakes/discord_api.py: gateway +
REST v10), and the real engine talking to `DevWebUI` on 127.0.0.1 over a real SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.discord import DiscordAdapter
from bot.presets import PresetBook
from bot.service import Service
from bot.types import QuotaView
from devwebui import DevWebUI
from tests.fakes.discord_api import FakeDiscord, Interaction, patch_discord_urls
from tests.harness.env import LogRecords, ServiceEnv
from tests.harness.settings import SMALL, make_settings

EPHEMERAL = 1 << 6


@dataclass
class Env(ServiceEnv):
    """A running bot + service + WebUI, and ways to look at what a user sees."""

    fake: FakeDiscord | None = None

    @property
    def dc(self) -> FakeDiscord:
        assert self.fake is not None
        return self.fake

    # --- what the user sees --------------------------------------------------------------
    async def result(self, ix: Interaction, timeout: float = 10.0) -> dict[str, Any]:
        """The interaction's response once it holds a result (an embed with pictures)."""

        def done() -> dict[str, Any] | None:
            message = self.dc.original_message(ix)
            if message and message["embeds"] and message["attachments"]:
                return message
            return None

        result: dict[str, Any] = await self.until(done, timeout)
        return result

    async def ephemeral(self, ix: Interaction, timeout: float = 10.0) -> str:
        """The text of the ephemeral answer to an interaction."""

        def answer() -> str | None:
            for message in [self.dc.original_message(ix), *self.dc.followups(ix)]:
                if message and message["flags"] & EPHEMERAL and message["content"]:
                    return str(message["content"])
            return None

        text: str = await self.until(answer, timeout)
        return text

    def png_of(self, message: dict[str, Any], index: int = 0) -> bytes:
        """The bytes of a message's attachment."""
        return self.dc.attachment_bytes(message["attachments"][index])

    async def settled(self, user: str, timeout: float = 5.0) -> QuotaView:
        """A user's quota once nothing is reserved any more (settling follows delivery)."""
        return await self.settled_quota(f"discord:{self.dc.user(user)['id']}", timeout)


@contextlib.asynccontextmanager
async def discord_env(
    tmp_path: Path,
    *,
    fake: FakeDiscord | None = None,
    webui: DevWebUI | None = None,
    presets: PresetBook | None = SMALL,
    webui_delay: float = 0.05,
    **overrides: Any,
) -> AsyncIterator[Env]:
    """Start (or reuse) a fake Discord and a DevWebUI, then the service and the adapter."""
    async with contextlib.AsyncExitStack() as stack:
        if fake is None:
            fake = await stack.enter_async_context(FakeDiscord())
        stack.enter_context(patch_discord_urls(fake))
        if webui is None:
            webui = await stack.enter_async_context(DevWebUI(delay=webui_delay))
        values: dict[str, Any] = {
            "discord_token": fake.token,
            "discord_api_base_url": fake.root,
            "discord_edit_interval": 0.1,
            "discord_guild_ready_timeout": 0.05,
        }
        values.update(overrides)
        settings = make_settings(tmp_path, [webui.url], **values)
        http_log = logging.getLogger("discord.http")
        old_level = http_log.level
        http_log.setLevel(logging.DEBUG)  # request URLs, where interaction tokens would show
        stack.callback(http_log.setLevel, old_level)
        records = stack.enter_context(LogRecords(logging.DEBUG, "discord", "adapters"))
        service = Service(settings, presets=presets)
        adapter = DiscordAdapter(service, settings)  # registers its replier before the start
        env = Env(webui, service, settings, fake=fake)
        async with service, adapter:
            await fake.wait_connected(timeout=10)
            yield env
        unexpected = records.unexpected(env.allowed_errors)
        assert not unexpected, unexpected
        secrets = [fake.token, *(ix.token for ix in fake.interactions.values())]
        logged = "\n".join(r.getMessage() for r in records.records)
        sent = json.dumps([c.json for c in fake.calls], default=str)
        for secret in secrets:
            assert secret not in logged
            assert secret not in sent
