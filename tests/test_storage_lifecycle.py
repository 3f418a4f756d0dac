"""The job state machine (storage/lifecycle.py): each transition one transaction, compare-
and-set on from-state and owner, settled only on delivery, released exactly once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from storage import quota
from storage.db import Database
from storage.jobs import build_job
from storage.lifecycle import RenderedImage
from storage.models import metadata
from storage.vocab import InsufficientCredits as QuotaExceeded

DAY = "2025-03-01"
USER = "telegram:42"
OWNER = "host-1-aaaa"
IMAGES = [
    RenderedImage("ab" * 32, 7, 512, 768, "Seed: 7"),
    RenderedImage("cd" * 32, 8, 512, 768, "Seed: 8"),
]


async def submit(db: Database, job_id: str, cost: int = 3, owner: str | None = OWNER) -> Any:
    return await db.submit_job(
        id=job_id,
        user_key=USER,
        platform="telegram",
        prompt="a fox",
        params={"steps": 20},
        cost=cost,
        allowance=10,
        today=DAY,
        reset="00:00 UTC",
        owner=owner,
    )


async def state(db: Database, job_id: str) -> str:
    job = await db.jobs.get(job_id)
    assert job is not None
    return job.state


async def kinds(db: Database, job_id: str) -> list[str]:
    return [e.kind for e in await db.quota.entries(job_id=job_id)]


async def balance(db: Database) -> tuple[int, int]:
    shown = await db.quota.show(USER, allowance=10, today=DAY)
    assert await db.quota.ledger_balance(USER, allowance=10, today=DAY) == shown.available
    return shown.available, shown.reserved


async def count(db: Database, table: str) -> int:
    async with db.read() as conn:
        stmt = select(func.count()).select_from(metadata.tables[table])
        return int((await conn.execute(stmt)).scalar_one())


async def to_rendered(db: Database, job_id: str) -> list[str]:
    assert await db.jobs.start(job_id, owner=OWNER, backend="http://gpu:7860", attempts=1)
    keys = await db.jobs.render(job_id, owner=OWNER, images=IMAGES)
    assert keys == []
    return keys


# --- the happy path ------------------------------------------------------------------------


async def test_a_job_goes_queued_running_rendered_delivered(db: Database) -> None:
    await submit(db, "j1")
    job = await db.jobs.get("j1")
    assert job is not None and (job.state, job.owner) == ("queued", OWNER)
    assert await balance(db) == (7, 3)

    assert await db.jobs.start("j1", owner=OWNER, backend="http://gpu:7860", attempts=1)
    job = await db.jobs.get("j1")
    assert job is not None
    assert (job.state, job.backend, job.attempts) == ("running", "http://gpu:7860", 1)
    assert job.started_at is not None

    actions = [(0, "upscale"), (1, "variations"), (0, "reroll")]
    keys = await db.jobs.render("j1", owner=OWNER, images=IMAGES, actions=actions)
    assert keys is not None and len(set(keys)) == 3
    job = await db.jobs.get("j1")
    assert job is not None and job.state == "rendered" and job.rendered_at is not None
    assert json.loads(job.result_refs) == ["ab" * 32, "cd" * 32]
    stored = await db.results.for_job("j1")
    assert [(r.image_index, r.image_ref, r.seed, r.infotext) for r in stored] == [
        (0, "ab" * 32, 7, "Seed: 7"),
        (1, "cd" * 32, 8, "Seed: 8"),
    ]
    for key, (index, kind) in zip(keys, actions, strict=True):
        action = await db.actions.get(key)
        assert action is not None and (action.job_id, action.image_index, action.kind) == (
            "j1",
            index,
            kind,
        )
    # Rendered is not paid for yet: the credits stay reserved until the platform confirms.
    assert await kinds(db, "j1") == ["reserve"]
    assert await balance(db) == (7, 3)

    assert await db.jobs.deliver("j1", owner=OWNER)
    job = await db.jobs.get("j1")
    assert job is not None and job.state == "delivered"
    assert job.delivered_at is not None and job.finished_at == job.delivered_at
    assert await kinds(db, "j1") == ["reserve", "settle"]
    assert await balance(db) == (7, 0)


async def test_delivering_twice_settles_once(db: Database) -> None:
    await submit(db, "j1")
    await to_rendered(db, "j1")
    assert await db.jobs.deliver("j1", owner=OWNER)
    # A retry after an unknown outcome finds the job delivered: success, no second settle.
    assert await db.jobs.deliver("j1", owner=OWNER)
    assert await kinds(db, "j1") == ["reserve", "settle"]
    assert await balance(db) == (7, 0)


async def test_render_twice_keeps_one_set_of_results_and_keys(db: Database) -> None:
    await submit(db, "j1")
    await db.jobs.start("j1", owner=OWNER, backend="b", attempts=1)
    first = await db.jobs.render("j1", owner=OWNER, images=IMAGES, actions=[(0, "upscale")])
    again = await db.jobs.render("j1", owner=OWNER, images=IMAGES, actions=[(0, "upscale")])
    assert first == again and first is not None and len(first) == 1
    assert await count(db, "results") == 2
    assert await count(db, "actions") == 1


# --- compare-and-set on the from-state -----------------------------------------------------


async def test_moves_only_from_the_states_the_table_allows(db: Database) -> None:
    await submit(db, "j1")
    # queued: cannot be rendered or delivered
    assert await db.jobs.render("j1", owner=OWNER, images=IMAGES) is None
    assert await db.jobs.deliver("j1", owner=OWNER) is False
    assert await state(db, "j1") == "queued"
    await db.jobs.start("j1", owner=OWNER, backend="b", attempts=1)
    assert await db.jobs.deliver("j1", owner=OWNER) is False  # running: not before render
    await db.jobs.render("j1", owner=OWNER, images=IMAGES)
    # rendered: no cancelling a result that is being delivered, no drawing it again
    assert await db.jobs.cancel("j1", owner=OWNER, today=DAY) is None
    assert await db.jobs.start("j1", owner=OWNER, backend="b", attempts=2) is False
    assert await db.jobs.requeue("j1", owner=OWNER) is False
    assert await state(db, "j1") == "rendered"
    assert await kinds(db, "j1") == ["reserve"]
    await db.jobs.deliver("j1", owner=OWNER)
    # delivered is final
    assert await db.jobs.fail("j1", owner=OWNER, error="late", today=DAY) is None
    assert await db.jobs.cancel("j1", owner=OWNER, today=DAY) is None
    assert await state(db, "j1") == "delivered"
    assert await kinds(db, "j1") == ["reserve", "settle"]


@pytest.mark.parametrize("reach", ["queued", "running", "rendered"])
async def test_fail_from_any_non_final_state_refunds_once(db: Database, reach: str) -> None:
    await submit(db, "j1")
    if reach != "queued":
        await db.jobs.start("j1", owner=OWNER, backend="b", attempts=1)
    if reach == "rendered":
        await db.jobs.render("j1", owner=OWNER, images=IMAGES)
    assert await db.jobs.fail("j1", owner=OWNER, error="WebUI said no", today=DAY) == 3
    job = await db.jobs.get("j1")
    assert job is not None and (job.state, job.error) == ("failed", "WebUI said no")
    assert job.finished_at is not None
    assert await balance(db) == (10, 0)
    # Again (a retry): the same refund is reported, nothing more is given back.
    assert await db.jobs.fail("j1", owner=OWNER, error="WebUI said no", today=DAY) == 3
    assert await kinds(db, "j1") == ["reserve", "release"]
    assert await balance(db) == (10, 0)
    assert await db.jobs.deliver("j1", owner=OWNER) is False
    assert await db.jobs.cancel("j1", owner=OWNER, today=DAY) is None


@pytest.mark.parametrize("reach", ["queued", "running"])
async def test_cancel_refunds_queued_and_running_jobs(db: Database, reach: str) -> None:
    await submit(db, "j1")
    if reach == "running":
        await db.jobs.start("j1", owner=OWNER, backend="b", attempts=1)
    assert await db.jobs.cancel("j1", owner=OWNER, today=DAY) == 3
    assert await state(db, "j1") == "cancelled"
    assert await db.jobs.cancel("j1", owner=OWNER, today=DAY) == 3  # repeat: same answer
    assert await db.jobs.start("j1", owner=OWNER, backend="b", attempts=1) is False
    assert await kinds(db, "j1") == ["reserve", "release"]
    assert await balance(db) == (10, 0)


async def test_requeue_puts_a_running_job_back_for_another_attempt(db: Database) -> None:
    await submit(db, "j1")
    await db.jobs.start("j1", owner=OWNER, backend="http://a", attempts=1)
    assert await db.jobs.requeue("j1", owner=OWNER, error="backend went away")
    job = await db.jobs.get("j1")
    assert job is not None
    assert (job.state, job.backend, job.started_at, job.error, job.attempts) == (
        "queued",
        None,
        None,
        "backend went away",
        1,
    )
    assert await db.jobs.start("j1", owner=OWNER, backend="http://b", attempts=2)
    job = await db.jobs.get("j1")
    assert job is not None and (job.state, job.backend, job.attempts) == ("running", "http://b", 2)
    assert await kinds(db, "j1") == ["reserve"]


# --- compare-and-set on the owner ----------------------------------------------------------


async def test_only_the_owner_moves_its_job(db: Database) -> None:
    await submit(db, "j1")
    other = "host-2-bbbb"
    assert await db.jobs.start("j1", owner=other, backend="b", attempts=1) is False
    assert await db.jobs.cancel("j1", owner=other, today=DAY) is None
    assert await db.jobs.fail("j1", owner=other, error="not mine", today=DAY) is None
    assert await db.jobs.start("j1", owner=None, backend="b", attempts=1) is False
    assert await state(db, "j1") == "queued" and await kinds(db, "j1") == ["reserve"]
    await to_rendered(db, "j1")
    assert await db.jobs.deliver("j1", owner=other) is False
    assert await kinds(db, "j1") == ["reserve"]


async def test_jobs_without_an_owner_move_with_owner_none(db: Database) -> None:
    await submit(db, "j1", owner=None)
    assert await db.jobs.start("j1", owner=OWNER, backend="b", attempts=1) is False
    assert await db.jobs.start("j1", owner=None, backend="b", attempts=1)
    assert await db.jobs.render("j1", owner=None, images=IMAGES) == []
    assert await db.jobs.deliver("j1", owner=None)
    assert await kinds(db, "j1") == ["reserve", "settle"]


# --- one transaction each ------------------------------------------------------------------


async def test_a_render_that_fails_writes_nothing(db: Database) -> None:
    await submit(db, "j1")
    await db.jobs.start("j1", owner=OWNER, backend="b", attempts=1)
    broken = [IMAGES[0], RenderedImage("ef" * 32, None, 1, 1)]  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        await db.jobs.render("j1", owner=OWNER, images=broken, actions=[(0, "upscale")])
    # Neither the state, nor the first image's row, nor the button went in.
    assert await state(db, "j1") == "running"
    assert (await count(db, "results"), await count(db, "actions")) == (0, 0)
    with pytest.raises(ValueError, match="unknown action kind"):
        await db.jobs.render("j1", owner=OWNER, images=IMAGES, actions=[(0, "explode")])
    assert await db.jobs.render("j1", owner=OWNER, images=IMAGES, actions=[(0, "upscale")])
    assert await count(db, "results") == 2


async def test_submit_repeated_after_a_lost_commit_returns_the_stored_reservation(
    db: Database,
) -> None:
    job = build_job(
        id="j1", user_key=USER, platform="telegram", prompt="p", params={}, cost=4, owner=OWNER
    ).model_dump()

    def submit_tx(conn: Connection, *, repeat: bool) -> quota.Reservation:
        return quota.reserve(conn, USER, "j1", 4, 10, DAY, job=job, repeat=repeat)

    first = await db.write_tx(lambda conn: submit_tx(conn, repeat=False))
    # What Database.write_tx runs when the first COMMIT's answer was lost but it landed:
    again = await db.write_tx(lambda conn: submit_tx(conn, repeat=True))
    assert (again.job_id, again.cost, again.daily, again.bonus, again.balance_after) == (
        first.job_id,
        first.cost,
        first.daily,
        first.bonus,
        first.balance_after,
    )
    assert await kinds(db, "j1") == ["reserve"] and await count(db, "jobs") == 1
    # A repeat that finds another user's reservation under that id refuses.
    with pytest.raises(ValueError, match="already has a reservation"):
        await db.write_tx(lambda conn: quota.reserve(conn, "t:2", "j1", 4, 10, DAY, repeat=True))
    # A repeat whose first attempt did not land simply reserves (and still checks credits).
    with pytest.raises(QuotaExceeded):
        await db.write_tx(lambda conn: quota.reserve(conn, USER, "j2", 7, 10, DAY, repeat=True))
    reservation = await db.write_tx(
        lambda conn: quota.reserve(conn, USER, "j2", 6, 10, DAY, repeat=True)
    )
    assert reservation.balance_after == 0
