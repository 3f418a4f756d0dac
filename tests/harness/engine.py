"""The engine on its own, for the core's white-box tests (queue, dispatcher, quotas)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.engine import Engine
from bot.presets import PresetBook
from bot.types import GenerationRequest, Requester
from devwebui import DevWebUI
from storage.db import Database
from tests.harness.settings import make_settings

ALICE = Requester("test", "alice", "Alice")
BOB = Requester("test", "bob", "Bob")
ADMIN = Requester("test", "root", "Root", is_admin=True)

SMALL_VALUES = {"width": 256, "height": 256, "steps": 4, "hires": False}


async def eventually(fetch: Any, check: Any, timeout: float = 5.0) -> Any:
    """Poll an async value until check(value) holds (settling follows delivery)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if check(value) or asyncio.get_running_loop().time() > deadline:
            assert check(value), value
            return value
        await asyncio.sleep(0.02)


def small(prompt: str = "a red fox", **kw: Any) -> GenerationRequest:
    """A quick request: 256×256, 4 steps, no hires pass."""
    return GenerationRequest(prompt, **{**SMALL_VALUES, **kw})


@contextlib.asynccontextmanager
async def running_engine(
    tmp_path: Path, backends: list[DevWebUI], presets: PresetBook | None = None, **overrides: Any
) -> AsyncIterator[Engine]:
    """A started Engine over `backends`, on its own SQLite file."""
    settings = make_settings(tmp_path, [b.url for b in backends], **overrides)
    async with Database(settings.database_url) as db:
        engine = Engine(settings, db, presets=presets)
        async with engine:
            yield engine
