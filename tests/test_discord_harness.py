"""Harness for the Discord adapter's end-to-end tests, plus unit tests of its pure helpers.

`discord_env` runs what `drawbridge run` runs: `adapters.discord.serve` with the real discord.py
talking to the fake Discord (tests/fakes/discord_api.py: gateway + REST v10), and the real engine
talking to `DevWebUI` on 127.0.0.1 over a real SQLite file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from adapters.discord import serve
from adapters.discord.encode import fit, fit_all
from adapters.discord.replies import pick
from adapters.discord.service import InteractionTokenFilter, api_base
from adapters.discord.slash import matching, request_from
from adapters.discord.texts import human_size, status_text
from bot.devwebui import DevWebUI
from bot.engine import Engine
from bot.errors import OptionError
from bot.options import Limits, draw_options
from bot.presets import Preset, PresetBook
from bot.settings import Settings
from bot.texts import model_label
from bot.types import JobState, JobUpdate
from storage.db import Database
from tests.fakes.discord_api import FakeDiscord, Interaction, patch_discord_urls
from tests.support import make_settings

SMALL = PresetBook(default=Preset(width=256, height=256, steps=4, hires=False))
EPHEMERAL = 1 << 6


class _Records(logging.Handler):
    """Every record of the adapter and the library (DEBUG included, to check token masking)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Env:
    """A running bot + engine + WebUI, and ways to look at what a user sees."""

    fake: FakeDiscord
    webui: DevWebUI
    engine: Engine
    settings: Settings
    allowed_errors: list[str] = field(default_factory=list)

    # --- what the WebUI received -------------------------------------------------------
    def generations(self, kind: str = "txt2img") -> list[dict[str, Any]]:
        """Bodies of /sdapi/v1/<kind> requests."""
        return [body for path, body in self.webui.requests if path.endswith(f"/{kind}")]

    # --- what the user sees --------------------------------------------------------------
    async def until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until predicate() is truthy; returns its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("timed out waiting for a condition")
            await asyncio.sleep(0.02)

    async def result(self, ix: Interaction, timeout: float = 10.0) -> dict[str, Any]:
        """The interaction's response once it holds a result (an embed with pictures)."""

        def done() -> dict[str, Any] | None:
            message = self.fake.original_message(ix)
            if message and message["embeds"] and message["attachments"]:
                return message
            return None

        result: dict[str, Any] = await self.until(done, timeout)
        return result

    async def ephemeral(self, ix: Interaction, timeout: float = 10.0) -> str:
        """The text of the ephemeral answer to an interaction."""

        def answer() -> str | None:
            for message in [self.fake.original_message(ix), *self.fake.followups(ix)]:
                if message and message["flags"] & EPHEMERAL and message["content"]:
                    return str(message["content"])
            return None

        text: str = await self.until(answer, timeout)
        return text

    def png_of(self, message: dict[str, Any], index: int = 0) -> bytes:
        """The bytes of a message's attachment."""
        return self.fake.attachment_bytes(message["attachments"][index])

    async def settled(self, user: str, timeout: float = 5.0) -> Any:
        """A user's quota once nothing is reserved any more (settling follows delivery)."""
        key = f"discord:{self.fake.user(user)['id']}"
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            view = await self.engine.quotas.show(key)
            if view.reserved == 0 or asyncio.get_running_loop().time() > deadline:
                return view
            await asyncio.sleep(0.02)


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
    """Start (or reuse) a fake Discord and a DevWebUI, then the engine and the adapter."""
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
        records = _Records()
        library = logging.getLogger("discord")
        ours = logging.getLogger("adapters.discord")
        http_log = logging.getLogger("discord.http")
        old_level = http_log.level
        http_log.setLevel(logging.DEBUG)  # request URLs, where interaction tokens would show
        for logger in (library, ours):
            logger.addHandler(records)
        db = await stack.enter_async_context(Database(settings.database_url))
        engine = Engine(settings, db, presets=presets)
        stop = asyncio.Event()
        task = asyncio.create_task(serve(engine, settings, stop))
        await asyncio.sleep(0)
        env = Env(fake, webui, engine, settings)
        try:
            await engine.start()
            ready = asyncio.create_task(fake.wait_connected(timeout=10))
            done, _ = await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                ready.cancel()
                task.result()
                raise AssertionError("serve() returned before stop was set")
            ready.result()
            yield env
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await engine.stop()
            for logger in (library, ours):
                logger.removeHandler(records)
            http_log.setLevel(old_level)
        unexpected = [
            r.getMessage()
            for r in records.records
            if r.levelno >= logging.ERROR
            and not any(allowed in r.getMessage() for allowed in env.allowed_errors)
        ]
        assert not unexpected, unexpected
        secrets = [fake.token, *(ix.token for ix in fake.interactions.values())]
        logged = "\n".join(r.getMessage() for r in records.records)
        sent = json.dumps([c.json for c in fake.calls], default=str)
        for secret in secrets:
            assert secret not in logged
            assert secret not in sent


# --- pictures --------------------------------------------------------------------------------


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
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
    pixels = mask.convert("L").crop(box).tobytes()
    return sum(1 for p in pixels if p > 127) / len(pixels)


def sample_photo(width: int = 320, height: int = 240) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", (width, height), (30, 30, 200))
    image.paste((200, 30, 30), (0, 0, width // 2, height))
    return image


def noisy(width: int = 256, height: int = 256, seed: int = 1) -> bytes:
    """A PNG that compresses badly (random pixels), for the upload-limit tests."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    return png_bytes(image)


# --- unit tests of the pure helpers ------------------------------------------------------------


def test_fit_keeps_the_png_then_goes_lossless_then_lossy() -> None:
    flat = png_bytes(sample_photo(256, 256))
    assert fit(flat, len(flat)).extension == "png"
    lossless = fit(flat, len(flat) - 1)
    assert lossless.extension == "webp" and lossless.note_key == "discord.reencoded_lossless"
    assert mean_difference(decode(lossless.data), decode(flat)) == 0
    photo = noisy()
    lossy = fit(photo, len(photo) // 3)
    assert lossy.note_key == "discord.reencoded_lossy" and len(lossy.data) <= len(photo) // 3
    assert lossy.params["quality"] >= 50
    tiny = fit(photo, 2000)
    assert tiny.note_key == "discord.reencoded_smaller" and len(tiny.data) <= 2000
    note = tiny.note("en", 10 * 1024 * 1024)
    assert note is not None and "10 MB" in note and "Scaled down to" in note
    # several pictures: together they fit, or each gets an equal share
    assert [e.extension for e in fit_all([flat, flat], 2 * len(flat))] == ["png", "png"]
    shared = fit_all([photo, flat], len(photo))
    assert sum(len(e.data) for e in shared) <= len(photo)


def test_autocomplete_matches_prefix_first_and_caps_at_25() -> None:
    items = [(f"model-{i:02d}", f"model-{i:02d}.safetensors [abcdef0123]") for i in range(40)]
    assert len(matching(items, "")) == 25
    found = matching(items, "model-3")
    assert [c.name for c in found] == [f"model-{i}" for i in range(30, 40)]
    names = [c.name for c in matching([("Euler a", "Euler a"), ("DPM++ 2M", "DPM++ 2M")], "2m")]
    assert names == ["DPM++ 2M"]


def test_slash_values_are_checked_like_text() -> None:
    limits = Limits(max_steps=50)
    options = draw_options(limits, SMALL)
    request = request_from(
        {"prompt": "a fox", "seed": 42, "steps": 20, "size": "512x768", "hires": False},
        options,
        limits,
    )
    assert (request.seed, request.steps, request.width, request.height) == (42, 20, 512, 768)
    assert request.hires is False
    with pytest.raises(OptionError) as info:
        request_from({"prompt": "a fox", "steps": 80}, options, limits)
    assert info.value.render("en") == "`steps` must be between 1 and 50; you gave 80."
    with pytest.raises(OptionError) as info:
        request_from({"prompt": "a fox", "size": "512x768", "ar": "2:3"}, options, limits)
    assert info.value.render("en") == "Use either `ar` or `size`, not both."
    with pytest.raises(OptionError):
        request_from({"prompt": "a fox", "fill": "nope"}, options, limits)


def test_texts() -> None:
    queued = JobUpdate("j", JobState.QUEUED, position=3, eta_seconds=125)
    assert status_text("en", queued, [], 3) == "Queued: position 3, starting in about 2 min."
    assert status_text("zh-CN", queued, [], 3) == "已排队：第 3 位，大约 2 分钟 后开始。"
    running = JobUpdate("j", JobState.RUNNING, progress=0.42)
    assert status_text("en", running, ["Using the mask."], 3) == "Using the mask.\nDrawing… 42%"
    assert model_label("sd/v1-5-pruned-emaonly.safetensors [6ce0161689]") == "v1-5-pruned-emaonly"
    assert (human_size(10 * 1024 * 1024), human_size(2048), human_size(10)) == (
        "10 MB",
        "2 KB",
        "10 bytes",
    )
    assert api_base("http://proxy:8080/") == "http://proxy:8080/api/v10"
    assert api_base("http://proxy:8080/api/v9") == "http://proxy:8080/api/v9"


def test_a_batch_picture_is_picked_by_number() -> None:
    assert pick("#2 a harbour at night", 4) == (1, "a harbour at night")
    assert pick("a harbour #4", 4) == (3, "a harbour")
    assert pick("#5 a harbour", 4) == (0, "#5 a harbour")
    assert pick("issue#2 a harbour", 4) == (0, "issue#2 a harbour")


def test_interaction_tokens_are_masked_in_logs() -> None:
    record = logging.LogRecord(
        "discord.http",
        logging.WARNING,
        __file__,
        1,
        "%s %s responded with 429",
        ("PATCH", "https://discord.com/api/v10/webhooks/123/aW50ZXJhY3Rpb246abcdefghijklmnop/x"),
        None,
    )
    InteractionTokenFilter().filter(record)
    assert record.getMessage() == (
        "PATCH https://discord.com/api/v10/webhooks/123/***/x responded with 429"
    )
