"""The core end to end on SQLite and on PostgreSQL (each test runs on both), through the one
door with the in-memory adapter: submit → dispatch → deliver → settle, refund on failure, resume
after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.service import Service
from bot.types import JobState
from devwebui import DevWebUI
from storage.db import Database
from tests.harness.memory import MemoryChat, MemoryReplier, memory_service


async def eventually(fetch: Any, check: Any, timeout: float = 10.0) -> Any:
    """Poll an async value until check(value) holds (settling follows delivery)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if check(value) or asyncio.get_running_loop().time() > deadline:
            assert check(value), value
            return value
        await asyncio.sleep(0.02)


async def job_row(service: Service, job_id: str) -> Any:
    async with Database(service.settings.database_url) as db:
        return await db.jobs.get(job_id)


async def test_submit_dispatch_deliver_settle(tmp_path: Path, db_url: str) -> None:
    async with (
        DevWebUI(delay=0.05) as webui,
        memory_service(tmp_path, webui, database_url=db_url, daily_credits=50) as service,
    ):
        ann = MemoryChat(service, "ann")
        await ann.send("/draw a lighthouse --seed 7 --size 256x256 --no-hires")
        (handle,) = ann.handles
        (image,) = (await ann.result()).images
        assert (image.seed, image.width, image.height) == (7, 256, 256)
        (_, body) = [r for r in webui.requests if r[0].endswith("/txt2img")][-1]
        assert (body["prompt"], body["seed"]) == ("a lighthouse", 7)
        key = ann.requester.key
        view = await eventually(lambda: service.quota(key), lambda v: not v.reserved)
        assert view.available == 50 - handle.cost  # settled: charged once
        job = await eventually(
            lambda: job_row(service, handle.job_id), lambda j: JobState(j.state).final
        )
        assert job.backend == webui.url and job.state != JobState.FAILED


async def test_a_job_that_cannot_run_is_refunded(tmp_path: Path, db_url: str) -> None:
    # the WebUI fails the job on its only attempt (out of memory): failed, and nothing charged
    async with (
        DevWebUI(delay=0.05) as webui,
        memory_service(
            tmp_path, webui, database_url=db_url, daily_credits=50, max_attempts=1
        ) as service,
    ):
        webui.fail_next("oom")
        ann = MemoryChat(service, "ann")
        await ann.send("/draw a storm --hires")
        (handle,) = ann.handles
        await ann.failure()
        ((job_id, _error, refunded),) = ann.replier.failures
        assert (job_id, refunded) == (handle.job_id, handle.cost)
        key = ann.requester.key
        view = await eventually(lambda: service.quota(key), lambda v: not v.reserved)
        assert view.available == 50
        assert (await job_row(service, handle.job_id)).state == JobState.FAILED


async def test_queued_jobs_resume_after_a_restart(tmp_path: Path, db_url: str) -> None:
    webui = DevWebUI(delay=0.05)
    await webui.start()
    port = webui.port
    await webui.kill()  # nothing can run: the jobs stay queued
    async with memory_service(tmp_path, webui, database_url=db_url) as service:
        ann = MemoryChat(service, "ann")
        for i in range(3):
            await ann.send(f"/draw tide {i}")
        handles = list(ann.handles)
    assert ann.replier.results == []
    after = MemoryReplier("after restart")
    async with (
        DevWebUI(delay=0.05, port=port) as again,
        memory_service(
            tmp_path, again, database_url=db_url, resumed=lambda requester, ref: after
        ) as service,
    ):
        await after.wait(lambda r: len(r.results) == 3, timeout=20)
        assert sorted(r.job_id for r in after.results) == sorted(h.job_id for h in handles)
        key = ann.requester.key
        view = await eventually(lambda: service.quota(key), lambda v: not v.reserved)
        assert view.available == 10_000 - sum(h.cost for h in handles)
