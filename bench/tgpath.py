"""The whole path: real python-telegram-bot ↔ a fake Bot API enforcing Telegram's published limits
(1 message/s per chat, 20/min per group, 30/s overall; tests/fakes/telegram_api.py) ↔ drawbridge's
adapter, service and engine ↔ timed dev-webui servers, all in this process on 127.0.0.1.

Figures (issue 16): update → WebUI request on an idle bot beside a bare python-telegram-bot
handler that only forwards the request, measured in the same run; a 1000-/draw burst from 200
users: time until every job is in the fair queue, and a light user's wait; Telegram calls per
delivered job with 5 s jobs (private chats, a group); 429s; results lost; bytes per queued job
through the adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.telegram import TelegramAdapter
from bench.common import (
    TimedWebUI,
    bench_settings,
    in_turn,
    overhead_figures,
    overhead_line,
    path_figures,
    until,
)
from bench.common import webuis as start_webuis
from bot.presets import Preset, PresetBook
from bot.service import Service
from bot.webui.client import WebUIClient
from tests.fakes.telegram_api import Call, FakeTelegram, FakeUser

Log = Callable[[str], None]
SMALL = PresetBook(default=Preset(width=256, height=256, steps=4, hires=False))
COUNTED = ("getUpdates", "getMe", "deleteWebhook", "setMyCommands", "getFile")
USERS = 20  # the overhead's users, in turn


def _fake() -> FakeTelegram:
    """The fake Bot API with Telegram's limits. Its own check of every injected update with
    python-telegram-bot's parser is off here: that is a test of the fake (the suite runs it),
    and in this one process it would count the library's parsing of each update twice."""
    return FakeTelegram(parse_check=False)


@dataclass(frozen=True)
class Config:
    """Sizes and job times; the defaults keep this part near three minutes on 2 cores."""

    overhead_jobs: int = 100
    overhead_delay: float = 0.01
    burst_users: int = 200
    burst_per_user: int = 5
    burst_delay: float = 0.05
    realistic_delay: float = 5.0
    realistic_backends: int = 4
    realistic_private_users: int = 8
    realistic_group_users: int = 4
    realistic_rounds: int = 2
    memory_users: int = 60


@contextlib.asynccontextmanager
async def bot(
    fake: FakeTelegram, urls: list[str], **overrides: Any
) -> AsyncIterator[tuple[Service, TelegramAdapter]]:
    """drawbridge's Telegram bot as `drawbridge run` runs it, with production defaults."""
    with tempfile.TemporaryDirectory(prefix="drawbridge-bench-tg-") as tmp:
        settings = bench_settings(
            Path(tmp), urls, telegram_token=fake.token, telegram_api_base_url=fake.root, **overrides
        )
        service = Service(settings, presets=SMALL)
        adapter = TelegramAdapter(service, settings)
        async with service, adapter:
            await fake.wait_for("deleteWebhook", ok=None, timeout=30)
            yield service, adapter


def results(fake: FakeTelegram) -> list[Call]:
    """Result photos the bot sent."""
    return [
        c for c in fake.calls_of("sendPhoto", ok=True) if "🌱" in (c.params.get("caption") or "")
    ]


def delivered(fake: FakeTelegram, prompt: str) -> bool:
    """Whether a result with this prompt was sent."""
    return any((c.params.get("caption") or "").startswith(prompt) for c in results(fake))


def left(fake: FakeTelegram, chat: Any, count: int) -> bool:
    """Whether exactly `count` of the bot's messages are left in the chat."""
    return len(fake.bot_messages(chat)) == count


def at_least(sized: Any, count: int) -> bool:
    """Whether `sized` holds `count` or more."""
    return len(sized) >= count


def calls_in(fake: FakeTelegram, chat_ids: set[int]) -> list[Call]:
    """Every call the bot made for these chats (sends, edits, deletions)."""
    return [c for c in fake.calls if c.method not in COUNTED and c.chat_id in chat_ids]


# --- update → WebUI request ----------------------------------------------------------------


async def overhead(cfg: Config, log: Log) -> dict[str, float]:
    """Idle bot, one command at a time from 20 returning users in turn (no chat waits for its
    own per-chat limit): the update handed to the library's long poll → the WebUI has read the
    request. The bare bot is a python-telegram-bot handler that only posts the prompt."""
    out: dict[str, float] = {}
    async with start_webuis(1) as servers:
        server = servers[0]
        server.reset(delay=cfg.overhead_delay, encode_delay=0.0)
        async with _fake() as fake:
            bare = await _measure_bare(fake, server, cfg)
        server.reset(delay=cfg.overhead_delay, encode_delay=0.0)
        async with _fake() as fake, bot(fake, [server.url]):
            ours = await _measure(fake, server, cfg.overhead_jobs, "ours")
            out["tg_overhead_floods"] = len(fake.floods)
    out.update(overhead_figures("tg", ours, bare))
    log(overhead_line("telegram", "bare PTB handler", out, "tg"))
    return out


async def _measure(fake: FakeTelegram, server: TimedWebUI, jobs: int, tag: str) -> list[float]:
    async def send(user: FakeUser, prompt: str) -> None:
        fake.send_text(user, user, f"/draw {prompt}")

    users = [fake.user(10_000 + i, f"U{i}") for i in range(USERS)]
    return await in_turn(send, server, users, jobs, tag)


async def _measure_bare(fake: FakeTelegram, server: TimedWebUI, cfg: Config) -> list[float]:
    from telegram import Update
    from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes

    client = WebUIClient(server.url, timeout=60.0, connect_timeout=5.0)

    async def forward(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.text is None:
            return
        prompt = message.text.partition(" ")[2]
        await client.txt2img({"prompt": prompt, "width": 256, "height": 256, "steps": 4})

    app = (
        ApplicationBuilder()
        .token(fake.token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .concurrent_updates(True)
        .build()
    )
    app.add_handler(CommandHandler("draw", forward))
    try:
        async with app:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling()
            try:
                return await _measure(fake, server, cfg.overhead_jobs, "bare")
            finally:
                await app.updater.stop()
                await app.stop()
    finally:
        await client.aclose()


# --- a burst of 1000 /draw from 200 users --------------------------------------------------


async def burst(cfg: Config, log: Log) -> dict[str, float]:
    """200 users send 5 /draw each as fast as the fake takes them (50 ms jobs, one backend);
    then a light user sends one. Enqueued: first update → every job in the fair queue. Light
    wait: its update → its request holds the WebUI, in job-times; and how many jobs of others
    reached the WebUI first. Then every result is delivered under Telegram's limits."""
    out: dict[str, float] = {}
    total = cfg.burst_users * cfg.burst_per_user
    async with start_webuis(1) as servers:
        server = servers[0]
        server.reset(delay=cfg.burst_delay, encode_delay=0.005)
        async with _fake() as fake, bot(fake, [server.url]) as (service, _):
            engine = service._engine
            users = [fake.user(20_000 + i, f"B{i}") for i in range(cfg.burst_users)]
            seen: set[str] = set()
            stop = asyncio.Event()

            async def sample() -> None:
                while not stop.is_set():
                    seen.update(engine.jobs)
                    await asyncio.sleep(0.002)

            sampler = asyncio.create_task(sample())
            began = time.monotonic()
            for n in range(cfg.burst_per_user):
                for user in users:
                    fake.send_text(user, user, f"/draw burst {user.id} {n}")
            pushed = time.monotonic() - began
            await until(lambda: len(seen) >= total, 120, step=0.005)
            enqueued = time.monotonic() - began
            light = fake.user(29_999, "Light")
            asked = time.monotonic()
            fake.send_text(light, light, "/draw light")

            def light_job() -> str | None:
                for job in engine.jobs.values():
                    if job.requester.user_id == str(light.id):
                        return str(job.id)
                return None

            await until(light_job, 30, step=0.0005)
            queued = time.monotonic()
            job_id = light_job()
            assert job_id is not None
            fair, _ = engine.position(job_id)  # its fair turn: the jobs the fair order puts first
            started = await asyncio.wait_for(server.wait_started("light"), 120)
            ahead = sum(1 for at in server.started.values() if queued < at < started)
            beyond = max(0, ahead - (fair - 1))
            wait_jobs = (started - asked) / cfg.burst_delay
            await until(lambda: len(results(fake)) >= total + 1, 600, step=0.05)
            delivered = time.monotonic() - began
            light_result = next(c for c in results(fake) if c.chat_id == light.id)
            stop.set()
            await sampler
            await until(lambda: len(fake.bot_messages(light)) == 1, 60, step=0.05)
            chats = {u.id for u in users} | {light.id}
            calls = len(calls_in(fake, chats))
            lost = total + 1 - len({c.params["caption"] for c in results(fake)})
            out.update(
                {
                    "tg_burst_enqueued_s": enqueued,
                    "tg_burst_light_beyond_jobs": float(beyond),
                    "tg_burst_light_reached_ms": (queued - asked) * 1000,
                    "tg_burst_floods": float(len(fake.floods)),
                    "tg_burst_lost": float(lost),
                    "tg_burst_calls_per_job": calls / (total + 1),
                    "tg_burst_delivered_s": delivered,
                }
            )
            log(
                f"telegram burst: {total} /draw pushed in {pushed:.2f} s, all in the queue "
                f"after {enqueued:.2f} s; the light user's job was queued "
                f"{(queued - asked) * 1000:.0f} ms after its update at fair position {fair}, "
                f"started after {ahead} others ({beyond} beyond its fair turn; "
                f"{wait_jobs:.1f} job-times), its result {light_result.timestamp - asked:.1f} s "
                f"after its update; all delivered after "
                f"{delivered:.1f} s (GPU time {total * cfg.burst_delay:.0f} s); "
                f"{calls / (total + 1):.2f} calls per job; {len(fake.floods)} × 429; lost {lost}"
            )
    return out


# --- calls per delivered job with 5 s jobs -------------------------------------------------


async def realistic(cfg: Config, log: Log) -> dict[str, float]:
    """5 s jobs on four backends: users in private chats and in one group each draw, wait for
    the picture, and draw again. Calls per delivered job (sends, edits, deletions) per kind
    of chat, under Telegram's published limits."""
    out: dict[str, float] = {}
    async with start_webuis(cfg.realistic_backends) as servers:
        for s in servers:
            s.reset(delay=cfg.realistic_delay, encode_delay=0.05)
        async with _fake() as fake, bot(fake, [s.url for s in servers]):
            private = [fake.user(30_000 + i, f"P{i}") for i in range(cfg.realistic_private_users)]
            members = [fake.user(31_000 + i, f"G{i}") for i in range(cfg.realistic_group_users)]
            group = fake.group_chat("Bench group")

            async def draws(user: FakeUser, chat: Any, prefix: str) -> None:
                for n in range(cfg.realistic_rounds):
                    prompt = f"picture {user.id} {n}"
                    fake.send_text(chat, user, f"{prefix} {prompt}")
                    await until(functools.partial(delivered, fake, prompt), 120, step=0.05)
                    await asyncio.sleep(0.5)  # a person looks at the picture

            began = time.monotonic()
            await asyncio.gather(
                *(draws(u, u, "/draw") for u in private),
                *(draws(u, group, "/draw@drawbridge_bot") for u in members),
            )
            took = time.monotonic() - began
            await until(lambda: len(fake.bot_messages(group)) == len(members) * 2, 60, 0.05)
            for user in private:
                await until(functools.partial(left, fake, user, 2), 60, 0.05)
            jobs_private = len(private) * cfg.realistic_rounds
            jobs_group = len(members) * cfg.realistic_rounds
            per_private = len(calls_in(fake, {u.id for u in private})) / jobs_private
            per_group = len(calls_in(fake, {group.id})) / jobs_group
            out["tg_calls_per_job_private"] = per_private
            out["tg_calls_per_job_group"] = per_group
            out["tg_realistic_floods"] = float(len(fake.floods))
            out["tg_realistic_lost"] = float(jobs_private + jobs_group - len(results(fake)))
            log(
                f"telegram 5 s jobs: {jobs_private} private + {jobs_group} group jobs in "
                f"{took:.1f} s; calls per delivered job: private {per_private:.2f}, group "
                f"{per_group:.2f}; {len(fake.floods)} × 429"
            )
    return out


# --- memory per queued job through the adapter ---------------------------------------------


async def memory(cfg: Config, log: Log) -> dict[str, float]:
    """Bytes a queued job holds through the adapter (engine job, queue entry, replier, status,
    outbox state): tracemalloc before and after `memory_users` × 5 jobs are queued behind one
    long job, once their acknowledgements have gone out."""
    out: dict[str, float] = {}
    jobs = cfg.memory_users * 5
    async with start_webuis(1) as servers:
        server = servers[0]
        server.reset(delay=600.0, encode_delay=0.0)
        async with _fake() as fake, bot(fake, [server.url]) as (service, adapter):
            engine = service._engine
            users = [fake.user(40_000 + i, f"M{i}") for i in range(cfg.memory_users)]
            first = users[0]
            fake.send_text(first, first, "/draw the long one")
            await until(lambda: "the long one" in server.started, 30)
            await until(lambda: adapter.rt.outbox.waiting() == 0, 30)
            gc.collect()
            tracemalloc.start(FRAMES)
            before = tracemalloc.take_snapshot()
            for n in range(5):  # a round at a time: tracemalloc slows everything tenfold
                for user in users:
                    fake.send_text(user, user, f"/draw queued {user.id} {n}")
                # every job of the round is tracked (one of them may already wait on the WebUI)
                await until(functools.partial(at_least, engine.jobs, 1 + (n + 1) * len(users)), 120)
            await until(lambda: adapter.rt.outbox.waiting() == 0, 120, step=0.05)
            await asyncio.sleep(0.5)
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            grown = after.compare_to(before, "traceback")
            # what drawbridge holds for its queued jobs: allocations made on our code's behalf
            # (the fake Bot API in this process and python-telegram-bot's own caches aside)
            ours = sum(s.size_diff for s in grown if _ours(s.traceback))
            everything = sum(s.size_diff for s in grown)
            out["tg_bytes_per_queued_job"] = ours / jobs
            log(
                f"telegram memory: {jobs} queued jobs, {ours / jobs:.0f} B each through the "
                f"adapter (the whole process grew {everything / jobs:.0f} B per job, the fake "
                "Bot API and python-telegram-bot's caches included)"
            )
    return out


FRAMES = 12
OUR_CODE = ("/adapters/", "/bot/", "/storage/")


def _ours(traceback: tracemalloc.Traceback) -> bool:
    files = [frame.filename for frame in traceback]
    if any("/tests/fakes/" in f for f in files):
        return False
    return any(part in f for f in files for part in OUR_CODE)


async def run(cfg: Config, log: Log) -> dict[str, float]:
    """Every Telegram figure; 429s and lost results summed over the runs."""
    return await path_figures("telegram", "tg", (overhead, burst, realistic, memory), cfg, log)
