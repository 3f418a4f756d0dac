"""The `drawbridge` command run as an operator runs it: a real subprocess in a temporary folder,
with its own SQLite file and data dir, and no chat tokens."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        DATA_DIR=str(tmp_path / "data"),
        WEBUI_CONNECT_TIMEOUT="1",
        PROGRESS_INTERVAL="0.05",
        DISCORD_TOKEN="",
        TELEGRAM_TOKEN="",
    )
    env.update(extra)
    return env


async def drawbridge(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    """Run `python -m bot ARGS` in tmp_path; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=tmp_path,
        env=_env(tmp_path, **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def free_port() -> int:
    """A port nothing listens on (bound once by the OS, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
