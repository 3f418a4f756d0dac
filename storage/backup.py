"""`drawbridge db backup`: a consistent copy of a live SQLite database, by SQLite's backup API.

Copying the file with `cp` while the bot runs loses what is still in the -wal file and can
catch a page half-written. The backup API copies every page inside one read transaction (a
snapshot: writers go on meanwhile, in WAL mode they are not blocked), into a new file that
is checked, switched to a self-contained rollback journal, synced and only then renamed to
its final name, so a backup that exists is whole.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

BUSY_TIMEOUT_S = 30.0


class BackupError(Exception):
    """The backup was not made; `reason` says why ("exists", "missing", "failed")."""

    def __init__(self, reason: str, path: Path, detail: str = "") -> None:
        self.reason = reason
        self.path = path
        self.detail = detail
        super().__init__(f"{reason}: {path}: {detail}")


@dataclass(frozen=True)
class BackupInfo:
    """What was written: the file, its size and how many jobs it holds."""

    path: Path
    size: int
    jobs: int


def backup_sqlite(source: Path, target: Path) -> BackupInfo:
    """Copy the SQLite database `source` to the new file `target` (blocking: run in a thread)."""
    if target.exists():
        raise BackupError("exists", target)
    if not source.is_file():
        raise BackupError("missing", source)
    partial = target.with_name(target.name + ".partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        src = sqlite3.connect(source, timeout=BUSY_TIMEOUT_S)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)  # all pages in one step: one snapshot
                dst.execute("PRAGMA journal_mode = DELETE")
                (check,) = dst.execute("PRAGMA quick_check").fetchone()
                if check != "ok":
                    raise BackupError("failed", target, f"the copy failed its check: {check}")
                (jobs,) = dst.execute("SELECT count(*) FROM jobs").fetchone()
            finally:
                dst.close()
        finally:
            src.close()
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BackupError:
        partial.unlink(missing_ok=True)
        raise
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError("failed", target, str(exc)) from None
    return BackupInfo(target, target.stat().st_size, int(jobs))
