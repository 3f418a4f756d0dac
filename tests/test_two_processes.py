"""Several drawbridge processes on one database: each job has one owner, none is run twice or
failed by the wrong process, and the jobs of one that dies finish elsewhere within the lease.

Real subprocesses (`drawbridge run`, `drawbridge draw`) on one SQLite file and data dir, with
fake Telegram servers and a DevWebUI in this process; the Discord bot runs in this process
(discord.py's gateway URL can only be pointed at the fake from inside the process).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from devwebui import DevWebUI
from storage.db import Database
from tests.fakes.telegram_api import FakeTelegram
from tests.harness.cli import drawbridge
from tests.harness.discord import discord_env
from tests.harness.process import BotProcess, books_closed, bot_env, jobs, photos, until
from tests.harness.settings import SMALL

pytestmark = pytest.mark.timeout(90)

LEASE = 1.5


def owner_pid(owner: str | None) -> int:
    """The pid an instance id names ("host-pid-random")."""
    return int((owner or "0-0-0").rsplit("-", 2)[1])


async def all_delivered(url: str, count: int) -> bool:
    rows = await jobs(url)
    return len(rows) == count and all(j.state == "delivered" for j in rows)


async def test_two_processes_on_one_token_share_the_work_and_take_over_a_dead_one(
    tmp_path,
) -> None:
    async with FakeTelegram(refuse_second_poller=True) as fake, DevWebUI(delay=0.2) as webui:
        env = bot_env(tmp_path, fake, webui, LEASE_SECONDS=str(LEASE))
        url = env["DATABASE_URL"]
        users = [fake.user(3001 + n, f"User {n}") for n in range(4)]
        first, second = BotProcess(tmp_path, env), BotProcess(tmp_path, env)
        await asyncio.gather(first.start(), second.start())
        async with first, second:
            # the second poller is refused (409) while the first one polls
            await fake.wait_for("getUpdates", ok=False)
            for i in range(8):
                fake.send_text(users[i % 4], users[i % 4], f"/draw shared {i} --seed {i}")
            await until(lambda: all_delivered(url, 8), 30, "the first eight")
            assert all(photos(fake)[f"shared {i}"] == 1 for i in range(8))
            # now work piles up; the process that took it in dies
            webui.delay = 0.6
            for i in range(8, 14):
                fake.send_text(users[i % 4], users[i % 4], f"/draw shared {i} --seed {i}")
            await until(lambda: queued_count(url), 20, "jobs waiting in the queue")
            owners = {owner_pid(j.owner) for j in await jobs(url) if j.state != "delivered"}
            by_pid = {first.proc.pid: first, second.proc.pid: second}
            (dead,) = [by_pid[pid] for pid in owners if pid in by_pid][:1]
            alive = second if dead is first else first
            killed_at = time.monotonic()
            await dead.kill()
            # the survivor takes them over within the lease and delivers them
            await until(lambda: all_delivered(url, 14), 40, "every job")
            took = time.monotonic() - killed_at
            await alive.terminate()
        assert took < 30  # far less than waiting for a restart that never comes
        assert all(photos(fake)[f"shared {i}"] == 1 for i in range(14)), photos(fake)
        rows = await books_closed(url)
        assert {j.state for j in rows} == {"delivered"}  # none failed or refunded


async def queued_count(url: str) -> int:
    return sum(1 for j in await jobs(url) if j.state == "queued")


async def ann_stored(url: str) -> bool:
    wanted = {f"ann {i}" for i in range(3, 6)}
    return wanted <= {j.prompt for j in await jobs(url) if j.state in ("queued", "running")}


async def test_bots_of_other_tokens_and_platforms_leave_a_dead_bots_jobs_alone(tmp_path) -> None:
    async with (
        FakeTelegram(token="111:AAA") as fake_a,
        FakeTelegram(token="222:BBB") as fake_b,
        DevWebUI(delay=0.2) as webui,
    ):
        env_a = bot_env(tmp_path, fake_a, webui, LEASE_SECONDS=str(LEASE))
        env_b = bot_env(tmp_path, fake_b, webui, LEASE_SECONDS=str(LEASE))
        url = env_a["DATABASE_URL"]
        ann, ben = fake_a.user(4001, "Ann"), fake_b.user(4002, "Ben")
        bot_a, bot_b = BotProcess(tmp_path, env_a), BotProcess(tmp_path, env_b)
        await asyncio.gather(bot_a.start(), bot_b.start())
        async with (
            bot_a,
            bot_b,
            discord_env(tmp_path, webui=webui, presets=SMALL, lease_seconds=LEASE) as dc,
        ):
            for i in range(3):
                fake_a.send_text(ann, ann, f"/draw ann {i}")
                fake_b.send_text(ben, ben, f"/draw ben {i}")
                await dc.dc.slash("draw", {"prompt": f"dina {i}"})
            await until(lambda: all_delivered(url, 9), 30, "nine jobs")
            assert [photos(fake_a)[f"ann {i}"] for i in range(3)] == [1, 1, 1]
            assert [photos(fake_b)[f"ben {i}"] for i in range(3)] == [1, 1, 1]
            # Ann's bot dies with work queued
            webui.delay = 30.0
            for i in range(3, 6):
                fake_a.send_text(ann, ann, f"/draw ann {i} --steps 40")
            # all three stored (one may be running already) before the bot dies: killed
            # after the first, the others were still Telegram updates, not jobs
            await until(lambda: ann_stored(url), 20, "Ann's jobs queued")
            await bot_a.kill()
            webui.delay = 0.2
            # a lease later (three heartbeats each, and Ann's bot dead on this machine),
            # neither Ben's bot nor the Discord bot has touched them
            await asyncio.sleep(LEASE)
            left = {j.prompt: j.state for j in await jobs(url) if j.prompt.startswith("ann")}
            assert all(left[f"ann {i}"] in ("queued", "running") for i in range(3, 6)), left
            assert not any(call.chat_id == ann.id for call in fake_b.calls if call.params)
            # Ann's bot comes back and finishes its own jobs
            async with await BotProcess(tmp_path, env_a).start() as again:
                await until(lambda: all_delivered(url, 12), 40, "Ann's jobs")
                await again.terminate()
            await bot_b.terminate()
        assert [photos(fake_a)[f"ann {i}"] for i in range(6)] == [1] * 6
        assert {j.state for j in await books_closed(url)} == {"delivered"}


async def test_drawbridge_draw_beside_a_running_bot_touches_none_of_its_jobs(tmp_path) -> None:
    async with FakeTelegram() as fake, DevWebUI(delay=0.3) as webui:
        env = bot_env(tmp_path, fake, webui)
        url = env["DATABASE_URL"]
        ann = fake.user(5001, "Ann")
        async with await BotProcess(tmp_path, env).start() as bot:
            for i in range(4):
                fake.send_text(ann, ann, f"/draw bot job {i}")
            await until(lambda: queued_count(url), 10, "the bot's jobs queued")
            code, out, err = await drawbridge(
                tmp_path,
                "draw",
                "a terminal picture",
                "--out",
                str(tmp_path / "out"),
                **{k: env[k] for k in ("DATABASE_URL", "DATA_DIR", "WEBUI_URLS", "PRESETS_FILE")},
            )
            assert code == 0, err
            await until(lambda: all_delivered(url, 5), 30, "every job")
            await bot.terminate()
        assert [photos(fake)[f"bot job {i}"] for i in range(4)] == [1] * 4
        rows = await books_closed(url)
        cli = [j for j in rows if j.platform == "cli"]
        assert [j.state for j in cli] == ["delivered"]
        assert len(list((tmp_path / "out").glob("*.png"))) == 1


async def test_drawbridge_draw_settles_its_charge_on_postgresql_before_it_exits(
    tmp_path, pg_url
) -> None:
    # (on SQLite: the test above) the SQLAlchemy settle must not be cancelled at exit
    db_url = pg_url
    async with DevWebUI(delay=0.1) as webui:
        env = bot_env(tmp_path, None, webui, DATABASE_URL=db_url)
        code, _, err = await drawbridge(
            tmp_path,
            "draw",
            "a settled picture",
            "--out",
            str(tmp_path / "out"),
            **{k: env[k] for k in ("DATABASE_URL", "DATA_DIR", "WEBUI_URLS", "PRESETS_FILE")},
        )
    assert code == 0, err
    (job,) = await books_closed(db_url)  # reserve + settle
    assert (job.platform, job.state) == ("cli", "delivered")
    async with Database(db_url) as db:
        assert await db.instances.live() == []  # it deregistered on the way out
