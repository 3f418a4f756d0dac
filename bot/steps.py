"""A job's bookkeeping in the background: its transitions in order, each retried until it lands.

The dispatcher's callbacks must return at once and may never raise (a raising callback is a
"Task exception was never retrieved" and a job left running with its credits reserved). So
the engine hands each step of a job (write a transition, deliver, tell the user) to `Steps`:
a task per step that first waits for the job's previous step, so the job moves through the
state machine (storage/lifecycle.py) in order whatever the database does meanwhile. A write
that meets a storage fault is tried again with backoff until the database is back
(`until_written`); anything else is a bug, logged with its traceback, and the next step
still runs. Shutdown waits for the steps in flight (`wait`), then cancels what is left
(`cancel`): the database holds the state each job reached, and the next owner goes on from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from storage.vocab import StorageFault

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_RETRY = 0.5  # seconds before the first retry of a write that met a storage fault
LAST_RETRY = 5.0  # the backoff stops growing here


class Chained(Protocol):
    """Something whose steps run in order: it holds the task of its latest step."""

    id: str
    chain: asyncio.Task[Any] | None


async def until_written(write: Callable[[], Awaitable[T]], what: str) -> T:
    """Run `write()` until it returns: storage faults (database down, locked, full) are
    retried with backoff for as long as it takes; other errors propagate."""
    delay = FIRST_RETRY
    while True:
        try:
            return await write()
        except StorageFault as exc:
            log.warning("%s: %s; trying again in %.1f s", what, type(exc).__name__, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, LAST_RETRY)


class Steps:
    """Background steps, in order per job; kept referenced until they end."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def then(
        self, job: Chained, what: str, step: Callable[[], Awaitable[T]]
    ) -> asyncio.Task[T | None]:
        """Run `step()` after the job's previous step; the task's result is the step's, or
        None if it failed (logged)."""
        previous = job.chain

        async def run() -> T | None:
            if previous is not None:
                await asyncio.wait({previous})  # in order, whatever became of it
            try:
                return await step()
            except Exception:
                log.exception("job %s: %s failed", job.id, what)
                return None

        task = asyncio.create_task(run(), name=f"{what} {job.id}")
        job.chain = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def spawn(self, what: str, work: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
        """A step that belongs to no job (recovering what a claim took over)."""

        async def run() -> Any:
            try:
                return await work()
            except Exception:
                log.exception("%s failed", what)
                return None

        task = asyncio.create_task(run(), name=what)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for every step (also those started meanwhile); True
        if none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self._tasks:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    async def cancel(self) -> None:
        """Cancel every step still running and wait for them to end."""
        while pending := [task for task in self._tasks if not task.done()]:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
