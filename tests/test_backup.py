"""`drawbridge db backup`: a consistent SQLite copy while another process keeps writing.

A writer process commits pairs of rows as fast as it can (WAL mode, as the bot does) while the
real command backs the database up; the copy must hold whole pairs only, a gap-free prefix of
what was committed, in one self-contained file. Restoring it as the README says brings back
the state at backup time.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WRITER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("CREATE TABLE IF NOT EXISTS probe (n INTEGER NOT NULL, half TEXT NOT NULL)")
stop = sys.argv[2]
import os
n = 0
while n < 200_000 and not os.path.exists(stop):
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO probe VALUES (?, 'a')", (n,))
    conn.execute("INSERT INTO probe VALUES (?, 'b')", (n,))
    conn.execute("COMMIT")
    n += 1
    if n == 300:
        print("ready", flush=True)
print(n, flush=True)
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    env.update(DATA_DIR=str(tmp_path / "data"), DATABASE_URL="", LOG_LEVEL="ERROR")
    env.update(extra)
    return env


def drawbridge(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_backup_while_another_process_writes_is_consistent(tmp_path):
    assert drawbridge(tmp_path, "db", "upgrade").returncode == 0
    database = tmp_path / "data" / "drawbridge.db"
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(database), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        backup = drawbridge(tmp_path, "db", "backup", str(tmp_path / "copy.db"))
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
    committed = int(out.split()[-1])
    assert backup.returncode == 0, backup.stderr
    line = backup.stdout.strip()
    assert line.startswith(f"backed up {database} to {tmp_path / 'copy.db'} (")
    assert line.endswith("jobs in it: 0)")

    # the copy stands alone: no -wal beside it, and its own journal is a rollback one
    assert not (tmp_path / "copy.db-wal").exists()
    conn = sqlite3.connect(tmp_path / "copy.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT n, half FROM probe ORDER BY n, half").fetchall()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    pairs = len(rows) // 2
    # whole transactions only, and every one of them up to a point: a snapshot
    assert rows == [(n, half) for n in range(pairs) for half in ("a", "b")]
    assert 300 <= pairs <= committed
    assert {"jobs", "quota_accounts", "quota_ledger", "alembic_version"} <= tables


def test_restore_as_the_readme_says_brings_back_the_state_at_backup_time(tmp_path):
    assert drawbridge(tmp_path, "quota", "grant", "ann", "5").returncode == 0
    assert drawbridge(tmp_path, "db", "backup", str(tmp_path / "b.db")).returncode == 0
    assert drawbridge(tmp_path, "quota", "grant", "ann", "7").returncode == 0
    # README: stop the bot, put the copy in place of the database and drop its -wal/-shm
    database = tmp_path / "data" / "drawbridge.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "b.db", database)
    shown = drawbridge(tmp_path, "quota", "show", "ann")
    assert shown.returncode == 0, shown.stderr
    assert "205 credits left today (daily 200, extra 5)" in shown.stdout  # not extra 12


def test_backup_never_overwrites_a_file(tmp_path):
    assert drawbridge(tmp_path, "db", "upgrade").returncode == 0
    existing = tmp_path / "yesterday.db"
    existing.write_bytes(b"yesterday's backup")
    result = drawbridge(tmp_path, "db", "backup", str(existing))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"drawbridge: {existing} already exists; name a new file (backups never overwrite one)."
    )
    assert existing.read_bytes() == b"yesterday's backup"


def test_backup_of_a_database_that_is_not_there_creates_nothing(tmp_path):
    result = drawbridge(tmp_path, "db", "backup", str(tmp_path / "b.db"))
    assert result.returncode == 1
    database = tmp_path / "data" / "drawbridge.db"
    assert result.stderr.strip() == (
        f"drawbridge: There is no SQLite database at {database} to back up — check "
        "DATABASE_URL / DATA_DIR."
    )
    assert not database.exists() and not (tmp_path / "b.db").exists()


def test_backup_on_postgresql_gives_the_pg_dump_command_without_the_password(tmp_path):
    url = "postgres://bot:hunter2@db.example:5432/drawbridge?sslmode=require"
    result = drawbridge(tmp_path, "db", "backup", "nightly.dump", DATABASE_URL=url)
    assert result.returncode == 2
    assert "hunter2" not in result.stderr
    safe = "'postgresql://bot@db.example:5432/drawbridge?sslmode=require'"
    assert f"pg_dump --format=custom --file nightly.dump {safe}" in result.stderr
    assert f"pg_restore --clean --dbname {safe} nightly.dump" in result.stderr
