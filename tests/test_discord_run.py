"""`drawbridge run` with DISCORD_TOKEN set: the adapter starts beside the engine, draws, stops
on SIGTERM; a wrong token or an unreachable API is a clear sentence without the token."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from adapters.discord import DiscordAdapter, DiscordStartError
from bot.app import run
from bot.service import Service
from devwebui import DevWebUI
from tests.fakes.discord_api import FakeDiscord, patch_discord_urls
from tests.fakes.telegram_api import FakeTelegram
from tests.harness.settings import make_settings

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


async def test_discord_and_telegram_run_side_by_side_in_one_loop(tmp_path) -> None:
    async with (
        FakeDiscord() as discord_fake,
        FakeTelegram() as telegram_fake,
        DevWebUI(delay=0.05) as webui,
    ):
        with patch_discord_urls(discord_fake):
            settings = make_settings(
                tmp_path,
                [webui.url],
                discord_token=discord_fake.token,
                discord_api_base_url=discord_fake.root,
                discord_guild_ready_timeout=0.05,
                telegram_token=telegram_fake.token,
                telegram_api_base_url=telegram_fake.root,
            )
            task = asyncio.create_task(run(settings))
            await discord_fake.wait_connected(timeout=10)
            await telegram_fake.wait_for("deleteWebhook", timeout=10)
            ix = await discord_fake.slash("draw", {"prompt": "a fox in Discord"})
            alice = telegram_fake.user(1001, "Alice")
            telegram_fake.send_text(alice, alice, "/draw a fox in Telegram")
            await telegram_fake.wait_for(
                "sendPhoto", lambda c: "🌱" in (c.params.get("caption") or ""), timeout=15
            )
            deadline = asyncio.get_running_loop().time() + 15
            while not (discord_fake.original_message(ix) or {}).get("attachments"):
                assert asyncio.get_running_loop().time() < deadline, "no Discord result"
                await asyncio.sleep(0.02)
            os.kill(os.getpid(), signal.SIGTERM)
            assert await asyncio.wait_for(task, 10) == 0
        prompts = sorted(body["prompt"] for path, body in webui.requests if "txt2img" in path)
        assert prompts == ["a fox in Discord", "a fox in Telegram"]


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
            async with Service(settings) as service:
                with pytest.raises(DiscordStartError) as info:
                    adapter = DiscordAdapter(service, settings)
                    await asyncio.wait_for(adapter.__aenter__(), 10)
    message = str(info.value)
    assert message.startswith(expected) and secret not in message
    assert info.value.__context__ is None and info.value.__cause__ is None
