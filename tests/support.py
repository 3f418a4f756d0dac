"""Test support: an in-memory Replier (the core's own test adapter) and settings for tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.errors import DrawbridgeError
from bot.settings import Settings
from bot.types import JobResult, JobState, JobUpdate


def make_settings(tmp_path: Path, urls: list[str], **overrides: Any) -> Settings:
    """Settings for a test: its own SQLite file and data dir, fast polling, no .env."""
    values: dict[str, Any] = {
        "webui_urls": urls,
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/drawbridge.db",
        "data_dir": tmp_path / "data",
        "progress_interval": 0.05,
        "webui_connect_timeout": 1.0,
        "webui_timeout": 30.0,
        "stall_timeout": 10.0,
        "health_check_interval": 0.2,
        "max_queued_per_user": 100,
        "daily_credits": 10_000,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


class MemoryReplier:
    """Records everything the engine tells one conversation."""

    def __init__(self, name: str = "", log: list[tuple[str, str, str]] | None = None) -> None:
        self.name = name
        self.updates: list[JobUpdate] = []
        self.results: list[JobResult] = []
        self.failures: list[tuple[str, DrawbridgeError, int]] = []
        self.log = log if log is not None else []
        self._changed = asyncio.Event()

    async def update(self, update: JobUpdate) -> None:
        self.updates.append(update)
        if update.state is JobState.RUNNING and update.progress == 0.0:
            self.log.append(("started", self.name, update.job_id))
        self._changed.set()

    async def deliver(self, result: JobResult) -> None:
        self.results.append(result)
        self.log.append(("done", self.name, result.job_id))
        self._changed.set()

    async def fail(self, job_id: str, error: DrawbridgeError, refunded: int) -> None:
        self.failures.append((job_id, error, refunded))
        self.log.append(("failed", self.name, job_id))
        self._changed.set()

    @property
    def finished(self) -> int:
        return len(self.results) + len(self.failures)

    async def wait(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until predicate(self) holds."""

        async def _loop() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_loop(), timeout)
