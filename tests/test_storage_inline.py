"""Raw-capable writes and reads on an SQLite file (storage/_sqlite.py): on the event loop's own
thread with no hop when the connection is free, at the end of the writer thread's batch when it
is not, in the thread when another process holds the lock (the loop never waits for it), and
the same rows, errors and rollbacks as through SQLAlchemy."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, select, text, update
from sqlalchemy.exc import IntegrityError

from storage._sqlite import RawConnection
from storage.db import Database
from storage.models import metadata
from storage.vocab import DuplicateJob, InsufficientCredits

DAY = "2025-03-01"
JOBS = metadata.tables["jobs"]
ACCOUNTS = metadata.tables["quota_accounts"]
_BONUS = select(ACCOUNTS.c.bonus).where(ACCOUNTS.c.user_key == bindparam("b_user"))
_ADD = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.user_key == bindparam("b_user"))
    .values(bonus=ACCOUNTS.c.bonus + bindparam("b_add"))
)


async def submit(db: Database, job_id: str, *, user: str = "telegram:1", **extra: Any) -> Any:
    values: dict[str, Any] = {
        "id": job_id,
        "user_key": user,
        "platform": "telegram",
        "display_name": "Ann",
        "prompt": "a fox",
        "params": {"steps": 20},
        "cost": 2,
        "allowance": 10,
        "today": DAY,
        "owner": "me",
    }
    return await db.submit_job(**{**values, **extra})


@pytest.fixture
async def sdb(tmp_path: Path) -> Any:
    async with Database(f"sqlite+aiosqlite:///{tmp_path}/inline.db") as db:
        yield db


async def thread_busy(db: Database, seconds: float) -> asyncio.Task[None]:
    """A write holding the writer thread for `seconds`, once it has begun."""
    started = threading.Event()

    def slow(conn: Connection) -> None:
        started.set()
        time.sleep(seconds)

    busy = asyncio.create_task(db.write_tx(slow))
    await asyncio.to_thread(started.wait, 5)
    return busy


def where(conn: Any) -> tuple[str, str]:
    return type(conn).__name__, threading.current_thread().name


async def test_a_raw_capable_write_runs_on_the_loop_without_a_hop(sdb: Database) -> None:
    assert await sdb.write_tx(where, inline=True) == ("RawConnection", "MainThread")
    # the others still go to the writer thread, on SQLAlchemy's connection
    assert await sdb.write_tx(where) == ("Connection", "drawbridge-sqlite")


async def test_a_write_on_the_loop_sets_no_pragma_and_the_thread_its_own(sdb: Database) -> None:
    """Between the thread's batches the writer's connection is at rest (busy_timeout and
    wal_autocheckpoint 0): a write on the loop runs its statements and nothing else; the
    thread raises both to the configured values for its batch and lowers them after."""
    writer = sdb._sqlite
    assert writer is not None
    await sdb.write_tx(where)  # a batch of the thread first
    raw = writer._conn.connection.dbapi_connection  # type: ignore[union-attr]
    seen: list[tuple[str, str]] = []
    raw.set_trace_callback(lambda sql: seen.append((threading.current_thread().name, sql)))
    try:
        await submit(sdb, "quiet")
        on_loop = [sql for thread, sql in seen if thread == "MainThread"]
        assert on_loop and not [sql for sql in on_loop if "PRAGMA" in sql]
        seen.clear()

        def settings(conn: Connection) -> tuple[int, int]:
            one = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
            two = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
            return int(one), int(two)

        busy, checkpoint = await sdb.write_tx(settings)
        assert busy > 0 and checkpoint > 0  # as configured, inside the thread's batch
        assert [sql for _, sql in seen if sql.endswith("= 0")] == [
            "PRAGMA busy_timeout = 0",
            "PRAGMA wal_autocheckpoint = 0",
        ]  # … and at rest again after it
    finally:
        raw.set_trace_callback(None)


async def test_the_submit_inline_writes_what_the_thread_would(sdb: Database) -> None:
    await submit(sdb, "inline")
    job = await sdb.jobs.get("inline")
    assert job is not None and job.state == "queued" and job.owner == "me"
    assert job.created_at.tzinfo is not None and json.loads(job.params) == {"steps": 20}
    shown = await sdb.quota.show("telegram:1", allowance=10, today=DAY)
    assert shown.available == 8
    assert [e.kind for e in await sdb.quota.entries(job_id="inline")] == ["reserve"]
    user = await sdb.users.get("telegram:1")
    assert user is not None and user.display_name == "Ann"


async def test_refusals_inline_write_nothing_and_say_what_the_thread_would(sdb: Database) -> None:
    with pytest.raises(InsufficientCredits):
        await submit(sdb, "big", cost=50)
    assert await sdb.jobs.get("big") is None
    assert await sdb.users.get("telegram:1") is None
    await submit(sdb, "a", source="cmd-1")
    with pytest.raises(DuplicateJob):
        await submit(sdb, "b", source="cmd-1")  # same command: SQLite refuses, the thread says
    with pytest.raises(ValueError, match="already"):
        await submit(sdb, "a")
    shown = await sdb.quota.show("telegram:1", allowance=10, today=DAY)
    assert shown.available == 8  # only the one job was charged
    assert await sdb.quota.ledger_balance("telegram:1", allowance=10, today=DAY) == 8


async def test_the_loop_never_waits_for_another_processs_lock(sdb: Database) -> None:
    other = sqlite3.connect(sdb.url.split("///", 1)[1], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing for a while
    stalls: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            stalls.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        write = asyncio.create_task(sdb.write_tx(where, inline=True))
        await asyncio.sleep(0.5)
        assert not write.done()  # waiting, in the thread, for the lock
        other.execute("COMMIT")
        assert await asyncio.wait_for(write, 10) == ("RawConnection", "drawbridge-sqlite")
    finally:
        stop.set()
        await ticker
        other.close()
    assert max(stalls) < 0.25  # the loop went on meanwhile


async def test_while_the_thread_is_busy_the_write_waits_for_the_end_of_its_batch(
    sdb: Database,
) -> None:
    await sdb.quota.grant("telegram:1", 1, allowance=10, today=DAY)

    def add(conn: Any) -> Any:
        conn.execute(_ADD, {"b_user": "telegram:1", "b_add": 1})
        return where(conn), conn.execute(_BONUS, {"b_user": "telegram:1"}).scalar()

    busy = await thread_busy(sdb, 0.3)
    began = time.monotonic()
    ran = await asyncio.gather(*(sdb.write_tx(add, inline=True) for _ in range(5)))
    await busy
    assert time.monotonic() - began >= 0.15  # after the batch …
    assert [w for w, _ in ran] == [("RawConnection", "MainThread")] * 5  # … on the loop
    assert sorted(bonus for _, bonus in ran) == [2, 3, 4, 5, 6]


async def test_a_waiting_write_cancelled_before_its_turn_never_runs(sdb: Database) -> None:
    await sdb.quota.grant("telegram:1", 1, allowance=10, today=DAY)

    def add(conn: Any) -> None:
        conn.execute(_ADD, {"b_user": "telegram:1", "b_add": 100})

    busy = await thread_busy(sdb, 0.3)
    waiting = asyncio.create_task(sdb.write_tx(add, inline=True))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await busy
    assert (await sdb.quota.show("telegram:1", allowance=10, today=DAY)).bonus == 1


async def test_one_failing_write_of_a_turn_fails_alone(sdb: Database) -> None:
    await sdb.quota.grant("telegram:1", 1, allowance=10, today=DAY)

    def add(conn: Any) -> None:
        conn.execute(_ADD, {"b_user": "telegram:1", "b_add": 1})

    def add_then_fail(conn: Any) -> None:
        conn.execute(_ADD, {"b_user": "telegram:1", "b_add": 100})
        raise RuntimeError("boom")

    def negative(conn: Any) -> None:  # the CHECK constraint refuses it: SQLAlchemy's error
        conn.execute(_ADD, {"b_user": "telegram:1", "b_add": -1000})

    busy = await thread_busy(sdb, 0.3)
    outcomes = await asyncio.gather(
        sdb.write_tx(add, inline=True),
        sdb.write_tx(add_then_fail, inline=True),
        sdb.write_tx(negative, inline=True),
        sdb.write_tx(add, inline=True),
        return_exceptions=True,
    )
    await busy
    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], RuntimeError)
    assert isinstance(outcomes[2], IntegrityError)
    assert (await sdb.quota.show("telegram:1", allowance=10, today=DAY)).bonus == 3


async def test_raw_statements_are_core_statements_without_in_lists(sdb: Database) -> None:
    with pytest.raises(TypeError, match="Core"):
        await sdb.write_tx(lambda conn: conn.execute(text("SELECT 1")), inline=True)
    in_list = select(JOBS.c.id).where(JOBS.c.state.in_(["queued", "running"]))
    with pytest.raises(TypeError, match="IN"):
        await sdb.write_tx(lambda conn: conn.execute(in_list).first(), inline=True)
    # nothing was left open: the next write runs on the loop again
    assert await sdb.write_tx(where, inline=True) == ("RawConnection", "MainThread")


async def test_inline_reads_give_what_sqlalchemy_gives(sdb: Database) -> None:
    await sdb.users.save_settings("telegram:1", width=640, loras='["detail"]')
    sdb.users._settings.clear()  # not from the cache
    raw = await sdb.read_tx(_settings, inline=True)
    through = await sdb.read_tx(_settings)
    assert raw == through
    assert isinstance(raw["updated_at"], datetime) and raw["updated_at"].tzinfo is not None
    assert (await sdb.users.get_settings("telegram:1")) is not None


def _settings(conn: Any) -> dict[str, Any]:
    settings = metadata.tables["user_settings"]
    stmt = select(settings).where(settings.c.user_key == bindparam("b_key"))
    global _STMT
    _STMT = _STMT if _STMT is not None else stmt  # one statement object: compiled once
    row = conn.execute(_STMT, {"b_key": "telegram:1"}).first()
    assert row is not None
    return dict(row._asdict())


_STMT: Any = None


def test_a_raw_connection_is_what_raw_capable_code_may_use() -> None:
    # the subset of SQLAlchemy's Connection a raw-capable transaction gets
    assert {name for name in dir(RawConnection) if not name.startswith("_")} == {
        "dialect",
        "execute",
    }


async def test_many_writes_in_a_row_still_let_the_loop_run(sdb: Database) -> None:
    # a write on the loop does not yield by itself: after a slice of them one does
    await sdb.quota.grant("telegram:1", 1, allowance=10, today=DAY)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    def add(conn: Any) -> None:
        conn.execute(_ADD, {"b_user": "telegram:1", "b_add": 1})

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    began = ticks
    for _ in range(300):
        await sdb.write_tx(add, inline=True)
    ticker.cancel()
    assert ticks - began >= 5  # the loop ran other tasks in between
    assert (await sdb.quota.show("telegram:1", allowance=10, today=DAY)).bonus == 301


async def test_a_returning_users_submit_skips_the_user_upsert(sdb: Database) -> None:
    """The user row is written on a user's first submit and when their name or language
    changes, not on every /draw; a refused first submit leaves no row and is not remembered."""
    with pytest.raises(InsufficientCredits):
        await submit(sdb, "too-big", cost=50)
    assert await sdb.users.get("telegram:1") is None
    writer = sdb._sqlite
    assert writer is not None
    await sdb.write_tx(where)  # the thread's batch leaves the connection at rest
    raw = writer._conn.connection.dbapi_connection  # type: ignore[union-attr]
    seen: list[str] = []
    raw.set_trace_callback(seen.append)
    try:
        for n, (name, locale) in enumerate([("Ann", "en"), ("Ann", "en"), ("Anna", "en")]):
            seen.clear()
            await submit(sdb, f"j{n}", display_name=name, locale=locale)
            upserts = [sql for sql in seen if sql.startswith("INSERT INTO users")]
            assert len(upserts) == (0 if n == 1 else 1), (n, seen)
        seen.clear()
        await submit(sdb, "j3", display_name="Anna", locale="zh")
        assert [sql for sql in seen if sql.startswith("INSERT INTO users")]
    finally:
        raw.set_trace_callback(None)
    user = await sdb.users.get("telegram:1")
    assert user is not None and (user.display_name, user.locale) == ("Anna", "zh")
    assert [e.kind for e in await sdb.quota.entries(job_id="j1")] == ["reserve"]
