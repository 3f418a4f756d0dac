"""The two bots under test behind one small interface: drawbridge's engine and the FIFO baseline."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from bench.common import Recorder, bench_settings
from bench.fifo import FifoBot
from bot.engine import Engine
from bot.options import Limits
from bot.presets import PresetBook
from bot.types import GenerationRequest, Requester
from bot.webui.client import WebUIClient
from storage.db import Database

Kind = Literal["engine", "fifo"]
KINDS: tuple[Kind, ...] = ("engine", "fifo")


class TimedClient(WebUIClient):
    """The WebUI client, noting when each generation request is handed to httpx."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.sent: list[float] = []

    async def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        if path.endswith("/txt2img"):
            self.sent.append(time.monotonic())
        return await super()._send(method, path, **kwargs)


class Bot(Protocol):
    """What a scenario drives."""

    recorder: Recorder

    @property
    def clients(self) -> Sequence[TimedClient]:
        """The bot's WebUI clients, one per backend."""
        ...

    async def submit(self, user: str, request: GenerationRequest) -> str:
        """Hand one command to the bot, as an adapter does; returns the job id."""
        ...


class EngineBot:
    """drawbridge: engine.submit → quota reserve in SQLite → fair queue → dispatcher."""

    def __init__(self, engine: Engine, clients: Sequence[TimedClient]) -> None:
        self.engine = engine
        self.clients = clients
        self.recorder = Recorder()

    async def submit(self, user: str, request: GenerationRequest) -> str:
        handle = await self.engine.submit(Requester("bench", user), request, self.recorder)
        return handle.job_id


class FifoBotAdapter:
    """The baseline behind the same interface."""

    def __init__(self, bot: FifoBot) -> None:
        self.bot = bot
        self.clients = [c for c in bot.clients if isinstance(c, TimedClient)]
        self.recorder = Recorder()

    async def submit(self, user: str, request: GenerationRequest) -> str:
        return await self.bot.submit(user, request, self.recorder)


@contextlib.asynccontextmanager
async def running(
    kind: Kind, urls: Sequence[str], *, fifo_keeps_model: bool = False
) -> AsyncIterator[Bot]:
    """A started bot of `kind` over `urls`, with its own temporary data directory."""
    with tempfile.TemporaryDirectory(prefix=f"drawbridge-bench-{kind}-") as tmp:
        workdir = Path(tmp)
        settings = bench_settings(workdir, urls)
        clients = [
            TimedClient(
                url,
                timeout=settings.webui_timeout,
                connect_timeout=settings.webui_connect_timeout,
            )
            for url in urls
        ]
        try:
            if kind == "engine":
                async with Database(settings.database_url) as db:
                    engine = Engine(settings, db, clients=list(clients), presets=PresetBook())
                    async with engine:
                        yield EngineBot(engine, clients)
            else:
                fifo = FifoBot(
                    clients,
                    workdir / "data",
                    Limits.from_settings(settings),
                    keep_model=fifo_keeps_model,
                )
                await fifo.start()
                try:
                    yield FifoBotAdapter(fifo)
                finally:
                    await fifo.stop()
        finally:
            for client in clients:
                await client.aclose()
