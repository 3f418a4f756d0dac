"""Engine, retried transactions and migrations; `Database` owns them and the repositories."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from storage._sqlite import SQLiteWriter
from storage.actions import ActionRepo
from storage.faults import is_disconnect, is_disk_full, is_transient
from storage.governance import AuditRepo, BanRepo
from storage.instances import InstanceRepo
from storage.jobs import JobRepo, job_values
from storage.quota import QuotaRepo, Reservation
from storage.results import ResultRepo
from storage.users import UserRepo
from storage.vocab import (
    JobState,
    Mode,
    StorageFault,
    StorageFull,
    StorageUnavailable,
    StorageUncertain,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite+aiosqlite:///data/drawbridge.db"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT = 30.0  # seconds SQLite waits for another writer's lock before "database is locked"
RETRY_SECONDS = 60.0  # how long transient faults are retried before StorageUnavailable

# Any constant works; it only has to be the same in every drawbridge process.
_PG_MIGRATION_LOCK = 0x64726177  # "draw"
_MIGRATION_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)

# Execution option marking the engine view whose SQLite transactions only read.
_READONLY = "drawbridge_readonly"

T = TypeVar("T")
Tx = Callable[[Connection], T]


class _CommitLost(Exception):
    """COMMIT was sent and the connection died before its answer: the write may have landed."""


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def _sqlite_pragmas(busy_timeout: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see _on_sqlite_begin): the sqlite3 driver's legacy
        # mode would otherwise run SELECT and DDL outside any transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first, so that switching to WAL waits for a lock instead of failing.
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # A new file gives freed pages back in steps (storage/prune.py's compact); on an
            # existing file this changes nothing until a VACUUM.
            cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    return on_connect


def _on_sqlite_begin(conn: Connection) -> None:
    # Writers take the write lock up front: a deferred transaction that reads and then writes
    # fails with SQLITE_BUSY (no waiting) when another connection committed in between.
    readonly = conn.get_execution_options().get(_READONLY, False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def configure_sqlite(engine: Engine, busy_timeout: float = BUSY_TIMEOUT) -> None:
    """WAL, busy_timeout, foreign keys on every connection; writers BEGIN IMMEDIATE."""
    event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
    event.listen(engine, "begin", _on_sqlite_begin)


def make_engine(url: str, *, busy_timeout: float = BUSY_TIMEOUT, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url`; SQLite gets WAL, busy_timeout and foreign keys, PostgreSQL
    pings a pooled connection before handing it out (a server restart leaves dead ones)."""
    path = _sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if make_url(url).get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine.sync_engine, busy_timeout)
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


def _upgrade_sync(connection: Connection, url: str, revision: str, down: bool) -> None:
    # The lock is taken before Alembic starts: Alembic keeps its context in module globals,
    # and waiting inside it would let another task of this process clobber them.
    lock_schema(connection)
    config = alembic_config(url)
    config.attributes["connection"] = connection
    if down:
        command.downgrade(config, revision)
    else:
        command.upgrade(config, revision)


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


async def migrate(engine: AsyncEngine, revision: str = "head", *, down: bool = False) -> None:
    """Apply every pending migration through `engine` (up to `revision`; with `down`, undo
    those after it), in one transaction."""
    url = engine.url.render_as_string(hide_password=False)
    sqlite = engine.dialect.name == "sqlite"
    async with _process_lock(), engine.connect() as conn:
        # Alembic's batch mode rebuilds a SQLite table by DROP + rename; with foreign keys on,
        # dropping `jobs` would cascade-delete every action and result row.
        if sqlite:
            await conn.run_sync(_sqlite_foreign_keys, False)
        try:
            async with conn.begin():
                await conn.run_sync(_upgrade_sync, url, revision, down)
        finally:
            if sqlite:
                await conn.run_sync(_sqlite_foreign_keys, True)


async def upgrade(url: str = DEFAULT_URL, revision: str = "head", *, down: bool = False) -> None:
    """Bring the database at `url` to the newest schema (`drawbridge db upgrade`), or to
    `revision` (with `down`: back to it)."""
    engine = make_engine(url)
    try:
        await migrate(engine, revision, down=down)
    finally:
        await engine.dispose()


def _brief(error: BaseException) -> str:
    # The error's first line: SQLAlchemy appends the statement and its parameters.
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]


def _typed(error: BaseException) -> StorageFault | None:
    """The StorageFault a raw database error stands for, or None to let it through."""
    if is_disk_full(error):
        return StorageFull()
    if is_transient(error):
        return StorageUnavailable()
    return None


async def _to_the_end(work: Awaitable[T]) -> T:
    """Await `work`; if cancelled meanwhile, let it finish (commit or roll back) first."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait({task})
        # Its outcome is nobody's now (the caller's cancellation goes on): mark it retrieved.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        raise


USERS_REMEMBERED = 50_000  # returning users whose upsert a submit skips (~10 MB at most)


class Database:
    """The database: migrations on start, one engine, and the repositories.

    Every repository write is ONE sync function over a SQLAlchemy `Connection` run by
    `write_tx`: on an SQLite file in this Database's writer thread (one hop per transaction),
    otherwise through `AsyncConnection.run_sync`. Transient faults (connection lost, locked,
    busy, serialization failure, deadlock) are retried with backoff for `retry_seconds`, then
    StorageUnavailable; a full disk is StorageFull at once. Each failed attempt rolled back
    whole, so retrying is safe, except when the connection dies during COMMIT: the write may
    have landed, and only a write given an `again` (its idempotent repeat) is run again.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        retry_seconds: float = RETRY_SECONDS,
        busy_timeout: float = BUSY_TIMEOUT,
        **engine_kwargs: Any,
    ) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self.busy_timeout = busy_timeout
        self._engine_kwargs = engine_kwargs
        self._engine: AsyncEngine | None = None
        self._reader: AsyncEngine | None = None
        self._write_lock: asyncio.Lock | None = None
        self._sqlite: SQLiteWriter | None = None
        # users whose row this process stored as it is now (platform, name, locale): rows
        # of users are never deleted, so a returning user's submit skips the upsert
        self._users_stored: dict[str, tuple[str, str, str]] = {}
        self.quota = QuotaRepo(self)
        self.jobs = JobRepo(self)
        self.users = UserRepo(self)
        self.actions = ActionRepo(self)
        self.results = ResultRepo(self)
        self.instances = InstanceRepo(self)
        self.bans = BanRepo(self)
        self.audit = AuditRepo(self)

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
        engine = make_engine(self.url, busy_timeout=self.busy_timeout, **self._engine_kwargs)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        # A file database also gets its own pysqlite connection for whole-transaction writes
        # (storage/_sqlite.py); in-memory ones would be a different database there.
        path = _sqlite_file(self.url) if engine.dialect.name == "sqlite" else None
        if path is not None:
            busy = self.busy_timeout
            writer = SQLiteWriter(engine.url, lambda sync: configure_sqlite(sync, busy))
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
                    await writer.close()
            finally:
                await engine.dispose()

    # --- transactions ----------------------------------------------------------------------

    async def write_tx(self, fn: Tx[T], *, again: Tx[T] | None = None, inline: bool = False) -> T:
        """Run `fn(conn)` as ONE write transaction, retrying transient faults.

        `inline`: `fn` is raw-capable (Core statements through `execute` only: on an SQLite
        file it gets a RawConnection) and short: run it on this thread with no hop, at once
        or when the writer thread's batch ends, else in the thread (storage/_sqlite.py).

        `again` is what to run instead if an attempt's COMMIT may have landed (the connection
        died while committing): `fn` itself when it is idempotent (compare-and-set on state,
        unique keys), or a variant that finds what a landed attempt wrote. Without it such a
        write raises StorageUncertain. After `retry_seconds`: StorageUnavailable; disk full:
        StorageFull. Either way nothing of the failed attempt was written.
        """
        current = fn

        async def attempt() -> T:
            nonlocal current
            try:
                return await self._write_once(current, raw=inline and current is fn)
            except _CommitLost as lost:
                cause = lost.__cause__ or lost
                if again is None:
                    raise StorageUncertain() from cause
                current = again
                raise cause from None

        return await self._retried(attempt)

    async def read_tx(self, fn: Tx[T], *, inline: bool = False) -> T:
        """Run `fn(conn)` in a read-only transaction (a consistent snapshot), retried alike.

        `inline`: on an SQLite file, first on this thread with no hop (storage/_sqlite.py's
        `read_inline`; `fn` gets a RawConnection), else as usual."""
        if inline and self._sqlite is not None:
            ran, value = self._sqlite.read_inline(fn)
            if ran:
                return cast(T, value)

        async def attempt() -> T:
            async with self._reading().connect() as conn:
                return await conn.run_sync(fn)

        return await self._retried(attempt)

    async def _retried(self, attempt: Callable[[], Awaitable[T]]) -> T:
        began = time.monotonic()
        try:
            try:
                return await attempt()  # the common case, without tenacity's bookkeeping
            except Exception as error:
                if not is_transient(error) or self.retry_seconds <= 0:
                    raise
                log.warning("database: %s; retrying for %.0f s", _brief(error), self.retry_seconds)
            # tenacity waits only between its own attempts; its first follows a failure too.
            await asyncio.sleep(random.uniform(0, 0.05))
            left = self.retry_seconds - (time.monotonic() - began)
            async for retry in AsyncRetrying(
                stop=stop_after_delay(max(0.0, left)),
                # Full jitter: writers that failed together do not all come back together.
                wait=wait_random_exponential(multiplier=0.05, max=2.0),
                retry=retry_if_exception(is_transient),
                reraise=True,
            ):
                with retry:
                    return await attempt()
        except StorageFault:
            raise
        except Exception as error:
            typed = _typed(error)
            if typed is None:
                raise
            raise typed from error
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _reading(self) -> AsyncEngine:
        if self._reader is None:
            raise RuntimeError("Database is not started; use `async with Database(url)`")
        return self._reader

    async def _write_once(self, fn: Tx[T], *, raw: bool = False) -> T:
        engine = self.engine
        if self._sqlite is not None:
            if raw:  # on the loop when it can, else in the writer thread
                return await self._sqlite.run_raw(fn)
            return await self._sqlite.run(fn)  # the writer thread queues this process's writes
        async with self._writer_turn():
            return await _to_the_end(self._attempt(engine, fn))

    async def _attempt(self, engine: AsyncEngine, fn: Tx[T]) -> T:
        async with engine.connect() as conn:
            result = await conn.run_sync(fn)
            try:
                await conn.commit()
            except Exception as error:
                # SQLite never loses a COMMIT's answer: failed means rolled back.
                if engine.dialect.name != "sqlite" and is_disconnect(error):
                    raise _CommitLost() from error
                raise
        return result

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
        owner: str | None = None,
        route: str | None = None,
        source: str | None = None,
    ) -> Reservation:
        """A submit in ONE transaction: upsert the user, reserve `cost` credits, store the
        queued job owned by instance `owner`. Raises InsufficientCredits (or IntegrityError, …)
        with nothing written. Repeated after a lost COMMIT, it returns the stored reservation.

        `route` names the bot that answers the job (e.g. "telegram:123"): the job row's
        platform, which decides who may take the job over (claim_orphans); default `platform`.
        `source` names the command it came from: a second submit for the same command of
        the same bot raises DuplicateJob with nothing written.
        """
        job = job_values(
            id=id,
            user_key=user_key,
            platform=route or platform,
            prompt=prompt,
            params=params,
            cost=cost,
            mode=mode,
            chat_id=chat_id,
            reply_ref=reply_ref,
            state=JobState.QUEUED,
            owner=owner,
            source=source,
        )
        as_now = (platform, display_name, locale)
        user = None
        if self._users_stored.get(user_key) != as_now:
            user = {
                "key": user_key,
                "platform": platform,
                "display_name": display_name,
                "locale": locale,
                "created_at": job["created_at"],
            }
        reservation = await self.quota.reserve_with(
            user_key,
            id,
            cost,
            allowance=allowance,
            today=today,
            reset=reset,
            user=user,
            job=job,
        )
        if user is not None:  # committed: the row is there as it is now
            if len(self._users_stored) >= USERS_REMEMBERED:
                self._users_stored.clear()
            self._users_stored[user_key] = as_now
        return reservation

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
        """A raw connection in a write transaction, not retried (tests and one-off tools)."""
        async with self._writer_turn(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A raw connection in a read-only transaction, not retried (tests, tools)."""
        async with self._reading().connect() as conn, conn.begin():
            yield conn
