"""A command handed over twice (a replay after a crash, two processes on one bot) is one job."""

from __future__ import annotations

import asyncio

import pytest

from storage.db import Database
from storage.vocab import DuplicateJob

DAY = "2025-03-01"


async def submit(db: Database, job_id: str, source: str | None, route: str = "telegram:1") -> None:
    await db.submit_job(
        id=job_id,
        user_key="telegram:42",
        platform="telegram",
        route=route,
        source=source,
        prompt="a fox",
        params={},
        cost=2,
        allowance=10,
        today=DAY,
        owner="me",
    )


async def test_the_same_command_twice_is_one_job_charged_once(db: Database) -> None:
    await submit(db, "j1", "100:7")
    with pytest.raises(DuplicateJob) as caught:
        await submit(db, "j2", "100:7")
    assert caught.value.job_id == "j1"
    assert await db.jobs.get("j2") is None
    assert [e.kind for e in await db.quota.entries(user_key="telegram:42")] == ["reserve"]
    # another message, another bot, or no source at all: jobs of their own
    await submit(db, "j3", "100:8")
    await submit(db, "j4", "100:7", route="telegram:2")
    await submit(db, "j5", None)
    await submit(db, "j6", None)
    shown = await db.quota.show("telegram:42", allowance=10, today=DAY)
    assert shown.reserved == 10


async def test_two_processes_storing_one_command_at_once_store_it_once(db: Database) -> None:
    outcomes = await asyncio.gather(
        *(submit(db, f"j{i}", "100:9") for i in range(4)), return_exceptions=True
    )
    duplicates = [o for o in outcomes if isinstance(o, DuplicateJob)]
    assert len(duplicates) == 3 and outcomes.count(None) == 1
    shown = await db.quota.show("telegram:42", allowance=10, today=DAY)
    assert shown.reserved == 2
