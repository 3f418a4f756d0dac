"""Harness for the Telegram adapter's end-to-end tests.

`telegram_env` runs what `drawbridge run` runs: the service, then the real python-telegram-bot
Application of `adapters.telegram.TelegramAdapter` talking to the fake Bot API server
(tests/fakes/telegram_api.py), and the real engine talking to `DevWebUI` on 127.0.0.1 over a
real SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.telegram import TelegramAdapter
from bot.presets import PresetBook
from bot.service import Service
from bot.settings import Settings
from bot.types import QuotaView
from devwebui import DevWebUI
from tests.fakes.telegram_api import FakeChat, FakeTelegram, FakeUser
from tests.harness.env import LogRecords, ServiceEnv
from tests.harness.settings import SMALL, make_settings

ChatLike = FakeChat | FakeUser | int


@dataclass
class Env(ServiceEnv):
    """A running bot + service + WebUI, and ways to look at what a user sees."""

    fake: FakeTelegram | None = None

    @property
    def tg(self) -> FakeTelegram:
        assert self.fake is not None
        return self.fake

    # --- what the user sees ------------------------------------------------------------
    def texts(self, chat: ChatLike) -> list[str]:
        """Text or caption of every bot message now in the chat."""
        return [m.get("text") or m.get("caption") or "" for m in self.tg.bot_messages(chat)]

    async def wait_message(
        self,
        chat: ChatLike,
        check: str | Callable[[dict[str, Any]], bool],
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The first bot message in the chat that contains `check` (or satisfies it)."""

        def ok(message: dict[str, Any]) -> bool:
            if callable(check):
                return check(message)
            return check in (message.get("text") or message.get("caption") or "")

        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for message in self.tg.bot_messages(chat):
                if ok(message):
                    return message
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no message matching {check!r}; chat has {self.texts(chat)}")
            await asyncio.sleep(0.02)

    async def wait_result(self, chat: ChatLike, count: int = 1, timeout: float = 10.0) -> list[Any]:
        """The sendPhoto calls with a result (caption with a seed) in the chat."""
        return await self.tg.wait_for(
            "sendPhoto",
            lambda c: c.chat_id == _chat_id(chat) and "🌱" in (c.params.get("caption") or ""),
            timeout=timeout,
            count=count,
        )

    async def settled(self, user: FakeUser, timeout: float = 5.0) -> QuotaView:
        """The user's quota once nothing is reserved any more (settling follows delivery)."""
        return await self.settled_quota(f"telegram:{user.id}", timeout)


def _chat_id(chat: ChatLike) -> int:
    return chat if isinstance(chat, int) else chat.id


def telegram_settings(
    tmp_path: Path, fake: FakeTelegram, webui: DevWebUI, **overrides: Any
) -> Settings:
    """A test's settings for the Telegram bot on `fake` and `webui` (fast edits, retries
    bounded to 30 s)."""
    values: dict[str, Any] = {
        "telegram_token": fake.token,
        "telegram_api_base_url": fake.root,
        "telegram_edit_interval": 0.1,
        "delivery_retry_seconds": 30.0,
    }
    values.update(overrides)
    return make_settings(tmp_path, [webui.url], **values)


@contextlib.asynccontextmanager
async def telegram_env(
    tmp_path: Path,
    *,
    fake: FakeTelegram | None = None,
    webui: DevWebUI | None = None,
    presets: PresetBook | None = SMALL,
    webui_delay: float = 0.05,
    **overrides: Any,
) -> AsyncIterator[Env]:
    """Start (or reuse) a fake Telegram and a DevWebUI, then the service and the adapter."""
    async with contextlib.AsyncExitStack() as stack:
        if fake is None:
            fake = await stack.enter_async_context(FakeTelegram())
        if webui is None:
            webui = await stack.enter_async_context(DevWebUI(delay=webui_delay))
        settings = telegram_settings(tmp_path, fake, webui, **overrides)
        errors = stack.enter_context(LogRecords(logging.ERROR, "adapters", "telegram"))
        service = Service(settings, presets=presets)
        adapter = TelegramAdapter(service, settings)  # registers its replier before the start
        env = Env(webui, service, settings, fake=fake)
        ready_method = "setWebhook" if settings.telegram_webhook_url else "deleteWebhook"
        ready_before = len(fake.calls_of(ready_method, ok=None))
        async with service, adapter:
            # polling starts right after deleteWebhook (a webhook right after setWebhook)
            await fake.wait_for(ready_method, ok=None, count=ready_before + 1, timeout=10)
            yield env
        unexpected = errors.unexpected(env.allowed_errors)
        assert not unexpected, unexpected
        for message in _all_bot_texts(fake):
            assert fake.token not in message and fake.token.split(":")[1] not in message


def _all_bot_texts(fake: FakeTelegram) -> list[str]:
    texts = []
    for call in fake.calls:
        for key in ("text", "caption"):
            value = call.params.get(key)
            if isinstance(value, str):
                texts.append(value)
    return texts
