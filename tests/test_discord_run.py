"""`drawbridge run` with DISCORD_TOKEN set: the adapter starts beside the engine, draws, stops
on SIGTERM; a wrong token or an unreachable API is a clear sentence without the token."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from adapters.discord import DiscordStartError, serve
from bot.app import run
from bot.devwebui import DevWebUI
from bot.engine import Engine
from storage.db import Database
from tests.fakes.discord_api import FakeDiscord, patch_discord_urls
from tests.support import make_settings

pytestmark = pytest.mark.timeout(30)


async def test_drawbridge_run_serves_discord_and_stops_cleanly_on_sigterm(tmp_path) -> None:
    async with FakeDiscord() as fake, DevWebUI(delay=0.05) as webui:
        with patch_discord_urls(fake):
            settings = make_settings(
                tmp_path,
                [webui.url],
                discord_token=fake.token,
                discord_api_base_url=fake.root,
                discord_guild_ready_timeout=0.05,
            )
            task = asyncio.create_task(run(settings))
            await fake.wait_connected(timeout=10)
            ix = await fake.slash("draw", {"prompt": "a fox on duty", "seed": 3})

            def result() -> dict | None:
                message = fake.original_message(ix)
                return message if message and message["attachments"] else None

            deadline = asyncio.get_running_loop().time() + 15
            while result() is None:
                assert asyncio.get_running_loop().time() < deadline, "no result"
                await asyncio.sleep(0.02)
            assert result()["embeds"][0]["fields"][0]["value"] == "3"
            os.kill(os.getpid(), signal.SIGTERM)
            assert await asyncio.wait_for(task, 10) == 0
            assert not fake.connected  # the gateway connection was closed cleanly


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("token", "Discord refused DISCORD_TOKEN (401 Unauthorized)."),
        ("network", "Could not reach Discord at http://127.0.0.1:9"),
    ],
)
async def test_start_failures_are_a_sentence_without_the_token(tmp_path, case, expected) -> None:
    async with FakeDiscord() as fake, DevWebUI(delay=0.05) as webui:
        with patch_discord_urls(fake):
            secret = "wrong-token-0123456789abcdef"
            root = fake.root if case == "token" else "http://127.0.0.1:9"
            settings = make_settings(
                tmp_path, [webui.url], discord_token=secret, discord_api_base_url=root
            )
            async with Database(settings.database_url) as db:
                engine = Engine(settings, db)
                with pytest.raises(DiscordStartError) as info:
                    await asyncio.wait_for(serve(engine, settings, asyncio.Event()), 10)
                await engine.stop()
    message = str(info.value)
    assert message.startswith(expected) and secret not in message
    assert info.value.__context__ is None and info.value.__cause__ is None
