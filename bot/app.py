"""`drawbridge run`: the service, its periodic jobs and every adapter that has a token, in one
loop, started in a defined order and stopped in the reverse one.

1. build each adapter: it registers its reply factory with the service;
2. start the service: database, jobs queued at the last shutdown resumed (their repliers wait
   for their platform), dispatching, the scheduler;
   then the health and metrics server on HTTP_LISTEN (bot/monitor.py), unless it is off;
3. enter each adapter (log in, start taking updates);
4. run until SIGINT/SIGTERM or until an adapter's connection ends by itself;
5. drain: new commands are answered "restarting, try again in a minute" (nothing charged),
   running jobs are handed back (interrupted on their WebUI once proven ours), deliveries in
   flight finish, all within SHUTDOWN_GRACE; then the adapters stop, and the service
   (whatever is still pending is written, the instance deregistered, so the next process or
   a peer takes the queued jobs over at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from adapters.kit import Adapter, AdapterStartError
from bot.errors import DrawbridgeError
from bot.i18n import t
from bot.monitor import CONNECTED, Monitor
from bot.service import Service
from bot.settings import Settings

log = logging.getLogger(__name__)

# adapter module → the token that turns it on, and the Adapter class in it
ADAPTERS = {
    "telegram": ("telegram_token", "TelegramAdapter"),
    "discord": ("discord_token", "DiscordAdapter"),
}

AdapterFactory = Callable[[Service, Settings], Adapter]


def enabled_adapters(settings: Settings) -> list[str]:
    """Adapters whose token is set."""
    return [name for name, (token, _) in ADAPTERS.items() if getattr(settings, token) is not None]


def load_adapter(name: str) -> AdapterFactory:
    """`adapters.<name>`'s Adapter class, imported only when its token is set."""
    module = importlib.import_module(f"adapters.{name}")
    factory: AdapterFactory = getattr(module, ADAPTERS[name][1])
    return factory


async def _reload(service: Service) -> None:
    """SIGHUP: read POLICY_FILE again (a bad file is logged, the admins told, the old kept)."""
    with contextlib.suppress(DrawbridgeError):
        await service.reload_policy()


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
    service = Service(settings, schedule=True)
    with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP on Windows
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload(service)))
    adapters = [load_adapter(name)(service, settings) for name in names]
    # what /healthz and /readyz say of each adapter
    states = dict.fromkeys(names, "starting")
    code = 0
    try:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(service)
            listen = settings.http_address()
            if listen is not None:
                await stack.enter_async_context(Monitor(service, listen, lambda: states))
            for adapter in adapters:
                try:
                    await stack.enter_async_context(adapter)
                except AdapterStartError as exc:
                    # one platform that cannot start stops the process loudly (exit 1) rather
                    # than leave the other running unnoticed: a supervisor restarts it, alerts
                    states[adapter.name] = "stopped"
                    raise _StartFailed(adapter.name, exc) from None
                states[adapter.name] = CONNECTED
            log.info(
                "drawbridge running: %s; backends %s",
                ", ".join(names),
                ", ".join(service.backends()),
            )
            if not await _until_stopped(stop, adapters, states):
                code = EXIT_FAILED
            states.update(dict.fromkeys(states, "stopping"))
            log.info("drawbridge stopping: finishing deliveries, handing back running jobs")
            await service.drain()
    except _StartFailed as failed:
        log.error("%s could not start: %s", failed.name, failed.reason)
        code = EXIT_FAILED
    if code:
        log.error("drawbridge stopped with exit status %d (a supervisor should restart it)", code)
    else:
        log.info("drawbridge stopped")
    return code


EXIT_FAILED = 1


class _StartFailed(Exception):
    """An adapter could not start (its platform refused the token or was unreachable)."""

    def __init__(self, name: str, reason: AdapterStartError) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


async def _until_stopped(
    stop: asyncio.Event, adapters: list[Adapter], states: dict[str, str]
) -> bool:
    """Wait for a signal (True), or for an adapter whose connection ended (logged, then all
    stop; False: the process exits non-zero)."""
    watchers: dict[asyncio.Task[Any], str] = {
        asyncio.create_task(adapter.wait_closed()): adapter.name for adapter in adapters
    }
    signalled = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*watchers, signalled], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in watchers:
                states[watchers[task]] = "stopped"
                log.error("%s stopped: %s", watchers[task], task.exception() or "connection ended")
        return signalled in done
    finally:
        for task in (*watchers, signalled):
            task.cancel()
        await asyncio.gather(*watchers, signalled, return_exceptions=True)
