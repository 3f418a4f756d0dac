"""`drawbridge run` with TELEGRAM_TOKEN set: the adapter starts, draws, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from bot.app import run
from devwebui import DevWebUI
from tests.fakes.telegram_api import FakeTelegram
from tests.harness.settings import make_settings

pytestmark = pytest.mark.timeout(30)


async def test_drawbridge_run_serves_telegram_and_stops_cleanly_on_sigterm(tmp_path) -> None:
    async with FakeTelegram() as fake, DevWebUI(delay=0.05) as webui:
        settings = make_settings(
            tmp_path,
            [webui.url],
            telegram_token=fake.token,
            telegram_api_base_url=fake.root,
        )
        task = asyncio.create_task(run(settings))
        await fake.wait_for("deleteWebhook", timeout=10)
        alice = fake.user(1001, "Alice")
        fake.send_text(alice, alice, "/draw a fox on duty --seed 3 --size 256x256")
        (call,) = await fake.wait_for(
            "sendPhoto", lambda c: "🌱" in (c.params.get("caption") or ""), timeout=15
        )
        assert call.params["caption"].startswith("a fox on duty\n🌱 3 · 512×512")  # hires on
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10) == 0
        last_poll = fake.calls_of("getUpdates")[-1]
        assert last_poll.params.get("timeout") == 0  # the updater confirmed and stopped


async def test_a_refused_token_ends_drawbridge_run_with_exit_status_1(tmp_path, caplog) -> None:
    """A supervisor restarts (and alerts on) a process that exits non-zero: one clear line."""
    async with FakeTelegram() as fake, DevWebUI(delay=0.05) as webui:
        wrong = "123:wrong-token-" + "x" * 24
        settings = make_settings(
            tmp_path, [webui.url], telegram_token=wrong, telegram_api_base_url=fake.root
        )
        with caplog.at_level("INFO"):
            assert await asyncio.wait_for(run(settings), 20) == 1
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert lines[0].startswith("telegram could not start: Telegram refused TELEGRAM_TOKEN")
    assert lines[-1] == "drawbridge stopped with exit status 1 (a supervisor should restart it)"
    assert all(wrong not in line for line in lines)


async def test_an_unreachable_platform_ends_drawbridge_run_with_exit_status_1(tmp_path, caplog):
    async with DevWebUI(delay=0.05) as webui:
        settings = make_settings(
            tmp_path,
            [webui.url],
            telegram_token="123:" + "y" * 30,
            telegram_api_base_url="http://127.0.0.1:9",
        )
        with caplog.at_level("INFO"):
            assert await asyncio.wait_for(run(settings), 30) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors[0].startswith("telegram could not start: Could not reach the Telegram Bot API")
