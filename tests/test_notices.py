"""The "could not deliver, refunded" notice is owed in the database until the platform took it:
a process that stops before the platform is back leaves it for the next one, which sends it
once, and a notice the platform confirmed is never sent again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devwebui import DevWebUI
from storage.db import Database
from tests.fakes.telegram_api import FakeTelegram, FakeUser
from tests.harness.process import BotProcess, books_closed, bot_env, jobs, until
from tests.test_storage_instances import DAY, IMAGE, LONG, submit

pytestmark = pytest.mark.timeout(120)

NOTICE = "I could not deliver the picture of job "


async def take_over(db: Database, dead: str, heir: str) -> Any:
    """`dead` stops; `heir` starts and claims what it left (its jobs and owed notices)."""
    await db.instances.deregister(dead)
    await db.instances.register(heir, ["telegram"], lease_seconds=LONG)
    return await db.instances.claim_orphans(heir, ["telegram"], lease_seconds=LONG, today=DAY)


async def test_a_due_notice_is_claimed_with_its_refund_until_marked_sent(db: Database) -> None:
    await db.instances.register("a", ["telegram"], lease_seconds=LONG)
    for job_id in ("owed", "told", "plain"):
        await submit(db, job_id, "a", cost=2)
        await db.jobs.start(job_id, owner="a", backend="http://gpu", attempts=1)
    await db.jobs.render("owed", owner="a", images=IMAGE)
    assert await db.jobs.fail("owed", owner="a", error="delivery failed", today=DAY, notice=True)
    await db.jobs.render("told", owner="a", images=IMAGE)
    assert await db.jobs.fail("told", owner="a", error="delivery failed", today=DAY, notice=True)
    assert await db.jobs.notified("told")
    assert await db.jobs.notified("told") is False  # once
    await db.jobs.fail("plain", owner="a", error="the WebUI failed", today=DAY)
    await db.instances.register("b", ["telegram"], lease_seconds=LONG)
    # while its owner lives, a due notice is the owner's to send
    alive = await db.instances.claim_orphans("b", ["telegram"], lease_seconds=LONG, today=DAY)
    assert alive.notices == []
    await db.instances.deregister("a")
    claimed = await db.instances.claim_orphans("b", ["telegram"], lease_seconds=LONG, today=DAY)
    [(job, refunded)] = claimed.notices
    assert (job.id, job.state, job.notice, job.owner, refunded) == ("owed", "failed", "due", "b", 2)
    assert (claimed.queued, claimed.rendered, claimed.failed) == ([], [], [])
    # b stops before the platform took it: the next claimer gets it again
    again = await take_over(db, "b", "c")
    assert [job.id for job, _ in again.notices] == ["owed"]
    assert await db.jobs.notified("owed")
    owed = await db.jobs.get("owed")
    assert owed is not None and owed.notice == "sent"
    done = await take_over(db, "c", "d")
    assert done.notices == []
    # the refund happened once, in the transaction that failed the job
    kinds = [entry.kind for entry in await db.quota.entries(job_id="owed")]
    assert kinds == ["reserve", "release"]


async def test_a_refused_notice_is_dropped_not_owed_forever(db: Database) -> None:
    await db.instances.register("a", ["telegram"], lease_seconds=LONG)
    await submit(db, "gone", "a")
    await db.jobs.fail("gone", owner="a", error="delivery failed", today=DAY, notice=True)
    assert await db.jobs.notified("gone", sent=False)
    job = await db.jobs.get("gone")
    assert job is not None and job.notice == "dropped"
    claimed = await take_over(db, "a", "b")
    assert claimed.notices == []


def notices_to(fake: FakeTelegram, user: FakeUser) -> list[str]:
    """The "could not deliver" messages Telegram confirmed in the user's private chat."""
    return [
        call.params["text"]
        for call in fake.calls_of("sendMessage", ok=True)
        if call.chat_id == user.id and NOTICE in (call.params.get("text") or "")
    ]


async def notice_is(url: str, prompt: str, notice: str) -> bool:
    return any(job.prompt == prompt and job.notice == notice for job in await jobs(url))


@pytest.mark.parametrize("stop", ["kill", "terminate"])
async def test_the_notice_survives_a_restart_and_is_sent_once(tmp_path, stop: str) -> None:
    async with FakeTelegram() as fake, DevWebUI(delay=0.2) as webui:
        env = bot_env(tmp_path, fake, webui, DELIVERY_RETRY_SECONDS="1.0")
        url = env["DATABASE_URL"]
        alice = fake.user(1001, "Alice")
        async with await BotProcess(tmp_path, env).start() as bot:
            fake.send_text(alice, alice, "/draw a message in a bottle")
            await fake.wait_for("sendMessage")  # the acknowledgement
            await fake.go_down("502")
            # drawn, retried for 1 s, given up: failed, refunded, and the user owed a notice
            await until(lambda: notice_is(url, "a message in a bottle", "due"), 30, "owed")
            await asyncio.sleep(0.5)  # the notice is retried against the 502s meanwhile
            if stop == "kill":
                await bot.kill()
            else:
                assert await bot.terminate() == 0
        assert notices_to(fake, alice) == []  # Telegram was down the whole time
        await fake.come_back()
        async with await BotProcess(tmp_path, env).start() as bot:
            await until(lambda: notices_to(fake, alice), 30, "the notice")
            await until(lambda: notice_is(url, "a message in a bottle", "sent"), 10, "sent")
            [text] = notices_to(fake, alice)
            assert "Your 1 credit was returned" in text
            assert await bot.terminate() == 0
        # a third process finds nothing owed: the user is told once
        async with await BotProcess(tmp_path, env).start() as bot:
            fake.send_text(alice, alice, "/draw a second bottle")
            await until(lambda: _photo_of(fake, "a second bottle"), 30, "the next picture")
            assert len(notices_to(fake, alice)) == 1
            assert await bot.terminate() == 0
    rows = await books_closed(url)  # every reservation settled or released exactly once
    states = {job.prompt: (job.state, job.notice) for job in rows}
    assert states == {
        "a message in a bottle": ("failed", "sent"),
        "a second bottle": ("delivered", None),
    }


def _photo_of(fake: FakeTelegram, prompt: str) -> bool:
    return any(
        (call.params.get("caption") or "").startswith(prompt)
        for call in fake.calls_of("sendPhoto", ok=True)
    )
