"""The whole path on Discord: real discord.py ↔ the fake Discord of the tests (gateway and REST
v10; per-route buckets of 5 calls per 5 s per channel and per interaction token, with the
X-RateLimit headers discord.py paces itself by, 429 past them; tests/fakes/discord_api.py) ↔
drawbridge's adapter, service and engine ↔ timed dev-webui servers, all in this process on
127.0.0.1.

Figures: interaction → WebUI request on an idle bot beside a bare discord.py command that only
forwards the prompt, measured in the same run; REST calls per delivered job with 5 s jobs (DMs,
a guild channel); 429s; results lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.discord import DiscordAdapter
from bench.common import (
    TimedWebUI,
    bench_settings,
    in_turn,
    overhead_figures,
    overhead_line,
    path_figures,
    until,
)
from bench.common import webuis as start_webuis
from bench.tgpath import SMALL
from bot.service import Service
from bot.webui.client import WebUIClient
from tests.fakes.discord_api import FakeDiscord, Interaction, patch_discord_urls

Log = Callable[[str], None]
USERS = 20  # the overhead's users, in turn
# what a bot does once at start (log in, gateway, command sync), not per job
STARTUP = {"get_me", "get_application", "get_gateway", "sync_commands", "get_commands", "WS"}


@dataclass(frozen=True)
class Config:
    """Sizes and job times; the defaults keep this part near two minutes on 2 cores."""

    overhead_jobs: int = 100
    overhead_delay: float = 0.01
    realistic_delay: float = 5.0
    realistic_backends: int = 4
    realistic_dm_users: int = 8
    realistic_guild_users: int = 4
    realistic_rounds: int = 2


@contextlib.asynccontextmanager
async def bot(fake: FakeDiscord, urls: list[str]) -> AsyncIterator[Service]:
    """drawbridge's Discord bot as `drawbridge run` runs it, with production defaults."""
    with tempfile.TemporaryDirectory(prefix="drawbridge-bench-dc-") as tmp:
        settings = bench_settings(
            Path(tmp),
            urls,
            discord_token=fake.token,
            discord_api_base_url=fake.root,
            discord_guild_ready_timeout=0.05,  # the fake sends its one guild at once
        )
        service = Service(settings, presets=SMALL)
        adapter = DiscordAdapter(service, settings)
        async with service, adapter:
            await fake.wait_connected(timeout=30)
            await until(lambda: fake.command_puts, 30)
            yield service


def delivered(fake: FakeDiscord, ix: Interaction) -> bool:
    """Whether the interaction's response holds its picture (the status became the result)."""
    message = fake.original_message(ix)
    return bool(message and message["embeds"] and message["attachments"])


def per_job_calls(fake: FakeDiscord, interactions: list[Interaction], since: float) -> int:
    """REST calls the bot made since `since` for these interactions: callbacks and webhook
    edits by their token, channel messages in their channels (start-up calls aside)."""
    tokens = {ix.token for ix in interactions}
    channels = {ix.channel_id for ix in interactions}
    count = 0
    for call in fake.calls:
        if call.time < since or call.kind in STARTUP or call.method == "WS":
            continue
        if call.interaction is not None:
            count += call.interaction.token in tokens
        elif any(f"/channels/{channel}/" in call.path for channel in channels):
            count += 1
    return count


# --- interaction → WebUI request -----------------------------------------------------------


async def overhead(cfg: Config, log: Log) -> dict[str, float]:
    """Idle bot, one /draw at a time from 20 users in turn: the fake's dispatch of the
    INTERACTION_CREATE (built, then written to the gateway connection) → the WebUI has read
    the request. The bare bot is a discord.py
    command that only posts the prompt."""
    out: dict[str, float] = {}
    async with start_webuis(1) as servers:
        server = servers[0]
        server.reset(delay=cfg.overhead_delay, encode_delay=0.0)
        async with FakeDiscord() as fake, contextlib.AsyncExitStack() as stack:
            stack.enter_context(patch_discord_urls(fake))
            bare = await _measure_bare(fake, server, cfg)
        server.reset(delay=cfg.overhead_delay, encode_delay=0.0)
        async with FakeDiscord() as fake, contextlib.AsyncExitStack() as stack:
            stack.enter_context(patch_discord_urls(fake))
            await stack.enter_async_context(bot(fake, [server.url]))
            ours = await _measure(fake, server, cfg.overhead_jobs, "ours")
            out["dc_overhead_floods"] = float(len(fake.rate_limited))
    out.update(overhead_figures("dc", ours, bare))
    log(overhead_line("discord", "bare discord.py command", out, "dc"))
    return out


async def _measure(fake: FakeDiscord, server: TimedWebUI, jobs: int, tag: str) -> list[float]:
    async def send(user: dict[str, Any], prompt: str) -> None:
        await fake.slash("draw", {"prompt": prompt}, user=user)

    users = [fake.add_user(f"{tag}{i}") for i in range(USERS)]
    return await in_turn(send, server, users, jobs, tag)


async def _measure_bare(fake: FakeDiscord, server: TimedWebUI, cfg: Config) -> list[float]:
    import discord
    from discord import app_commands

    webui = WebUIClient(server.url, timeout=60.0, connect_timeout=5.0)
    client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
    tree = app_commands.CommandTree(client)

    @tree.command(name="draw", description="Draw a picture")
    async def draw(interaction: discord.Interaction, prompt: str) -> None:
        await webui.txt2img({"prompt": prompt, "width": 256, "height": 256, "steps": 4})
        await interaction.response.send_message("done")

    async def setup_hook() -> None:
        await tree.sync()

    client.setup_hook = setup_hook  # type: ignore[method-assign]
    task = asyncio.create_task(client.start(fake.token))
    try:
        await asyncio.wait_for(client.wait_until_ready(), 30)
        await until(lambda: fake.command_puts, 30)
        return await _measure(fake, server, cfg.overhead_jobs, "bare")
    finally:
        await client.close()
        with contextlib.suppress(Exception):
            await task
        await webui.aclose()


# --- calls per delivered job with 5 s jobs -------------------------------------------------


async def realistic(cfg: Config, log: Log) -> dict[str, float]:
    """5 s jobs on four backends: users in DMs and in one guild channel each draw, wait for
    the picture, and draw again. REST calls per delivered job (the answer, its edits, the
    result) per kind of channel, under the fake's per-route limits."""
    out: dict[str, float] = {}
    async with start_webuis(cfg.realistic_backends) as servers:
        for s in servers:
            s.reset(delay=cfg.realistic_delay, encode_delay=0.05)
        async with FakeDiscord() as fake, contextlib.AsyncExitStack() as stack:
            stack.enter_context(patch_discord_urls(fake))
            await stack.enter_async_context(bot(fake, [s.url for s in servers]))
            dms = [fake.add_user(f"dm{i}") for i in range(cfg.realistic_dm_users)]
            members = [fake.add_user(f"member{i}") for i in range(cfg.realistic_guild_users)]
            asked: dict[str, list[Interaction]] = {"dm": [], "guild": []}

            async def draws(user: dict[str, Any], where: str) -> None:
                for n in range(cfg.realistic_rounds):
                    prompt = f"picture {user['username']} {n}"
                    ix = await fake.slash(
                        "draw", {"prompt": prompt}, user=user, guild=where == "guild"
                    )
                    asked[where].append(ix)
                    await until(functools.partial(delivered, fake, ix), 120, step=0.05)
                    await asyncio.sleep(0.5)  # a person looks at the picture

            began = time.monotonic()
            await asyncio.gather(
                *(draws(u, "dm") for u in dms), *(draws(u, "guild") for u in members)
            )
            took = time.monotonic() - began
            await asyncio.sleep(1.0)  # the last edits and settling
            per = {
                where: per_job_calls(fake, ixs, began) / len(ixs) for where, ixs in asked.items()
            }
            everything = [*asked["dm"], *asked["guild"]]
            out["dc_calls_per_job_dm"] = per["dm"]
            out["dc_calls_per_job_guild"] = per["guild"]
            out["dc_realistic_floods"] = float(len(fake.rate_limited))
            out["dc_realistic_lost"] = float(
                len(everything) - sum(delivered(fake, ix) for ix in everything)
            )
            log(
                f"discord 5 s jobs: {len(asked['dm'])} DM + {len(asked['guild'])} guild jobs in "
                f"{took:.1f} s; REST calls per delivered job: DM {per['dm']:.2f}, guild "
                f"{per['guild']:.2f}; {len(fake.rate_limited)} × 429"
            )
    return out


async def run(cfg: Config, log: Log) -> dict[str, float]:
    """Every Discord figure; 429s and lost results summed over the runs."""
    return await path_figures("discord", "dc", (overhead, realistic), cfg, log)
