"""Credits: reserve before queueing, settle on success, release on failure or cancel.

Ledger sign convention: `daily` and `bonus` on a ledger row are signed changes to the user's
balance in that bucket. A reserve is negative (credits taken), a release positive (credits
given back), a grant adds positive `bonus`, a settle moves nothing (both 0). `period` is the
quota day whose daily bucket the row moved. Each quota day's daily bucket starts at the
allowance without a ledger row (resets are lazy), so for the account's current day

    allowance + sum(daily of rows with period == today) + sum(bonus of all rows)
        == daily_left + bonus

A 'reset' row, written by the scheduled `reset_all`, closes an old day: its `daily` is minus
the credits that day left unused and its `period` is that old day, so today's sum is untouched.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Row, case, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import _sqlite as lite
from storage._sql import insert_ignore, upsert
from storage.models import QuotaLedger, metadata, utcnow
from storage.vocab import InsufficientCredits

if TYPE_CHECKING:
    from storage._conn import Connections

ACCOUNTS = metadata.tables["quota_accounts"]
LEDGER = metadata.tables["quota_ledger"]
USERS = metadata.tables["users"]
JOBS = metadata.tables["jobs"]

# Rows that end a reservation; a reservation has at most one of them.
_CLOSING = ("settle", "release")
_CHUNK = 500  # keys per IN (...) list, well under every bound-parameter limit


@dataclass(frozen=True)
class Reservation:
    """Credits held for one job; `daily` + `bonus` == `cost`, both counted as positive."""

    job_id: str
    cost: int
    daily: int
    bonus: int
    balance_after: int


@dataclass(frozen=True)
class QuotaView:
    """A user's balance for the quota day asked about."""

    user_key: str
    available: int
    daily_left: int
    bonus: int
    allowance: int
    reserved: int


def _effective_daily(today: str, allowance: int) -> ColumnElement[int]:
    # The lazy daily reset: a row still on an older day has a full bucket today.
    return case((ACCOUNTS.c.period == today, ACCOUNTS.c.daily_left), else_=allowance)


def _sqlite_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: lite.ts(v) if isinstance(v, datetime) else v for k, v in values.items()}


# --- SQLite: each function is one whole transaction, run in the writer thread -------------
# They mirror the SQLAlchemy path of the QuotaRepo methods below statement for statement;
# every quota test runs against both (SQLite files here, PostgreSQL through SQLAlchemy).


def _reserve_sqlite(
    conn: sqlite3.Connection,
    user_key: str,
    job_id: str,
    cost: int,
    allowance: int,
    today: str,
    reset: str,
    user: Mapping[str, Any] | None = None,
    job: Mapping[str, Any] | None = None,
) -> Reservation:
    now = lite.ts(utcnow())
    if user is not None:
        conn.execute(lite.UPSERT_USER, _sqlite_values(user))
    account = {"user_key": user_key, "allowance": allowance, "today": today, "now": now}
    conn.execute(lite.ENSURE_ACCOUNT, account)
    if lite.one(conn, lite.HAS_RESERVE, (job_id,)) is not None:
        raise ValueError(f"job {job_id!r} already has a reservation")
    row = lite.one(conn, lite.RESERVE, {**account, "cost": cost})
    if row is None:
        value = lite.one(conn, lite.AVAILABLE, account)
        balance = allowance if value is None else int(value[0])
        raise InsufficientCredits(cost=cost, balance=balance, reset=reset)
    daily_left, bonus_left, daily = int(row[0]), int(row[1]), int(row[2])
    conn.execute(lite.LEDGER, (user_key, job_id, "reserve", today, -daily, -(cost - daily), now))
    if job is not None:
        conn.execute(lite.INSERT_JOB, _sqlite_values(job))
    return Reservation(job_id, cost, daily, cost - daily, daily_left + bonus_left)


def _settle_sqlite(conn: sqlite3.Connection, job_id: str) -> bool:
    reservation = lite.one(conn, lite.RESERVATION, (job_id,))
    if reservation is None or lite.one(conn, lite.HAS_CLOSING, (job_id,)) is not None:
        return False
    user_key, period = reservation[0], reservation[1]
    conn.execute(lite.LEDGER, (user_key, job_id, "settle", period, 0, 0, lite.ts(utcnow())))
    return True


def _release_sqlite(conn: sqlite3.Connection, job_id: str, today: str | None) -> int:
    reservation = lite.one(conn, lite.RESERVATION, (job_id,))
    if reservation is None or lite.one(conn, lite.HAS_CLOSING, (job_id,)) is not None:
        return 0
    user_key, period = reservation[0], reservation[1]
    daily, bonus = -int(reservation[2]), -int(reservation[3])
    if today is not None and today != period:
        daily = 0  # the account may not have been touched since; its day is over
    now = lite.ts(utcnow())
    values = {"period": period, "daily": daily, "bonus": bonus, "now": now, "user_key": user_key}
    row = lite.one(conn, lite.RELEASE, values)
    if row is None:  # the account vanished; record the release, refund nothing
        daily = bonus = 0
    elif row[0] != period:
        daily = 0
    conn.execute(lite.LEDGER, (user_key, job_id, "release", period, daily, bonus, now))
    return daily + bonus


def _grant_sqlite(
    conn: sqlite3.Connection, user_key: str, amount: int, allowance: int, today: str, ref: str
) -> int:
    now = lite.ts(utcnow())
    account = {"user_key": user_key, "allowance": allowance, "today": today, "now": now}
    conn.execute(lite.ENSURE_ACCOUNT, account)
    if lite.one(conn, lite.HAS_GRANT, (ref,)) is not None:
        value = lite.one(conn, lite.AVAILABLE, account)
        return allowance if value is None else int(value[0])
    row = lite.one(conn, lite.GRANT, {**account, "amount": amount})
    conn.execute(lite.LEDGER, (user_key, ref, "grant", today, 0, amount, now))
    return int(row[0])


class QuotaRepo:
    """Per-user credits, safe under concurrent callers and processes."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    async def _ensure_account(
        self, conn: AsyncConnection, user_key: str, *, allowance: int, today: str
    ) -> None:
        values = {
            "user_key": user_key,
            "allowance": allowance,
            "period": today,
            "daily_left": allowance,
            "bonus": 0,
            "last_reserve_daily": 0,
            "updated_at": utcnow(),
        }
        await conn.execute(insert_ignore(self._db.dialect, ACCOUNTS, values, ["user_key"]))

    async def _ledger(
        self,
        conn: AsyncConnection,
        *,
        user_key: str,
        job_id: str,
        kind: str,
        period: str,
        daily: int,
        bonus: int,
    ) -> None:
        row = {
            "user_key": user_key,
            "job_id": job_id,
            "kind": kind,
            "period": period,
            "daily": daily,
            "bonus": bonus,
            "created_at": utcnow(),
        }
        await conn.execute(LEDGER.insert().values(**row))

    @staticmethod
    async def _has(conn: AsyncConnection, job_id: str, kinds: tuple[str, ...]) -> bool:
        stmt = select(LEDGER.c.id).where(LEDGER.c.job_id == job_id, LEDGER.c.kind.in_(kinds))
        return (await conn.execute(stmt.limit(1))).first() is not None

    @staticmethod
    async def _available(
        conn: AsyncConnection, user_key: str, *, allowance: int, today: str
    ) -> int:
        stmt = select(_effective_daily(today, allowance) + ACCOUNTS.c.bonus).where(
            ACCOUNTS.c.user_key == user_key
        )
        value = (await conn.execute(stmt)).scalar_one_or_none()
        return allowance if value is None else int(value)

    @staticmethod
    async def _reservation_row(conn: AsyncConnection, job_id: str) -> Row[*tuple[Any, ...]] | None:
        # FOR UPDATE serialises settle and release of one job on PostgreSQL; SQLite drops the
        # clause and is serialised by BEGIN IMMEDIATE instead.
        stmt = (
            select(LEDGER.c.user_key, LEDGER.c.period, LEDGER.c.daily, LEDGER.c.bonus)
            .where(LEDGER.c.job_id == job_id, LEDGER.c.kind == "reserve")
            .with_for_update()
        )
        return (await conn.execute(stmt)).first()

    async def reserve(
        self,
        user_key: str,
        job_id: str,
        cost: int,
        *,
        allowance: int,
        today: str,
        reset: str = "",
    ) -> Reservation:
        """Take `cost` credits (daily bucket first, then bonus) or raise InsufficientCredits."""
        return await self.reserve_with(
            user_key, job_id, cost, allowance=allowance, today=today, reset=reset
        )

    async def reserve_with(
        self,
        user_key: str,
        job_id: str,
        cost: int,
        *,
        allowance: int,
        today: str,
        reset: str = "",
        user: Mapping[str, Any] | None = None,
        job: Mapping[str, Any] | None = None,
    ) -> Reservation:
        """`reserve`, plus in the same transaction: upsert the `user` row first and insert
        the `job` row after (column values; datetimes as such). Nothing is written on error.
        """
        if cost < 0:
            raise ValueError(f"cost must not be negative, got {cost}")
        if self._db.sqlite_writer is not None:
            return await self._db.run_sqlite(
                lambda conn: _reserve_sqlite(
                    conn, user_key, job_id, cost, allowance, today, reset, user, job
                )
            )
        async with self._db.write() as conn:
            if user is not None:
                refresh = ["platform", "display_name", "locale"]
                await conn.execute(upsert(self._db.dialect, USERS, user, ["key"], refresh))
            await self._ensure_account(conn, user_key, allowance=allowance, today=today)
            if await self._has(conn, job_id, ("reserve",)):
                raise ValueError(f"job {job_id!r} already has a reservation")
            effective = _effective_daily(today, allowance)
            from_daily = case((effective >= cost, cost), else_=effective)
            # One conditional UPDATE: the check and the decrement cannot be interleaved by
            # another writer, so the balance can never go below zero.
            stmt = (
                update(ACCOUNTS)
                .where(ACCOUNTS.c.user_key == user_key, effective + ACCOUNTS.c.bonus >= cost)
                .values(
                    daily_left=effective - from_daily,
                    bonus=ACCOUNTS.c.bonus - (cost - from_daily),
                    last_reserve_daily=from_daily,
                    period=today,
                    allowance=allowance,
                    updated_at=utcnow(),
                )
                .returning(ACCOUNTS.c.daily_left, ACCOUNTS.c.bonus, ACCOUNTS.c.last_reserve_daily)
            )
            row = (await conn.execute(stmt)).first()
            if row is None:
                balance = await self._available(conn, user_key, allowance=allowance, today=today)
                raise InsufficientCredits(cost=cost, balance=balance, reset=reset)
            daily_left, bonus_left, daily = int(row[0]), int(row[1]), int(row[2])
            await self._ledger(
                conn,
                user_key=user_key,
                job_id=job_id,
                kind="reserve",
                period=today,
                daily=-daily,
                bonus=-(cost - daily),
            )
            if job is not None:
                await conn.execute(JOBS.insert().values(**job))
        return Reservation(job_id, cost, daily, cost - daily, daily_left + bonus_left)

    async def settle(self, job_id: str) -> bool:
        """Keep the job's reserved credits for good; False if unknown, settled or released."""
        if self._db.sqlite_writer is not None:
            return await self._db.run_sqlite(lambda conn: _settle_sqlite(conn, job_id))
        async with self._db.write() as conn:
            reservation = await self._reservation_row(conn, job_id)
            if reservation is None or await self._has(conn, job_id, _CLOSING):
                return False
            await self._ledger(
                conn,
                user_key=reservation.user_key,
                job_id=job_id,
                kind="settle",
                period=reservation.period,
                daily=0,
                bonus=0,
            )
        return True

    async def release(self, job_id: str, *, today: str | None = None) -> int:
        """Give back what the job's reservation took, once; returns the credits refunded.

        The daily part is refunded only while its quota day is still the account's (and
        `today`, when given); after a reset the daily bucket is full again anyway.
        """
        if self._db.sqlite_writer is not None:
            return await self._db.run_sqlite(lambda conn: _release_sqlite(conn, job_id, today))
        async with self._db.write() as conn:
            reservation = await self._reservation_row(conn, job_id)
            if reservation is None or await self._has(conn, job_id, _CLOSING):
                return 0
            daily, bonus = -int(reservation.daily), -int(reservation.bonus)
            if today is not None and today != reservation.period:
                daily = 0  # the account may not have been touched since; its day is over
            # The daily part goes back only into the same day's bucket: once the day has
            # reset, the bucket is full again and refunding it would create credits.
            same_day = ACCOUNTS.c.period == reservation.period
            stmt = (
                update(ACCOUNTS)
                .where(ACCOUNTS.c.user_key == reservation.user_key)
                .values(
                    daily_left=case(
                        (same_day, ACCOUNTS.c.daily_left + daily), else_=ACCOUNTS.c.daily_left
                    ),
                    bonus=ACCOUNTS.c.bonus + bonus,
                    updated_at=utcnow(),
                )
                .returning(ACCOUNTS.c.period)
            )
            row = (await conn.execute(stmt)).first()
            if row is None:  # the account vanished; record the release, refund nothing
                daily = bonus = 0
            elif row[0] != reservation.period:
                daily = 0
            await self._ledger(
                conn,
                user_key=reservation.user_key,
                job_id=job_id,
                kind="release",
                period=reservation.period,
                daily=daily,
                bonus=bonus,
            )
        return daily + bonus

    async def grant(
        self,
        user_key: str,
        amount: int,
        *,
        allowance: int,
        today: str,
        reference: str | None = None,
    ) -> int:
        """Add `amount` bonus credits; returns the new available balance.

        With a `reference`, granting again under the same reference changes nothing.
        """
        if amount <= 0:
            raise ValueError(f"grant amount must be positive, got {amount}")
        ref = reference if reference is not None else f"grant:{uuid.uuid4().hex}"
        if self._db.sqlite_writer is not None:
            return await self._db.run_sqlite(
                lambda conn: _grant_sqlite(conn, user_key, amount, allowance, today, ref)
            )
        async with self._db.write() as conn:
            await self._ensure_account(conn, user_key, allowance=allowance, today=today)
            if await self._has(conn, ref, ("grant",)):
                return await self._available(conn, user_key, allowance=allowance, today=today)
            stmt = (
                update(ACCOUNTS)
                .where(ACCOUNTS.c.user_key == user_key)
                .values(
                    daily_left=_effective_daily(today, allowance),
                    bonus=ACCOUNTS.c.bonus + amount,
                    period=today,
                    allowance=allowance,
                    updated_at=utcnow(),
                )
                .returning(ACCOUNTS.c.daily_left + ACCOUNTS.c.bonus)
            )
            balance = int((await conn.execute(stmt)).scalar_one())
            await self._ledger(
                conn,
                user_key=user_key,
                job_id=ref,
                kind="grant",
                period=today,
                daily=0,
                bonus=amount,
            )
        return balance

    async def show(self, user_key: str, *, allowance: int, today: str) -> QuotaView:
        """The balance as of `today`, without creating or changing anything."""
        async with self._db.read() as conn:
            stmt = select(ACCOUNTS.c.period, ACCOUNTS.c.daily_left, ACCOUNTS.c.bonus).where(
                ACCOUNTS.c.user_key == user_key
            )
            row = (await conn.execute(stmt)).first()
            reserved = await self._reserved(conn, user_key)
        if row is None:
            daily_left, bonus = allowance, 0
        else:
            daily_left = int(row.daily_left) if row.period == today else allowance
            bonus = int(row.bonus)
        return QuotaView(user_key, daily_left + bonus, daily_left, bonus, allowance, reserved)

    @staticmethod
    async def _reserved(conn: AsyncConnection, user_key: str) -> int:
        closing = LEDGER.alias("closing")
        still_open = ~exists().where(
            closing.c.job_id == LEDGER.c.job_id, closing.c.kind.in_(_CLOSING)
        )
        stmt = select(func.coalesce(func.sum(LEDGER.c.daily + LEDGER.c.bonus), 0)).where(
            LEDGER.c.user_key == user_key, LEDGER.c.kind == "reserve", still_open
        )
        return -int((await conn.execute(stmt)).scalar_one())

    async def reset_all(self, today: str, allowance_for: Callable[[str], int]) -> int:
        """Refill every account still on an older day; returns how many were reset."""
        async with self._db.write() as conn:
            stale = select(ACCOUNTS.c.user_key, ACCOUNTS.c.period, ACCOUNTS.c.daily_left).where(
                ACCOUNTS.c.period != today
            )
            rows = (await conn.execute(stale.with_for_update())).all()
            by_allowance: dict[int, list[str]] = defaultdict(list)
            for row in rows:
                by_allowance[allowance_for(row.user_key)].append(row.user_key)
            now = utcnow()
            for allowance, keys in by_allowance.items():
                for start in range(0, len(keys), _CHUNK):
                    stmt = (
                        update(ACCOUNTS)
                        .where(
                            ACCOUNTS.c.user_key.in_(keys[start : start + _CHUNK]),
                            ACCOUNTS.c.period != today,
                        )
                        .values(
                            daily_left=allowance, allowance=allowance, period=today, updated_at=now
                        )
                    )
                    await conn.execute(stmt)
            if rows:
                entries = [
                    {
                        "user_key": row.user_key,
                        "job_id": f"reset:{row.period}:{row.user_key}",
                        "kind": "reset",
                        "period": row.period,
                        "daily": -int(row.daily_left),
                        "bonus": 0,
                        "created_at": now,
                    }
                    for row in rows
                ]
                # A clock stepping back could revisit a day; the unique key then keeps one row.
                ignore = insert_ignore(self._db.dialect, LEDGER, {}, ["job_id", "kind"])
                await conn.execute(ignore, entries)
        return len(rows)

    async def ledger_balance(self, user_key: str, *, allowance: int, today: str) -> int:
        """The available balance the ledger accounts for; equals `show().available`."""
        async with self._db.read() as conn:
            today_daily = func.sum(case((LEDGER.c.period == today, LEDGER.c.daily), else_=0))
            stmt = select(
                func.coalesce(today_daily, 0), func.coalesce(func.sum(LEDGER.c.bonus), 0)
            ).where(LEDGER.c.user_key == user_key)
            daily, bonus = (await conn.execute(stmt)).one()
        return allowance + int(daily) + int(bonus)

    async def entries(
        self, *, user_key: str | None = None, job_id: str | None = None
    ) -> list[QuotaLedger]:
        """Ledger rows, oldest first, for one user and/or one job."""
        stmt = select(LEDGER)
        if user_key is not None:
            stmt = stmt.where(LEDGER.c.user_key == user_key)
        if job_id is not None:
            stmt = stmt.where(LEDGER.c.job_id == job_id)
        async with self._db.read() as conn:
            rows = (await conn.execute(stmt.order_by(LEDGER.c.id))).all()
        return [QuotaLedger.model_validate(dict(row._mapping)) for row in rows]
