"""Ledger pruning: old rows of ended jobs folded into per-day sums, then the file compacted.

A row leaves the ledger only with its sums moved into `quota_ledger_days` in the same
transaction, so `allowance + today's daily + all bonus` over ledger plus aggregates still
equals every balance (storage/quota.py). A reservation's rows go only all together, once
the reservation is closed (settled or released), all of them are older than the cut-off and
the job is no longer queued, running or rendered: an open reservation is never touched.

Each batch is one short write transaction, so the bot keeps serving in between. The sums are
taken from what the DELETE ... RETURNING removed, so two processes pruning at once can never
count a row twice.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import defaultdict
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, select

from storage._sql import BuiltOnce, upsert_add
from storage.models import metadata, utcnow

if TYPE_CHECKING:
    from storage.db import Database

log = logging.getLogger(__name__)

LEDGER = metadata.tables["quota_ledger"]
DAYS = metadata.tables["quota_ledger_days"]
JOBS = metadata.tables["jobs"]

BATCH = 500  # ledger rows looked at per transaction (and keys per IN list)
VACUUM_PAGES = 2000  # SQLite pages given back per step (8 MiB at 4 KiB pages)
_RESERVATION = ("reserve", "settle", "release")
_CLOSING = ("settle", "release")
_LOOSE = ("grant", "reset")  # rows of no reservation: old is old enough
_NON_FINAL = ("queued", "running", "rendered")


_ADD = BuiltOnce(
    lambda dialect: upsert_add(
        dialect, DAYS, ["day", "user_key", "kind"], ["count", "daily", "bonus"]
    )
)


def _closed_jobs(conn: Connection, job_ids: list[str], before: datetime) -> set[str]:
    """Those of `job_ids` whose reservation is closed, wholly older than `before`, job ended."""
    rows = conn.execute(
        select(LEDGER.c.job_id, LEDGER.c.kind, LEDGER.c.created_at).where(
            LEDGER.c.job_id.in_(job_ids), LEDGER.c.kind.in_(_RESERVATION)
        )
    ).all()
    kinds: dict[str, set[str]] = defaultdict(set)
    young: set[str] = set()
    for row in rows:
        kinds[row.job_id].add(row.kind)
        if row.created_at >= before:
            young.add(row.job_id)
    running = conn.execute(
        select(JOBS.c.id).where(JOBS.c.id.in_(job_ids), JOBS.c.state.in_(_NON_FINAL))
    ).scalars()
    unended = young | set(running)
    return {
        job
        for job, seen in kinds.items()
        if job not in unended and "reserve" in seen and seen & set(_CLOSING)
    }


def prune_batch(
    conn: Connection, before: datetime, after: int, limit: int = BATCH
) -> tuple[int, int, bool]:
    """Fold and delete the prunable rows among the `limit` after ledger id `after`.

    Returns (rows deleted, the id to go on after, whether the old part of the ledger is done).
    """
    rows = conn.execute(
        select(LEDGER.c.id, LEDGER.c.job_id, LEDGER.c.kind, LEDGER.c.created_at)
        .where(LEDGER.c.id > after)
        .order_by(LEDGER.c.id)
        .limit(limit)
    ).all()
    done = len(rows) < limit
    old = []
    for row in rows:
        if row.created_at >= before:  # ids grow with time: the rest is younger still
            done = True
            break
        old.append(row)
    if not old:
        return 0, after, True
    doomed = [row.id for row in old if row.kind in _LOOSE]
    jobs = sorted({row.job_id for row in old if row.kind in _RESERVATION and row.job_id})
    closed = _closed_jobs(conn, jobs, before) if jobs else set()
    deleted: list[Any] = []
    returning = (LEDGER.c.period, LEDGER.c.user_key, LEDGER.c.kind, LEDGER.c.daily, LEDGER.c.bonus)
    wheres: list[ColumnElement[bool]] = []
    if doomed:
        wheres.append(LEDGER.c.id.in_(doomed))
    if closed:
        wheres.append(LEDGER.c.job_id.in_(sorted(closed)) & LEDGER.c.kind.in_(_RESERVATION))
    for where in wheres:
        deleted += conn.execute(LEDGER.delete().where(where).returning(*returning)).all()
    sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for period, user_key, kind, daily, bonus in deleted:
        entry = sums[(period, user_key, kind)]
        entry[0] += 1
        entry[1] += int(daily)
        entry[2] += int(bonus)
    if sums:
        params = [
            {"day": day, "user_key": user, "kind": kind, "count": c, "daily": d, "bonus": b}
            for (day, user, kind), (c, d, b) in sums.items()
        ]
        conn.execute(_ADD[conn.dialect.name], params)
    return len(deleted), old[-1].id, done


async def prune_ledger(
    db: Database, keep_days: float, *, now: datetime | None = None, batch: int = BATCH
) -> int:
    """Fold ledger rows older than `keep_days` into per-day sums, batch by batch; 0 keeps all."""
    if keep_days <= 0:
        return 0
    before = (now or utcnow()) - timedelta(days=keep_days)
    after, total = 0, 0
    while True:
        # Repeat-safe after a lost COMMIT: rows that went are no longer there to count.
        write = partial(prune_batch, before=before, after=after, limit=batch)
        deleted, after, done = await db.write_tx(write, again=write)
        total += deleted
        if done:
            return total
        await asyncio.sleep(0)  # let waiting writes in between batches


def _vacuum_sqlite(path: str, busy_timeout: float, step: int) -> int:
    # A connection of its own, outside any transaction: SQLite gives pages back only there,
    # and executescript steps the PRAGMA to its end (execute would free one page).
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    freed = 0
    try:
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:  # INCREMENTAL
            while (free := int(conn.execute("PRAGMA freelist_count").fetchone()[0])) > 0:
                conn.executescript(f"PRAGMA incremental_vacuum({step});")
                left = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
                freed += free - left
                if left >= free:
                    break
        conn.executescript("PRAGMA optimize;")
    finally:
        conn.close()
    return freed


async def compact(db: Database, *, step: int = VACUUM_PAGES) -> int:
    """Give an SQLite file's free pages back to the disk and refresh its statistics.

    Returns the pages freed. PostgreSQL is left to its autovacuum, which already runs
    VACUUM ANALYZE on tables that changed (and needs no transaction of ours).
    """
    from storage.db import _sqlite_file

    path = _sqlite_file(db.url)
    if path is None or db.dialect != "sqlite":
        return 0
    return await asyncio.to_thread(_vacuum_sqlite, str(path), db.busy_timeout, step)


async def maintain(db: Database, keep_days: float) -> tuple[int, int]:
    """Prune the ledger, then compact the file; returns (rows pruned, pages freed)."""
    pruned = await prune_ledger(db, keep_days)
    freed = await compact(db)
    if pruned or freed:
        log.info(
            "ledger: folded %d rows older than %g days into daily sums; freed %d pages",
            pruned,
            keep_days,
            freed,
        )
    return pruned, freed
