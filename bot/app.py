"""`drawbridge run`: the engine, the scheduler and every adapter that has a token, in one loop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from bot.engine import Engine
from bot.i18n import t
from bot.scheduler import build_scheduler
from bot.settings import Settings
from storage.db import Database

log = logging.getLogger(__name__)

# adapter module → the token that turns it on
ADAPTERS = {"telegram": "telegram_token", "discord": "discord_token"}

AdapterServe = Callable[[Engine, Settings, asyncio.Event], Coroutine[Any, Any, Any]]


def enabled_adapters(settings: Settings) -> list[str]:
    """Adapters whose token is set."""
    return [name for name, token in ADAPTERS.items() if getattr(settings, token) is not None]


def load_adapter(name: str) -> AdapterServe:
    """`adapters.<name>.serve`, imported only when its token is set."""
    module = importlib.import_module(f"adapters.{name}")
    serve: AdapterServe = module.serve
    return serve


async def run(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code."""
    names = enabled_adapters(settings)
    if not names:
        print(t("en", "cli.no_tokens"), file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with Database(settings.database_url, **settings.database_options()) as db:
        engine = Engine(settings, db)
        serves = [load_adapter(name) for name in names]
        # adapters register their reply factories before the engine resumes queued jobs
        tasks = [asyncio.create_task(serve(engine, settings, stop)) for serve in serves]
        await asyncio.sleep(0)
        async with engine:
            scheduler = build_scheduler(engine)
            scheduler.start()
            log.info(
                "drawbridge running: %s; backends %s",
                ", ".join(names),
                ", ".join(c.display for c in engine.clients),
            )
            try:
                done, _ = await asyncio.wait(
                    [*tasks, asyncio.create_task(stop.wait())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in done:
                    if task in tasks and task.exception() is not None:
                        log.error("adapter stopped: %s", task.exception())
                        stop.set()
            finally:
                stop.set()
                scheduler.shutdown(wait=False)
                await asyncio.gather(*tasks, return_exceptions=True)
    log.info("drawbridge stopped")
    return 0
