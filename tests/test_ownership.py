"""Ownership in the running process: an instance whose lease ran out (its row buried by
another) finds its jobs taken, drops them, registers again; the new owner delivers them."""

from __future__ import annotations

from pathlib import Path

from devwebui import DevWebUI
from storage.db import Database
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
