"""One job's status message, coalesced and throttled, with the platform's edit plugged in.

The service's callbacks come from the dispatcher's progress loop, so `want` only records what
the status should say and returns; one background task shows it at most once per `interval`
and only when the text, the preview or the cancel button changed. A failed edit is logged and
never breaks the job. `deliver`/`fail` take `lock` (so no edit lands after the result) and
`close()` the status.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusView:
    """What to show: the text, the newest preview (and whether it is new), the cancel button."""

    text: str
    preview: bytes | None
    preview_changed: bool
    cancel: bool


# Shows a view on the platform; False means the status message is gone (stop editing it).
Show = Callable[[StatusView], Awaitable[bool | None]]
Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


def digest(data: bytes | None) -> str | None:
    """A short fingerprint of a preview, to tell a new one from the one shown."""
    return hashlib.blake2b(data, digest_size=16).hexdigest() if data is not None else None


class StatusMessage:
    """The coalescing, throttling core both platforms' repliers share."""

    def __init__(self, show: Show, spawn: Spawn, *, interval: float, label: str = "") -> None:
        self._show = show
        self._spawn = spawn
        self.interval = interval
        self.label = label  # for the log: which job
        self.lock = asyncio.Lock()
        self.closed = False
        self._want: tuple[str, bytes | None, bool] | None = None
        self._preview: bytes | None = None
        self._shown: tuple[str, str | None, bool] | None = None
        self._last_edit = 0.0
        self._task: asyncio.Task[None] | None = None

    def want(self, text: str, preview: bytes | None, *, cancel: bool) -> None:
        """Record the status to show (a None preview keeps the last one) and make sure a task
        will show it; never waits."""
        if self.closed:
            return
        if preview is not None:
            self._preview = preview
        self._want = (text, self._preview, cancel)
        if self._task is None or self._task.done():
            self._task = self._spawn(self._flush())

    def close(self) -> None:
        """No more edits: the result or the failure takes the message over."""
        self.closed = True

    async def _flush(self) -> None:
        while True:
            wait = self._last_edit + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self.lock:
                want = self._want
                if self.closed or want is None:
                    return
                text, preview, cancel = want
                shown = (text, digest(preview), cancel)
                if shown == self._shown:
                    return
                changed = preview is not None and (
                    self._shown is None or shown[1] != self._shown[1]
                )
                try:
                    if await self._show(StatusView(text, preview, changed, cancel)) is False:
                        self.closed = True  # the status message is gone; the result still comes
                except Exception as exc:  # a status edit must never break the job
                    log.warning("status update for job %s failed: %s", self.label, _why(exc))
                self._shown = shown
                self._last_edit = time.monotonic()


def _why(exc: BaseException) -> str:
    """An exception as one line for the log (platform libraries' texts hold no tokens)."""
    return f"{type(exc).__name__}: {exc}"
