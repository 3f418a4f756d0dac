"""`drawbridge draw`: one job through the same parser, quota, queue and WebUI client."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bot.engine import Engine
from bot.errors import DrawbridgeError
from bot.i18n import t
from bot.images.inputs import prepare_images
from bot.settings import Settings
from bot.types import ImageResult, JobResult, JobUpdate, Requester
from storage.db import Database


class CliDrawError(DrawbridgeError):
    """A job that failed, with the sentence the engine gave."""


@dataclass
class DrawOutcome:
    """What `drawbridge draw` prints."""

    paths: list[Path]
    images: list[ImageResult]
    model: str
    cost: int
    notes: list[str] = field(default_factory=list)


class TerminalReplier:
    """Progress to stderr; the result or failure resolves a future."""

    def __init__(self) -> None:
        self.done: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        self._last = ""

    async def update(self, update: JobUpdate) -> None:
        if update.note:
            line = t("en", update.note, attempt=update.attempt or 1, max="?")
        elif update.progress is not None:
            line = t("en", "queue.running", percent=int(update.progress * 100))
        elif update.position:
            line = t(
                "en",
                "queue.queued",
                position=update.position,
                eta=f"{update.eta_seconds or 0:.0f} s",
            )
        else:
            return
        if line != self._last:
            self._last = line
            print(line, file=sys.stderr)

    async def deliver(self, result: JobResult) -> None:
        if not self.done.done():
            self.done.set_result(result)

    async def fail(self, job_id: str, error: DrawbridgeError, refunded: int) -> None:
        if not self.done.done():
            self.done.set_exception(error)


async def draw_once(
    settings: Settings,
    text: str,
    *,
    user: str,
    init_path: Path | None,
    mask_path: Path | None,
    out_dir: Path,
) -> DrawOutcome:
    """Parse, charge, queue and run one job; write its images to `out_dir`."""
    async with Database(settings.database_url, **settings.database_options()) as db:
        engine = Engine(settings, db)
        request = engine.parser.parse(text)
        init_bytes = _read(init_path) if init_path else None
        mask_bytes = _read(mask_path) if mask_path else None
        prepared = await prepare_images(engine, request, init_bytes, mask_bytes)
        async with engine:
            up = engine.dispatcher.up_backends()
            if not up:
                reasons = "; ".join(b.last_error for b in engine.dispatcher.backends)
                raise CliDrawError("error.input", detail=reasons)
            replier = TerminalReplier()
            requester = Requester("cli", user.removeprefix("cli:"), display_name=user)
            handle = await engine.submit(requester, request, replier, init_size=prepared.init_size)
            result = await _wait(engine, replier, handle.job_id, requester)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(result.images):
        path = out_dir / f"{result.job_id}-{i}-{image.seed}.png"
        await asyncio.to_thread(path.write_bytes, image.png)
        paths.append(path)
    return DrawOutcome(paths, result.images, result.model, result.cost, prepared.notes)


async def _wait(
    engine: Engine, replier: TerminalReplier, job_id: str, requester: Requester
) -> JobResult:
    """Wait for the job; give up (refunding it) when every backend is down."""
    down_since: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await asyncio.wait_for(asyncio.shield(replier.done), timeout=0.5)
        except TimeoutError:
            pass
        if engine.dispatcher.up_backends():
            down_since = None
            continue
        down_since = down_since or loop.time()
        if loop.time() - down_since > engine.settings.webui_connect_timeout:
            reasons = "; ".join(b.last_error for b in engine.dispatcher.backends)
            await engine.cancel(requester, job_id)
            raise CliDrawError("error.input", detail=reasons)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliDrawError("error.input", detail=f"cannot read {path}: {exc.strerror}") from None
