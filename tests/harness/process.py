"""`drawbridge run` as an operator runs it, in a real subprocess a test can SIGKILL or SIGTERM,
against the fake Telegram and a DevWebUI served from the test's own event loop, and the books
(jobs, ledger) read back from the same database afterwards.

    async with FakeTelegram() as fake, DevWebUI(delay=1.0) as webui:
        env = bot_env(tmp_path, fake, webui, LEASE_SECONDS="1.5")
        bot = await BotProcess(tmp_path, env).start()
        ...
        await bot.kill()                         # kill -9
        bot = await BotProcess(tmp_path, env).start()
        await books_closed(env["DATABASE_URL"])  # every reserve settled or released once
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devwebui import DevWebUI
from storage.db import Database
from storage.models import Job
from storage.vocab import JobState
from tests.fakes.telegram_api import FakeTelegram

READY = "drawbridge running"
HTTP_READY = "http: /healthz, /readyz and /metrics on "
PRESETS = "width = 256\nheight = 256\nsteps = 4\nhires = false\n"
ALL_STATES = [state.value for state in JobState]


def bot_env(
    tmp_path: Path, fake: FakeTelegram | None, webui: DevWebUI, **extra: str
) -> dict[str, str]:
    """The environment of one deployment: its database, data dir, WebUI and Telegram; short
    leases, grace and timeouts so restarts and takeovers happen within seconds."""
    presets = tmp_path / "presets.toml"
    presets.write_text(PRESETS)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    env.update(
        PYTHONUNBUFFERED="1",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/drawbridge.db",
        DATA_DIR=str(tmp_path / "data"),
        WEBUI_URLS=webui.url,
        WEBUI_CONNECT_TIMEOUT="1",
        PROGRESS_INTERVAL="0.05",
        HEALTH_CHECK_INTERVAL="0.5",
        STALL_TIMEOUT="30",
        PRESETS_FILE=str(presets),
        DAILY_CREDITS="1000",
        MAX_QUEUED_PER_USER="100",
        LEASE_SECONDS="1.5",
        SHUTDOWN_GRACE="3",
        DB_RETRY_SECONDS="5",
        TELEGRAM_EDIT_INTERVAL="0.2",
        TELEGRAM_MAX_RETRIES="3",
        DISCORD_TOKEN="",
        TELEGRAM_TOKEN="",
        LOG_LEVEL="INFO",
        # /healthz and /metrics on a free port (the log says which: `BotProcess.http_root`)
        HTTP_LISTEN="127.0.0.1:0",
    )
    if fake is not None:
        env.update(TELEGRAM_TOKEN=fake.token, TELEGRAM_API_BASE_URL=fake.root)
    env.update(extra)
    return env


class BotProcess:
    """One `python -m bot run` (or any `drawbridge` command) with its stderr collected."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *args: str) -> None:
        self.cwd = tmp_path
        self.env = env
        self.args = args or ("run",)
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self, ready: str | None = READY, timeout: float = 60.0) -> BotProcess:
        """Start it; wait for the line saying it runs (None: do not wait)."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *self.args,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        if ready is not None:
            await self.wait_log(ready, timeout)
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    async def http_root(self, timeout: float = 30.0) -> str:
        """http://host:port of its /healthz, /readyz and /metrics, from the line saying so."""
        line = await self.wait_log(HTTP_READY, timeout)
        return "http://" + line.rsplit(" on ", 1)[1].strip()

    @property
    def log(self) -> str:
        """Everything it wrote to stderr so far."""
        return "\n".join(self.lines)

    async def wait_log(self, text: str, timeout: float = 30.0) -> str:
        """The first stderr line containing `text`."""

        async def find() -> str:
            while True:
                self._changed.clear()
                for line in self.lines:
                    if text in line:
                        return line
                if (
                    self.proc is not None
                    and self.proc.returncode is not None
                    and (self._reader is None or self._reader.done())
                ):
                    raise AssertionError(f"exited without logging {text!r}:\n{self.log}")
                await self._changed.wait()

        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {text!r} within {timeout} s:\n{self.log}") from None

    async def kill(self) -> None:
        """kill -9: no cleanup of any kind."""
        await self._signal(signal.SIGKILL)

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as `docker stop` or systemd sends; its exit code."""
        return await self._signal(signal.SIGTERM, timeout)

    async def wait(self, timeout: float = 60.0) -> int:
        """Its exit code once it ended by itself."""
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return code

    async def _signal(self, sig: int, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        return await self.wait(timeout)

    async def __aenter__(self) -> BotProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            await self.kill()


# --- what the database says ------------------------------------------------------------------


async def jobs(url: str) -> list[Job]:
    """Every job, oldest first."""
    async with Database(url) as db:
        return await db.jobs.list_by_state(ALL_STATES)


async def ledger(url: str) -> list[Any]:
    """Every ledger row."""
    async with Database(url) as db:
        return await db.quota.entries()


async def books_closed(url: str) -> list[Job]:
    """Assert every job ended and every reservation has exactly one settle (delivered) or
    one release (failed, cancelled); the jobs."""
    rows = await jobs(url)
    open_jobs = [(j.id, j.prompt, j.state) for j in rows if not JobState(j.state).final]
    assert not open_jobs, open_jobs
    entries = await ledger(url)
    kinds: dict[str, Counter[str]] = {}
    for entry in entries:
        if entry.job_id is not None and entry.kind in ("reserve", "settle", "release"):
            kinds.setdefault(entry.job_id, Counter())[entry.kind] += 1
    for job in rows:
        seen = kinds.get(job.id, Counter())
        if job.cost == 0:
            continue
        closing = "settle" if job.state == JobState.DELIVERED.value else "release"
        assert seen == Counter({"reserve": 1, closing: 1}), (job.id, job.state, seen)
    return rows


async def until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll a sync or async predicate until it is truthy; its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)


def renders(webui: DevWebUI) -> Counter[str]:
    """txt2img requests the WebUI received, by prompt."""
    return Counter(
        body["prompt"] for path, body in webui.requests if path.endswith("/txt2img") and body
    )


def photos(fake: FakeTelegram) -> Counter[str]:
    """Results Telegram confirmed (a photo with a seed line), by prompt."""
    return Counter(
        (call.params.get("caption") or "").split("\n", 1)[0]
        for call in fake.calls_of("sendPhoto", ok=True)
        if "🌱" in (call.params.get("caption") or "")
    )


_HOLD_LOCK = (
    "import sqlite3, sys, time\n"
    "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "conn.execute('BEGIN IMMEDIATE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(3600)\n"
)


async def hold_sqlite_lock(url: str) -> asyncio.subprocess.Process:
    """Another process holding the SQLite file's write lock until it is killed."""
    path = url.removeprefix("sqlite+aiosqlite:///")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLD_LOCK, path, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"locked"
    return proc
