"""Database: migrations, SQLite connection settings, locking, start-up from any folder."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text, update
from sqlalchemy.exc import IntegrityError

import storage.db
from storage.db import Database, alembic_config, upgrade
from storage.models import metadata

TABLES = {
    "users",
    "quota_accounts",
    "quota_ledger",
    "quota_ledger_days",
    "jobs",
    "user_settings",
    "actions",
    "results",
    "instances",
    "bans",
    "audit",
}
DAY = "2025-03-01"


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


async def schema(database: Database) -> tuple[set[str], list[str]]:
    async with database.read() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    return tables, [str(row[0]) for row in versions]


async def test_migrations_create_every_table(db: Database) -> None:
    tables, versions = await schema(db)
    assert tables == TABLES | {"alembic_version"}
    assert versions == [head_revision()]


async def test_models_and_migrations_agree(db: Database) -> None:
    def diff(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with db.read() as conn:
        assert await conn.run_sync(diff) == []


async def test_upgrade_is_idempotent_and_keeps_data(db_url: str) -> None:
    await upgrade(db_url)
    await upgrade(db_url)
    async with Database(db_url) as database:
        await database.quota.reserve("t:1", "j", 3, allowance=10, today=DAY)
    await upgrade(db_url)
    async with Database(db_url) as database:
        tables, versions = await schema(database)
        assert tables == TABLES | {"alembic_version"}
        assert versions == [head_revision()]
        shown = await database.quota.show("t:1", allowance=10, today=DAY)
        assert (shown.available, shown.reserved) == (7, 3)


async def test_databases_starting_together_migrate_once(db_url: str) -> None:
    databases = [Database(db_url) for _ in range(5)]
    try:
        await asyncio.gather(*(d.start() for d in databases))
        for database in databases:
            assert await schema(database) == (TABLES | {"alembic_version"}, [head_revision()])
    finally:
        await asyncio.gather(*(d.close() for d in databases))


async def test_sqlite_settings_apply_to_every_connection(sqlite_url: str) -> None:
    async with Database(sqlite_url) as database, contextlib.AsyncExitStack() as stack:
        # Held open together, so these are three different pooled connections.
        conns = [await stack.enter_async_context(database.read()) for _ in range(3)]
        assert len({id(await conn.get_raw_connection()) for conn in conns}) == 3
        for conn in conns:
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
            # synchronous 1 is NORMAL
            assert pragmas == {
                "journal_mode": "wal",
                "synchronous": 1,
                "foreign_keys": 1,
                "busy_timeout": 30000,
            }


async def test_sqlite_migrations_run_with_foreign_keys_off(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch-mode rebuild of `jobs` would otherwise cascade-delete actions and results.
    seen: list[int] = []
    upgrade_sync = storage.db._upgrade_sync

    def observe(connection: Connection, *args: Any) -> None:
        seen.append(connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one())
        upgrade_sync(connection, *args)

    monkeypatch.setattr(storage.db, "_upgrade_sync", observe)
    async with Database(sqlite_url) as database, database.read() as conn:
        # The connection that migrated is back in the pool with foreign keys on again.
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1
    assert seen == [0]


async def test_default_style_url_is_relative_to_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No alembic.ini here: the migrations are found inside the package.
    monkeypatch.chdir(tmp_path)
    async with Database("sqlite+aiosqlite:///data/drawbridge.db") as database:
        await database.quota.grant("t:1", 1, allowance=1, today=DAY)
    assert (tmp_path / "data" / "drawbridge.db").is_file()
    await upgrade("sqlite+aiosqlite:///data/drawbridge.db")


async def test_readers_do_not_wait_for_a_writer_and_writers_queue(sqlite_url: str) -> None:
    async with Database(sqlite_url) as first, Database(sqlite_url) as second:
        await first.quota.grant("t:1", 5, allowance=10, today=DAY)
        holding, release = asyncio.Event(), asyncio.Event()

        async def hold_write_lock() -> None:
            async with second.write() as conn:
                accounts = metadata.tables["quota_accounts"]
                await conn.execute(update(accounts).values(bonus=accounts.c.bonus + 1))
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold_write_lock())
        await holding.wait()
        # A reader sees the last committed state at once (WAL), not after the writer.
        shown = await asyncio.wait_for(first.quota.show("t:1", allowance=10, today=DAY), 2)
        assert shown.bonus == 5
        # A writer waits for the lock (busy_timeout) instead of failing with "locked".
        grant = asyncio.create_task(first.quota.grant("t:1", 1, allowance=10, today=DAY))
        await asyncio.sleep(0.3)
        assert not grant.done()
        release.set()
        await holder
        assert await asyncio.wait_for(grant, 10) == 10 + 5 + 1 + 1


async def test_repositories_need_a_started_database(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    with pytest.raises(RuntimeError, match="not started"):
        await database.quota.show("t:1", allowance=1, today=DAY)
    async with database:
        assert (await database.quota.show("t:1", allowance=1, today=DAY)).available == 1
    with pytest.raises(RuntimeError, match="not started"):
        await database.jobs.get("x")


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError):
        await db.results.add("no-such-job", 0, "ref", 1, 8, 8, "")
    with pytest.raises(IntegrityError):
        await db.actions.create("no-such-job", 0, "reroll")


async def test_check_constraints_guard_the_balance(db: Database) -> None:
    await db.quota.grant("t:1", 1, allowance=1, today=DAY)
    accounts = metadata.tables["quota_accounts"]
    with pytest.raises(IntegrityError):
        async with db.write() as conn:
            await conn.execute(update(accounts).values(daily_left=-1))
    with pytest.raises(IntegrityError):
        async with db.write() as conn:
            await conn.execute(update(accounts).values(bonus=-1))
