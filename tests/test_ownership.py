"""Ownership in the running process: an instance whose lease ran out (its row buried by
another) finds its jobs taken, drops them, registers again; the new owner delivers them. A
render a dead process left is interrupted only while the WebUI provably still draws it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from devwebui import DevWebUI
from storage.db import Database
from tests.harness.engine import running_engine
from tests.harness.memory import MemoryChat, MemoryReplier, memory_service
from tests.harness.process import books_closed, until

LEASE = 0.6


async def test_an_instance_that_lost_its_lease_drops_what_another_took(tmp_path: Path) -> None:
    webui = DevWebUI(delay=0.05)
    await webui.start()
    port = webui.port
    await webui.kill()  # nothing runs yet: the jobs wait in the first instance's queue
    taken = MemoryReplier("taken over")
    async with memory_service(tmp_path, webui, lease_seconds=3 * LEASE) as first:
        ann = MemoryChat(first, "ann")
        for i in range(2):
            await ann.send(f"/draw a lost lease {i}")
        url = first.settings.database_url
        async with (
            DevWebUI(delay=0.05, port=port) as revived,
            memory_service(
                tmp_path, revived, lease_seconds=LEASE, resumed=lambda requester, ref: taken
            ) as second,
        ):
            # a live owner's jobs are not taken
            await second._engine.lease.claim()
            assert taken.updates == [] and len(first._engine.jobs) == 2
            # the first instance freezes past its lease: the second buries it and takes its
            # jobs (what its heartbeat does once the lease ran out)
            async with Database(url) as db:
                await db.instances.deregister(first.instance)
            await second._engine.lease.claim()
            await taken.wait(lambda r: len(r.results) == 2, timeout=20)
            # the first instance noticed at its next heartbeat, let go of them, came back
            await until(lambda: len(first._engine.jobs) == 0, 10, "the jobs dropped")
            async with Database(url) as db:
                live = {i.id for i in await db.instances.live()}
            assert live == {first.instance, second.instance}
    assert ann.replier.results == [] and ann.replier.failures == []
    rows = await books_closed(url)
    assert [j.state for j in rows] == ["delivered", "delivered"]


async def test_an_orphan_render_is_interrupted_only_while_provably_the_jobs(
    tmp_path: Path,
) -> None:
    async with (
        DevWebUI(delay=20.0) as webui,
        running_engine(tmp_path, [webui]) as engine,
        httpx.AsyncClient(timeout=30) as client,
    ):
        # a render the WebUI is drawing for someone (a dead process's, a UI user's)
        drawing = asyncio.create_task(
            client.post(f"{webui.url}/sdapi/v1/txt2img", json={"prompt": "x", "steps": 40})
        )
        await until(lambda: webui.state.job_count != 0, 10, "the render to start")
        stamp = webui.state.job_timestamp
        dispatcher = engine.dispatcher
        # not the one recorded: left alone
        assert not await dispatcher.interrupt_orphan(webui.url, "ts:20000101000000")
        assert not await dispatcher.interrupt_orphan("http://127.0.0.1:1", f"ts:{stamp}")
        assert "/sdapi/v1/interrupt" not in [path for path, _ in webui.requests]
        # the one recorded: interrupted, and the request comes back at once
        assert await dispatcher.interrupt_orphan(webui.url, f"ts:{stamp}")
        answer = await asyncio.wait_for(drawing, 10)
        assert answer.status_code == 200 and len(webui.cut_short) == 1
