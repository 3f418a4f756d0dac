"""Engine, connections, sessions and migrations; `Database` owns them and the repositories."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from storage._sqlite import SQLiteWriter
from storage.actions import ActionRepo
from storage.jobs import JobRepo, build_job
from storage.quota import QuotaRepo, Reservation
from storage.results import ResultRepo
from storage.urls import normalise
from storage.users import UserRepo
from storage.vocab import JobState, Mode

DEFAULT_URL = "sqlite+aiosqlite:///data/drawbridge.db"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000

# Any constant works; it only has to be the same in every drawbridge process.
_PG_MIGRATION_LOCK = 0x64726177  # "draw"
_MIGRATION_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)

# Execution option marking the engine view whose SQLite transactions only read.
_READONLY = "drawbridge_readonly"

T = TypeVar("T")


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _on_sqlite_begin): the sqlite3 driver's legacy
    # mode would otherwise run SELECT and DDL outside any transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first, so that switching to WAL waits for a lock instead of failing.
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    # Writers take the write lock up front: a deferred transaction that reads and then writes
    # fails with SQLITE_BUSY (no waiting) when another connection committed in between.
    readonly = conn.get_execution_options().get(_READONLY, False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url`; SQLite gets WAL, busy_timeout and foreign keys."""
    url = normalise(url)  # postgres:// and postgresql:// → asyncpg, sqlite:// → aiosqlite
    path = _sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
    return engine


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the migrations shipped inside this package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolates '%', which URL-encoded passwords contain.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def lock_schema(connection: Connection) -> None:
    """Take the PostgreSQL migration lock for the rest of the transaction."""
    # Processes starting together then migrate one after the other; on SQLite, BEGIN
    # IMMEDIATE has the same effect.
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")


def _upgrade_sync(connection: Connection, url: str) -> None:
    # The lock is taken before Alembic starts: Alembic keeps its context in module globals,
    # and waiting inside it would let another task of this process clobber them.
    lock_schema(connection)
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _process_lock() -> asyncio.Lock:
    # Alembic's globals also forbid two migrations of *different* databases interleaving on
    # one event loop (for instance two Database objects started with asyncio.gather).
    loop = asyncio.get_running_loop()
    lock = _MIGRATION_LOCKS.get(loop)
    if lock is None:
        lock = _MIGRATION_LOCKS[loop] = asyncio.Lock()
    return lock


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    # On the DBAPI connection: through SQLAlchemy the PRAGMA would follow a BEGIN, and
    # SQLite ignores foreign_keys changes inside a transaction.
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")
    finally:
        cursor.close()


async def migrate(engine: AsyncEngine) -> None:
    """Apply every pending migration through `engine`, in one transaction."""
    url = engine.url.render_as_string(hide_password=False)
    sqlite = engine.dialect.name == "sqlite"
    async with _process_lock(), engine.connect() as conn:
        # Alembic's batch mode rebuilds a SQLite table by DROP + rename; with foreign keys on,
        # dropping `jobs` would cascade-delete every action and result row.
        if sqlite:
            await conn.run_sync(_sqlite_foreign_keys, False)
        try:
            async with conn.begin():
                await conn.run_sync(_upgrade_sync, url)
        finally:
            if sqlite:
                await conn.run_sync(_sqlite_foreign_keys, True)


async def upgrade(url: str = DEFAULT_URL) -> None:
    """Bring the database at `url` to the newest schema (`drawbridge db upgrade`)."""
    engine = make_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


class Database:
    """The database: migrations on start, one engine, and the repositories."""

    def __init__(self, url: str = DEFAULT_URL, **engine_kwargs: Any) -> None:
        self.url = url
        self._engine_kwargs = engine_kwargs
        self._engine: AsyncEngine | None = None
        self._reader: AsyncEngine | None = None
        self._write_lock: asyncio.Lock | None = None
        self._sqlite: SQLiteWriter | None = None
        self.quota = QuotaRepo(self)
        self.jobs = JobRepo(self)
        self.users = UserRepo(self)
        self.actions = ActionRepo(self)
        self.results = ResultRepo(self)

    @property
    def engine(self) -> AsyncEngine:
        """The started engine; raises if `start()` has not run."""
        if self._engine is None:
            raise RuntimeError("Database is not started; use `async with Database(url)`")
        return self._engine

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    async def start(self) -> None:
        """Migrate to head, then open the engine."""
        if self._engine is not None:
            return
        engine = make_engine(self.url, **self._engine_kwargs)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        # A file database also gets its own sqlite3 connection for whole-transaction writes
        # (storage/_sqlite.py); in-memory ones would be a different database there.
        path = _sqlite_file(self.url) if engine.dialect.name == "sqlite" else None
        if path is not None:
            writer = SQLiteWriter(path, BUSY_TIMEOUT_MS)
            try:
                await writer.start()
            except BaseException:
                await engine.dispose()
                raise
            self._sqlite = writer
        self._engine = engine
        # Same pool, but its SQLite transactions start deferred so readers never queue.
        self._reader = engine.execution_options(**{_READONLY: True})
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._engine is not None:
            engine, self._engine, self._reader = self._engine, None, None
            writer, self._sqlite = self._sqlite, None
            try:
                if writer is not None:
                    async with self._writer_turn():
                        await writer.close()
            finally:
                await engine.dispose()

    @property
    def sqlite_writer(self) -> SQLiteWriter | None:
        """The one-hop transaction runner of a started SQLite file database, else None."""
        return self._sqlite

    async def run_sqlite(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` as one write transaction in one thread hop (SQLite files only)."""
        writer = self._sqlite
        if writer is None:
            raise RuntimeError("no SQLite writer: not started, or not an SQLite file")
        async with self._writer_turn():
            return await writer.run(fn)

    async def submit_job(
        self,
        *,
        id: str,
        user_key: str,
        platform: str,
        display_name: str = "",
        locale: str = "en",
        prompt: str,
        params: str | dict[str, Any],
        cost: int,
        allowance: int,
        today: str,
        reset: str = "",
        mode: Mode | str = Mode.TXT2IMG,
        chat_id: str = "",
        reply_ref: str | dict[str, Any] | None = None,
    ) -> Reservation:
        """A submit in ONE transaction: upsert the user, reserve `cost` credits, store the
        queued job. Raises InsufficientCredits (or IntegrityError, …) with nothing written."""
        job = build_job(
            id=id,
            user_key=user_key,
            platform=platform,
            prompt=prompt,
            params=params,
            cost=cost,
            mode=mode,
            chat_id=chat_id,
            reply_ref=reply_ref,
            state=JobState.QUEUED,
        )
        user = {
            "key": user_key,
            "platform": platform,
            "display_name": display_name,
            "locale": locale,
            "created_at": job.created_at,
        }
        return await self.quota.reserve_with(
            user_key,
            id,
            cost,
            allowance=allowance,
            today=today,
            reset=reset,
            user=user,
            job=job.model_dump(),
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        # SQLite has one writer at a time anyway; queueing this process's writers here is
        # fair and cheap, where contending for the file lock means busy-handler sleeps.
        # Other processes are still kept out by BEGIN IMMEDIATE and busy_timeout.
        if self._write_lock is None:
            yield
        else:
            async with self._write_lock:
                yield

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed on exit, rolled back on error."""
        async with self._writer_turn(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a read-only transaction (a consistent snapshot)."""
        reader = self._reader
        if reader is None:
            raise RuntimeError("Database is not started; use `async with Database(url)`")
        async with reader.connect() as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def session(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        """An ORM session; objects stay usable after commit (expire_on_commit=False)."""
        if readonly:
            if self._reader is None:
                raise RuntimeError("Database is not started; use `async with Database(url)`")
            async with AsyncSession(self._reader, expire_on_commit=False) as session:
                yield session
        else:
            async with (
                self._writer_turn(),
                AsyncSession(self.engine, expire_on_commit=False) as session,
            ):
                yield session
