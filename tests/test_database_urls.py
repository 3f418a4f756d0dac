"""DATABASE_URL as operators write it, and every way the database can fail at start: one line.

The failures run the real `drawbridge` command in a subprocess against a real PostgreSQL
server (wrong password, missing database, server down, server coming up late), a missing
driver and an unusable SQLite folder; each must end in ONE line on stderr and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.logs import RedactingFilter, secrets_of
from bot.settings import Settings
from storage.urls import DatabaseURLError, describe, for_libpq, normalise
from tests.harness.storage import PASSWORD_ROLE, _free_port, _pg_bindir, _server_account

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("postgres://u:p@db.example:5432/bot", "postgresql+asyncpg://u:p@db.example:5432/bot"),
        ("postgresql://u:p@db.example/bot", "postgresql+asyncpg://u:p@db.example/bot"),
        ("POSTGRES://u@h/bot", "postgresql+asyncpg://u@h/bot"),
        ("postgresql+asyncpg://u@h/bot", "postgresql+asyncpg://u@h/bot"),
        ("postgres://u:p@h/bot?sslmode=require", "postgresql+asyncpg://u:p@h/bot?ssl=require"),
        ("postgres://u@h/bot?a=1&sslmode=disable", "postgresql+asyncpg://u@h/bot?a=1&ssl=disable"),
        ("sqlite:///data/drawbridge.db", "sqlite+aiosqlite:///data/drawbridge.db"),
        ("sqlite:////data/drawbridge.db", "sqlite+aiosqlite:////data/drawbridge.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("  sqlite:///x.db\n", "sqlite+aiosqlite:///x.db"),
        # an explicit driver is the operator's choice; connecting says if it is missing
        ("postgresql+psycopg2://u@h/bot", "postgresql+psycopg2://u@h/bot"),
    ],
)
def test_url_forms_are_normalised_to_the_async_drivers(written, expected):
    assert normalise(written) == expected
    assert normalise(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("mysql://u:secret@h/bot", "names mysql"),
        ("data/drawbridge.db", "not a database URL"),
        ("", "not a database URL"),
        ("postgres://u:secret@h:notaport/bot", "cannot be read"),
    ],
)
def test_unusable_urls_say_how_to_write_one_and_hide_the_password(written, says):
    with pytest.raises(DatabaseURLError) as caught:
        normalise(written)
    assert says in str(caught.value)
    assert "postgresql://user:password@host:5432/dbname" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_descriptions_and_pg_dump_urls_never_carry_the_password():
    url = "postgres://bot:s3cr%40t@db.example:6543/drawbridge?sslmode=require"
    assert describe(url) == "db.example:6543/drawbridge"
    assert for_libpq(url) == "postgresql://bot@db.example:6543/drawbridge?sslmode=require"
    assert describe("sqlite:////data/drawbridge.db") == "/data/drawbridge.db"


def test_the_database_password_is_masked_in_logs():
    settings = Settings(_env_file=None, database_url="postgres://bot:hunter22@db/drawbridge")
    redactor = RedactingFilter(secrets_of(settings))
    assert redactor.redact("connect to postgresql://bot:hunter22@db failed") == (
        "connect to postgresql://bot:***@db failed"
    )


def test_settings_normalise_the_url_and_default_to_data_dir(tmp_path):
    assert (
        Settings(_env_file=None, database_url="postgres://u@h/db").database_url
        == "postgresql+asyncpg://u@h/db"
    )
    assert Settings(_env_file=None).database_url == "sqlite+aiosqlite:///data/drawbridge.db"
    assert (
        Settings(_env_file=None, data_dir="/data").database_url
        == "sqlite+aiosqlite:////data/drawbridge.db"
    )
    # a blank DATABASE_URL (what compose passes without PostgreSQL) is the same default
    assert (
        Settings(_env_file=None, data_dir=tmp_path, database_url="  ").database_url
        == f"sqlite+aiosqlite:///{tmp_path}/drawbridge.db"
    )


# --- the real command against real servers -------------------------------------------------


def _run(tmp_path: Path, *args: str, timeout: float = 90, **env: str) -> tuple[int, str, str]:
    full = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    full.pop("PGPASSWORD", None)
    full.update(DATA_DIR=str(tmp_path / "data"), DATABASE_CONNECT_TIMEOUT="2", LOG_LEVEL="ERROR")
    full.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("drawbridge: "), stderr
    return lines[0]


async def _sql(server: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server.replace("postgresql+asyncpg", "postgresql") + "/postgres")
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(name="password_user")
async def fixture_password_user(pg_server: str) -> tuple[str, str, str]:
    """(server URL without user, user, password) of a role that must give its password."""
    user, password = f"u_{uuid.uuid4().hex[:8]}", "right-horse"
    await _sql(
        pg_server,
        f"DO $$ BEGIN CREATE ROLE {PASSWORD_ROLE} NOLOGIN; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        f"CREATE ROLE {user} LOGIN PASSWORD '{password}' IN ROLE {PASSWORD_ROLE}",
        f"CREATE DATABASE {user} OWNER {user}",
    )
    parsed = make_url(pg_server)
    hostport = f"{parsed.host}:{parsed.port}"
    if os.environ.get("DRAWBRIDGE_TEST_PG_URL"):
        import asyncpg

        try:
            conn = await asyncpg.connect(f"postgresql://{user}:wrong@{hostport}/{user}")
        except asyncpg.InvalidPasswordError:
            pass
        else:
            await conn.close()
            pytest.skip("the server in DRAWBRIDGE_TEST_PG_URL lets everyone in without a password")
    return hostport, user, password


async def test_postgres_urls_as_platforms_inject_them_work(tmp_path, password_user):
    hostport, user, password = password_user
    for scheme in ("postgres", "postgresql"):
        url = f"{scheme}://{user}:{password}@{hostport}/{user}"
        code, out, err = await asyncio.to_thread(_run, tmp_path, "db", "upgrade", DATABASE_URL=url)
        assert code == 0, err
        assert out.strip() == "database is up to date"
    # the password may also come from libpq's PGPASSWORD (compose passes it that way)
    url = f"postgresql://{user}@{hostport}/{user}"
    code, out, err = await asyncio.to_thread(
        _run, tmp_path, "db", "check", DATABASE_URL=url, PGPASSWORD=password
    )
    assert (code, out.strip()) == (0, f"database ok: {hostport}/{user}"), err


async def test_wrong_password_is_one_line_and_never_shows_the_password(tmp_path, password_user):
    hostport, user, _ = password_user
    url = f"postgres://{user}:not-the-horse@{hostport}/{user}"
    started = time.monotonic()
    code, _, err = await asyncio.to_thread(_run, tmp_path, "run", DATABASE_URL=url)
    line = _one_line(err)
    assert code == 1
    assert f"refused user '{user}'" in line and "password authentication failed" in line
    assert "check the user and password in DATABASE_URL" in line
    assert "not-the-horse" not in line
    assert time.monotonic() - started < 60  # final at once: no waiting for a wrong password


async def test_missing_database_is_one_line(tmp_path, password_user):
    hostport, user, password = password_user
    url = f"postgresql://{user}:{password}@{hostport}/no_such_db"
    code, _, err = await asyncio.to_thread(_run, tmp_path, "quota", "show", "x", DATABASE_URL=url)
    line = _one_line(err)
    assert code == 1
    assert "does not exist" in line and f"{hostport}/no_such_db" in line
    assert "createdb" in line and password not in line


def test_server_down_is_retried_for_the_set_time_then_one_line(tmp_path):
    port = _free_port()  # nothing listens there
    url = f"postgresql://bot:pw@127.0.0.1:{port}/drawbridge"
    started = time.monotonic()
    code, _, err = _run(
        tmp_path,
        "db",
        "upgrade",
        DATABASE_URL=url,
        DATABASE_CONNECT_TIMEOUT="2",
        LOG_LEVEL="WARNING",
    )
    elapsed = time.monotonic() - started
    assert code == 1
    warnings = [line for line in err.splitlines() if "not reachable yet" in line]
    assert len(warnings) >= 2, err  # it did retry, with backoff
    final = _one_line("\n".join(line for line in err.splitlines() if line not in warnings))
    assert f"Could not reach the database at 127.0.0.1:{port}/drawbridge" in final
    assert "waited 2 s" in final and "DATABASE_CONNECT_TIMEOUT" in final
    assert elapsed >= 2  # it waited as long as it was told to


def _as_server_account(bindir: Path, base: Path) -> list[str]:
    """The command prefix that runs PostgreSQL's tools as a non-root account when we are root."""
    if os.geteuid() != 0:
        return []
    account = _server_account(bindir)
    os.chown(base, account.pw_uid, account.pw_gid)
    return ["runuser", "-u", account.pw_name, "--"]


def test_a_server_that_comes_up_during_the_wait_is_used(tmp_path, pg_server):
    bindir = _pg_bindir()
    assert bindir is not None  # pg_server found one
    base = Path(tempfile.mkdtemp(prefix="drawbridge-late-pg-"))
    prefix, port = _as_server_account(bindir, base), _free_port()
    # the server starts seconds after drawbridge, as a compose database container might (3 s: a
    # loaded machine starts Python more slowly than it runs initdb)
    script = (
        f"sleep 3; {bindir}/initdb -D {base}/data -A trust -U postgres >/dev/null && "
        f"{bindir}/pg_ctl -D {base}/data -l {base}/log -w start "
        f"-o '-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off' >/dev/null"
    )
    starter = subprocess.Popen([*prefix, "sh", "-c", script])
    try:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        code, out, err = _run(
            tmp_path,
            "db",
            "upgrade",
            DATABASE_URL=url,
            DATABASE_CONNECT_TIMEOUT="60",
            LOG_LEVEL="WARNING",
        )
        assert code == 0, err
        assert out.strip() == "database is up to date"
        assert "not reachable yet" in err  # it was down when drawbridge started
    finally:
        starter.wait(timeout=60)
        stop = [str(bindir / "pg_ctl"), "-D", str(base / "data"), "-m", "immediate", "stop"]
        subprocess.run([*prefix, *stop], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def test_missing_driver_is_one_line(tmp_path):
    url = "postgresql+psycopg2://bot:pw@127.0.0.1:5432/drawbridge"
    code, _, err = _run(tmp_path, "db", "upgrade", DATABASE_URL=url)
    line = _one_line(err)
    assert code == 1
    assert "driver postgresql+psycopg2, which is not installed" in line


def test_asyncpg_missing_is_one_line_too(tmp_path):
    # an install without asyncpg (as `pip install .` was before it became a dependency):
    # the import machinery refuses the module, as it would if it were not installed
    code = (
        "import sys; sys.modules['asyncpg'] = None; from bot.cli import main; "
        "raise SystemExit(main(['db', 'check']))"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    env["DATABASE_URL"] = "postgres://bot:pw@127.0.0.1:5432/drawbridge"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    line = _one_line(proc.stderr)
    assert proc.returncode == 1
    assert "driver postgresql+asyncpg, which is not installed" in line


def test_sqlite_folder_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    code, _, err = _run(tmp_path, "run", DATA_DIR=str(blocker / "data"), TELEGRAM_TOKEN="1:x")
    line = _one_line(err)
    assert code == 1
    assert f"Cannot use the SQLite database {blocker}/data/drawbridge.db" in line
    assert "set DATA_DIR (or DATABASE_URL) to a folder drawbridge may write to" in line


def test_any_other_database_failure_is_one_line_too(tmp_path):
    garbage = tmp_path / "notes.db"
    garbage.write_text("this is not an SQLite database, but DATABASE_URL points at it\n" * 100)
    code, _, err = _run(tmp_path, "db", "upgrade", DATABASE_URL=f"sqlite:///{garbage}")
    line = _one_line(err)
    assert code == 1
    assert line.startswith(f"drawbridge: The database at {garbage} failed: ")
    assert "file is not a database" in line


def test_unsupported_database_is_a_settings_line(tmp_path):
    code, _, err = _run(tmp_path, "db", "upgrade", DATABASE_URL="mysql://bot:secret@h/db")
    line = _one_line(err)
    assert code == 2
    assert "DATABASE_URL names mysql" in line and "secret" not in line


def test_db_check_on_sqlite(tmp_path):
    code, out, err = _run(tmp_path, "db", "check")
    assert (code, out.strip()) == (0, f"database ok: {tmp_path}/data/drawbridge.db"), err


def test_version():
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "--version"], capture_output=True, text=True, check=True
    )
    from bot import __version__

    assert proc.stdout.strip() == f"drawbridge {__version__}"
