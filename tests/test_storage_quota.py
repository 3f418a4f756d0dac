"""Quota repository: atomic reservations under concurrency, refunds, resets, the ledger."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from storage.db import Database
from storage.quota import QuotaView, Reservation
from storage.vocab import InsufficientCredits as QuotaExceeded

DAY1, DAY2, DAY3 = "2025-03-01", "2025-03-02", "2025-03-03"
USER = "telegram:42"


async def view(
    db: Database, user: str = USER, *, allowance: int = 10, today: str = DAY1
) -> QuotaView:
    return await db.quota.show(user, allowance=allowance, today=today)


async def assert_ledger_consistent(
    db: Database, user: str = USER, *, allowance: int = 10, today: str = DAY1
) -> None:
    """allowance + today's daily movements + all bonus movements == what show() reports."""
    shown = await view(db, user, allowance=allowance, today=today)
    assert await db.quota.ledger_balance(user, allowance=allowance, today=today) == (
        shown.available
    )


def split(results: Sequence[object]) -> tuple[list[Reservation], list[QuotaExceeded]]:
    ok = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    others = [r for r in results if not isinstance(r, Reservation | QuotaExceeded)]
    assert others == [], f"unexpected outcomes: {others[:3]}"
    return ok, refused


def assert_fifty_of_two_hundred(ok: list[Reservation], refused: list[QuotaExceeded]) -> None:
    assert len(ok) == 50
    assert len(refused) == 150
    # Each success saw a distinct balance: no two reservations took the same credit.
    assert sorted(r.balance_after for r in ok) == list(range(50))
    assert all(e.params == {"cost": 1, "balance": 0, "reset": "00:00 UTC"} for e in refused)


# --- concurrency ---------------------------------------------------------------------------


async def test_concurrent_reserves_on_one_instance(db: Database) -> None:
    await db.quota.grant(USER, 20, allowance=30, today=DAY1)  # 30 daily + 20 bonus = 50
    results = await asyncio.gather(
        *(
            db.quota.reserve(USER, f"job-{i}", 1, allowance=30, today=DAY1, reset="00:00 UTC")
            for i in range(200)
        ),
        return_exceptions=True,
    )
    ok, refused = split(results)
    assert_fifty_of_two_hundred(ok, refused)
    assert sum(r.daily for r in ok) == 30
    assert sum(r.bonus for r in ok) == 20
    shown = await view(db, allowance=30)
    assert (shown.available, shown.daily_left, shown.bonus, shown.reserved) == (0, 0, 0, 50)
    await assert_ledger_consistent(db, allowance=30)
    # Refused attempts leave no trace in the ledger.
    assert len(await db.quota.entries(user_key=USER)) == 1 + 50


async def test_concurrent_reserves_from_several_instances(db_url: str) -> None:
    databases = [Database(db_url) for _ in range(4)]
    await asyncio.gather(*(d.start() for d in databases))
    try:
        results = await asyncio.gather(
            *(
                d.quota.reserve(
                    USER, f"job-{n}-{i}", 1, allowance=50, today=DAY1, reset="00:00 UTC"
                )
                for n, d in enumerate(databases)
                for i in range(50)
            ),
            return_exceptions=True,
        )
        ok, refused = split(results)
        assert_fifty_of_two_hundred(ok, refused)
        shown = await view(databases[0], allowance=50)
        assert (shown.available, shown.daily_left, shown.bonus) == (0, 0, 0)
        await assert_ledger_consistent(databases[0], allowance=50)
    finally:
        await asyncio.gather(*(d.close() for d in databases))


_WORKER = """
import asyncio, sys
from storage.vocab import InsufficientCredits as QuotaExceeded
from storage.db import Database

async def main(url: str, tag: str) -> None:
    async with Database(url) as db:
        results = await asyncio.gather(
            *(db.quota.reserve("telegram:42", f"{tag}-{i}", 1, allowance=50, today="2025-03-01")
              for i in range(50)),
            return_exceptions=True,
        )
    bad = [r for r in results if isinstance(r, BaseException) and not isinstance(r, QuotaExceeded)]
    if bad:
        raise bad[0]
    print(sum(not isinstance(r, BaseException) for r in results))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_concurrent_reserves_from_separate_processes(db_url: str, tmp_path: Path) -> None:
    async with Database(db_url) as database:
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _WORKER,
                db_url,
                f"proc{n}",
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for n in range(4)
        ]
        outputs = [await p.communicate() for p in procs]
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err.decode()
        assert sum(int(out) for out, _ in outputs) == 50
        shown = await view(database, allowance=50)
        assert (shown.available, shown.reserved) == (0, 50)
        await assert_ledger_consistent(database, allowance=50)


# --- reserve -------------------------------------------------------------------------------


async def test_daily_bucket_is_used_before_bonus(db: Database) -> None:
    assert await db.quota.grant(USER, 5, allowance=10, today=DAY1) == 15
    first = await db.quota.reserve(USER, "a", 8, allowance=10, today=DAY1)
    assert (first.daily, first.bonus, first.balance_after) == (8, 0, 7)
    second = await db.quota.reserve(USER, "b", 4, allowance=10, today=DAY1)
    assert (second.daily, second.bonus, second.balance_after) == (2, 2, 3)
    shown = await view(db)
    assert (shown.daily_left, shown.bonus, shown.available, shown.reserved) == (0, 3, 3, 12)
    ledger = {e.job_id: (e.kind, e.daily, e.bonus) for e in await db.quota.entries(user_key=USER)}
    assert ledger["a"] == ("reserve", -8, 0)
    assert ledger["b"] == ("reserve", -2, -2)
    await assert_ledger_consistent(db)


async def test_exact_balance_can_be_spent_and_no_more(db: Database) -> None:
    await db.quota.grant(USER, 3, allowance=10, today=DAY1)
    spent = await db.quota.reserve(USER, "all", 13, allowance=10, today=DAY1)
    assert (spent.daily, spent.bonus, spent.balance_after) == (10, 3, 0)
    with pytest.raises(QuotaExceeded):
        await db.quota.reserve(USER, "one-more", 1, allowance=10, today=DAY1)


async def test_quota_exceeded_reports_and_changes_nothing(db: Database) -> None:
    await db.quota.reserve(USER, "a", 6, allowance=10, today=DAY1)
    with pytest.raises(QuotaExceeded) as caught:
        await db.quota.reserve(USER, "b", 5, allowance=10, today=DAY1, reset="06:00 UTC")
    assert caught.value.params == {"cost": 5, "balance": 4, "reset": "06:00 UTC"}
    assert (await view(db)).available == 4
    assert await db.quota.entries(job_id="b") == []
    # Nothing was recorded for "b", so it can be reserved once credits are there.
    await db.quota.grant(USER, 1, allowance=10, today=DAY1)
    assert (await db.quota.reserve(USER, "b", 5, allowance=10, today=DAY1)).balance_after == 0


async def test_refusal_for_a_new_user_creates_no_account(db: Database) -> None:
    with pytest.raises(QuotaExceeded) as caught:
        await db.quota.reserve(USER, "big", 11, allowance=10, today=DAY1)
    assert caught.value.params["balance"] == 10
    # The account row insert was rolled back with the failed reservation.
    assert await db.quota.reset_all(DAY2, lambda _key: 10) == 0


async def test_a_job_is_reserved_only_once(db: Database) -> None:
    await db.quota.reserve(USER, "a", 3, allowance=10, today=DAY1)
    with pytest.raises(ValueError, match="already has a reservation"):
        await db.quota.reserve(USER, "a", 3, allowance=10, today=DAY1)
    assert (await view(db)).available == 7


async def test_invalid_amounts_are_rejected(db: Database) -> None:
    with pytest.raises(ValueError):
        await db.quota.reserve(USER, "neg", -1, allowance=10, today=DAY1)
    with pytest.raises(ValueError):
        await db.quota.grant(USER, 0, allowance=10, today=DAY1)
    assert await db.quota.entries(user_key=USER) == []


# --- settle and release --------------------------------------------------------------------


async def test_release_refunds_exactly_once_even_concurrently(db: Database) -> None:
    await db.quota.grant(USER, 5, allowance=10, today=DAY1)
    await db.quota.reserve(USER, "a", 12, allowance=10, today=DAY1)  # 10 daily + 2 bonus
    refunds = await asyncio.gather(*(db.quota.release("a") for _ in range(10)))
    assert sorted(refunds) == [0] * 9 + [12]
    assert await db.quota.release("a") == 0
    shown = await view(db)
    assert (shown.daily_left, shown.bonus, shown.reserved) == (10, 5, 0)
    kinds = [e.kind for e in await db.quota.entries(job_id="a")]
    assert kinds == ["reserve", "release"]
    await assert_ledger_consistent(db)


async def test_release_after_settle_refunds_nothing(db: Database) -> None:
    await db.quota.reserve(USER, "a", 4, allowance=10, today=DAY1)
    assert await db.quota.settle("a") is True
    assert await db.quota.settle("a") is False  # idempotent
    assert await db.quota.release("a") == 0
    shown = await view(db)
    assert (shown.available, shown.reserved) == (6, 0)
    assert [e.kind for e in await db.quota.entries(job_id="a")] == ["reserve", "settle"]
    await assert_ledger_consistent(db)


async def test_settle_after_release_is_refused(db: Database) -> None:
    await db.quota.reserve(USER, "a", 4, allowance=10, today=DAY1)
    assert await db.quota.release("a") == 4
    assert await db.quota.settle("a") is False
    assert [e.kind for e in await db.quota.entries(job_id="a")] == ["reserve", "release"]


async def test_settle_and_release_race_one_wins(db: Database) -> None:
    for i in range(10):
        await db.quota.reserve(USER, f"j{i}", 1, allowance=10, today=DAY1)
    outcomes = await asyncio.gather(
        *(op for i in range(10) for op in (db.quota.settle(f"j{i}"), db.quota.release(f"j{i}")))
    )
    for i in range(10):
        settled, refunded = outcomes[2 * i], outcomes[2 * i + 1]
        assert (settled, refunded) in ((True, 0), (False, 1))
        assert len(await db.quota.entries(job_id=f"j{i}")) == 2
    await assert_ledger_consistent(db)


async def test_unknown_job_settles_and_releases_nothing(db: Database) -> None:
    assert await db.quota.settle("nope") is False
    assert await db.quota.release("nope") == 0
    assert await db.quota.entries(job_id="nope") == []


async def test_lazy_reset_between_reserve_and_release_refunds_bonus_only(db: Database) -> None:
    await db.quota.grant(USER, 5, allowance=10, today=DAY1)
    await db.quota.reserve(USER, "old", 12, allowance=10, today=DAY1)  # 10 daily + 2 bonus
    await db.quota.reserve(USER, "new", 1, allowance=10, today=DAY2)  # resets lazily
    assert await db.quota.release("old") == 2
    shown = await view(db, today=DAY2)
    assert (shown.daily_left, shown.bonus, shown.available) == (9, 5, 14)
    await assert_ledger_consistent(db, today=DAY2)


async def test_scheduled_reset_between_reserve_and_release_refunds_bonus_only(
    db: Database,
) -> None:
    await db.quota.grant(USER, 5, allowance=10, today=DAY1)
    await db.quota.reserve(USER, "old", 12, allowance=10, today=DAY1)
    assert await db.quota.reset_all(DAY2, lambda _key: 10) == 1
    assert await db.quota.release("old") == 2
    shown = await view(db, today=DAY2)
    assert (shown.daily_left, shown.bonus, shown.available) == (10, 5, 15)
    await assert_ledger_consistent(db, today=DAY2)


async def test_release_on_a_later_day_of_an_untouched_account(db: Database) -> None:
    await db.quota.grant(USER, 5, allowance=10, today=DAY1)
    await db.quota.reserve(USER, "old", 12, allowance=10, today=DAY1)
    # Nothing touched the account on DAY2; told the day, release refunds the bonus part only.
    assert await db.quota.release("old", today=DAY2) == 2
    shown = await view(db, today=DAY2)
    assert (shown.daily_left, shown.bonus, shown.available) == (10, 5, 15)
    await assert_ledger_consistent(db, today=DAY2)


# --- days and resets -----------------------------------------------------------------------


async def test_lazy_reset_on_a_new_day_keeps_bonus(db: Database) -> None:
    await db.quota.grant(USER, 3, allowance=10, today=DAY1)
    await db.quota.reserve(USER, "a", 11, allowance=10, today=DAY1)
    assert (await view(db, today=DAY1)).available == 2
    # A new day: the daily bucket is full again without any job having run.
    shown = await view(db, today=DAY2)
    assert (shown.daily_left, shown.bonus, shown.available) == (10, 2, 12)
    # The allowance of the new day is the one the caller passes (e.g. the user became admin).
    spent = await db.quota.reserve(USER, "b", 15, allowance=20, today=DAY2)
    assert (spent.daily, spent.bonus, spent.balance_after) == (15, 0, 7)
    await assert_ledger_consistent(db, allowance=20, today=DAY2)


async def test_reset_all_refills_stale_accounts_once(db: Database) -> None:
    await db.quota.reserve("a:1", "a", 4, allowance=10, today=DAY1)
    await db.quota.reserve("b:1", "b", 10, allowance=10, today=DAY1)
    await db.quota.reserve("c:1", "c", 1, allowance=10, today=DAY2)
    allowances = {"a:1": 10, "b:1": 30, "c:1": 10}
    assert await db.quota.reset_all(DAY2, allowances.__getitem__) == 2
    assert await db.quota.reset_all(DAY2, allowances.__getitem__) == 0
    assert (await view(db, "a:1", today=DAY2)).daily_left == 10
    assert (await view(db, "b:1", allowance=30, today=DAY2)).daily_left == 30
    assert (await view(db, "c:1", today=DAY2)).daily_left == 9  # already on DAY2: untouched
    resets = [e for e in await db.quota.entries() if e.kind == "reset"]
    # A reset row closes the old day with the credits it left unused.
    assert sorted((e.user_key, e.period, e.daily) for e in resets) == [
        ("a:1", DAY1, -6),
        ("b:1", DAY1, 0),
    ]
    await assert_ledger_consistent(db, "a:1", today=DAY2)
    await assert_ledger_consistent(db, "b:1", allowance=30, today=DAY2)
    await assert_ledger_consistent(db, "c:1", today=DAY2)


async def test_missed_reset_changes_nothing_visible(db: Database) -> None:
    await db.quota.reserve("a:1", "a", 4, allowance=10, today=DAY1)
    await db.quota.reserve("b:1", "b", 4, allowance=10, today=DAY1)
    await db.quota.reset_all(DAY2, lambda _key: 10)  # a:1 and b:1 reset on DAY2 …
    # … but the DAY3 run is missed: both are seen as reset lazily, identically.
    lazy = await view(db, "a:1", today=DAY3)
    assert lazy == QuotaView("a:1", 10, 10, 0, 10, 4)
    await db.quota.reset_all(DAY3, lambda _key: 10)
    assert await view(db, "a:1", today=DAY3) == lazy


async def test_grant_with_a_reference_is_applied_once(db: Database) -> None:
    assert await db.quota.grant(USER, 5, allowance=10, today=DAY1, reference="ticket-7") == 15
    assert await db.quota.grant(USER, 5, allowance=10, today=DAY1, reference="ticket-7") == 15
    assert await db.quota.grant(USER, 5, allowance=10, today=DAY1) == 20
    assert (await view(db)).bonus == 10


async def test_show_does_not_create_an_account(db: Database) -> None:
    assert await view(db) == QuotaView(USER, 10, 10, 0, 10, 0)
    assert await db.quota.reset_all(DAY2, lambda _key: 10) == 0


# --- the ledger against a reference model --------------------------------------------------


@dataclass
class Model:
    """What the balance should be, computed in Python."""

    allowance: int
    period: str | None = None
    daily: int = 0
    bonus: int = 0
    open: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)

    def roll(self, today: str) -> None:
        if self.period != today:
            self.period, self.daily = today, self.allowance

    def available(self, today: str) -> int:
        daily = self.daily if self.period == today else self.allowance
        return daily + self.bonus


@pytest.mark.parametrize("seed", [1, 2])
async def test_ledger_always_sums_to_the_balance(db: Database, seed: int) -> None:
    rng = random.Random(seed)
    model = Model(allowance=10)
    days = iter([DAY2, DAY3, "2025-03-04", "2025-03-05"])
    today = DAY1
    for step in range(120):
        op = rng.choices(["reserve", "grant", "settle", "release", "day"], [8, 2, 3, 4, 1])[0]
        if op == "reserve":
            cost, job = rng.randint(1, 8), f"j{step}"
            model.roll(today)
            if model.daily + model.bonus >= cost:
                got = await db.quota.reserve(USER, job, cost, allowance=10, today=today)
                daily = min(cost, model.daily)
                model.daily -= daily
                model.bonus -= cost - daily
                model.open[job] = (today, daily, cost - daily)
                assert (got.daily, got.bonus) == (daily, cost - daily)
            else:
                with pytest.raises(QuotaExceeded):
                    await db.quota.reserve(USER, job, cost, allowance=10, today=today)
        elif op == "grant":
            amount = rng.randint(1, 5)
            model.roll(today)
            model.bonus += amount
            assert await db.quota.grant(USER, amount, allowance=10, today=today) == (
                model.available(today)
            )
        elif op == "settle" and model.open:
            job = rng.choice(sorted(model.open))
            del model.open[job]
            model.closed.add(job)
            assert await db.quota.settle(job) is True
        elif op == "release" and (model.open or model.closed):
            job = rng.choice(sorted(model.open) + sorted(model.closed))
            pass_today = rng.random() < 0.5
            expected = 0
            if job in model.open:
                period, daily, bonus = model.open.pop(job)
                same_day = model.period == period and (not pass_today or today == period)
                if same_day:
                    model.daily += daily
                model.bonus += bonus
                expected = (daily if same_day else 0) + bonus
                model.closed.add(job)
            got_refund = await db.quota.release(job, today=today if pass_today else None)
            assert got_refund == expected
        elif op == "day":
            today = next(days, today)
            if rng.random() < 0.5:
                await db.quota.reset_all(today, lambda _key: 10)
                if model.period is not None:
                    model.roll(today)
        shown = await view(db, today=today)
        reserved = sum(d + b for _, d, b in model.open.values())
        assert (shown.available, shown.reserved) == (model.available(today), reserved), step
        await assert_ledger_consistent(db, today=today)
