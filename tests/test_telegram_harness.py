"""Harness for the Telegram adapter's end-to-end tests, plus unit tests of its pure helpers.

`telegram_env` runs what `drawbridge run` runs: the real python-telegram-bot Application built by
`adapters.telegram.serve`, talking to the fake Bot API server (tests/fakes/telegram_api.py), and
the real engine talking to `DevWebUI` on 127.0.0.1 over a real SQLite file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from adapters.telegram import serve
from adapters.telegram.texts import (
    fits_photo,
    prompt_from_caption,
    result_caption,
    split_command,
    status_text,
)
from bot.devwebui import DevWebUI
from bot.engine import Engine
from bot.presets import Preset, PresetBook
from bot.settings import Settings
from bot.texts import cut, model_label
from bot.types import JobState, JobUpdate
from storage.db import Database
from tests.fakes.telegram_api import FakeChat, FakeTelegram, FakeUser
from tests.support import make_settings

SMALL = PresetBook(default=Preset(width=256, height=256, steps=4, hires=False))
ChatLike = FakeChat | FakeUser | int


class _Errors(logging.Handler):
    """Collects ERROR+ records of the adapter and the library (unparseable updates are CRITICAL)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Env:
    """A running bot + engine + WebUI, and ways to look at what a user sees."""

    fake: FakeTelegram
    webui: DevWebUI
    engine: Engine
    settings: Settings
    allowed_errors: list[str] = field(default_factory=list)

    # --- what the WebUI received -------------------------------------------------------
    def generations(self, kind: str = "txt2img") -> list[dict[str, Any]]:
        """Bodies of /sdapi/v1/<kind> requests."""
        return [body for path, body in self.webui.requests if path.endswith(f"/{kind}")]

    # --- what the user sees ------------------------------------------------------------
    def texts(self, chat: ChatLike) -> list[str]:
        """Text or caption of every bot message now in the chat."""
        return [m.get("text") or m.get("caption") or "" for m in self.fake.bot_messages(chat)]

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
            for message in self.fake.bot_messages(chat):
                if ok(message):
                    return message
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no message matching {check!r}; chat has {self.texts(chat)}")
            await asyncio.sleep(0.02)

    async def until(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        """Wait until predicate() is true."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("timed out waiting for a condition")
            await asyncio.sleep(0.02)

    async def wait_result(self, chat: ChatLike, count: int = 1, timeout: float = 10.0) -> list[Any]:
        """The sendPhoto calls with a result (caption with a seed) in the chat."""
        return await self.fake.wait_for(
            "sendPhoto",
            lambda c: c.chat_id == _chat_id(chat) and "🌱" in (c.params.get("caption") or ""),
            timeout=timeout,
            count=count,
        )

    async def settled(self, user: FakeUser, timeout: float = 5.0) -> Any:
        """The user's quota once nothing is reserved any more (settling follows delivery)."""
        key = f"telegram:{user.id}"
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            view = await self.engine.quotas.show(key)
            if view.reserved == 0 or asyncio.get_running_loop().time() > deadline:
                return view
            await asyncio.sleep(0.02)


def _chat_id(chat: ChatLike) -> int:
    return chat if isinstance(chat, int) else chat.id


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
    """Start (or reuse) a fake Telegram and a DevWebUI, then the engine and the adapter."""
    async with contextlib.AsyncExitStack() as stack:
        if fake is None:
            fake = await stack.enter_async_context(FakeTelegram())
        if webui is None:
            webui = await stack.enter_async_context(DevWebUI(delay=webui_delay))
        values: dict[str, Any] = {
            "telegram_token": fake.token,
            "telegram_api_base_url": fake.root,
            "telegram_edit_interval": 0.1,
            "telegram_max_retries": 3,
        }
        values.update(overrides)
        settings = make_settings(tmp_path, [webui.url], **values)
        errors = _Errors()
        loggers = [logging.getLogger("adapters.telegram"), logging.getLogger("telegram")]
        for logger in loggers:
            logger.addHandler(errors)
        db = await stack.enter_async_context(Database(settings.database_url))
        engine = Engine(settings, db, presets=presets)
        stop = asyncio.Event()
        ready_method = "setWebhook" if values.get("telegram_webhook_url") else "deleteWebhook"
        ready_before = len(fake.calls_of(ready_method, ok=None))
        task = asyncio.create_task(serve(engine, settings, stop))
        await asyncio.sleep(0)
        env = Env(fake, webui, engine, settings)
        try:
            await engine.start()
            # polling starts right after deleteWebhook (a webhook right after setWebhook)
            polling = asyncio.create_task(
                fake.wait_for(ready_method, ok=None, count=ready_before + 1, timeout=10)
            )
            done, _ = await asyncio.wait([task, polling], return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                polling.cancel()
                task.result()
                raise AssertionError("serve() returned before stop was set")
            polling.result()
            yield env
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
            await engine.stop()
            for logger in loggers:
                logger.removeHandler(errors)
        unexpected = [
            r.getMessage()
            for r in errors.records
            if not any(allowed in r.getMessage() for allowed in env.allowed_errors)
        ]
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


# --- pictures --------------------------------------------------------------------------


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def decode(data: bytes | str) -> Image.Image:
    """An image from bytes or a base64 string (as the WebUI receives it)."""
    if isinstance(data, str):
        data = base64.b64decode(data.split(",", 1)[-1])
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute per-channel difference of two same-size pictures (0–255)."""
    assert a.size == b.size, (a.size, b.size)
    pa, pb = a.convert("RGB").tobytes(), b.convert("RGB").tobytes()
    return sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa)


def white_fraction(mask: Image.Image, box: tuple[int, int, int, int]) -> float:
    """Share of white pixels of a mask inside a box."""
    region = mask.convert("L").crop(box)
    pixels = region.tobytes()
    return sum(1 for p in pixels if p > 127) / len(pixels)


def sample_photo(width: int = 320, height: int = 240) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", (width, height), (30, 30, 200))
    image.paste((200, 30, 30), (0, 0, width // 2, height))
    return image


# --- unit tests of the pure helpers ------------------------------------------------------


def test_split_command_reads_our_commands_only() -> None:
    assert split_command("/draw a fox --seed 1", "drawbridge_bot") == ("draw", "a fox --seed 1")
    assert split_command("/draw@DrawBridge_Bot a dog", "drawbridge_bot") == ("draw", "a dog")
    assert split_command("/draw@other_bot a cat", "drawbridge_bot") == ("", "")
    assert split_command("a castle", "drawbridge_bot") == (None, "a castle")
    assert split_command('/draw "a b" --neg "c d"', "x") == ("draw", '"a b" --neg "c d"')
    assert split_command(None, "x") == (None, "")


def test_photo_limits_follow_telegram() -> None:
    assert fits_photo(1000, 512, 512)
    assert fits_photo(1000, 100, 2000)  # ratio exactly 20 is allowed
    assert not fits_photo(1000, 64, 2048)  # ratio 32
    assert not fits_photo(1000, 5001, 5000)  # sides sum over 10000
    assert not fits_photo(10 * 1024 * 1024 + 1, 512, 512)


def test_caption_cuts_the_prompt_to_fit_1024() -> None:
    caption = result_caption("en", "fox " * 400, "🌱 42 · 512×512 · sd15", ["Using the mask."])
    assert len(caption) <= 1024
    assert caption.endswith("🌱 42 · 512×512 · sd15\nUsing the mask.")
    assert caption.split("\n")[0].endswith("…")
    assert prompt_from_caption(caption) == caption.split("\n")[0][:-1].strip()
    assert prompt_from_caption("a red fox\n🌱 1 · 64×64") == "a red fox"
    assert model_label("models/sd/v1-5-pruned-emaonly.safetensors [6ce0161689]") == (
        "v1-5-pruned-emaonly"
    )
    assert cut("abc", 3) == "abc" and cut("abcd", 3) == "ab…"


def test_status_lines_in_both_languages() -> None:
    queued = JobUpdate("j", JobState.QUEUED, position=3, eta_seconds=125)
    assert status_text("en", queued, [], 3) == "Queued: position 3, starting in about 2 min."
    assert status_text("zh-CN", queued, [], 3) == "已排队：第 3 位，大约 2 分钟 后开始。"
    running = JobUpdate("j", JobState.RUNNING, progress=0.42)
    assert status_text("en", running, ["Using the painted area."], 3) == (
        "Using the painted area.\nDrawing… 42%"
    )
    retry = JobUpdate("j", JobState.QUEUED, attempt=2, note="queue.retrying")
    assert "attempt 2 of 3" in status_text("en", retry, [], 3)
