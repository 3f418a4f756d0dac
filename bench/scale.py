"""Scale figures: the fair queue at 100 000 users, and a restart with 100 000 jobs queued.

position_us_100k / job_start_us_100k: an engine (never started; nothing here touches its
database) holding 100 000 queued jobs of 100 000 users, queued by its own `_enqueue` as a
submit queues them. A position lookup is `Engine.position` of a random queued job (what each
submit and /queue ask); a job start is what the dispatcher and the engine do to the queue when
a backend takes the next job: the dispatcher's pick (`peek`, `take`) and the engine's refresh
of the first ten positions (`_refresh_positions`), with one new job pushed between starts (not
timed) so the queue keeps its size. Baseline: the FIFO bot's global list — a position is
`list.index`, a start is `pop(0)` and the first ten read again.

restart_*: in a fresh interpreter (so its RSS is the restart's), a SQLite file holding 100 000
queued Telegram jobs of 20 000 users whose owner is gone, and a dev-webui with 1 s jobs. Then an
engine starts on it as `drawbridge run` would (lease, takeover, dispatcher) and is timed:
`restart_serving_s` until the first WebUI request arrived, `restart_loaded_s` until every job
is in the fair queue, `restart_stall_ms` the longest the event loop did not run (a 5 ms ticker's
worst lateness, from start until loaded; `restart_stall_cpu_ms` the CPU time the loop's thread
spent in that longest stretch between two ticks, which a machine loaded by others does not
inflate), `restart_rss_mib` the process's peak RSS, and
`restart_queue_miscount` the worst difference seen between what /queue says is queued and
running (`Engine.queue_view`, sampled every 50 ms while loading) and the jobs not yet finished.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from bench.common import Recorder, TimedWebUI, bench_settings, median
from bot.engine import Engine, Job
from bot.options import Limits
from bot.payload import resolve
from bot.presets import PresetBook
from bot.types import GenerationRequest, Requester
from bot.webui.client import WebUIClient
from storage.db import Database

USERS = 100_000
RESTART_JOBS = 100_000
RESTART_USERS = 20_000


def _request(i: int) -> GenerationRequest:
    return GenerationRequest(f"a lighthouse at dusk, job {i}", width=256, height=256, steps=4)


def _timed_us(step: Any, rounds: int) -> float:
    """Median µs of `step()` over `rounds` calls (each timed alone)."""
    samples = []
    gc.disable()
    try:
        for _ in range(rounds):
            begin = time.perf_counter_ns()
            step()
            samples.append((time.perf_counter_ns() - begin) / 1000)
    finally:
        gc.enable()
    return median(samples)


async def queue_at_100k_users() -> tuple[dict[str, float], dict[str, float]]:
    """(drawbridge, baseline) µs per position lookup and per job start at 100 000 users."""
    with tempfile.TemporaryDirectory(prefix="drawbridge-bench-scale-") as tmp:
        settings = bench_settings(Path(tmp), ["http://127.0.0.1:9"])
        clients = [WebUIClient(u) for u in settings.webui_urls]
        engine = Engine(settings, Database(settings.database_url), clients=clients)
        replier = Recorder()
        spec = resolve(_request(0), engine.presets, engine.limits)

        def job(i: int) -> Job:
            return Job(f"{i:010x}", Requester("telegram", str(i), f"u{i}"), spec, 1, replier)

        try:
            for i in range(USERS):
                engine._enqueue(job(i))
            rng = random.Random(16)
            ids = list(engine.jobs)
            position = _timed_us(lambda: engine.position(rng.choice(ids)), 20_000)
            fresh = iter(range(USERS, 10 * USERS))
            starts = []
            for _ in range(5_000):
                gc.disable()
                begin = time.perf_counter_ns()
                head = engine.queue.peek()
                assert head is not None
                engine.queue.take(head.job_id)
                await engine._refresh_positions()
                starts.append((time.perf_counter_ns() - begin) / 1000)
                gc.enable()
                engine.jobs.pop(head.job_id)
                engine._enqueue(job(next(fresh)))
            start = median(starts)
            assert len(engine.queue) == USERS

            fifo = [object() for _ in range(USERS)]
            base_position = _timed_us(lambda: fifo.index(fifo[rng.randrange(USERS)]), 500)

            def fifo_start() -> None:
                fifo.pop(0)
                _ = fifo[:10]

            base_start = _timed_us(fifo_start, 5_000)
        finally:
            for client in clients:
                await client.aclose()
    ours = {"position_us_100k": position, "job_start_us_100k": start}
    return ours, {"position_us_100k": base_position, "job_start_us_100k": base_start}


# --- a restart with 100 000 queued, in a fresh interpreter --------------------------------


def _fill(url: str, settings: Any) -> None:
    """RESTART_JOBS queued jobs whose owner ("gone-1") has no instance row any more."""
    from datetime import timedelta

    from sqlalchemy import create_engine

    from bot.engine import _requester_dict
    from storage.models import metadata, utcnow

    jobs = metadata.tables["jobs"]
    spec = resolve(_request(0), PresetBook(), Limits.from_settings(settings)).to_dict()
    now = utcnow()
    sync = create_engine(url.replace("+aiosqlite", ""))
    rows = []
    for i in range(RESTART_JOBS):
        requester = Requester("telegram", str(i % RESTART_USERS), f"u{i % RESTART_USERS}", "7")
        spec["prompt"] = f"a lighthouse at dusk, job {i}"
        params = {"requester": _requester_dict(requester), "spec": spec}
        rows.append(
            {
                "id": f"{i:012x}",
                "user_key": requester.key,
                "platform": "telegram",
                "chat_id": "7",
                "state": "queued",
                "mode": "txt2img",
                "prompt": spec["prompt"],
                "params": json.dumps(params),
                "cost": 1,
                "reply_ref": "{}",
                "created_at": now - timedelta(seconds=RESTART_JOBS - i),
                "owner": "gone-1",
            }
        )
    with sync.begin() as conn:
        conn.execute(jobs.insert(), rows)
    sync.dispose()


class _StallWatch:
    """From start to stop: the event loop's longest lateness on a 5 ms tick (`worst`, seconds),
    and the most CPU its thread used between two ticks (`worst_cpu`), which others' load does
    not inflate."""

    def __init__(self) -> None:
        self.worst = self.worst_cpu = 0.0
        self._watching = True
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        """Stop watching (the figures stay)."""
        self._watching = False
        await self._task

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while self._watching:
            due, cpu = loop.time() + 0.005, time.thread_time()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, loop.time() - due)
            self.worst_cpu = max(self.worst_cpu, time.thread_time() - cpu)


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


async def _migrate(tmp: Path) -> None:
    settings = bench_settings(tmp, ["http://127.0.0.1:9"])
    async with Database(settings.database_url):
        pass  # migrated
    _fill(settings.database_url, settings)


async def _restart(tmp: Path) -> dict[str, float]:
    async with TimedWebUI(delay=1.0, preview_every=0) as server:
        settings = bench_settings(tmp, [server.url])
        async with Database(settings.database_url) as db:
            replier = Recorder()
            engine = Engine(settings, db, presets=PresetBook())
            engine.register_replier("telegram", lambda _requester, _ref: replier)
            miscount = 0
            base_rss = _rss_mib("VmRSS")
            watch = _StallWatch()
            began = time.monotonic()
            await engine.start()
            try:
                while not server.received:  # noqa: ASYNC110 - the server's own record
                    await asyncio.sleep(0.001)
                serving = min(server.received.values()) - began
                while engine.lease.pending or engine._adopting or len(engine.queue) == 0:
                    view = engine.queue_view("telegram:0")
                    unfinished = RESTART_JOBS - replier.finished
                    miscount = max(miscount, abs(view.queued + view.running - unfinished))
                    await asyncio.sleep(0.05)
                loaded = time.monotonic() - began
                await watch.stop()
                view = engine.queue_view("telegram:0")
                left = view.queued + view.running
                assert left >= RESTART_JOBS - replier.finished - 2, (left, replier.finished)
            finally:
                await engine.stop()
    return {
        "restart_serving_s": serving,
        "restart_loaded_s": loaded,
        "restart_stall_ms": watch.worst * 1000,
        "restart_stall_cpu_ms": watch.worst_cpu * 1000,
        "restart_rss_mib": _rss_mib("VmHWM"),
        "restart_rss_before_mib": base_rss,
        "restart_queue_miscount": float(miscount),
    }


def restart() -> dict[str, float]:
    """The restart figures: the database filled by one fresh interpreter, the restart timed
    in another (so its RSS is the restart's alone)."""
    with tempfile.TemporaryDirectory(prefix="drawbridge-bench-restart-") as tmp:
        for step in ("fill", "restart"):
            proc = subprocess.run(
                [sys.executable, "-m", "bench.scale", step, tmp],
                capture_output=True,
                text=True,
                check=True,
            )
    found: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found


def run() -> tuple[dict[str, float], dict[str, float]]:
    """(drawbridge figures, baseline figures)."""
    ours, base = asyncio.run(queue_at_100k_users())
    reset_ours, reset_base = asyncio.run(daily_reset())
    ours.update(reset_ours)
    base.update(reset_base)
    ours.update(restart())
    return ours, base


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        asyncio.run(_migrate(Path(sys.argv[2])))
    elif sys.argv[1] == "restart":
        print(json.dumps(asyncio.run(_restart(Path(sys.argv[2])))))


# --- the daily reset at 100 000 accounts ----------------------------------------------------

ACCOUNTS = 100_000
DAY, NEXT_DAY = "2026-03-01", "2026-03-02"


def _fill_accounts(url: str) -> None:
    from sqlalchemy import create_engine

    from storage.models import metadata, utcnow

    accounts = metadata.tables["quota_accounts"]
    now = utcnow()
    rows = [
        {
            "user_key": f"telegram:{i}",
            "allowance": 10,
            "period": DAY,
            "daily_left": i % 10,
            "bonus": 0,
            "last_reserve_daily": 0,
            "updated_at": now,
        }
        for i in range(ACCOUNTS)
    ]
    sync = create_engine(url.replace("+aiosqlite", ""))
    with sync.begin() as conn:
        conn.execute(accounts.insert(), rows)
    sync.dispose()


async def daily_reset() -> tuple[dict[str, float], dict[str, float]]:
    """daily_reset_stall_ms / daily_reset_draw_ms: the day changes over 100 000 accounts while
    /draws come in (8 at a time, each one `Database.submit_job`: the transaction a /draw is).
    drawbridge resets lazily (each account refills in its first reservation of the day; no
    job runs at the reset time): the longest loop stall (and the most CPU the loop's thread
    spent between two 5 ms ticks, which others' load does not inflate) and the slowest submit
    over 400 submits of the new day, after five to warm up. Baseline: the eager reset that was
    scheduled before (`reset_all`: every stale account updated and a ledger row written for
    each, one transaction), with the same submits arriving while it runs."""
    return await _day_change(eager=False), await _day_change(eager=True)


async def _day_change(*, eager: bool) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="drawbridge-bench-reset-") as tmp:
        settings = bench_settings(Path(tmp), ["http://127.0.0.1:9"])
        async with Database(settings.database_url):
            pass  # migrated
        await asyncio.to_thread(_fill_accounts, settings.database_url)
        async with Database(settings.database_url) as db:
            slowest = 0.0
            ids = iter(range(10**6))

            async def draws(users: range) -> None:
                nonlocal slowest
                for user in users:
                    begin = loop.time()
                    await db.submit_job(
                        id=f"j{next(ids)}",
                        user_key=f"telegram:{user}",
                        platform="telegram",
                        prompt="a fox",
                        params={},
                        cost=1,
                        allowance=10,
                        today=NEXT_DAY,
                    )
                    slowest = max(slowest, loop.time() - begin)

            await draws(range(ACCOUNTS - 5, ACCOUNTS))  # warm: statements compiled
            slowest = 0.0
            gc.collect()
            watch = _StallWatch()
            work: list[Coroutine[Any, Any, object]] = [
                draws(range(i * 50, (i + 1) * 50)) for i in range(8)
            ]
            if eager:
                work.append(db.quota.reset_all(NEXT_DAY, lambda _key: 10))
            await asyncio.gather(*work)
            await watch.stop()
    return {
        "daily_reset_stall_ms": watch.worst * 1000,
        "daily_reset_stall_cpu_ms": watch.worst_cpu * 1000,
        "daily_reset_draw_ms": slowest * 1000,
    }
