"""`drawbridge draw`: one job through the same parser, quota, queue and WebUI client — the
terminal as one more adapter of the service.

It runs as an instance of its own (platform "cli"), so beside a live bot on the same database
it touches none of the bot's jobs, and the bot none of its. Before it exits its own job is
final and its charge settled or released, on SQLite and PostgreSQL alike: the service drains
(every write of the job waited for) before the database closes. Interrupted (Ctrl-C), it
cancels its job and refunds it first.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import DrawbridgeError, UserInputError
from bot.i18n import t
from bot.service import Service
from bot.settings import Settings
from bot.types import ImageResult, JobResult, JobUpdate, Pictures, Requester


class CliDrawError(DrawbridgeError):
    """A job that failed, with the sentence the engine gave."""


class CliInputError(UserInputError):
    """A file or folder named on the command line cannot be used (exit status 2)."""

    key = "error.input"


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
    control_path: Path | None = None,
) -> DrawOutcome:
    """Parse, charge, queue and run one job; write its images to `out_dir`."""
    service = Service(settings, serves=["cli"])
    try:
        # before anything starts: a wrong flag or an unreadable file costs nothing
        request = service.parse(text)
        limit = settings.max_upload_bytes
        pictures = Pictures(
            init=_read(init_path, limit) if init_path else None,
            mask=_read(mask_path, limit) if mask_path else None,
            control=_read(control_path, limit) if control_path else None,
        )
        _check_out_dir(out_dir)
    except BaseException:
        await service.aclose()
        raise
    async with service:
        replier = TerminalReplier()
        requester = Requester("cli", user.removeprefix("cli:"), display_name=user)
        handle = await service.draw(
            requester, request, replier, pictures=pictures, refuse_when_down=True
        )
        try:
            result = await _wait(service, replier, handle.job_id, requester)
        except asyncio.CancelledError:
            # Ctrl-C: nobody waits for the picture any more; refund it before leaving
            await _cancel_quietly(service, requester, handle.job_id)
            raise
        finally:
            # the settle (or release) lands before the database closes
            await asyncio.shield(service.drain(settings.db_retry_seconds + 1.0))
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(result.images):
        path = out_dir / f"{result.job_id}-{i}-{image.seed}.png"
        await asyncio.to_thread(path.write_bytes, image.png)
        paths.append(path)
    return DrawOutcome(paths, result.images, result.model, result.cost, list(handle.notes))


async def _wait(
    service: Service, replier: TerminalReplier, job_id: str, requester: Requester
) -> JobResult:
    """Wait for the job; give up (refunding it) when every backend is down."""
    down_since: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await asyncio.wait_for(asyncio.shield(replier.done), timeout=0.5)
        except TimeoutError:
            pass
        problems = service.backend_problems()
        if problems is None:
            down_since = None
            continue
        down_since = down_since or loop.time()
        if loop.time() - down_since > service.settings.webui_connect_timeout:
            await service.cancel(requester, job_id)
            raise CliDrawError("error.input", detail="; ".join(problems))


async def _cancel_quietly(service: Service, requester: Requester, job_id: str) -> None:
    task = asyncio.ensure_future(service.cancel(requester, job_id))
    try:
        await asyncio.shield(task)
    except (asyncio.CancelledError, DrawbridgeError):
        pass  # finished meanwhile, or cancelled again: the claim of the next process refunds it


def _read(path: Path, limit: int) -> bytes:
    """At most `limit` bytes (MAX_UPLOAD_BYTES) of a file: /dev/zero or a FIFO ends too."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise CliInputError("error.input", detail=f"cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise CliInputError(
            "error.input",
            detail=f"{path} is larger than MAX_UPLOAD_BYTES ({limit} bytes); use a smaller file",
        )
    return data


def _check_out_dir(out_dir: Path) -> None:
    """--out must be a directory we can write, before anything is charged."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".drawbridge-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise CliInputError(
            "error.input", detail=f"--out {out_dir} cannot be written ({why}); choose another"
        ) from None
