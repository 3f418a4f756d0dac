"""Real processes, real signals: `drawbridge run` killed (-9) or stopped (SIGTERM) at each step
of a job's life, then started again; nothing accepted is lost, nothing drawn or charged twice.

Each test runs the bot as a subprocess against the fake Telegram and a DevWebUI in this
process, on one SQLite file; afterwards the books are checked: every job ended, every
reservation has exactly one settle or release (tests/harness/process.py).
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime

import pytest

from devwebui import DevWebUI
from storage.db import Database
from tests.fakes.telegram_api import FakeTelegram
from tests.harness.process import (
    BotProcess,
    books_closed,
    bot_env,
    hold_sqlite_lock,
    jobs,
    photos,
    renders,
    until,
)

pytestmark = pytest.mark.timeout(90)


async def job_in(url: str, prompt: str, check) -> bool:
    return any(j.prompt == prompt and check(j) for j in await jobs(url))


async def test_kill_at_each_step_of_a_job_loses_nothing_and_draws_nothing_twice(tmp_path) -> None:
    # a long render: still going when the new process comes up, however slow the machine
    async with FakeTelegram() as fake, DevWebUI(delay=30.0) as webui:
        env = bot_env(tmp_path, fake, webui, DB_BUSY_TIMEOUT="0.5")
        url = env["DATABASE_URL"]
        alice = fake.user(1001, "Alice")

        # 1. kill -9 during the WebUI call
        async with await BotProcess(tmp_path, env).start() as bot:
            fake.send_text(alice, alice, "/draw a patient fox --seed 1 --steps 40")
            # drawing, and proven to be this job's render on the WebUI
            await until(lambda: job_in(url, "a patient fox", lambda j: j.backend_task), 20)
            await bot.kill()
        assert webui.state.job_count != 0  # the WebUI is still drawing the orphan
        async with await BotProcess(tmp_path, env).start() as bot:
            await until(lambda: webui.cut_short, 10, "the orphan render interrupted")
            webui.delay = 0.2  # the new render need not take long
            await until(lambda: photos(fake)["a patient fox"], 20, "the picture")
            # the orphan was interrupted, not finished: drawn once, sent once
            assert renders(webui)["a patient fox"] == 2 and len(webui.cut_short) == 1

            # 2. kill -9 during the upload
            fake.slow("sendPhoto", 30.0)  # the upload hangs
            fake.send_text(alice, alice, "/draw a lighthouse --seed 2")
            # stored as rendered before the upload began
            await until(lambda: job_in(url, "a lighthouse", lambda j: j.state == "rendered"))
            await asyncio.sleep(0.3)  # the upload is on its way
            await bot.kill()
        fake.slow("sendPhoto", 0)
        assert photos(fake)["a lighthouse"] == 0
        assert await reserved(url, "telegram:1001") == 1  # nobody confirmed the upload
        async with await BotProcess(tmp_path, env).start() as bot:
            await until(lambda: photos(fake)["a lighthouse"], 20, "the picture")
            await until(lambda: settled(url), 10, "the settle")
            assert renders(webui)["a lighthouse"] == 1  # sent from the store, not drawn again

            # 3. kill -9 after the upload, before the settle committed
            fake.slow("sendPhoto", 1.0)
            fake.send_text(alice, alice, "/draw an owl --seed 3")
            await until(lambda: job_in(url, "an owl", lambda j: j.state == "rendered"))
            locker = await hold_sqlite_lock(url)  # the settle cannot commit
            await until(lambda: photos(fake)["an owl"], 10, "the upload")
            await bot.kill()
            locker.kill()
            await locker.wait()
        fake.slow("sendPhoto", 0)
        async with await BotProcess(tmp_path, env).start() as bot:
            await until(lambda: settled(url), 20, "the settle")
            await bot.terminate()
        # not confirmed as sent, so sent again (at least once), and charged once
        assert photos(fake)["an owl"] == 2 and renders(webui)["an owl"] == 1
        assert photos(fake)["a lighthouse"] == 1 and photos(fake)["a patient fox"] == 1
        assert {j.state for j in await books_closed(url)} == {"delivered"}
        assert await reserved(url, "telegram:1001") == 0
        # each status message was taken over by the process that delivered: none is left
        captions = [(m.get("caption") or m.get("text") or "") for m in fake.bot_messages(alice)]
        assert all("🌱" in c for c in captions), captions


async def test_sigterm_finishes_the_upload_hands_back_the_long_job_and_refuses_new_work(
    tmp_path,
) -> None:
    async with FakeTelegram() as fake, DevWebUI(delay=0.2) as webui:
        env = bot_env(tmp_path, fake, webui, SHUTDOWN_GRACE="4")
        url = env["DATABASE_URL"]
        alice, bob, carol = fake.user(1001, "Alice"), fake.user(1002, "Bob"), fake.user(1003, "C")
        async with await BotProcess(tmp_path, env).start() as bot:
            fake.slow("sendPhoto", 1.5)
            fake.send_text(alice, alice, "/draw a quick sketch --seed 4")
            await until(lambda: job_in(url, "a quick sketch", lambda j: j.state == "rendered"))
            webui.delay = 30.0  # bob's job is long
            fake.send_text(bob, bob, "/draw a long mural --seed 5 --steps 40")
            await until(lambda: job_in(url, "a long mural", lambda j: j.backend_task), 20)
            bot.proc.send_signal(signal.SIGTERM)
            await bot.wait_log("drawbridge stopping")
            fake.send_text(carol, carol, "/draw one more please")
            code = await bot.wait(30)
        assert code == 0
        # the upload in flight finished and was settled before the process exited
        assert photos(fake)["a quick sketch"] == 1
        # the long render was interrupted (it was provably bob's), not left to the WebUI
        assert len(webui.cut_short) == 1
        # the new command was refused politely, and nothing was charged for it
        refusal = [m.get("text", "") for m in fake.bot_messages(carol)]
        assert refusal and "restarting" in refusal[0], refusal
        assert not await job_in(url, "one more please", lambda j: True)
        states = {j.prompt: j.state for j in await jobs(url)}
        assert states == {"a quick sketch": "delivered", "a long mural": "queued"}
        async with Database(url) as db:
            assert await db.instances.live() == []  # deregistered: taken over at once
        fake.slow("sendPhoto", 0)
        webui.delay = 0.2
        async with await BotProcess(tmp_path, env).start() as bot:
            await until(lambda: photos(fake)["a long mural"], 20, "the picture")
            await until(lambda: settled(url), 10, "the settle")
            await bot.terminate()
        # drawn once to the end (the interrupted one was cut short), sent once
        assert renders(webui)["a long mural"] == 2 and photos(fake)["a long mural"] == 1
        assert photos(fake)["a quick sketch"] == 1
        await books_closed(url)


async def test_kill_while_fifty_commands_arrive_loses_no_accepted_job(tmp_path) -> None:
    async with FakeTelegram() as fake, DevWebUI(delay=0.05) as webui:
        env = bot_env(tmp_path, fake, webui)
        url = env["DATABASE_URL"]
        users = [fake.user(2001 + n, f"User {n}") for n in range(5)]
        sent: dict[str, dict] = {}

        async def arrive(numbers: range) -> None:
            for i in numbers:
                user = users[i % len(users)]
                sent[f"burst {i}"] = fake.send_text(user, user, f"/draw burst {i} --seed {i}")
                await asyncio.sleep(0.02)

        async with await BotProcess(tmp_path, env).start() as bot:
            await arrive(range(25))
            killed_at = time.monotonic()
            await bot.kill()  # mid-burst: some taken in, some drawn, some in flight
        await arrive(range(25, 50))
        async with await BotProcess(tmp_path, env).start() as bot:
            await until(lambda: not fake.pending_updates, 20, "every update fetched")
            await until(lambda: all_final(url), 30, "every job ended")
            await bot.terminate()
        rows = await books_closed(url)
        # answered (acknowledged, refused or delivered): a message replying to the command
        answered = {
            (call.chat_id, call.params["reply_parameters"]["message_id"])
            for call in fake.calls
            if call.ok and "reply_parameters" in call.params
        }
        stored = {job.prompt: job for job in rows}
        resent = 0
        for prompt, message in sent.items():
            key = (message["chat"]["id"], message["message_id"])
            if key in answered:
                # every acknowledged command is a stored job: delivered once, or refunded
                # with a message saying so
                job = stored[prompt]
                if job.state == "delivered":
                    times = photo_times(fake, prompt)
                    if len(times) == 2:
                        # confirmed by Telegram just before the kill, but not yet settled:
                        # sent again after the restart (at least once), and charged once
                        assert times[0] < killed_at < times[1], prompt
                        resent += 1
                    else:
                        assert len(times) == 1, (prompt, times)
                else:
                    texts = [m.get("text", "") for m in fake.bot_messages(message["chat"]["id"])]
                    assert any("returned" in text for text in texts), (prompt, texts)
            else:
                # taken in by the killed process and lost before it was stored: never
                # acknowledged, never charged
                assert prompt not in stored, prompt
        assert resent <= 2  # only what was between the upload and its settle
        assert len(stored) >= 25  # everything after the restart, and what was stored before
        # a render is drawn again only if the kill cut it off (one on the GPU, one waiting)
        again = sum(n - 1 for n in renders(webui).values() if n > 1)
        assert again <= 2, renders(webui)


def photo_times(fake: FakeTelegram, prompt: str) -> list[float]:
    return [
        call.timestamp
        for call in fake.calls_of("sendPhoto", ok=True)
        if (call.params.get("caption") or "").split("\n", 1)[0] == prompt
    ]


async def all_final(url: str) -> bool:
    rows = await jobs(url)
    return bool(rows) and all(j.state in ("delivered", "failed", "cancelled") for j in rows)


async def reserved(url: str, user: str) -> int:
    async with Database(url) as db:
        return (await db.quota.show(user, allowance=1000, today=today())).reserved


async def settled(url: str) -> list:
    rows = await jobs(url)
    return rows if rows and all(j.state == "delivered" for j in rows) else []


def today() -> str:
    return datetime.now(UTC).date().isoformat()
