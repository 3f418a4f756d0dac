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
            loop = asyncio.get_running_loop()
            worst = 0.0
            watching = True

            worst_cpu = 0.0

            async def ticker() -> None:
                nonlocal worst, worst_cpu
                while watching:
                    due, cpu = loop.time() + 0.005, time.thread_time()
                    await asyncio.sleep(0.005)
                    worst = max(worst, loop.time() - due)
                    worst_cpu = max(worst_cpu, time.thread_time() - cpu)

            miscount = 0
            base_rss = _rss_mib("VmRSS")
            watch = asyncio.create_task(ticker())
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
                watching = False
                await watch
                view = engine.queue_view("telegram:0")
                left = view.queued + view.running
                assert left >= RESTART_JOBS - replier.finished - 2, (left, replier.finished)
            finally:
                await engine.stop()
    return {
        "restart_serving_s": serving,
        "restart_loaded_s": loaded,
        "restart_stall_ms": worst * 1000,
        "restart_stall_cpu_ms": worst_cpu * 1000,
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
    ours.update(restart())
    return ours, base


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        asyncio.run(_migrate(Path(sys.argv[2])))
    elif sys.argv[1] == "restart":
        print(json.dumps(asyncio.run(_restart(Path(sys.argv[2])))))
