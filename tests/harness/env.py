"""What both platforms' end-to-end environments share: the running service and WebUI, the
waits, and the log records a test checks at the end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.engine import Engine
from bot.service import Service
from bot.settings import Settings
from bot.types import QuotaView
from devwebui import DevWebUI


class LogRecords(logging.Handler):
    """Collects the records of the given loggers from `level` up, while attached."""

    def __init__(self, level: int, *names: str) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self.loggers = [logging.getLogger(name) for name in names]

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> LogRecords:
        for logger in self.loggers:
            logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for logger in self.loggers:
            logger.removeHandler(self)

    def unexpected(self, allowed: list[str], level: int = logging.ERROR) -> list[str]:
        """Messages at `level` or above that no `allowed` fragment explains."""
        return [
            r.getMessage()
            for r in self.records
            if r.levelno >= level and not any(a in r.getMessage() for a in allowed)
        ]


@dataclass
class ServiceEnv:
    """A running service over a DevWebUI, and ways to wait for what follows."""

    webui: DevWebUI
    service: Service
    settings: Settings
    allowed_errors: list[str] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        """White-box: the engine behind the service (tests look at its queue and backends)."""
        return self.service._engine

    def generations(self, kind: str = "txt2img") -> list[dict[str, Any]]:
        """Bodies of /sdapi/v1/<kind> requests."""
        return [body for path, body in self.webui.requests if path.endswith(f"/{kind}")]

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

    async def settled_quota(self, key: str, timeout: float = 5.0) -> QuotaView:
        """A user's quota once nothing is reserved any more (settling follows delivery)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            view = await self.service.quota(key)
            if view.reserved == 0 or asyncio.get_running_loop().time() > deadline:
                return view
            await asyncio.sleep(0.02)
