"""This process as an instance (storage/instances.py): registered with the bots it serves, kept
alive by a heartbeat that also takes over the jobs of instances that died.

    start ─► register ─► claim ─► every LEASE_SECONDS/3: claim (renews the lease too) ─► stop ─► deregister

A claim hands what it took to the engine (`claimed`): queued jobs to queue again, renders that
were lost to draw again, rendered results to send again. It goes in batches of RESUME_BATCH
jobs, each its own short transaction: `start` returns after the first, so a restart with 100 000
queued serves at once while the heartbeat task takes the rest, batch after batch (`pending`
says how many are still to come, so /queue counts them meanwhile). If the heartbeat finds this instance's
row gone (the database was away longer than the lease and another instance buried it), `lost`
lets the engine drop what is no longer its own, and the instance registers again. While the
process drains (`hold`), the heartbeat only renews the lease: a stopping process takes no jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from storage.db import Database
from storage.instances import Cursor, Orphans
from storage.vocab import LeaseLost, StorageFault

log = logging.getLogger(__name__)

DEREGISTER_TIMEOUT = 5.0  # at exit; if the database is away, the lease runs out by itself
# Jobs per claim transaction: small enough that reading and handing over one batch stalls the
# event loop for milliseconds, large enough that 100 000 jobs take a few hundred of them.
RESUME_BATCH = 1000


class Lease:
    """Register, heartbeat and claim for one instance; an async lifetime (start/stop)."""

    def __init__(
        self,
        db: Database,
        instance: str,
        *,
        lease_seconds: float,
        today: Callable[[], str],
        claimed: Callable[[Orphans], Awaitable[None]],
        lost: Callable[[], Awaitable[None]],
    ) -> None:
        self.db = db
        self.instance = instance
        self.lease_seconds = lease_seconds
        self.platforms: list[str] = []
        self._today = today
        self._claimed = claimed
        self._lost = lost
        self._task: asyncio.Task[None] | None = None
        self._holding = False
        self.registered = False
        self.pending = 0  # queued jobs of dead instances still to claim, as last counted
        self._cursor: Cursor | None = None  # where the next batch of a takeover starts

    @property
    def interval(self) -> float:
        """Seconds between heartbeats: a third of the lease, so two may fail in a row."""
        return self.lease_seconds / 3

    async def start(self, platforms: Sequence[str]) -> None:
        """Register serving `platforms` (bots, e.g. "telegram:123"), take over a first batch
        of the jobs of dead instances, then keep the lease alive (and take the rest) in the
        background."""
        self.platforms = sorted(set(platforms))
        await self.db.instances.register(
            self.instance, self.platforms, lease_seconds=self.lease_seconds
        )
        self.registered = True
        log.info("instance %s serves %s", self.instance, ", ".join(self.platforms) or "nothing")
        await self.claim()
        self._task = asyncio.create_task(self._beat(), name=f"heartbeat {self.instance}")

    def hold(self) -> None:
        """Stop taking jobs over (the process is draining); the lease is still renewed."""
        self._holding = True
        self.pending = 0  # a stopping process takes no more: what is left waits for others
        self._cursor = None

    async def stop(self) -> None:
        """Stop the heartbeat and deregister, so others may take what is left at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self.registered:
            return
        self.registered = False
        try:
            await asyncio.wait_for(self.db.instances.deregister(self.instance), DEREGISTER_TIMEOUT)
        except (StorageFault, TimeoutError) as exc:
            log.warning(
                "could not deregister (%s); the lease runs out in %.0f s",
                type(exc).__name__,
                self.lease_seconds,
            )

    async def claim(self) -> None:
        """Renew the lease and take over a batch of the jobs of dead instances (LeaseLost if
        gone); `pending` > 0 afterwards if more are waiting."""
        first = self._cursor is None
        orphans = await self.db.instances.claim_orphans(
            self.instance,
            self.platforms,
            lease_seconds=self.lease_seconds,
            today=self._today(),
            limit=RESUME_BATCH,
            after=self._cursor,
        )
        self._cursor = orphans.cursor
        if self._cursor is None:
            self.pending = 0
        elif first:
            self.pending = orphans.remaining
        else:
            self.pending = max(0, self.pending - len(orphans.queued))
        taken = len(orphans.queued) + len(orphans.rendered) + len(orphans.failed)
        if taken:
            log.info(
                "took over %d jobs of stopped instances (%d to draw again, %d to send again)",
                taken,
                len(orphans.requeued),
                len(orphans.rendered),
            )
        if orphans.notices:
            log.info("took over %d notices of stopped instances to send", len(orphans.notices))
        if taken or orphans.notices:
            await self._claimed(orphans)

    async def _beat(self) -> None:
        went_wrong = False
        while True:
            if self._cursor is not None and not self._holding and not went_wrong:
                await asyncio.sleep(0)  # the next batch of a takeover, without waiting
            else:
                await asyncio.sleep(self.interval)
            went_wrong = True  # until this round got through
            try:
                if self._holding:
                    if not await self.db.instances.heartbeat(
                        self.instance, lease_seconds=self.lease_seconds
                    ):
                        raise LeaseLost()
                else:
                    await self.claim()
                went_wrong = False
            except LeaseLost:
                log.warning("this instance's lease ran out and was taken; registering again")
                await self._rejoin()
            except StorageFault as exc:
                log.warning(
                    "heartbeat: %s; trying again in %.0f s", type(exc).__name__, self.interval
                )
            except Exception:
                log.exception("heartbeat failed")

    async def _rejoin(self) -> None:
        self._cursor = None  # the next claim starts a sweep afresh
        try:
            await self.db.instances.register(
                self.instance, self.platforms, lease_seconds=self.lease_seconds
            )
            await self._lost()
        except StorageFault as exc:
            log.warning("registering again: %s; next heartbeat tries again", type(exc).__name__)
