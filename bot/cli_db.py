"""`drawbridge db backup`: the SQLite online backup, or the pg_dump advice for PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.errors import DatabaseError
from bot.i18n import t
from bot.settings import Settings
from storage.backup import BackupError, backup_sqlite
from storage.urls import for_libpq, parse, sqlite_file

EXIT_NOT_SQLITE = 2


def _size(n: int) -> str:
    value, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


async def backup(settings: Settings, target: Path) -> int:
    """Back up the database to `target`; returns the exit code."""
    url = settings.database_url
    if parse(url).get_backend_name() == "postgresql":
        print(t("en", "db.backup_postgres", path=target, url=for_libpq(url)), file=sys.stderr)
        return EXIT_NOT_SQLITE
    name = sqlite_file(url)
    if name is None:
        raise DatabaseError("db.backup_missing", path=url)
    try:
        # the copy is file I/O and page checks: off the event loop
        info = await asyncio.to_thread(backup_sqlite, Path(name), target)
    except BackupError as exc:
        raise DatabaseError(f"db.backup_{exc.reason}", path=exc.path, detail=exc.detail) from None
    print(
        t("en", "db.backup_done", where=name, path=info.path, size=_size(info.size), jobs=info.jobs)
    )
    return 0
