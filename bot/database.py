"""Operator-side database work behind the door: wait at start, check, back up, explain failures."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from bot.errors import DatabaseError
from bot.i18n import t
from bot.settings import Settings
from storage.backup import BackupError, backup_sqlite
from storage.connect import DatabaseUnavailable, explain, wait_for_database
from storage.urls import describe, for_libpq, parse, sqlite_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackupOutcome:
    """What `drawbridge db backup` says: a line, and whether a copy was made."""

    line: str
    copied: bool


def _as_error(problem: DatabaseUnavailable) -> DatabaseError:
    return DatabaseError(
        f"db.{problem.reason}",
        where=problem.where,
        detail=problem.detail,
        user=problem.user,
        waited=problem.waited,
    )


def problem(exc: BaseException, settings: Settings) -> DatabaseError | None:
    """A database failure from any layer as one operator sentence; None if it is not one."""
    if isinstance(exc, DatabaseUnavailable):
        return _as_error(exc)
    known = explain(exc, settings.database_url, fallback=True)
    if known is None:
        return None
    log.debug("database failure", exc_info=exc)
    return _as_error(known)


async def wait(settings: Settings, patience: float | None = None) -> None:
    """Wait (bounded) for the database to answer; raises DatabaseError when it does not."""
    timeout = settings.database_connect_timeout if patience is None else patience
    try:
        await wait_for_database(settings.database_url, timeout)
    except DatabaseUnavailable as exc:
        raise _as_error(exc) from None


async def check(settings: Settings) -> str:
    """Connect once; the line `drawbridge db check` prints (the container's healthcheck)."""
    await wait(settings, 0)
    return t("en", "db.ok", where=describe(settings.database_url))


def _size(n: int) -> str:
    value, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


async def backup(settings: Settings, target: Path) -> BackupOutcome:
    """The SQLite online backup to `target`, or the pg_dump advice for PostgreSQL."""
    url = settings.database_url
    if parse(url).get_backend_name() == "postgresql":
        return BackupOutcome(t("en", "db.backup_postgres", path=target, url=for_libpq(url)), False)
    name = sqlite_file(url)
    if name is None:
        raise DatabaseError("db.backup_missing", path=url)
    try:
        # the copy is file I/O and page checks: off the event loop
        info = await asyncio.to_thread(backup_sqlite, Path(name), target)
    except BackupError as exc:
        raise DatabaseError(f"db.backup_{exc.reason}", path=exc.path, detail=exc.detail) from None
    size = _size(info.size)
    return BackupOutcome(
        t("en", "db.backup_done", where=name, path=info.path, size=size, jobs=info.jobs), True
    )
