"""One owner per job: instances, leases, and claiming the jobs of owners that are gone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from storage.db import Database
from storage.instances import new_instance_id, pid_running
from storage.lifecycle import RenderedImage
from storage.vocab import LeaseLost

DAY = "2025-03-01"
LONG = 3600.0  # a lease that cannot run out during a test
IMAGE = [RenderedImage("ab" * 32, 7, 64, 64)]
ROOT = Path(__file__).resolve().parent.parent


async def submit(
    db: Database, job_id: str, owner: str | None, *, platform: str = "telegram", cost: int = 2
) -> None:
    await db.submit_job(
        id=job_id,
        user_key=f"{platform}:42",
        platform=platform,
        prompt="a fox",
        params={},
        cost=cost,
        allowance=1000,
        today=DAY,
        owner=owner,
    )


async def owners(db: Database, *ids: str) -> list[tuple[str | None, str]]:
    jobs = [await db.jobs.get(job_id) for job_id in ids]
    return [(job.owner, job.state) for job in jobs if job is not None]


async def test_register_heartbeat_deregister(db: Database) -> None:
    me = new_instance_id()
    assert len(me) <= 64 and str(os.getpid()) in me
    await db.instances.register(me, ["telegram", "discord"], lease_seconds=30)
    [row] = await db.instances.live()
    assert (row.id, row.platforms, row.pid) == (me, "discord,telegram", os.getpid())
    assert row.expires_at > row.heartbeat_at
    assert await db.instances.heartbeat(me, lease_seconds=60)
    [later] = await db.instances.live()
    assert later.expires_at > row.expires_at
    await db.instances.deregister(me)
    assert await db.instances.live() == []
    assert await db.instances.heartbeat(me, lease_seconds=60) is False


async def test_a_live_owner_keeps_its_jobs(db: Database) -> None:
    await db.instances.register("a", ["telegram"], lease_seconds=LONG)
    await db.instances.register("b", ["telegram"], lease_seconds=LONG)
    await submit(db, "j1", "a")
    claimed = await db.instances.claim_orphans("b", ["telegram"], lease_seconds=LONG, today=DAY)
    assert (claimed.queued, claimed.rendered, claimed.failed) == ([], [], [])
    assert await owners(db, "j1") == [("a", "queued")]


async def test_jobs_of_an_expired_owner_are_claimed_by_state(db: Database) -> None:
    await db.instances.register("a", ["telegram"], lease_seconds=0)  # expires at once
    await db.instances.register("b", ["telegram"], lease_seconds=LONG)
    for job_id in ("queued", "running", "rendered", "delivered"):
        await submit(db, job_id, "a")
    await db.jobs.start("running", owner="a", backend="http://gpu", attempts=1)
    await db.jobs.start("rendered", owner="a", backend="http://gpu", attempts=1)
    await db.jobs.render("rendered", owner="a", images=IMAGE)
    await db.jobs.start("delivered", owner="a", backend="http://gpu", attempts=1)
    await db.jobs.render("delivered", owner="a", images=IMAGE)
    await db.jobs.deliver("delivered", owner="a")
    await asyncio.sleep(0.01)

    claimed = await db.instances.claim_orphans("b", ["telegram"], lease_seconds=LONG, today=DAY)
    assert [job.id for job in claimed.queued] == ["queued", "running"]
    assert claimed.requeued == ["running"]  # its render was lost: drawn again
    assert [job.id for job in claimed.rendered] == ["rendered"]  # to be sent again
    assert claimed.failed == []
    requeued = claimed.queued[1]
    assert (requeued.owner, requeued.state, requeued.backend, requeued.started_at) == (
        "b",
        "queued",
        None,
        None,
    )
    assert await owners(db, "queued", "running", "rendered", "delivered") == [
        ("b", "queued"),
        ("b", "queued"),
        ("b", "rendered"),
        ("a", "delivered"),  # final jobs are nobody's business
    ]
    # The dead owner's row is gone; coming back, it learns it lost its lease and its jobs.
    assert [i.id for i in await db.instances.live()] == ["b"]
    assert await db.instances.heartbeat("a", lease_seconds=LONG) is False
    with pytest.raises(LeaseLost):
        await db.instances.claim_orphans("a", ["telegram"], lease_seconds=LONG)
    assert await db.jobs.deliver("rendered", owner="a") is False
    assert await db.jobs.deliver("rendered", owner="b")
    # Claiming again finds nothing new.
    again = await db.instances.claim_orphans("b", ["telegram"], lease_seconds=LONG, today=DAY)
    assert (again.queued, again.rendered) == ([], [])
    assert [j.id for j in await db.instances.owned("b")] == ["queued", "running"]


async def test_only_the_claimers_platforms_are_claimed(db: Database) -> None:
    await db.instances.register("gone", ["telegram", "discord"], lease_seconds=LONG)
    await submit(db, "tg", "gone", platform="telegram")
    await submit(db, "dc", "gone", platform="discord")
    await db.instances.deregister("gone")  # a clean stop: its jobs may move at once
    await db.instances.register("tg-only", ["telegram"], lease_seconds=LONG)
    await db.instances.register("dc-only", ["discord"], lease_seconds=LONG)
    tg = await db.instances.claim_orphans("tg-only", ["telegram"], lease_seconds=LONG)
    dc = await db.instances.claim_orphans("dc-only", ["discord"], lease_seconds=LONG)
    assert [j.id for j in tg.queued] == ["tg"] and [j.id for j in dc.queued] == ["dc"]
    assert await owners(db, "tg", "dc") == [("tg-only", "queued"), ("dc-only", "queued")]


async def test_orphaned_cli_jobs_are_failed_and_refunded_by_any_claimer(db: Database) -> None:
    await db.instances.register("cli-run", ["cli"], lease_seconds=0)
    await db.instances.register("bot", ["telegram"], lease_seconds=LONG)
    await submit(db, "c1", "cli-run", platform="cli", cost=3)
    await db.jobs.start("c1", owner="cli-run", backend="http://gpu", attempts=1)
    await submit(db, "t1", "bot")  # the bot's own job stays put
    await asyncio.sleep(0.01)
    claimed = await db.instances.claim_orphans("bot", ["telegram"], lease_seconds=LONG, today=DAY)
    assert claimed.queued == [] and claimed.rendered == []
    [(job, refunded)] = claimed.failed
    assert (job.id, job.state, refunded) == ("c1", "failed", 3)
    assert "drawbridge draw" in (job.error or "")
    assert [e.kind for e in await db.quota.entries(job_id="c1")] == ["reserve", "release"]
    assert (await db.quota.show("cli:42", allowance=1000, today=DAY)).available == 1000
    assert await owners(db, "t1") == [("bot", "queued")]


async def test_jobs_nobody_owns_are_orphans(db: Database) -> None:
    await submit(db, "old", None)  # as jobs from before 0002
    await db.instances.register("b", ["telegram"], lease_seconds=LONG)
    claimed = await db.instances.claim_orphans("b", ["telegram"], lease_seconds=LONG)
    assert [j.id for j in claimed.queued] == ["old"]


async def test_two_claimers_never_take_the_same_job(db_url: str) -> None:
    async with Database(db_url) as first, Database(db_url) as second:
        await first.instances.register("dead", ["telegram"], lease_seconds=0)
        for i in range(40):
            await submit(first, f"j{i}", "dead")
        await first.instances.register("x", ["telegram"], lease_seconds=LONG)
        await second.instances.register("y", ["telegram"], lease_seconds=LONG)
        await asyncio.sleep(0.01)
        results = await asyncio.gather(
            *(
                db.instances.claim_orphans(me, ["telegram"], lease_seconds=LONG)
                for _ in range(5)
                for db, me in ((first, "x"), (second, "y"))
            )
        )
        taken = [job.id for claimed in results for job in claimed.queued]
        assert sorted(taken) == sorted(f"j{i}" for i in range(40))  # each exactly once
        jobs = await first.jobs.list_by_state(["queued"])
        by_owner = {job.id: job.owner for job in jobs}
        for claimed, (_, me) in zip(results, [(None, "x"), (None, "y")] * 5, strict=True):
            assert all(by_owner[job.id] == me for job in claimed.queued)


# --- a real other process -----------------------------------------------------------------

_OWNER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from storage.db import Database

    async def main(url, instance):
        async with Database(url) as db:
            await db.instances.register(instance, ["telegram"], lease_seconds=3600)
            await db.submit_job(
                id="theirs", user_key="telegram:7", platform="telegram", prompt="p",
                params={}, cost=1, allowance=10, today="2025-03-01", owner=instance,
            )
            print("ready", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def spawn_owner(url: str, instance: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT, url, instance],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(
            f"owner process did not start: {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc


async def test_a_killed_owner_on_this_machine_is_taken_over_without_waiting(
    db_url: str,
) -> None:
    proc = await asyncio.to_thread(spawn_owner, db_url, "other-process")
    try:
        async with Database(db_url) as db:
            await db.instances.register("me", ["telegram"], lease_seconds=LONG)
            # It is alive, with an hour of lease: its job is not ours to take.
            assert pid_running(proc.pid)
            claimed = await db.instances.claim_orphans("me", ["telegram"], lease_seconds=LONG)
            assert claimed.queued == []
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
            # Same kernel, same PID namespace: its pid is gone, so it is dead now, lease or not.
            claimed = await db.instances.claim_orphans("me", ["telegram"], lease_seconds=LONG)
            assert [job.id for job in claimed.queued] == ["theirs"]
            assert await owners(db, "theirs") == [("me", "queued")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_pid_running_tells_live_from_dead_and_zombie() -> None:
    assert pid_running(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    # Exited but not yet reaped, it is a zombie: already dead for our purpose.
    for _ in range(1000):
        if not pid_running(child.pid):
            break
        time.sleep(0.01)
    assert not pid_running(child.pid)
    child.wait()
    assert not pid_running(child.pid)


async def test_a_large_takeover_goes_in_batches_oldest_first(db: Database) -> None:
    """With a limit each claim takes that many queued jobs, oldest first after the cursor (the
    running one with the first batch); the first batch counts what is left; the batches
    together are exactly the orphans, each taken once."""
    await db.instances.register("a", ["telegram"], lease_seconds=0)  # expires at once
    await db.instances.register("b", ["telegram"], lease_seconds=LONG)
    ids = [f"j{i}" for i in range(8)]
    for job_id in ids:
        await submit(db, job_id, "a")
    await db.jobs.start("j5", owner="a", backend="http://gpu", attempts=1)
    await asyncio.sleep(0.01)
    batches, cursor = [], None
    while True:
        batch = await db.instances.claim_orphans(
            "b", ["telegram"], lease_seconds=LONG, limit=3, after=cursor
        )
        batches.append(([job.id for job in batch.queued], batch.remaining))
        cursor = batch.cursor
        if cursor is None:
            break
    assert batches == [
        (["j5", "j0", "j1", "j2"], 4),  # the running one (requeued) comes with the first
        (["j3", "j4", "j6"], 0),
        (["j7"], 0),
    ]
    assert await owners(db, *ids) == [("b", "queued")] * 8
    again = await db.instances.claim_orphans("b", ["telegram"], lease_seconds=LONG, limit=3)
    assert (again.queued, again.cursor) == ([], None)
