"""The "could not deliver, refunded" notices on their way to their users, each marked in the
database once the platform took it.

A result the platform never confirmed fails its job and refunds it in one transaction, which
also marks the user's notice due (storage/lifecycle.py, jobs.notice). `Notices.tell` hands it to
the job's replier, whose outbox retries it until the platform is back, and records it sent once
the platform confirmed it (or dropped, when the platform refused it for good: the chat is
gone). A process that stops first leaves it due, and whoever takes the bot's jobs over next
(a restart, another instance: storage/instances.py's claim) tells it again: at least once, and
only twice if a process dies between the platform's answer and that write.
"""

from __future__ import annotations

import asyncio
import logging

from bot.errors import DrawbridgeError
from bot.steps import until_written
from bot.types import Replier
from storage.db import Database

log = logging.getLogger(__name__)


class Notices:
    """Notices being told, kept referenced until they end; `stop` leaves the rest due."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def tell(self, job_id: str, replier: Replier, error: DrawbridgeError, refunded: int) -> None:
        """Have `replier` tell the user (returns at once); record it once the platform took it."""
        task = asyncio.create_task(self._tell(job_id, replier, error, refunded), name=job_id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tell(
        self, job_id: str, replier: Replier, error: DrawbridgeError, refunded: int
    ) -> None:
        sent = True
        try:
            await replier.fail(job_id, error, refunded)
        except asyncio.CancelledError:
            raise  # stopped before the platform was back: it stays due for the next owner
        except Exception as exc:
            log.warning("job %s: its notice was refused for good (%s)", job_id, type(exc).__name__)
            sent = False
        await until_written(
            lambda: self.db.jobs.notified(job_id, sent=sent), f"job {job_id}: notified"
        )

    async def stop(self, grace: float) -> None:
        """Let notices the platform is taking finish for up to `grace` seconds, then stop the
        rest (they stay due)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        pending = [task for task in self._tasks if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
