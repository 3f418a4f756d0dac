"""Settings for a test: its own SQLite file and data dir, fast polling, no .env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.presets import Preset, PresetBook
from bot.settings import Settings

# small, quick pictures for the end-to-end tests
SMALL = PresetBook(default=Preset(width=256, height=256, steps=4, hires=False))


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
        "http_listen": "",  # no health server unless a test asks (tests run in parallel)
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)
