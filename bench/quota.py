"""reservations_per_s and overspend: quota reservations from 8 concurrent writers on one SQLite
file.

drawbridge: `storage.db.Database` (WAL, BEGIN IMMEDIATE) and `QuotaRepo.reserve`, the call every
submit makes, from 8 asyncio tasks sharing the bot's one Database as the bot's handlers do.
Throughput: 8 users with ample credits. Overspend: the same 8 writers race for one user's last
100 credits, 400 attempts in all; anything granted beyond 100 is overspend.

Baseline: how a bot without a ledger does it: read the balance, check it, write the new balance,
each statement on its own (autocommit) from 8 aiosqlite connections.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiosqlite

from storage.db import Database
from storage.vocab import InsufficientCredits

WRITERS = 8
PER_WRITER = 125  # throughput: 1000 reservations
TIGHT_BALANCE = 100  # overspend: 8 writers × 50 attempts at 100 credits
TIGHT_ATTEMPTS = 50
TODAY = "2026-01-01"


async def _ours(workdir: Path) -> dict[str, float]:
    async with Database(f"sqlite+aiosqlite:///{workdir}/quota.db") as db:
        await db.quota.reserve("warm", "warm", 1, allowance=10, today=TODAY)

        async def writer(w: int) -> None:
            for i in range(PER_WRITER):
                await db.quota.reserve(f"user{w}", f"j{w}-{i}", 1, allowance=10**9, today=TODAY)

        begin = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        rate = WRITERS * PER_WRITER / (time.perf_counter() - begin)

        granted = 0

        async def racer(w: int) -> None:
            nonlocal granted
            for i in range(TIGHT_ATTEMPTS):
                try:
                    await db.quota.reserve(
                        "tight", f"t{w}-{i}", 1, allowance=TIGHT_BALANCE, today=TODAY
                    )
                except InsufficientCredits:
                    continue
                granted += 1

        await asyncio.gather(*(racer(w) for w in range(WRITERS)))
        view = await db.quota.show("tight", allowance=TIGHT_BALANCE, today=TODAY)
        overspend = max(0, granted - TIGHT_BALANCE, -view.available)
    return {"reservations_per_s": rate, "overspend": overspend}


async def _naive(workdir: Path) -> dict[str, float]:
    path = workdir / "naive.db"
    async with aiosqlite.connect(path) as setup:
        await setup.execute("PRAGMA journal_mode = WAL")
        await setup.execute("CREATE TABLE credits (user TEXT PRIMARY KEY, balance INTEGER)")
        await setup.execute("CREATE TABLE spent (job TEXT, user TEXT, cost INTEGER)")
        await setup.executemany(
            "INSERT INTO credits VALUES (?, ?)",
            [*((f"user{w}", 10**9) for w in range(WRITERS)), ("tight", TIGHT_BALANCE)],
        )
        await setup.commit()
    conns = [await aiosqlite.connect(path, isolation_level=None, timeout=30) for _ in range(8)]
    try:

        async def reserve(conn: aiosqlite.Connection, user: str, job: str) -> bool:
            async with conn.execute("SELECT balance FROM credits WHERE user = ?", (user,)) as cur:
                row = await cur.fetchone()
            if row is None or row[0] < 1:
                return False
            await conn.execute("UPDATE credits SET balance = ? WHERE user = ?", (row[0] - 1, user))
            await conn.execute("INSERT INTO spent VALUES (?, ?, 1)", (job, user))
            return True

        async def writer(w: int) -> None:
            for i in range(PER_WRITER):
                await reserve(conns[w], f"user{w}", f"j{w}-{i}")

        begin = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        rate = WRITERS * PER_WRITER / (time.perf_counter() - begin)

        granted = 0

        async def racer(w: int) -> None:
            nonlocal granted
            for i in range(TIGHT_ATTEMPTS):
                ok = await reserve(conns[w], "tight", f"t{w}-{i}")
                granted += ok

        await asyncio.gather(*(racer(w) for w in range(WRITERS)))
    finally:
        for conn in conns:
            await conn.close()
    return {"reservations_per_s": rate, "overspend": max(0, granted - TIGHT_BALANCE)}


async def run() -> tuple[dict[str, float], dict[str, float]]:
    """(drawbridge figures, baseline figures)."""
    with tempfile.TemporaryDirectory(prefix="drawbridge-bench-quota-") as tmp:
        return await _ours(Path(tmp)), await _naive(Path(tmp))
