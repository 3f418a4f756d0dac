"""Migration 0002 on a database that 0001 made and a bot filled: every row upgrades."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from storage.db import Database, make_engine, upgrade

DAY = "2025-03-01"
T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# (job id, state under 0001, ledger rows after its reserve)
JOBS = [
    ("queued", "queued", []),
    ("running", "running", []),
    ("settled", "done", ["settle"]),  # delivered and paid for
    ("refunded", "done", ["release"]),  # the upload failed, refunded
    ("unsettled", "done", []),  # killed between upload and settle
    ("failed", "failed", ["release"]),
    ("cancelled", "cancelled", ["release"]),
]


async def fill_0001(url: str) -> None:
    """Rows as the 0001 code wrote them (raw SQL: today's models have newer columns)."""
    await upgrade(url, "0001")
    # Database() would migrate to head; write through a bare engine instead.
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (key, platform, display_name, locale, created_at) "
                    "VALUES ('telegram:42', 'telegram', 'Ann', 'en', :t)"
                ),
                {"t": T},
            )
            for job_id, state, closing in JOBS:
                finished = T if state in ("done", "failed", "cancelled") else None
                await conn.execute(
                    text(
                        "INSERT INTO jobs (id, user_key, platform, chat_id, state, mode, "
                        "prompt, params, cost, attempts, created_at, finished_at, result_refs) "
                        "VALUES (:id, 'telegram:42', 'telegram', '7', :state, 'txt2img', "
                        "'a fox', '{}', 2, 1, :t, :finished, '[]')"
                    ),
                    {"id": job_id, "state": state, "t": T, "finished": finished},
                )
                for kind in ["reserve", *closing]:
                    daily = {"reserve": -2, "release": 2}.get(kind, 0)
                    await conn.execute(
                        text(
                            "INSERT INTO quota_ledger (user_key, job_id, kind, period, daily, "
                            "bonus, created_at) VALUES ('telegram:42', :job, :kind, :day, "
                            ":daily, 0, :t)"
                        ),
                        {"job": job_id, "kind": kind, "day": DAY, "daily": daily, "t": T},
                    )
            await conn.execute(
                text(
                    "INSERT INTO jobs (id, user_key, platform, chat_id, state, mode, prompt, "
                    "params, cost, attempts, created_at, finished_at, result_refs) VALUES "
                    "('free', 'telegram:42', 'telegram', '7', 'done', 'txt2img', 'x', '{}', 0, "
                    "1, :t, :t, '[\"ab\"]')"
                ),
                {"t": T},
            )
            await conn.execute(
                text(
                    "INSERT INTO results (job_id, image_index, image_ref, seed, width, height, "
                    "infotext, created_at) VALUES ('settled', 0, 'ab', 7, 64, 64, '', :t)"
                ),
                {"t": T},
            )
            await conn.execute(
                text(
                    "INSERT INTO actions (key, job_id, image_index, kind, created_at) "
                    "VALUES ('k1', 'settled', 0, 'upscale', :t)"
                ),
                {"t": T},
            )
    finally:
        await engine.dispose()


async def test_a_0001_database_with_rows_upgrades(db_url: str) -> None:
    await fill_0001(db_url)
    async with Database(db_url) as db:  # migrates to head on start
        states = {job.id: job.state for job in await db.jobs.list_by_state(_ALL)}
        assert states == {
            "queued": "queued",
            "running": "running",
            "settled": "delivered",
            "refunded": "failed",
            "unsettled": "rendered",  # will be sent again and settled on confirmation
            "failed": "failed",
            "cancelled": "cancelled",
            "free": "delivered",
        }
        settled = await db.jobs.get("settled")
        assert settled is not None and settled.delivered_at == T and settled.owner is None
        unsettled = await db.jobs.get("unsettled")
        assert unsettled is not None
        assert (unsettled.rendered_at, unsettled.finished_at) == (T, None)
        refunded = await db.jobs.get("refunded")
        assert refunded is not None and refunded.error == "delivery failed"
        # The table rebuild kept the rows that point at jobs (foreign keys were off).
        assert [r.image_ref for r in await db.results.for_job("settled")] == ["ab"]
        action = await db.actions.get("k1")
        assert action is not None and action.job_id == "settled"
        # The rendered job can finish the new way; the reservation it had stays the only one.
        assert await db.jobs.deliver("unsettled", owner=None)
        assert [e.kind for e in await db.quota.entries(job_id="unsettled")] == [
            "reserve",
            "settle",
        ]
        # The new CHECK constraint: 'done' is gone, the new states are allowed.
        with pytest.raises(IntegrityError):
            async with db.write() as conn:
                await conn.execute(text("UPDATE jobs SET state = 'done' WHERE id = 'queued'"))
        assert await db.jobs.set_state("queued", "rendered")
        assert await db.instances.live() == []


async def test_downgrade_to_0001_maps_the_states_back(db_url: str) -> None:
    await fill_0001(db_url)
    await upgrade(db_url)
    await upgrade(db_url, "0001", down=True)
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, state FROM jobs ORDER BY id"))).all()
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert dict(rows)["settled"] == "done" and dict(rows)["unsettled"] == "done"
    assert dict(rows)["refunded"] == "failed"
    assert "instances" not in tables
    await upgrade(db_url)  # and up again


_ALL = ["queued", "running", "rendered", "delivered", "failed", "cancelled"]
