"""The submit transaction (user + reservation + job in one), the SQLite one-hop writer, and
the user-settings cache."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, select, update
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.models import metadata
from storage.users import UserRepo
from storage.vocab import InsufficientCredits as QuotaExceeded

DAY = "2025-03-01"
USER = "telegram:42"


async def submit(db: Database, job_id: str, cost: int, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "id": job_id,
        "user_key": USER,
        "platform": "telegram",
        "display_name": "Ann",
        "locale": "en",
        "chat_id": "chat-1",
        "prompt": "a fox",
        "params": {"steps": 20},
        "cost": cost,
        "reply_ref": {"message": 7},
        "allowance": 10,
        "today": DAY,
        "reset": "00:00 UTC",
    }
    return await db.submit_job(**{**values, **overrides})


async def count(db: Database, table: str) -> int:
    async with db.read() as conn:
        stmt = select(func.count()).select_from(metadata.tables[table])
        return int((await conn.execute(stmt)).scalar_one())


# --- the submit transaction ----------------------------------------------------------------


async def test_submit_stores_user_reservation_and_job_together(db: Database) -> None:
    reservation = await submit(db, "j1", 4)
    assert (reservation.job_id, reservation.cost, reservation.daily, reservation.bonus) == (
        "j1",
        4,
        4,
        0,
    )
    assert reservation.balance_after == 6
    job = await db.jobs.get("j1")
    assert job is not None
    assert (job.user_key, job.platform, job.chat_id, job.state, job.mode) == (
        USER,
        "telegram",
        "chat-1",
        "queued",
        "txt2img",
    )
    assert (job.prompt, job.params, job.cost, job.reply_ref) == (
        "a fox",
        '{"steps": 20}',
        4,
        '{"message": 7}',
    )
    assert (job.attempts, job.result_refs, job.started_at, job.finished_at) == (0, "[]", None, None)
    assert job.created_at.tzinfo is not None
    ledger = [(e.kind, e.daily, e.bonus, e.period) for e in await db.quota.entries(job_id="j1")]
    assert ledger == [("reserve", -4, 0, DAY)]
    user = await db.users.get(USER)
    assert user is not None and (user.platform, user.display_name) == ("telegram", "Ann")
    shown = await db.quota.show(USER, allowance=10, today=DAY)
    assert (shown.available, shown.reserved) == (6, 4)
    # The job settles like any other reservation.
    assert await db.quota.settle("j1") is True
    assert await db.quota.ledger_balance(USER, allowance=10, today=DAY) == 6


async def test_submit_refreshes_the_user_and_keeps_created_at(db: Database) -> None:
    first = await db.users.upsert(USER, "telegram", "Ann", "en")
    await submit(db, "j1", 1, display_name="Ann B.", locale="zh")
    user = await db.users.get(USER)
    assert user is not None
    assert (user.display_name, user.locale, user.created_at) == ("Ann B.", "zh", first.created_at)


async def test_submit_short_of_credits_writes_nothing(db: Database) -> None:
    before = await db.users.upsert(USER, "telegram", "Ann", "en")
    await submit(db, "j1", 8)
    with pytest.raises(QuotaExceeded) as caught:
        await submit(db, "j2", 3, display_name="Renamed", locale="zh")
    assert caught.value.params == {"cost": 3, "balance": 2, "reset": "00:00 UTC"}
    assert await db.jobs.get("j2") is None
    assert await db.quota.entries(job_id="j2") == []
    assert await db.users.get(USER) == before  # the upsert was rolled back too
    assert (await count(db, "jobs"), await count(db, "quota_ledger")) == (1, 1)
    assert (await db.quota.show(USER, allowance=10, today=DAY)).available == 2


async def test_submit_refused_for_a_new_user_creates_no_user_or_account(db: Database) -> None:
    with pytest.raises(QuotaExceeded) as caught:
        await submit(db, "big", 11)
    assert caught.value.params["balance"] == 10
    assert await db.users.get(USER) is None
    assert await db.jobs.get("big") is None
    assert (await count(db, "quota_accounts"), await count(db, "quota_ledger")) == (0, 0)


async def test_submit_with_a_taken_job_id_rolls_the_reservation_back(db: Database) -> None:
    await db.jobs.create(
        id="dup", user_key="other:1", platform="cli", prompt="x", params={}, cost=0
    )
    with pytest.raises(IntegrityError):
        await submit(db, "dup", 2)
    assert await db.quota.entries(job_id="dup") == []
    assert (await db.quota.show(USER, allowance=10, today=DAY)).available == 10
    assert await db.users.get(USER) is None
    # The same id twice through submit: the second is refused before anything is written.
    await submit(db, "j1", 2)
    with pytest.raises(ValueError, match="already has a reservation"):
        await submit(db, "j1", 2)
    assert (await db.quota.show(USER, allowance=10, today=DAY)).available == 8


async def test_concurrent_submits_from_several_instances(db_url: str) -> None:
    databases = [Database(db_url) for _ in range(4)]
    await asyncio.gather(*(d.start() for d in databases))
    try:
        results = await asyncio.gather(
            *(
                submit(d, f"job-{n}-{i}", 1, allowance=50)
                for n, d in enumerate(databases)
                for i in range(50)
            ),
            return_exceptions=True,
        )
        ok = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, QuotaExceeded)]
        assert (len(ok), len(refused)) == (50, 150)
        assert sorted(r.balance_after for r in ok) == list(range(50))
        first = databases[0]
        assert await count(first, "jobs") == 50
        assert await count(first, "quota_ledger") == 50
        shown = await first.quota.show(USER, allowance=50, today=DAY)
        assert (shown.available, shown.reserved) == (0, 50)
        assert await first.quota.ledger_balance(USER, allowance=50, today=DAY) == 0
    finally:
        await asyncio.gather(*(d.close() for d in databases))


# --- the SQLite writer ---------------------------------------------------------------------


async def test_sqlite_files_write_in_the_writer_thread(db: Database) -> None:
    # One sync function per write, for both databases; only where it runs differs.
    where = await db.write_tx(lambda conn: (conn.dialect.name, threading.current_thread().name))
    if db.dialect == "sqlite":
        assert where == ("sqlite", "drawbridge-sqlite")
    else:
        assert where[0] == "postgresql" and where[1] != "drawbridge-sqlite"


async def test_writer_uses_the_same_sqlite_settings(sqlite_url: str) -> None:
    async with Database(sqlite_url) as db:

        def pragmas(conn: Connection) -> dict[str, Any]:
            names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            return {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in names}

        assert await db.write_tx(pragmas) == {
            "journal_mode": "wal",
            "synchronous": 1,
            "foreign_keys": 1,
            "busy_timeout": 30000,
        }


async def test_writes_roll_back_on_error(db: Database) -> None:
    await db.quota.grant(USER, 5, allowance=10, today=DAY)

    def half_then_fail(conn: Connection) -> None:
        conn.exec_driver_sql("UPDATE quota_accounts SET bonus = bonus + 100")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await db.write_tx(half_then_fail)
    assert (await db.quota.show(USER, allowance=10, today=DAY)).bonus == 5
    # A check constraint failing inside a write surfaces as SQLAlchemy's error.
    with pytest.raises(IntegrityError):
        await db.write_tx(lambda conn: conn.exec_driver_sql("UPDATE quota_accounts SET bonus = -1"))
    assert (await db.quota.show(USER, allowance=10, today=DAY)).bonus == 5


async def test_cancelled_writes_leave_the_writer_usable(sqlite_url: str) -> None:
    async with Database(sqlite_url) as db:
        tasks = [
            asyncio.create_task(db.quota.reserve(USER, f"j{i}", 1, allowance=100, today=DAY))
            for i in range(40)
        ]
        await asyncio.sleep(0.005)
        for task in tasks[::2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Whatever committed is consistent, and later writes work.
        await db.quota.reserve(USER, "after", 1, allowance=100, today=DAY)
        shown = await db.quota.show(USER, allowance=100, today=DAY)
        reserves = [e for e in await db.quota.entries(user_key=USER) if e.kind == "reserve"]
        assert shown.available == 100 - len(reserves)
        assert await db.quota.ledger_balance(USER, allowance=100, today=DAY) == shown.available


async def test_concurrent_writes_succeed_or_fail_each_on_its_own(db: Database) -> None:
    # On SQLite, writes queued together run as one group commit, each in a savepoint.
    await db.quota.grant(USER, 5, allowance=10, today=DAY)

    def half_then_fail(conn: Connection) -> None:
        conn.exec_driver_sql("UPDATE quota_accounts SET bonus = bonus + 100")
        raise RuntimeError("boom")

    outcomes = await asyncio.gather(
        *(
            db.write_tx(half_then_fail)
            if i % 3 == 0
            else db.quota.grant(USER, 1, allowance=10, today=DAY, reference=f"g{i}")
            for i in range(30)
        ),
        *(submit(db, "dup", 0) for _ in range(3)),
        return_exceptions=True,
    )
    failed = [o for o in outcomes[:30] if isinstance(o, RuntimeError)]
    assert len(failed) == 10
    dup = outcomes[30:]
    assert sum(not isinstance(o, BaseException) for o in dup) == 1
    assert sum(isinstance(o, ValueError) for o in dup) == 2
    shown = await db.quota.show(USER, allowance=10, today=DAY)
    assert shown.bonus == 5 + 20  # the 20 grants, none of the failed +100s
    assert await db.quota.ledger_balance(USER, allowance=10, today=DAY) == shown.available


async def test_a_write_cancelled_once_begun_still_commits(db: Database) -> None:
    # The CLI's settle at exit, or a handler cancelled mid-write: a transaction that has
    # begun ends committed, and only then does the cancellation reach the caller.
    await submit(db, "j1", 2)
    loop = asyncio.get_running_loop()
    settling: list[asyncio.Task[bool]] = []
    delivered = threading.Event()

    def cancel_caller(conn: Any) -> None:
        # Runs inside the write (the writer thread on SQLite, the event loop on PostgreSQL).
        loop.call_soon_threadsafe(lambda: (settling[0].cancel(), delivered.set()))
        if threading.current_thread() is not threading.main_thread():
            delivered.wait(10)

    event.listen(Engine, "commit", cancel_caller)
    try:
        settling.append(asyncio.create_task(db.quota.settle("j1")))
        with pytest.raises(asyncio.CancelledError):
            await settling[0]
    finally:
        event.remove(Engine, "commit", cancel_caller)
    assert [e.kind for e in await db.quota.entries(job_id="j1")] == ["reserve", "settle"]


async def test_engine_and_writer_writes_interleave(db: Database) -> None:
    # Writes through SQLAlchemy (set_state, jobs.create) and the writer share one lock.
    await asyncio.gather(
        *(submit(db, f"s{i}", 0) for i in range(20)),
        *(
            db.jobs.create(
                id=f"c{i}", user_key="cli:1", platform="cli", prompt="", params={}, cost=0
            )
            for i in range(20)
        ),
        *(db.quota.grant(USER, 1, allowance=10, today=DAY) for _ in range(20)),
    )
    assert await count(db, "jobs") == 40
    assert (await db.quota.show(USER, allowance=10, today=DAY)).available == 30


# --- the settings cache --------------------------------------------------------------------


async def _set_width_behind_the_cache(db: Database, width: int) -> None:
    settings = metadata.tables["user_settings"]
    async with db.write() as conn:
        await conn.execute(update(settings).where(settings.c.user_key == USER).values(width=width))


async def test_settings_are_cached_and_save_updates_the_cache(db: Database) -> None:
    assert await db.users.get_settings(USER) is None
    saved = await db.users.save_settings(USER, width=768, preset="anime")
    assert await db.users.get_settings(USER) == saved
    await _set_width_behind_the_cache(db, 1)
    cached = await db.users.get_settings(USER)
    assert cached is not None and cached.width == 768  # served from the cache
    cached.width = 5  # the caller's copy, not the cache's
    again = await db.users.get_settings(USER)
    assert again is not None and again.width == 768
    # save_settings replaces the cached row with what is stored now (width 1, steps 30).
    saved = await db.users.save_settings(USER, steps=30)
    assert (saved.width, saved.steps, saved.preset) == (1, 30, "anime")
    assert await db.users.get_settings(USER) == saved


async def test_a_cached_miss_is_replaced_by_the_first_save(db: Database) -> None:
    assert await db.users.get_settings(USER) is None
    assert await db.users.get_settings(USER) is None  # cached miss
    saved = await db.users.save_settings(USER, negative="blurry")
    got = await db.users.get_settings(USER)
    assert got == saved and got is not None and got.negative == "blurry"


async def test_a_read_overlapping_a_save_is_not_cached(db: Database) -> None:
    await db.users.save_settings(USER, width=512)
    db.users._settings.clear()  # as after eviction
    results = await asyncio.gather(
        db.users.get_settings(USER), db.users.save_settings(USER, width=640)
    )
    assert results[1].width == 640
    got = await db.users.get_settings(USER)
    assert got is not None and got.width == 640


async def test_refused_save_keeps_the_cached_row(db: Database) -> None:
    await db.users.save_settings(USER, width=512)
    await _set_width_behind_the_cache(db, 1)
    with pytest.raises(TypeError):
        await db.users.save_settings(USER, cfg=7)  # refused before anything is written
    got = await db.users.get_settings(USER)
    assert got is not None and got.width == 512


async def test_settings_cache_is_bounded(db: Database) -> None:
    users = UserRepo(db, cache_size=3)
    for i in range(10):
        await users.save_settings(f"t:{i}", steps=i)
        await users.get_settings(f"t:{i}")
    assert list(users._settings) == ["t:7", "t:8", "t:9"]
    # An evicted user is read from the database again.
    got = await users.get_settings("t:0")
    assert got is not None and got.steps == 0
    assert len(users._settings) == 3


async def test_commands_arriving_together_read_a_users_settings_once(db: Database) -> None:
    """A burst of /draw from one user who is not cached yet: one SELECT, not one per command
    (they queued behind each other on the reading connection)."""
    await db.users.save_settings(USER, width=768)
    db.users._settings.clear()  # as after eviction or a restart
    selects: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "user_settings" in statement:
            selects.append(statement)

    # on an SQLite file the read runs on the loop's own connection, past SQLAlchemy
    await db.users.get_settings("someone else")  # opens it
    reader = db._sqlite._reader if db._sqlite is not None else None
    if reader is not None:
        reader.set_trace_callback(lambda statement: seen(None, None, statement))
    event.listen(Engine, "before_cursor_execute", seen)
    try:
        got = await asyncio.gather(*(db.users.get_settings(USER) for _ in range(5)))
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
        if reader is not None:
            reader.set_trace_callback(None)
    assert [g.width for g in got if g is not None] == [768] * 5
    assert len(selects) == 1
    got[0].width = 5  # each caller has its own copy
    assert got[1].width == 768


async def test_a_read_after_a_save_does_not_join_a_read_from_before_it(db: Database) -> None:
    await db.users.save_settings(USER, width=512)
    db.users._settings.clear()
    early = asyncio.ensure_future(db.users.get_settings(USER))  # reads before the save lands
    await asyncio.sleep(0)
    await db.users.save_settings(USER, width=640)
    late = await db.users.get_settings(USER)
    assert late is not None and late.width == 640
    assert (await early) is not None
