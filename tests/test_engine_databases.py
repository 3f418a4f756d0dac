"""The core end to end on each database: SQLite files and a real PostgreSQL server.

submit → dispatch → deliver → settle over a real dev-webui, a failure that is refunded, and
queued jobs resumed by a new engine after a restart, each on both backends (the storage
tests cover the repositories alone; these run everything above them too).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.devwebui import DevWebUI
from bot.engine import Engine
from bot.presets import Preset, PresetBook
from bot.types import GenerationRequest, JobState, Requester
from storage.db import Database
from tests.support import MemoryReplier, make_settings
from tests.test_storage_support import (  # noqa: F401  (fixtures, found by name)
    fixture_db_url,
    fixture_pg_server,
)

ANN = Requester("test", "ann", "Ann")
SMALL = {"width": 256, "height": 256, "steps": 4, "hires": False}


def small(prompt: str, **kw: Any) -> GenerationRequest:
    return GenerationRequest(prompt, **{**SMALL, **kw})


async def eventually(fetch: Any, check: Any, timeout: float = 10.0) -> Any:
    """Poll an async value until check(value) holds (settling follows delivery)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if check(value) or asyncio.get_running_loop().time() > deadline:
            assert check(value), value
            return value
        await asyncio.sleep(0.02)


def settings_for(tmp_path: Path, db_url: str, urls: list[str], **overrides: Any) -> Any:
    return make_settings(tmp_path, urls, database_url=db_url, **overrides)


async def test_submit_dispatch_deliver_settle(tmp_path, db_url):
    async with DevWebUI(delay=0.05) as webui:
        settings = settings_for(tmp_path, db_url, [webui.url], daily_credits=50)
        async with Database(settings.database_url) as db, Engine(settings, db) as engine:
            replier = MemoryReplier()
            handle = await engine.submit(
                ANN, engine.parser.parse("a lighthouse --seed 7 --size 512x512 --no-hires"), replier
            )
            reserved = await engine.quotas.show(ANN.key)
            assert reserved.reserved == handle.cost  # reserved at submit
            await replier.wait(lambda r: r.finished)
            assert replier.results, replier.failures
            (image,) = replier.results[0].images
            assert (image.seed, image.width, image.height) == (7, 512, 512)
            (_, body) = [r for r in webui.requests if r[0].endswith("/txt2img")][-1]
            assert (body["prompt"], body["seed"]) == ("a lighthouse", 7)
            view = await eventually(lambda: engine.quotas.show(ANN.key), lambda v: not v.reserved)
            assert view.available == 50 - handle.cost  # settled: charged once
            job = await eventually(
                lambda: db.jobs.get(handle.job_id), lambda j: j.state == JobState.DONE
            )
            assert job.backend == webui.url


async def test_a_job_that_cannot_run_is_refunded(tmp_path, db_url):
    # the WebUI rejects the job (an upscaler it does not have): failed, and nothing charged
    presets = PresetBook(default=Preset(hr_upscaler="No Such Upscaler"))
    async with DevWebUI(delay=0.05) as webui:
        settings = settings_for(tmp_path, db_url, [webui.url], daily_credits=50)
        async with (
            Database(settings.database_url) as db,
            Engine(settings, db, presets=presets) as engine,
        ):
            replier = MemoryReplier()
            handle = await engine.submit(ANN, small("a storm", hires=True), replier)
            await replier.wait(lambda r: r.finished)
            assert not replier.results
            ((job_id, _error, refunded),) = replier.failures
            assert (job_id, refunded) == (handle.job_id, handle.cost)
            view = await eventually(lambda: engine.quotas.show(ANN.key), lambda v: not v.reserved)
            assert view.available == 50
            assert (await db.jobs.get(handle.job_id)).state == JobState.FAILED


async def test_queued_jobs_resume_after_a_restart(tmp_path, db_url):
    webui = DevWebUI(delay=0.05)
    await webui.start()
    port = webui.port
    await webui.kill()  # nothing can run: the jobs stay queued
    settings = settings_for(tmp_path, db_url, [webui.url])
    before = MemoryReplier("before restart")
    async with Database(settings.database_url) as db, Engine(settings, db) as engine:
        handles = [await engine.submit(ANN, small(f"tide {i}"), before) for i in range(3)]
    assert before.results == []
    after = MemoryReplier("after restart")
    async with DevWebUI(delay=0.05, port=port), Database(settings.database_url) as db:
        engine = Engine(settings, db)
        engine.register_replier("test", lambda requester, reply_ref: after)
        async with engine:
            await after.wait(lambda r: len(r.results) == 3, timeout=20)
            assert sorted(r.job_id for r in after.results) == sorted(h.job_id for h in handles)
            view = await eventually(lambda: engine.quotas.show(ANN.key), lambda v: not v.reserved)
            assert view.available == 10_000 - sum(h.cost for h in handles)
