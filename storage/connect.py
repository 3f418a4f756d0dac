"""Reaching the database at start: retry while it comes up, else say in one line why not.

`wait_for_database` connects and runs `SELECT 1`, retrying with backoff for a bounded time
while the server is unreachable or still starting (compose starts the bot and PostgreSQL
together). Every other failure is final at once. `explain` turns the exceptions the drivers
raise (asyncpg, aiosqlite, SQLAlchemy's wrappers) into a `DatabaseUnavailable` with a reason
that the CLI words for the operator; the password never appears in it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from storage.urls import describe, normalise, parse, sqlite_file

log = logging.getLogger(__name__)

# reasons; the transient ones are worth waiting for
UNREACHABLE = "unreachable"
STARTING = "starting"
AUTH = "auth"
NO_DATABASE = "no_database"
NO_PERMISSION = "no_permission"
NO_DRIVER = "no_driver"
SQLITE_PATH = "sqlite_path"
FAILED = "failed"
TRANSIENT = frozenset({UNREACHABLE, STARTING})

# PostgreSQL SQLSTATE codes (asyncpg exceptions carry them as .sqlstate)
_SQLSTATES = {
    "28P01": AUTH,  # invalid_password
    "28000": AUTH,  # invalid_authorization_specification (unknown role, no pg_hba entry)
    "3D000": NO_DATABASE,  # invalid_catalog_name
    "42501": NO_PERMISSION,  # insufficient_privilege (e.g. CREATE on schema public)
    "57P03": STARTING,  # cannot_connect_now: starting up / shutting down / recovering
    "53300": STARTING,  # too_many_connections: may clear up
}

# longest single connection attempt, so that a host that drops packets is retried too
ATTEMPT_TIMEOUT = 10.0
MAX_BACKOFF = 5.0


class DatabaseUnavailable(Exception):
    """The database cannot be used: `reason` (one of the constants above) and its details."""

    def __init__(self, reason: str, where: str, detail: str = "", user: str = "") -> None:
        self.reason = reason
        self.where = where
        self.detail = detail
        self.user = user
        self.waited = 0.0
        super().__init__(f"{reason}: {where}: {detail}")

    @property
    def transient(self) -> bool:
        """Whether waiting may help (the server is down or starting)."""
        return self.reason in TRANSIENT


def _chain(exc: BaseException) -> Iterator[BaseException]:
    # SQLAlchemy wraps the driver's error (.orig), asyncpg's adapter chains it (__cause__)
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text and text[0] else type(exc).__name__


def _from_database_layer(exc: BaseException) -> bool:
    module = type(exc).__module__.partition(".")[0]
    return module in ("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite", "alembic")


def explain(exc: BaseException, url: str, *, fallback: bool = False) -> DatabaseUnavailable | None:
    """Why using the database at `url` failed, or None when `exc` is not a database problem.

    With `fallback`, any error raised by the database layer that has no better reason becomes
    FAILED (so that it is one line, not a traceback); other errors stay None.
    """
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if fallback:
        if not _from_database_layer(exc):
            return None
        return explain(exc, url) or DatabaseUnavailable(FAILED, describe(url), _short(exc))
    parsed = parse(url)
    where, user = describe(url), parsed.username or ""
    for cause in _chain(exc):
        reason = _SQLSTATES.get(str(getattr(cause, "sqlstate", "") or ""))
        if reason is not None:
            return DatabaseUnavailable(reason, where, _short(cause), user)
        if isinstance(cause, ImportError) or type(cause).__name__ == "NoSuchModuleError":
            return DatabaseUnavailable(NO_DRIVER, where, parsed.drivername, user)
        if isinstance(cause, sqlite3.OperationalError | PermissionError) and (
            parsed.get_backend_name() == "sqlite"
        ):
            return DatabaseUnavailable(SQLITE_PATH, where, _short(cause), user)
        if isinstance(cause, TimeoutError):
            return DatabaseUnavailable(UNREACHABLE, where, "no answer", user)
        if isinstance(cause, OSError):
            detail = cause.strerror or _short(cause)
            return DatabaseUnavailable(UNREACHABLE, where, detail.lower(), user)
        if type(cause).__name__ in ("ConnectionDoesNotExistError", "InterfaceError") and (
            "closed" in str(cause) or "connection" in str(cause).lower()
        ):
            return DatabaseUnavailable(UNREACHABLE, where, _short(cause), user)
    return None


def _check_sqlite_folder(url: str) -> None:
    name = sqlite_file(url)
    if name is None:
        return
    path = Path(name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        detail = f"cannot create {path.parent}: {exc.strerror}"
        raise DatabaseUnavailable(SQLITE_PATH, name, detail) from None
    # WAL needs its -wal and -shm files beside the database: the folder must be writable
    folder = path.parent if str(path.parent) else Path(".")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatabaseUnavailable(SQLITE_PATH, name, f"{folder} is not writable")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise DatabaseUnavailable(SQLITE_PATH, name, f"{path} is not writable")


async def probe(url: str) -> None:
    """Connect once and run SELECT 1; raises DatabaseUnavailable saying why not."""
    url = normalise(url)
    _check_sqlite_folder(url)
    try:
        engine = create_async_engine(url, poolclass=NullPool)
    except Exception as exc:
        problem = explain(exc, url)
        if problem is None:
            raise
        raise problem from None
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        problem = explain(exc, url)
        if problem is None:
            raise
        raise problem from None
    finally:
        await engine.dispose()


async def wait_for_database(url: str, patience: float) -> None:
    """Probe `url` until it answers, retrying transient failures for up to `patience` seconds."""
    started = time.monotonic()
    deadline = started + max(patience, 0.0)
    delay = 0.5
    while True:
        remaining = deadline - time.monotonic()
        try:
            async with asyncio.timeout(max(1.0, min(ATTEMPT_TIMEOUT, remaining))):
                await probe(url)
            return
        except TimeoutError:
            problem = DatabaseUnavailable(UNREACHABLE, describe(url), "no answer")
        except DatabaseUnavailable as exc:
            problem = exc
        remaining = deadline - time.monotonic()
        if not problem.transient or remaining <= 0:
            problem.waited = time.monotonic() - started
            raise problem
        pause = min(delay, remaining)
        log.warning(
            "database %s not reachable yet (%s); trying again in %.1f s",
            problem.where,
            problem.detail,
            pause,
        )
        await asyncio.sleep(pause)
        delay = min(delay * 2, MAX_BACKOFF)
