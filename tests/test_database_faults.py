"""Database faults in the middle of a job, end to end through the one door: the SQLite write
lock held by another process past every timeout, PostgreSQL stopped, a full disk. The picture
drawn meanwhile is kept, its bookkeeping written once the database is back, and no job is left
running with its credits reserved; what is asked meanwhile is refused politely, uncharged."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import Connection

from bot.types import JobState
from devwebui import DevWebUI
from storage.vocab import StorageFull
from tests.harness.memory import MemoryChat, MemoryReplier, memory_service
from tests.harness.process import books_closed, hold_sqlite_lock, until
from tests.harness.storage import PgControl
from tests.harness.telegram import telegram_env

pytestmark = pytest.mark.timeout(60)


def running(replier: MemoryReplier) -> bool:
    return any(u.state is JobState.RUNNING for u in replier.updates)


def retried(caplog: pytest.LogCaptureFixture, what: str) -> bool:
    return any(what in r.getMessage() and "trying again" in r.getMessage() for r in caplog.records)


async def test_a_write_lock_held_past_every_timeout_mid_job_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bot.steps")
    async with (
        DevWebUI(delay=1.0) as webui,
        memory_service(tmp_path, webui, db_busy_timeout=0.2, db_retry_seconds=0.5) as service,
    ):
        url = service.settings.database_url
        ann, bob = MemoryChat(service, "ann"), MemoryChat(service, "bob")
        await ann.send("/draw a locked harbour")
        await ann.replier.wait(running)
        locker = await hold_sqlite_lock(url)  # longer than busy timeout and retries together
        try:
            # drawn meanwhile; storing it waits for the lock, in the background
            await asyncio.wait_for(_until(lambda: retried(caplog, "render")), 10)
            # a new request is refused with a sentence, and nothing is charged
            answer = await bob.send("/draw meanwhile")
            assert "cannot reach its database" in answer and "Nothing was charged" in answer
        finally:
            locker.kill()
            await locker.wait()
        result = await ann.result(timeout=20)
        assert result.images and ann.replier.failures == []
    (job,) = await books_closed(url)
    assert job.state == "delivered"


async def test_a_command_is_acknowledged_only_once_it_is_stored(tmp_path: Path) -> None:
    async with telegram_env(tmp_path, db_busy_timeout=0.2, db_retry_seconds=0.3) as env:
        alice = env.fake.user(1001, "Alice")
        url = env.settings.database_url
        locker = await hold_sqlite_lock(url)
        try:
            asked = env.fake.send_text(alice, alice, "/draw a refused fox")
            answer = await env.wait_message(alice, "cannot reach its database")
        finally:
            locker.kill()
            await locker.wait()
        # that refusal is the only answer: no "Got it", no status for a job never stored
        assert env.fake.bot_messages(alice) == [answer]
        assert answer["reply_to_message"]["message_id"] == asked["message_id"]
        assert await books_closed(url) == []
        env.fake.send_text(alice, alice, "/draw a stored fox")
        await env.wait_result(alice)


async def test_postgresql_stopped_mid_job_loses_nothing(
    tmp_path: Path, pg_url: str, pg_control: PgControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bot.steps")
    async with (
        DevWebUI(delay=1.5) as webui,
        memory_service(tmp_path, webui, database_url=pg_url, db_retry_seconds=1) as service,
    ):
        ann = MemoryChat(service, "ann")
        await ann.send("/draw a quiet server room")
        await ann.replier.wait(running)
        await asyncio.to_thread(pg_control.stop)
        try:
            # the picture is drawn while the database is away (longer than DB_RETRY_SECONDS):
            # the job's writes wait in the background
            await asyncio.wait_for(_until(lambda: retried(caplog, "job")), 15)
            await asyncio.sleep(2.0)
        finally:
            await asyncio.to_thread(pg_control.start)
        result = await ann.result(timeout=30)
        assert result.images and ann.replier.failures == []
    (job,) = await books_closed(pg_url)
    assert job.state == "delivered"


async def test_a_full_disk_mid_job_keeps_the_picture_until_there_is_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bot.steps")
    async with (
        DevWebUI(delay=0.8) as webui,
        memory_service(tmp_path, webui) as service,
    ):
        db = service._engine.db  # white-box: the writer connection is the one to fill
        ann, bob = MemoryChat(service, "ann"), MemoryChat(service, "bob")
        await ann.send("/draw a crowded attic")
        await ann.replier.wait(running)
        pages = await db.write_tx(_cap)
        await _fill(db)
        await asyncio.wait_for(_until(lambda: retried(caplog, "render")), 10)
        answer = await bob.send("/draw meanwhile")
        assert "storage is full" in answer and "Nothing was charged" in answer
        assert ann.replier.results == []
        # room again: the stored picture is delivered and settled
        await db.write_tx(lambda c: c.exec_driver_sql(f"PRAGMA max_page_count = {pages * 100}"))
        result = await ann.result(timeout=20)
        assert result.images and ann.replier.failures == []
    rows = await books_closed(service.settings.database_url)
    assert [j.state for j in rows if j.platform == "memory"] == ["delivered"]


def _cap(conn: Connection) -> int:
    # SQLITE_FULL for real: the writer's connection may not grow the file any further
    pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
    conn.exec_driver_sql(f"PRAGMA max_page_count = {pages + 16}")
    conn.exec_driver_sql(
        "INSERT INTO jobs (id, user_key, platform, chat_id, state, mode, prompt, params, cost,"
        " attempts, created_at, result_refs) VALUES ('filler', 'x', 'x', '', 'failed',"
        " 'txt2img', '', '{}', 0, 0, '2025-01-01 00:00:00', '[]')"
    )
    return pages


# Rows of every table a job writes, so that no page keeps room for even a small row.
_FILLERS = [
    "INSERT INTO jobs (id, user_key, platform, chat_id, state, mode, prompt, params, cost,"
    " attempts, created_at, result_refs) VALUES ('f' || ?2, 'x', 'x', '', 'failed', 'txt2img',"
    " hex(zeroblob(?1)), '{}', 0, 0, '2025-01-01 00:00:00', '[]')",
    "INSERT INTO results (job_id, image_index, image_ref, seed, width, height, infotext,"
    " created_at) VALUES ('filler', ?2, 'x', 0, 0, 0, hex(zeroblob(?1)), '2025-01-01 00:00:00')",
    "INSERT INTO actions (key, job_id, image_index, kind, created_at)"
    " VALUES (substr(hex(zeroblob(?1)) || ?2, -16), 'filler', 0, 'delete', '2025-01-01')",
    "INSERT INTO quota_ledger (user_key, job_id, kind, period, daily, bonus, created_at)"
    " VALUES (substr(hex(zeroblob(?1)), 1, 120), 'f' || ?2, 'grant', '2025-01-01', 0, 0,"
    " '2025-01-01')",
]


async def _fill(db) -> None:
    """Fill every free page, so the next write that needs room fails."""
    n = 0
    for statement in _FILLERS:
        size = 8192
        while size >= 1:
            n += 1
            try:
                await db.write_tx(
                    lambda c, st=statement, k=size, i=n: c.exec_driver_sql(st, (k, str(i)))
                )
            except StorageFull:
                size //= 2


async def _until(check) -> None:
    await until(check, 3600)  # bounded by the caller's wait_for
