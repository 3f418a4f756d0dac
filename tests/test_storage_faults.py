"""Database faults: a write outlasts a lock held by another process, a PostgreSQL restart and
outage, a lost COMMIT and a full disk; it lands, or fails typed with nothing half-written."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Connection, event, func, select

from bot.errors import StorageError
from bot.settings import Settings
from storage.db import Database
from storage.lifecycle import RenderedImage
from storage.models import metadata
from storage.vocab import StorageFull, StorageUnavailable, StorageUncertain
from tests.harness.storage import PgControl

DAY = "2025-03-01"
USER = "telegram:42"
OWNER = "me"
# Beyond both busy_timeout (0.5 s here; 30 s by default) and the PostgreSQL restart time.
HOLD_SECONDS = 3.0
PG_DOWN_SECONDS = 8.0


async def submit(db: Database, job_id: str, *, prompt: str = "a fox", cost: int = 1) -> Any:
    return await db.submit_job(
        id=job_id,
        user_key=USER,
        platform="telegram",
        prompt=prompt,
        params={},
        cost=cost,
        allowance=10,
        today=DAY,
        owner=OWNER,
    )


async def count(db: Database, table: str) -> int:
    return await db.read_tx(
        lambda conn: int(
            conn.execute(select(func.count()).select_from(metadata.tables[table])).scalar_one()
        )
    )


async def kinds(db: Database, job_id: str) -> list[str]:
    return [e.kind for e in await db.quota.entries(job_id=job_id)]


# --- SQLite: another process holds the write lock ------------------------------------------

_HOLD_LOCK = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("COMMIT")
    """
)


def hold_write_lock(path: str, seconds: float) -> subprocess.Popen[str]:
    """Another process that takes SQLite's write lock and keeps it for `seconds`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, path, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite+aiosqlite:///")


async def test_a_write_outlasts_a_lock_held_beyond_busy_timeout(sqlite_url: str) -> None:
    async with Database(sqlite_url, busy_timeout=0.5, retry_seconds=30) as db:
        await submit(db, "warm")
        holder = await asyncio.to_thread(hold_write_lock, sqlite_path(sqlite_url), HOLD_SECONDS)
        began = time.monotonic()
        try:
            reservation = await submit(db, "j1")
        finally:
            await asyncio.to_thread(holder.wait)
        # It waited for the lock (several busy timeouts), then landed once.
        assert time.monotonic() - began >= HOLD_SECONDS - 0.5
        assert reservation.balance_after == 8
        assert await kinds(db, "j1") == ["reserve"]
        assert await count(db, "jobs") == 2


async def test_a_lock_held_past_the_retry_bound_fails_typed_and_writes_nothing(
    sqlite_url: str,
) -> None:
    async with Database(sqlite_url, busy_timeout=0.2, retry_seconds=1) as db:
        await submit(db, "warm")
        holder = await asyncio.to_thread(hold_write_lock, sqlite_path(sqlite_url), HOLD_SECONDS)
        try:
            with pytest.raises(StorageUnavailable) as caught:
                await submit(db, "j1")
        finally:
            await asyncio.to_thread(holder.wait)
        assert "try again" in StorageError.from_fault(caught.value).render("en")
        assert await db.jobs.get("j1") is None and await kinds(db, "j1") == []
        shown = await db.quota.show(USER, allowance=10, today=DAY)
        assert (shown.available, shown.reserved) == (9, 1)
        await submit(db, "j1")  # once the lock is free, the same submit goes through


# --- SQLite: the disk is full --------------------------------------------------------------


async def test_a_full_disk_is_a_typed_error_with_nothing_half_written(sqlite_url: str) -> None:
    async with Database(sqlite_url, retry_seconds=30) as db:
        await submit(db, "j0", cost=2)
        await db.jobs.start("j0", owner=OWNER, backend="http://gpu", attempts=1)

        def cap(conn: Connection) -> int:
            # SQLITE_FULL for real: this connection may not grow the file any further.
            pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
            conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
            return pages

        pages = await db.write_tx(cap)
        began = time.monotonic()
        with pytest.raises(StorageFull) as caught:
            await submit(db, "j1", prompt="x" * 2_000_000)
        assert time.monotonic() - began < 20  # not retried for 30 s: it would not help
        assert "storage is full" in StorageError.from_fault(caught.value).render("en")
        assert await db.jobs.get("j1") is None and await kinds(db, "j1") == []
        # Beside writes that still fit (queued together: one group commit), only it fails.
        outcomes = await asyncio.gather(
            submit(db, "j2", prompt="y" * 2_000_000),
            *(db.jobs.set_state("j0", "running", attempts=n) for n in (2, 3, 4)),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], StorageFull) and outcomes[1:] == [True, True, True]
        assert await db.jobs.get("j2") is None and await kinds(db, "j2") == []
        # A render that cannot be stored leaves the job running with its credits reserved
        # (the engine fails it, or a restart re-queues it) and no result rows.
        big = [RenderedImage("ab" * 32, 7, 64, 64, "i" * 2_000_000)]
        with pytest.raises(StorageFull):
            await db.jobs.render("j0", owner=OWNER, images=big)
        job = await db.jobs.get("j0")
        assert job is not None and job.state == "running"
        assert await db.results.for_job("j0") == []
        shown = await db.quota.show(USER, allowance=10, today=DAY)
        assert (shown.available, shown.reserved) == (8, 2)
        # Space again: the job can be failed and refunded.
        await db.write_tx(lambda c: c.exec_driver_sql(f"PRAGMA max_page_count = {pages * 1000}"))
        assert await db.jobs.fail("j0", owner=OWNER, error="disk full", today=DAY) == 2
        shown = await db.quota.show(USER, allowance=10, today=DAY)
        assert (shown.available, shown.reserved) == (10, 0)


# --- PostgreSQL: restarts and outages ------------------------------------------------------


async def test_after_a_postgresql_restart_the_next_request_works(
    pg_url: str, pg_control: PgControl
) -> None:
    # No retries allowed: the pool itself must notice the dead connections (pool_pre_ping).
    async with (
        Database(pg_url, retry_seconds=0) as db,
        Database(pg_url, retry_seconds=0, pool_pre_ping=False) as unpinged,
    ):
        await submit(db, "j0")
        await unpinged.quota.show(USER, allowance=10, today=DAY)  # pools one connection
        await asyncio.to_thread(pg_control.stop)
        await asyncio.to_thread(pg_control.start)
        shown = await db.quota.show(USER, allowance=10, today=DAY)
        assert (shown.available, shown.reserved) == (9, 1)
        await submit(db, "j1")
        assert await kinds(db, "j1") == ["reserve"]
        # Without the ping the first request after the restart hits a dead connection (the
        # bug this fixes), typed; nothing was written.
        with pytest.raises(StorageUnavailable):
            await unpinged.quota.show(USER, allowance=10, today=DAY)


async def test_postgresql_down_mid_write_the_write_lands_when_it_is_back(
    pg_url: str, pg_control: PgControl
) -> None:
    async with Database(pg_url, retry_seconds=60) as db:
        await submit(db, "j0")
        await db.jobs.start("j0", owner=OWNER, backend="http://gpu", attempts=1)
        await db.jobs.render("j0", owner=OWNER, images=[RenderedImage("ab" * 32, 7, 64, 64)])
        await asyncio.to_thread(pg_control.stop)
        writes = [
            asyncio.create_task(submit(db, "j1")),
            asyncio.create_task(db.jobs.deliver("j0", owner=OWNER)),
        ]
        read = asyncio.create_task(db.quota.show(USER, allowance=10, today=DAY))
        await asyncio.sleep(PG_DOWN_SECONDS)
        assert not any(task.done() for task in [*writes, read])  # still retrying
        await asyncio.to_thread(pg_control.start)
        reservation, delivered = await asyncio.wait_for(asyncio.gather(*writes), 60)
        assert delivered is True and reservation.job_id == "j1"
        assert (await asyncio.wait_for(read, 60)).available in (8, 9)
        assert await kinds(db, "j0") == ["reserve", "settle"]
        assert await kinds(db, "j1") == ["reserve"]
        shown = await db.quota.show(USER, allowance=10, today=DAY)
        assert (shown.available, shown.reserved) == (8, 1)


def stop_during_next_commit(db: Database, control: PgControl, restart_after: float) -> Any:
    """At the next COMMIT, stop the server before it is sent; start it again later."""
    fired: list[threading.Timer] = []

    def before_commit(conn: Connection) -> None:
        if fired:
            return
        control.stop()
        timer = threading.Timer(restart_after, control.start)
        fired.append(timer)
        timer.start()

    event.listen(db.engine.sync_engine, "commit", before_commit)
    return fired


async def test_a_lost_commit_is_repeated_only_for_idempotent_writes(
    pg_url: str, pg_control: PgControl
) -> None:
    async with Database(pg_url, retry_seconds=60) as db:
        await submit(db, "j0")
        await db.jobs.start("j0", owner=OWNER, backend="http://gpu", attempts=1)
        await db.jobs.render("j0", owner=OWNER, images=[RenderedImage("ab" * 32, 7, 64, 64)])
        # deliver is repeat-safe: run again once the server is back, it settles exactly once.
        timers = stop_during_next_commit(db, pg_control, restart_after=2.0)
        assert await db.jobs.deliver("j0", owner=OWNER) is True
        await asyncio.to_thread(timers[0].join)
        assert await kinds(db, "j0") == ["reserve", "settle"]
        job = await db.jobs.get("j0")
        assert job is not None and job.state == "delivered"

    async with Database(pg_url, retry_seconds=60) as db:
        # A bare result row has no key to recognise a landed attempt by: never repeated.
        timers = stop_during_next_commit(db, pg_control, restart_after=2.0)
        with pytest.raises(StorageUncertain):
            await db.results.add("j0", 5, "cd" * 32, 8, 64, 64)
        await asyncio.to_thread(timers[0].join)
        assert [r.image_index for r in await db.results.for_job("j0")] == [0]


async def test_the_settings_set_the_retry_bound_and_busy_timeout(sqlite_url: str) -> None:
    settings = Settings(
        _env_file=None, database_url=sqlite_url, db_retry_seconds=0, db_busy_timeout=0.2
    )
    async with Database(settings.database_url, **settings.database_options()) as db:
        await submit(db, "warm")
        holder = await asyncio.to_thread(hold_write_lock, sqlite_path(sqlite_url), HOLD_SECONDS)
        try:
            began = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await submit(db, "j1")  # DB_RETRY_SECONDS=0: one attempt, one busy timeout
            assert time.monotonic() - began < HOLD_SECONDS - 0.5
        finally:
            await asyncio.to_thread(holder.wait)
    with pytest.raises(ValidationError):
        Settings(_env_file=None, db_retry_seconds=-1)
