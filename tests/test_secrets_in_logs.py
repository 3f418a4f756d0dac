"""No secret in a DEBUG log (issue 11): each adapter runs as `drawbridge run` runs it, with
LOG_LEVEL=DEBUG and the root handler `setup_logging` installs, through a rich session (draw,
result buttons, /settings and its buttons, cancel, quota; webhook mode for Telegram), and the
whole log is searched for every secret: bot tokens, the WebUI password, the webhook secret and
every Discord interaction token. The libraries' own debug lines (discord.gateway payloads,
python-telegram-bot's request parameters) are included."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket

import aiohttp
import pytest

from bot.app import run
from bot.logs import setup_logging
from devwebui import DevWebUI
from tests.fakes.discord_api import FakeDiscord, patch_discord_urls
from tests.fakes.telegram_api import FakeTelegram
from tests.harness.settings import make_settings

pytestmark = pytest.mark.timeout(60)

WEBUI_USER, WEBUI_PASSWORD = "drawbridge", "webui-pass-" + secrets.token_hex(8)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@pytest.fixture(autouse=True)
def _restore_logging():
    """setup_logging changes process-wide state; put it back for the other tests."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    names = ("httpx", "httpcore", "apscheduler.executors.default", "alembic")
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    root.handlers[:], root.level = saved
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_clean(log: str, named: dict[str, str]) -> None:
    assert len(log.splitlines()) > 50, "the session logged too little to prove anything"
    for what, secret in named.items():
        assert secret not in log, f"the {what} is in the DEBUG log"


async def _until(check, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := check()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)
    return found


def _data(message: dict, label: str) -> str:
    for row in message["reply_markup"]["inline_keyboard"]:
        for b in row:
            if b["text"].startswith(label):
                return str(b["callback_data"])
    raise AssertionError(f"no {label!r} button")


async def test_telegram_in_webhook_mode_logs_no_secret_at_debug(tmp_path, capsys) -> None:
    token = f"{700000000 + secrets.randbelow(10**8)}:AAH{secrets.token_urlsafe(30)}"
    webhook_secret = "hook-" + secrets.token_urlsafe(24)
    port = _free_port()
    local = f"http://127.0.0.1:{port}/telegram/hook"
    async with (
        FakeTelegram(token=token) as fake,
        DevWebUI(delay=0.05, auth=(WEBUI_USER, WEBUI_PASSWORD)) as webui,
        aiohttp.ClientSession() as http,
    ):
        settings = make_settings(
            tmp_path,
            [webui.url],
            telegram_token=token,
            telegram_api_base_url=fake.root,
            telegram_webhook_url="https://bot.example.test/telegram/hook",
            telegram_webhook_listen=f"127.0.0.1:{port}",
            telegram_webhook_secret=webhook_secret,
            telegram_edit_interval=0.1,
            webui_auth=f"{WEBUI_USER}:{WEBUI_PASSWORD}",
            log_level="DEBUG",
        )
        setup_logging(settings)
        task = asyncio.create_task(run(settings))
        await fake.wait_for("setWebhook", timeout=15)
        alice = fake.user(1001, "Alice")

        async def deliver() -> None:
            update = fake.pending_updates[-1]  # Telegram would POST it to the webhook
            answer = await http.post(local, json=update, headers={SECRET_HEADER: webhook_secret})
            assert answer.status == 200

        fake.send_text(alice, alice, "/draw a secret fox --seed 5")
        await deliver()
        (photo,) = await fake.wait_for(
            "sendPhoto", lambda c: "🌱" in (c.params.get("caption") or ""), timeout=20
        )
        result = photo.result
        fake.press_button(alice, alice, result, _data(result, "🔁"))
        await deliver()
        await fake.wait_for(
            "sendPhoto", lambda c: "🌱" in (c.params.get("caption") or ""), count=2, timeout=20
        )
        fake.send_text(alice, alice, "/settings")
        await deliver()
        (menu,) = await fake.wait_for(
            "sendMessage",
            lambda c: (
                "/draw" in (c.params.get("text") or "")
                and "s:" in str(c.params.get("reply_markup"))
            ),
            timeout=10,
        )
        fake.press_button(alice, alice, menu.result, _data(menu.result, "20"))
        await deliver()
        await fake.wait_for("answerCallbackQuery", count=2, timeout=10)
        for text in ("/quota", "/cancel", "/queue"):
            fake.send_text(alice, alice, text)
            await deliver()
        await fake.wait_for("sendMessage", lambda c: "credits" in str(c.params.get("text")))
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 15) == 0
    log = capsys.readouterr().err
    assert "setWebhook" in log and "WebSocket" not in log  # PTB's debug lines are there
    _assert_clean(
        log,
        {
            "bot token": token,
            "bot token's secret half": token.partition(":")[2],
            "webhook secret": webhook_secret,
            "WebUI password": WEBUI_PASSWORD,
        },
    )


async def test_discord_logs_no_interaction_token_at_debug(tmp_path, capsys) -> None:
    bot_token = "MTA" + secrets.token_urlsafe(40)
    async with (
        FakeDiscord(token=bot_token) as fake,
        DevWebUI(delay=0.05, auth=(WEBUI_USER, WEBUI_PASSWORD)) as webui,
    ):
        with patch_discord_urls(fake):
            settings = make_settings(
                tmp_path,
                [webui.url],
                discord_token=bot_token,
                discord_api_base_url=fake.root,
                discord_guild_ready_timeout=0.05,
                discord_edit_interval=0.1,
                webui_auth=f"{WEBUI_USER}:{WEBUI_PASSWORD}",
                log_level="DEBUG",
            )
            setup_logging(settings)
            task = asyncio.create_task(run(settings))
            await fake.wait_connected(timeout=15)
            ix = await fake.slash("draw", {"prompt": "a secret fox", "seed": 5})

            def result() -> dict | None:
                message = fake.original_message(ix)
                rows = (message or {}).get("components") or []
                done = any(
                    c.get("custom_id", "").startswith("db:r:")
                    for r in rows
                    for c in r["components"]
                )
                return message if done else None

            message = await _until(result)
            ids = [
                c.get("custom_id", "") for row in message["components"] for c in row["components"]
            ]
            assert any(i.startswith("db:r:") for i in ids), ids
            reroll = next(i for i in ids if i.startswith("db:r:"))
            again = await fake.click(message, reroll)
            await _until(lambda: (fake.original_message(again) or {}).get("attachments"))
            await fake.slash("settings", {"steps": 20})
            await fake.slash("quota")
            await fake.slash("cancel")
            await fake.slash("queue")
            await fake.click(message, "db:o:forged0key", strict=False)  # unknown: refused
            await asyncio.sleep(0.5)
            os.kill(os.getpid(), signal.SIGTERM)
            assert await asyncio.wait_for(task, 15) == 0
    log = capsys.readouterr().err
    tokens = [i.token for i in fake.interactions.values()]
    assert len(tokens) >= 6
    assert "discord.gateway" in log  # discord.py's payload lines are there, masked
    named = {f"interaction token {n}": token for n, token in enumerate(tokens)}
    named.update({"bot token": bot_token, "WebUI password": WEBUI_PASSWORD})
    _assert_clean(log, named)
