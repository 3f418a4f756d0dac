"""SQLite write transactions in one worker-thread hop each, on a dedicated `sqlite3` connection.

Through SQLAlchemy + aiosqlite every statement, fetch, BEGIN and COMMIT is a separate hop to
aiosqlite's thread (~120 µs each, ~19 for a reservation). Here a whole transaction is one
synchronous function run in this Database's own writer thread: BEGIN IMMEDIATE, the statements,
COMMIT (ROLLBACK on any exception). Callers hold the Database's write lock around it, so this
process's writers take turns; other processes are kept out by BEGIN IMMEDIATE + busy_timeout.

The SQL below is the text SQLAlchemy would render for the portable statements the PostgreSQL
path builds (same conditional UPDATE … RETURNING, same ON CONFLICT clauses). Timestamps are
written as SQLAlchemy's SQLite DATETIME writes them (naive UTC, microseconds always shown), so
rows read back identically through either path.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import exc

T = TypeVar("T")
Tx = Callable[[sqlite3.Connection], T]


def ts(value: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite DATETIME stores it (see models.UTCDateTime)."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"


def one(conn: sqlite3.Connection, sql: str, params: Any = ()) -> Any:
    """The first row of `sql`, or None; always drains the statement (RETURNING included)."""
    rows = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None


# --- statements ----------------------------------------------------------------------------

# The lazy daily reset (quota._effective_daily), with :today and :allowance bound.
_EFFECTIVE = (
    "CASE WHEN quota_accounts.period = :today THEN quota_accounts.daily_left ELSE :allowance END"
)
_FROM_DAILY = f"CASE WHEN {_EFFECTIVE} >= :cost THEN :cost ELSE {_EFFECTIVE} END"

ENSURE_ACCOUNT = (
    "INSERT INTO quota_accounts "
    "(user_key, allowance, period, daily_left, bonus, last_reserve_daily, updated_at) "
    "VALUES (:user_key, :allowance, :today, :allowance, 0, 0, :now) "
    "ON CONFLICT (user_key) DO NOTHING"
)
HAS_RESERVE = "SELECT id FROM quota_ledger WHERE job_id = ? AND kind = 'reserve' LIMIT 1"
HAS_CLOSING = (
    "SELECT id FROM quota_ledger WHERE job_id = ? AND kind IN ('settle', 'release') LIMIT 1"
)
HAS_GRANT = "SELECT id FROM quota_ledger WHERE job_id = ? AND kind = 'grant' LIMIT 1"
AVAILABLE = (
    f"SELECT {_EFFECTIVE} + quota_accounts.bonus FROM quota_accounts "
    "WHERE quota_accounts.user_key = :user_key"
)
# One conditional UPDATE: the check and the decrement cannot be interleaved by another writer.
RESERVE = (
    "UPDATE quota_accounts SET "
    f"daily_left = ({_EFFECTIVE}) - ({_FROM_DAILY}), "
    f"bonus = quota_accounts.bonus - (:cost - ({_FROM_DAILY})), "
    f"last_reserve_daily = {_FROM_DAILY}, "
    "period = :today, allowance = :allowance, updated_at = :now "
    f"WHERE quota_accounts.user_key = :user_key AND ({_EFFECTIVE}) + quota_accounts.bonus >= :cost "
    "RETURNING daily_left, bonus, last_reserve_daily"
)
RESERVATION = (
    "SELECT user_key, period, daily, bonus FROM quota_ledger WHERE job_id = ? AND kind = 'reserve'"
)
RELEASE = (
    "UPDATE quota_accounts SET "
    "daily_left = CASE WHEN quota_accounts.period = :period "
    "THEN quota_accounts.daily_left + :daily ELSE quota_accounts.daily_left END, "
    "bonus = quota_accounts.bonus + :bonus, updated_at = :now "
    "WHERE quota_accounts.user_key = :user_key RETURNING period"
)
GRANT = (
    "UPDATE quota_accounts SET "
    f"daily_left = {_EFFECTIVE}, bonus = quota_accounts.bonus + :amount, "
    "period = :today, allowance = :allowance, updated_at = :now "
    "WHERE quota_accounts.user_key = :user_key RETURNING daily_left + bonus"
)
LEDGER = (
    "INSERT INTO quota_ledger (user_key, job_id, kind, period, daily, bonus, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
UPSERT_USER = (
    "INSERT INTO users (key, platform, display_name, locale, created_at) "
    "VALUES (:key, :platform, :display_name, :locale, :created_at) "
    "ON CONFLICT (key) DO UPDATE SET platform = excluded.platform, "
    "display_name = excluded.display_name, locale = excluded.locale"
)
JOB_COLUMNS = (
    "id",
    "user_key",
    "platform",
    "chat_id",
    "state",
    "mode",
    "prompt",
    "params",
    "cost",
    "attempts",
    "backend",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "reply_ref",
    "result_refs",
)
INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in JOB_COLUMNS)})"
)


# --- the writer ----------------------------------------------------------------------------


class SQLiteWriter:
    """One `sqlite3` connection and one thread that runs whole write transactions."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,  # autocommit: BEGIN / COMMIT are ours
            check_same_thread=False,  # opened and closed through the executor's thread
            cached_statements=64,
        )
        try:
            # The same settings as the engine's connections (db._on_sqlite_connect).
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    async def start(self) -> None:
        """Open the connection in the writer thread."""
        if self._executor is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drawbridge-sqlite")
        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(executor, self._open)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor

    async def close(self) -> None:
        """Close the connection, then let the thread go."""
        executor, conn = self._executor, self._conn
        self._executor = self._conn = None
        if executor is None:
            return
        try:
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        finally:
            executor.shutdown(wait=False)

    def _transaction(self, fn: Tx[T]) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("Database is not started; use `async with Database(url)`")
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    async def run(self, fn: Tx[T]) -> T:
        """Run `fn(conn)` inside BEGIN IMMEDIATE … COMMIT in one hop to the writer thread.

        sqlite3 errors come back as SQLAlchemy's (IntegrityError, OperationalError, …), as
        on the engine's path. The caller holds the write lock; if it is cancelled meanwhile,
        the transaction still finishes (committed or rolled back) before the lock is let go.
        """
        executor = self._executor
        if executor is None:
            raise RuntimeError("Database is not started; use `async with Database(url)`")
        future = asyncio.get_running_loop().run_in_executor(executor, self._transaction, fn)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await asyncio.wait({future})
            raise
        except sqlite3.Error as error:
            raise exc.DBAPIError.instance(None, None, error, sqlite3.Error) from error
