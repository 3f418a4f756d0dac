"""A large takeover: the jobs of a stopped instance come back in batches while the bot serves,
and /queue counts the ones still being loaded all along."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from sqlalchemy import create_engine

from bot.engine import Engine
from bot.lease import RESUME_BATCH
from bot.options import Limits
from bot.payload import resolve
from bot.presets import PresetBook
from devwebui import DevWebUI
from storage.db import Database
from storage.models import metadata, utcnow
from tests.harness.engine import small
from tests.harness.memory import MemoryReplier
from tests.harness.settings import make_settings

JOBS = 2 * RESUME_BATCH + 500  # three batches


def _orphans(url: str, spec: dict) -> None:
    """JOBS queued jobs of ten users whose owner ("gone-1") has no instance row."""
    now = utcnow()
    rows = []
    for i in range(JOBS):
        user = str(i % 10)
        requester = {"platform": "test", "user_id": user, "display_name": f"u{user}"}
        params = {"requester": requester, "spec": {**spec, "prompt": f"job {i}"}}
        rows.append(
            {
                "id": f"{i:012x}",
                "user_key": f"test:{user}",
                "platform": "test",
                "state": "queued",
                "prompt": f"job {i}",
                "params": json.dumps(params),
                "cost": 1,
                "reply_ref": "{}",
                "created_at": now - timedelta(seconds=JOBS - i),
                "owner": "gone-1",
            }
        )
    sync = create_engine(url.replace("+aiosqlite", ""))
    with sync.begin() as conn:
        conn.execute(metadata.tables["jobs"].insert(), rows)
    sync.dispose()


async def test_queue_counts_jobs_still_being_taken_over(tmp_path) -> None:
    # one long render at a time: nothing finishes while the takeover goes on
    async with DevWebUI(delay=30.0) as webui:
        settings = make_settings(tmp_path, [webui.url])
        async with Database(settings.database_url):
            pass  # migrated
        spec = resolve(small(), PresetBook(), Limits.from_settings(settings)).to_dict()
        spec["mode"] = spec["mode"].value
        await asyncio.to_thread(_orphans, settings.database_url, spec)
        async with Database(settings.database_url) as db:
            engine = Engine(settings, db)
            replier = MemoryReplier()
            engine.register_replier("test", lambda _requester, _ref: replier)
            async with engine:
                view = engine.queue_view("test:0")
                # serving after the first batch, the rest still to come, all of it counted
                assert len(engine.queue) < JOBS
                assert view.queued + view.running == JOBS
                seen = set()
                while engine.lease.pending or engine._adopting or len(engine.queue) < JOBS - 2:
                    view = engine.queue_view("test:0")
                    assert view.queued + view.running == JOBS
                    seen.add(len(engine.queue) + view.running)
                    await asyncio.sleep(0.005)
                assert len(seen) > 1  # it was watched while the batches came in
                view = engine.queue_view("test:0")
                assert view.queued + view.running == JOBS
                # the user's own jobs, each with its place, oldest first
                assert len(view.mine) == JOBS // 10
                positions = [entry.position for entry in view.mine if not entry.running]
                assert positions == sorted(positions) and len(set(positions)) == len(positions)
