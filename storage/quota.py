"""Credits: reserve before queueing, settle on success, release on failure or cancel.

Ledger sign convention: `daily` and `bonus` on a ledger row are signed changes to the user's
balance in that bucket. A reserve is negative (credits taken), a release positive (credits
given back), a grant adds positive `bonus`, a settle moves nothing (both 0). `period` is the
quota day whose daily bucket the row moved. Each quota day's daily bucket starts at the
allowance without a ledger row (resets are lazy), so for the account's current day

    allowance + sum(daily of rows with period == today) + sum(bonus of all rows)
        == daily_left + bonus

Ledger rows older than LEDGER_KEEP_DAYS of closed reservations (and grants and resets) are
folded into `quota_ledger_days` (storage/prune.py): one row per (day = period, user, kind)
with the count and the summed `daily` and `bonus`, so the sums above run over the ledger AND
those aggregates (`ledger_balance`), exactly. Open reservations are never folded.

A 'reset' row, written by `reset_all`, closes an old day: its `daily` is minus the credits that
day left unused and its `period` is that old day, so today's sum is untouched. Nothing schedules
`reset_all` any more (bot/scheduler.py): the invariant needs no reset row, only the lazy one.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    String,
    bindparam,
    case,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from storage._sql import BuiltOnce, insert_ignore, upsert
from storage.models import QuotaLedger, UTCDateTime, metadata, utcnow
from storage.vocab import DuplicateJob, InsufficientCredits

if TYPE_CHECKING:
    from storage._conn import Connections

ACCOUNTS = metadata.tables["quota_accounts"]
LEDGER = metadata.tables["quota_ledger"]
USERS = metadata.tables["users"]
JOBS = metadata.tables["jobs"]
DAYS = metadata.tables["quota_ledger_days"]

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


def _effective_daily(today: Any, allowance: Any) -> ColumnElement[int]:
    # The lazy daily reset: a row still on an older day has a full bucket today.
    return case((ACCOUNTS.c.period == today, ACCOUNTS.c.daily_left), else_=allowance)


# --- statements, built once (bound parameters carry the values) -----------------------------
# Each write below is ONE sync function over a SQLAlchemy Connection, run as a whole
# transaction by Database.write_tx on SQLite (writer thread) and PostgreSQL (run_sync) alike,
# or called inside a bigger transaction (storage/lifecycle.py settles and releases that way).

_USER = bindparam("b_user_key", type_=String())
_TODAY = bindparam("b_today", type_=String())
_ALLOWANCE = bindparam("b_allowance", type_=Integer())
_COST = bindparam("b_cost", type_=Integer())
_AMOUNT = bindparam("b_amount", type_=Integer())
_NOW = bindparam("b_now", type_=UTCDateTime())
_JOB = bindparam("b_job_id", type_=String())
_EFFECTIVE = _effective_daily(_TODAY, _ALLOWANCE)
_FROM_DAILY = case((_EFFECTIVE >= _COST, _COST), else_=_EFFECTIVE)

_ENSURE_ACCOUNT = BuiltOnce(
    lambda dialect: insert_ignore(
        dialect,
        ACCOUNTS,
        {
            "user_key": _USER,
            "allowance": _ALLOWANCE,
            "period": _TODAY,
            "daily_left": _ALLOWANCE,
            "bonus": 0,
            "last_reserve_daily": 0,
            "updated_at": _NOW,
        },
        ["user_key"],
    )
)
_UPSERT_USER = BuiltOnce(
    lambda dialect: upsert(dialect, USERS, {}, ["key"], ["platform", "display_name", "locale"])
)
# One conditional UPDATE: the check and the decrement cannot be interleaved by another
# writer, so the balance can never go below zero.
_RESERVE = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.user_key == _USER, _EFFECTIVE + ACCOUNTS.c.bonus >= _COST)
    .values(
        daily_left=_EFFECTIVE - _FROM_DAILY,
        bonus=ACCOUNTS.c.bonus - (_COST - _FROM_DAILY),
        last_reserve_daily=_FROM_DAILY,
        period=_TODAY,
        allowance=_ALLOWANCE,
        updated_at=_NOW,
    )
    .returning(ACCOUNTS.c.daily_left, ACCOUNTS.c.bonus, ACCOUNTS.c.last_reserve_daily)
)
_AVAILABLE = select(_EFFECTIVE + ACCOUNTS.c.bonus).where(ACCOUNTS.c.user_key == _USER)
_INSERT_LEDGER = LEDGER.insert()
_INSERT_JOB = JOBS.insert()
_closing = LEDGER.alias("closing")
# FOR UPDATE serialises settle and release of one job on PostgreSQL; SQLite drops the clause
# and is serialised by BEGIN IMMEDIATE instead. Whether it is closed is asked only after the
# lock is held, in a statement of its own: a waiting statement keeps its old snapshot.
_RESERVATION = (
    select(LEDGER.c.user_key, LEDGER.c.period, LEDGER.c.daily, LEDGER.c.bonus)
    .where(LEDGER.c.job_id == _JOB, LEDGER.c.kind == "reserve")
    .with_for_update()
)
_CLOSED = select(LEDGER.c.id).where(LEDGER.c.job_id == _JOB, LEDGER.c.kind.in_(_CLOSING))
_RELEASED = select(LEDGER.c.daily + LEDGER.c.bonus).where(
    LEDGER.c.job_id == _JOB, LEDGER.c.kind == "release"
)
_HAS_GRANT = select(LEDGER.c.id).where(LEDGER.c.job_id == _JOB, LEDGER.c.kind == "grant")
_GRANT = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.user_key == _USER)
    .values(
        daily_left=_EFFECTIVE,
        bonus=ACCOUNTS.c.bonus + _AMOUNT,
        period=_TODAY,
        allowance=_ALLOWANCE,
        updated_at=_NOW,
    )
    .returning(ACCOUNTS.c.daily_left + ACCOUNTS.c.bonus)
)


def _ledger_row(
    user_key: str, job_id: str, kind: str, period: str, daily: int, bonus: int, now: Any
) -> dict[str, Any]:
    return {
        "user_key": user_key,
        "job_id": job_id,
        "kind": kind,
        "period": period,
        "daily": daily,
        "bonus": bonus,
        "created_at": now,
    }


def available(conn: Connection, user_key: str, allowance: int, today: str) -> int:
    """The user's balance now (the allowance for an account not yet created)."""
    params = {"b_user_key": user_key, "b_allowance": allowance, "b_today": today}
    value = conn.execute(_AVAILABLE, params).scalar_one_or_none()
    return allowance if value is None else int(value)


def reserve(
    conn: Connection,
    user_key: str,
    job_id: str,
    cost: int,
    allowance: int,
    today: str,
    reset: str = "",
    user: Mapping[str, Any] | None = None,
    job: Mapping[str, Any] | None = None,
    *,
    repeat: bool = False,
) -> Reservation:
    """Take `cost` credits (daily bucket first, then bonus) or raise InsufficientCredits; with
    `user`, upsert that row first, with `job`, insert that row after.

    A second reserve for the same job fails on the ledger's UNIQUE(job_id, kind) and rolls
    everything back. `repeat` (a retry after a lost COMMIT): if this job's reservation is
    already there, return it instead.
    """
    if repeat:
        found = _stored_reservation(conn, user_key, job_id, cost, allowance, today, job)
        if found is not None:
            return found
    # A second job for the same command is refused by uq_jobs_platform_source when its row
    # goes in (everything rolled back; `reserve_with` tells DuplicateJob from other refusals),
    # not by a SELECT first on every submit.
    now = utcnow()
    if user is not None:
        conn.execute(_UPSERT_USER[conn.dialect.name], dict(user))
    if cost == 0:
        # a free job (relax mode): no reservation, the ledger untouched; settle and release
        # find nothing to close
        if job is not None:
            if repeat and _job_exists(conn, job_id):
                return Reservation(job_id, 0, 0, 0, available(conn, user_key, allowance, today))
            conn.execute(_INSERT_JOB, dict(job))
        return Reservation(job_id, 0, 0, 0, available(conn, user_key, allowance, today))
    params = {
        "b_user_key": user_key,
        "b_allowance": allowance,
        "b_today": today,
        "b_cost": cost,
        "b_now": now,
    }
    row = conn.execute(_RESERVE, params).first()
    if row is None:
        # Maybe no account yet: create it (or wait for a concurrent creator) and try again.
        conn.execute(_ENSURE_ACCOUNT[conn.dialect.name], params)
        row = conn.execute(_RESERVE, params).first()
    if row is None:
        balance = available(conn, user_key, allowance, today)
        raise InsufficientCredits(cost=cost, balance=balance, reset=reset)
    daily_left, bonus_left, daily = int(row[0]), int(row[1]), int(row[2])
    conn.execute(
        _INSERT_LEDGER,
        _ledger_row(user_key, job_id, "reserve", today, -daily, -(cost - daily), now),
    )
    if job is not None:
        conn.execute(_INSERT_JOB, dict(job))
    return Reservation(job_id, cost, daily, cost - daily, daily_left + bonus_left)


def _job_exists(conn: Connection, job_id: str) -> bool:
    return conn.execute(select(JOBS.c.id).where(JOBS.c.id == job_id)).first() is not None


def _job_of_source(conn: Connection, platform: str, source: str) -> str | None:
    stmt = select(JOBS.c.id).where(JOBS.c.platform == platform, JOBS.c.source == source)
    row = conn.execute(stmt).first()
    return None if row is None else str(row.id)


def _stored_reservation(
    conn: Connection,
    user_key: str,
    job_id: str,
    cost: int,
    allowance: int,
    today: str,
    job: Mapping[str, Any] | None,
) -> Reservation | None:
    row = conn.execute(_RESERVATION, {"b_job_id": job_id}).first()
    if row is None:
        return None
    daily, bonus = -int(row.daily), -int(row.bonus)
    if row.user_key != user_key or daily + bonus != cost:
        raise ValueError(f"job {job_id!r} already has a reservation")
    if job is not None:
        stored = conn.execute(select(JOBS.c.user_key).where(JOBS.c.id == job_id)).first()
        if stored is None or stored.user_key != user_key:
            raise ValueError(f"job {job_id!r} already has a reservation")
    return Reservation(job_id, cost, daily, bonus, available(conn, user_key, allowance, today))


def _open_reservation(conn: Connection, job_id: str) -> Row[Any, Any, Any, Any] | None:
    reservation = conn.execute(_RESERVATION, {"b_job_id": job_id}).first()
    if reservation is None or conn.execute(_CLOSED, {"b_job_id": job_id}).first() is not None:
        return None
    return reservation


def settle(conn: Connection, job_id: str) -> bool:
    """Keep the job's reserved credits for good; False if unknown, settled or released."""
    reservation = _open_reservation(conn, job_id)
    if reservation is None:
        return False
    conn.execute(
        _INSERT_LEDGER,
        _ledger_row(reservation.user_key, job_id, "settle", reservation.period, 0, 0, utcnow()),
    )
    return True


def release(conn: Connection, job_id: str, today: str | None = None) -> int:
    """Give back what the job's reservation took, once; returns the credits refunded.

    The daily part is refunded only while its quota day is still the account's (and
    `today`, when given); after a reset the daily bucket is full again anyway.
    """
    reservation = _open_reservation(conn, job_id)
    if reservation is None:
        return 0
    period = reservation.period
    daily, bonus = -int(reservation.daily), -int(reservation.bonus)
    if today is not None and today != period:
        daily = 0  # the account may not have been touched since; its day is over
    # The daily part goes back only into the same day's bucket: once the day has reset,
    # the bucket is full again and refunding it would create credits.
    same_day = ACCOUNTS.c.period == period
    now = utcnow()
    stmt = (
        update(ACCOUNTS)
        .where(ACCOUNTS.c.user_key == reservation.user_key)
        .values(
            daily_left=case((same_day, ACCOUNTS.c.daily_left + daily), else_=ACCOUNTS.c.daily_left),
            bonus=ACCOUNTS.c.bonus + bonus,
            updated_at=now,
        )
        .returning(ACCOUNTS.c.period)
    )
    row = conn.execute(stmt).first()
    if row is None:  # the account vanished; record the release, refund nothing
        daily = bonus = 0
    elif row[0] != period:
        daily = 0
    conn.execute(
        _INSERT_LEDGER,
        _ledger_row(reservation.user_key, job_id, "release", period, daily, bonus, now),
    )
    return daily + bonus


def released(conn: Connection, job_id: str) -> int:
    """What the job's release refunded (0 if it was never released)."""
    value = conn.execute(_RELEASED, {"b_job_id": job_id}).scalar_one_or_none()
    return 0 if value is None else int(value)


def grant(
    conn: Connection, user_key: str, amount: int, allowance: int, today: str, ref: str
) -> int:
    """Add `amount` bonus credits under `ref` (once per ref); returns the new balance."""
    now = utcnow()
    params = {"b_user_key": user_key, "b_allowance": allowance, "b_today": today, "b_now": now}
    conn.execute(_ENSURE_ACCOUNT[conn.dialect.name], params)
    if conn.execute(_HAS_GRANT, {"b_job_id": ref}).first() is not None:
        return available(conn, user_key, allowance, today)
    balance = int(conn.execute(_GRANT, {**params, "b_amount": amount}).scalar_one())
    conn.execute(_INSERT_LEDGER, _ledger_row(user_key, ref, "grant", today, 0, amount, now))
    return balance


def reset_all(conn: Connection, today: str, allowance_for: Callable[[str], int]) -> int:
    """Refill every account still on an older day; returns how many were reset."""
    stale = select(ACCOUNTS.c.user_key, ACCOUNTS.c.period, ACCOUNTS.c.daily_left).where(
        ACCOUNTS.c.period != today
    )
    rows = conn.execute(stale.with_for_update()).all()
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
                .values(daily_left=allowance, allowance=allowance, period=today, updated_at=now)
            )
            conn.execute(stmt)
    if rows:
        entries = [
            _ledger_row(
                row.user_key,
                f"reset:{row.period}:{row.user_key}",
                "reset",
                row.period,
                -int(row.daily_left),
                0,
                now,
            )
            for row in rows
        ]
        # A clock stepping back could revisit a day; the unique key then keeps one row.
        ignore = insert_ignore(conn.dialect.name, LEDGER, {}, ["job_id", "kind"])
        conn.execute(ignore, entries)
    return len(rows)


def _show(conn: Connection, user_key: str, allowance: int, today: str) -> QuotaView:
    stmt = select(ACCOUNTS.c.period, ACCOUNTS.c.daily_left, ACCOUNTS.c.bonus).where(
        ACCOUNTS.c.user_key == user_key
    )
    row = conn.execute(stmt).first()
    still_open = ~exists().where(
        _closing.c.job_id == LEDGER.c.job_id, _closing.c.kind.in_(_CLOSING)
    )
    held = select(func.coalesce(func.sum(LEDGER.c.daily + LEDGER.c.bonus), 0)).where(
        LEDGER.c.user_key == user_key, LEDGER.c.kind == "reserve", still_open
    )
    reserved = -int(conn.execute(held).scalar_one())
    if row is None:
        daily_left, bonus = allowance, 0
    else:
        daily_left = int(row.daily_left) if row.period == today else allowance
        bonus = int(row.bonus)
    return QuotaView(user_key, daily_left + bonus, daily_left, bonus, allowance, reserved)


def _ledger_balance(conn: Connection, user_key: str, allowance: int, today: str) -> int:
    today_daily = func.sum(case((LEDGER.c.period == today, LEDGER.c.daily), else_=0))
    stmt = select(func.coalesce(today_daily, 0), func.coalesce(func.sum(LEDGER.c.bonus), 0)).where(
        LEDGER.c.user_key == user_key
    )
    daily, bonus = conn.execute(stmt).one()
    # Rows pruned after LEDGER_KEEP_DAYS (storage/prune.py) are counted by their daily sums.
    folded_daily = func.sum(case((DAYS.c.day == today, DAYS.c.daily), else_=0))
    folded = select(func.coalesce(folded_daily, 0), func.coalesce(func.sum(DAYS.c.bonus), 0)).where(
        DAYS.c.user_key == user_key
    )
    old_daily, old_bonus = conn.execute(folded).one()
    return allowance + int(daily) + int(bonus) + int(old_daily) + int(old_bonus)


def _entries(conn: Connection, user_key: str | None, job_id: str | None) -> list[QuotaLedger]:
    stmt = select(LEDGER)
    if user_key is not None:
        stmt = stmt.where(LEDGER.c.user_key == user_key)
    if job_id is not None:
        stmt = stmt.where(LEDGER.c.job_id == job_id)
    rows = conn.execute(stmt.order_by(LEDGER.c.id)).all()
    return [QuotaLedger.model_validate(dict(row._mapping)) for row in rows]


def _has_reservation(conn: Connection, job_id: str) -> bool:
    return conn.execute(_RESERVATION, {"b_job_id": job_id}).first() is not None


class QuotaRepo:
    """Per-user credits, safe under concurrent callers and processes."""

    def __init__(self, db: Connections) -> None:
        self._db = db

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
        args = (user_key, job_id, cost, allowance, today, reset, user, job)
        try:
            return await self._db.write_tx(
                lambda conn: reserve(conn, *args),
                again=lambda conn: reserve(conn, *args, repeat=True),
                inline=True,  # the /draw on its way in: no thread hop when it can
            )
        except IntegrityError:
            # The ledger's UNIQUE(job_id, kind) refused a second reserve for this job.
            if await self._db.read_tx(partial(_has_reservation, job_id=job_id)):
                raise ValueError(f"job {job_id!r} already has a reservation") from None
            # A free job (cost 0) has no reservation: its job row's key refused the second.
            if cost == 0 and await self._db.read_tx(partial(_job_exists, job_id=job_id)):
                raise ValueError(f"job {job_id!r} is already stored") from None
            # Or another process stored a job for the same command at the same moment.
            if job is not None and job.get("source"):
                taken = await self._db.read_tx(
                    partial(_job_of_source, platform=job["platform"], source=job["source"])
                )
                if taken is not None:
                    raise DuplicateJob(taken) from None
            raise

    async def settle(self, job_id: str) -> bool:
        """Keep the job's reserved credits for good; False if unknown, settled or released."""
        return await self._db.write_tx(partial(settle, job_id=job_id), again=_resettle(job_id))

    async def release(self, job_id: str, *, today: str | None = None) -> int:
        """Give back what the job's reservation took, once; returns the credits refunded.

        The daily part is refunded only while its quota day is still the account's (and
        `today`, when given); after a reset the daily bucket is full again anyway.
        """
        return await self._db.write_tx(
            partial(release, job_id=job_id, today=today), again=_rerelease(job_id, today)
        )

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
        tx = partial(grant, user_key=user_key, amount=amount, allowance=allowance)
        write = partial(tx, today=today, ref=ref)
        return await self._db.write_tx(write, again=write)

    async def show(self, user_key: str, *, allowance: int, today: str) -> QuotaView:
        """The balance as of `today`, without creating or changing anything."""
        return await self._db.read_tx(
            partial(_show, user_key=user_key, allowance=allowance, today=today)
        )

    async def reset_all(self, today: str, allowance_for: Callable[[str], int]) -> int:
        """Refill every account still on an older day; returns how many were reset."""
        write = partial(reset_all, today=today, allowance_for=allowance_for)
        return await self._db.write_tx(write, again=write)

    async def ledger_balance(self, user_key: str, *, allowance: int, today: str) -> int:
        """The available balance the ledger accounts for; equals `show().available`."""
        return await self._db.read_tx(
            partial(_ledger_balance, user_key=user_key, allowance=allowance, today=today)
        )

    async def entries(
        self, *, user_key: str | None = None, job_id: str | None = None
    ) -> list[QuotaLedger]:
        """Ledger rows, oldest first, for one user and/or one job."""
        return await self._db.read_tx(partial(_entries, user_key=user_key, job_id=job_id))


def _resettle(job_id: str) -> Callable[[Connection], bool]:
    # After a lost COMMIT: True if a settle row is there (ours landed), else settle now.
    def again(conn: Connection) -> bool:
        return settle(conn, job_id) or _closed_by(conn, job_id, "settle")

    return again


def _rerelease(job_id: str, today: str | None) -> Callable[[Connection], int]:
    def again(conn: Connection) -> int:
        refunded = release(conn, job_id, today)
        return refunded or released(conn, job_id)

    return again


def _closed_by(conn: Connection, job_id: str, kind: str) -> bool:
    stmt = select(LEDGER.c.id).where(LEDGER.c.job_id == job_id, LEDGER.c.kind == kind)
    return conn.execute(stmt).first() is not None
