"""Ledger pruning: old rows of ended jobs fold into per-day sums, balances stay exact."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, select, text

from devwebui import DevWebUI
from storage.db import Database, make_engine, upgrade
from storage.models import metadata, utcnow
from storage.prune import compact, prune_ledger
from tests.harness.engine import ALICE, eventually, running_engine, small
from tests.harness.memory import MemoryReplier

DAY1, DAY2 = "2025-03-01", "2025-03-02"
ANN, BEN = "telegram:1", "telegram:2"
USERS = (ANN, BEN)
DAYS = metadata.tables["quota_ledger_days"]


async def fill(db: Database, prefix: str, today: str) -> None:
    """Per user: settled, released, a grant, and one reservation still open."""
    for user in USERS:
        await db.quota.grant(user, 5, allowance=10, today=today, reference=f"{prefix}g{user}")
        for n in range(4):
            job = f"{prefix}{user}{n}"
            await db.quota.reserve(user, job, 2 + n, allowance=10, today=today)
            if n % 2:
                await db.quota.release(job, today=today)
            else:
                await db.quota.settle(job)
        await db.quota.reserve(user, f"{prefix}{user}open", 1, allowance=10, today=today)


async def balances(db: Database, today: str) -> dict[str, tuple[int, int, int]]:
    """What `quota show` reports, and what the ledger (with its sums) accounts for."""
    found = {}
    for user in USERS:
        shown = await db.quota.show(user, allowance=10, today=today)
        ledger = await db.quota.ledger_balance(user, allowance=10, today=today)
        found[user] = (shown.available, shown.reserved, ledger)
    return found


async def folded(db: Database) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    def read(conn: Connection) -> dict[tuple[str, str, str], tuple[int, int, int]]:
        columns = ("day", "user_key", "kind", "count", "daily", "bonus")
        rows = conn.execute(select(*(DAYS.c[name] for name in columns))).all()
        return {(r[0], r[1], r[2]): (int(r[3]), int(r[4]), int(r[5])) for r in rows}

    return await db.read_tx(read)


@pytest.mark.parametrize("batch", [500, 3])
async def test_old_rows_fold_and_balances_stay_exact(db: Database, batch: int) -> None:
    await fill(db, "a", DAY1)
    middle = utcnow()
    await asyncio.sleep(0.01)
    await fill(db, "b", DAY1)
    before = {day: await balances(db, day) for day in (DAY1, DAY2)}
    rows_before = len(await db.quota.entries())

    # 90 days after `middle`: the "a" rows are old, the "b" rows are not.
    later = middle + timedelta(days=90)
    pruned = await prune_ledger(db, 90, now=later, batch=batch)

    # Per user: 1 grant + 4 reserves + 4 closings of "a" went; the open reservation stayed.
    assert pruned == 2 * 9
    assert len(await db.quota.entries()) == rows_before - pruned
    for user in USERS:
        assert [e.kind for e in await db.quota.entries(job_id=f"a{user}open")] == ["reserve"]
        assert await db.quota.entries(job_id=f"a{user}0") == []
        assert len(await db.quota.entries(job_id=f"b{user}0")) == 2  # young: kept
    for day in (DAY1, DAY2):
        now = await balances(db, day)
        assert now == before[day]
        assert all(available == ledger for available, _, ledger in now.values())
    sums = await folded(db)
    # reserves 2+3+4+5 = 14 from the daily bucket (allowance 10, then bonus), releases 3+5
    assert sums[(DAY1, ANN, "reserve")][0] == 4
    assert sums[(DAY1, ANN, "settle")] == (2, 0, 0)
    assert sums[(DAY1, ANN, "release")][0] == 2
    assert sums[(DAY1, ANN, "grant")] == (1, 0, 5)
    reserve, release = sums[(DAY1, ANN, "reserve")], sums[(DAY1, ANN, "release")]
    assert reserve[1] + reserve[2] == -14 and release[1] + release[2] == 8

    # Again: nothing more is old enough; nothing is counted twice.
    assert await prune_ledger(db, 90, now=later, batch=batch) == 0
    assert await folded(db) == sums
    # The open reservation still closes, and the balance still adds up.
    assert await db.quota.release(f"a{ANN}open", today=DAY1) == 1
    shown = await db.quota.show(ANN, allowance=10, today=DAY1)
    assert shown.reserved == 1  # b's open one
    assert await db.quota.ledger_balance(ANN, allowance=10, today=DAY1) == shown.available


async def test_a_reservation_goes_only_whole_and_only_when_its_job_ended(db: Database) -> None:
    for n in range(3):
        await db.submit_job(
            id=f"j{n}",
            user_key=ANN,
            platform="telegram",
            prompt="a fox",
            params={},
            cost=2,
            allowance=10,
            today=DAY1,
        )
    await db.jobs.cancel("j0", owner=None, today=DAY1)  # ended: released
    later = utcnow() + timedelta(days=1)
    await db.jobs.cancel("j1", owner=None, today=DAY1)  # ended, but its release is young
    # j2 stays queued: its reservation is open
    assert await prune_ledger(db, 1, now=later + timedelta(seconds=1)) == 4
    assert await db.quota.entries(job_id="j0") == []
    assert await db.quota.entries(job_id="j1") == []
    assert [e.kind for e in await db.quota.entries(job_id="j2")] == ["reserve"]
    shown = await db.quota.show(ANN, allowance=10, today=DAY1)
    assert (shown.available, shown.reserved) == (8, 2)
    assert await db.quota.ledger_balance(ANN, allowance=10, today=DAY1) == 8


async def test_a_reservation_closed_after_the_cut_off_waits(db: Database) -> None:
    await db.quota.reserve(ANN, "x", 3, allowance=10, today=DAY1)
    cut = utcnow()
    await asyncio.sleep(0.01)
    await db.quota.settle("x")  # the settle is younger than the cut-off
    assert await prune_ledger(db, 1, now=cut + timedelta(days=1)) == 0
    assert [e.kind for e in await db.quota.entries(job_id="x")] == ["reserve", "settle"]


async def test_keep_days_zero_keeps_every_row(db: Database) -> None:
    await fill(db, "a", DAY1)
    rows = len(await db.quota.entries())
    assert await prune_ledger(db, 0, now=utcnow() + timedelta(days=3650)) == 0
    assert len(await db.quota.entries()) == rows


async def test_migration_down_and_up_on_a_filled_pruned_database(db_url: str) -> None:
    async with Database(db_url) as db:
        await fill(db, "a", DAY1)
        await prune_ledger(db, 1, now=utcnow() + timedelta(days=2))
        assert await folded(db)
        before = await balances(db, DAY1)
    await upgrade(db_url, "0003", down=True)
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
            assert "quota_ledger_days" not in tables
            for user in USERS:
                # the 0003 invariant, over the ledger alone
                ledger = (
                    await conn.execute(
                        text(
                            "SELECT COALESCE(SUM(CASE WHEN period = :d THEN daily ELSE 0 END), 0)"
                            " + COALESCE(SUM(bonus), 0) FROM quota_ledger WHERE user_key = :u"
                        ),
                        {"d": DAY1, "u": user},
                    )
                ).scalar_one()
                assert 10 + int(ledger) == before[user][0]
    finally:
        await engine.dispose()
    async with Database(db_url) as db:  # up to head again
        assert await balances(db, DAY1) == before
        assert await folded(db) == {}
        # the four folded-back rows per user (grant, reserve, settle, release sums) go again
        assert await prune_ledger(db, 1, now=utcnow() + timedelta(days=2)) == 2 * 4
        assert await balances(db, DAY1) == before


async def test_compact_gives_freed_pages_back_to_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "drawbridge.db"
    async with Database(f"sqlite+aiosqlite:///{path}") as db:
        for n in range(1500):
            await db.quota.reserve(ANN, f"job-{n:05d}-{'x' * 100}", 1, allowance=10**6, today=DAY1)
            await db.quota.settle(f"job-{n:05d}-{'x' * 100}")
        before = await balances(db, DAY1)
        await db.read_tx(lambda conn: conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)"))
        full = path.stat().st_size
        assert await prune_ledger(db, 1, now=utcnow() + timedelta(days=2)) == 3000
        freed = await compact(db)
        await db.read_tx(lambda conn: conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)"))
        assert freed > 0
        assert path.stat().st_size < full
        assert await balances(db, DAY1) == before


async def test_compact_leaves_postgresql_to_autovacuum(pg_url: str) -> None:
    async with Database(pg_url) as db:
        assert await compact(db) == 0


async def test_the_scheduled_job_folds_a_delivered_job(tmp_path: Path) -> None:
    from bot.scheduler import ledger

    async with (
        DevWebUI(delay=0.05) as webui,
        running_engine(tmp_path, [webui], ledger_keep_days=1 / 86400) as engine,
    ):
        replier = MemoryReplier()
        await engine.submit(ALICE, small(), replier)
        await replier.wait(lambda r: r.results)
        view = await eventually(lambda: engine.quotas.view(ALICE.key), lambda v: v.reserved == 0)
        await asyncio.sleep(1.1)  # older than LEDGER_KEEP_DAYS (one second)
        pruned, _freed = await ledger(engine)
        assert pruned == 2  # its reserve and its settle
        assert await engine.db.quota.entries(user_key=ALICE.key) == []
        assert await engine.quotas.view(ALICE.key) == view
