"""One job's status message, coalesced, sent through the platform's outbox.

The service's callbacks come from the engine and the dispatcher's progress loop, so `want` only
records what the status should say and returns. The first status is the job's acknowledgement
and goes at `Priority.RESULT`; later ones are status edits (`Priority.PROGRESS`): the outbox
coalesces them (one waiting edit per status, showing the newest state when it runs) and spaces
a chat's edits by its edit gap. Nothing is shown twice. A failed edit is logged and never
breaks the job. `close()` ends the status before the result or the failure takes over: the
waiting edit is dropped and the one in flight is waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from adapters.kit.outbox import Lane, Outbox, Priority

log = logging.getLogger(__name__)

_ids = itertools.count(1)
ACK_DELAY = 0.02  # seconds: the WebUI request of a job that can start goes before its ack


@dataclass(frozen=True)
class StatusView:
    """What to show: the text, the newest preview (and whether it is new), the cancel button."""

    text: str
    preview: bytes | None
    preview_changed: bool
    cancel: bool


# Shows a view on the platform (one call); False means the status message is gone.
Show = Callable[[StatusView], Awaitable[bool | None]]


def digest(data: bytes | None) -> str | None:
    """A short fingerprint of a preview, to tell a new one from the one shown."""
    return hashlib.blake2b(data, digest_size=16).hexdigest() if data is not None else None


class StatusMessage:
    """The coalescing core both platforms' repliers share; `show` makes the platform call."""

    __slots__ = (
        "_inflight",
        "_preview",
        "_show",
        "_shown",
        "_want",
        "closed",
        "key",
        "label",
        "lane",
        "outbox",
        "patience",
        "shown_once",
    )

    def __init__(
        self, show: Show, outbox: Outbox, lane: Lane, *, label: str = "", patience: float = 30.0
    ) -> None:
        self._show = show
        self.patience = patience  # a status edit is retried this long, then the next one tries
        self.outbox = outbox
        self.lane = lane
        self.label = label  # for the log: which job
        self.key = ("status", next(_ids))
        self.closed = False
        self.shown_once = False  # the acknowledgement has gone out (or is on its way)
        self._want: tuple[str, bytes | None, bool] | None = None
        self._preview: bytes | None = None
        self._shown: tuple[str, str | None, bool] | None = None
        self._inflight: asyncio.Future[Any] | None = None

    def want(self, text: str, preview: bytes | None, *, cancel: bool) -> None:
        """Record the status to show (a None preview keeps the last one) and make sure the
        outbox will show it; never waits."""
        if self.closed:
            return
        if preview is not None:
            self._preview = preview
        self._want = (text, self._preview, cancel)
        if (text, digest(self._preview), cancel) == self._shown:
            return
        # the first status is the job's acknowledgement (a moment later, so a job that can
        # start goes to the WebUI first); the rest are edits
        first = not self.shown_once
        self.shown_once = True
        future = self.outbox.send(
            self.lane,
            self._flush,
            priority=Priority.RESULT if first else Priority.PROGRESS,
            key=self.key,
            patience=self.patience,
            paces=True,
            delay=ACK_DELAY if first else 0.0,
        )
        if future is not self._inflight:
            future.add_done_callback(self._done)
        self._inflight = future

    async def close(self) -> None:
        """No more edits: drop the waiting one, wait for the one in flight."""
        self.closed = True
        self.outbox.cancel(self.lane, self.key)
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(inflight)

    async def _flush(self) -> None:
        want = self._want
        if self.closed or want is None:
            return
        text, preview, cancel = want
        shown = (text, digest(preview), cancel)
        if shown == self._shown:
            return
        changed = preview is not None and (self._shown is None or shown[1] != self._shown[1])
        if await self._show(StatusView(text, preview, changed, cancel)) is False:
            self.closed = True  # the status message is gone; the result still comes
        self._shown = shown

    def _done(self, future: asyncio.Future[Any]) -> None:
        if self._inflight is future:
            self._inflight = None  # nothing to wait for; do not keep it while the job waits
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:  # a status edit must never break the job
            log.warning("status update for job %s failed: %s", self.label, _why(exc))


def _why(exc: BaseException) -> str:
    """An exception as one line for the log (platform libraries' texts hold no tokens)."""
    return f"{type(exc).__name__}: {exc}"
