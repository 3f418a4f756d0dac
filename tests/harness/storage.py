"""Fixtures for the storage tests (registered in tests/conftest.py: `db`, `db_url`, `sqlite_url`,
`pg_server`): a fresh SQLite file, or a throwaway PostgreSQL server.

The PostgreSQL server is started on 127.0.0.1 from the machine's binaries when it has them,
else from the binaries of the `pgserver` package (a test extra: PyPI ships them), so the
PostgreSQL variants run on any machine. Set DRAWBRIDGE_TEST_PG_URL to use a server of your
own instead (each test then creates its own database on it).

Members of the role `password_login` must log in with a password (scram-sha-256); everyone
else is trusted. Tests of wrong passwords create such a role.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.db import Database

BACKENDS = ["sqlite", "postgresql"]


PASSWORD_ROLE = "password_login"


def _pgserver_bindir() -> Path | None:
    # found without importing pgserver: importing it sets up its own server machinery
    spec = importlib.util.find_spec("pgserver")
    for folder in (spec and spec.submodule_search_locations) or []:
        bindir = Path(folder) / "pginstall" / "bin"
        if (bindir / "initdb").exists():
            return bindir
    return None


def _pg_bindir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else _pgserver_bindir()


def _server_account(bindir: Path) -> pwd.struct_passwd:
    """The account the server runs as when we are root (initdb refuses root)."""
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pass
    if bindir != _pgserver_bindir():
        pytest.skip("running as root and there is no 'postgres' account")
    # pgserver's own way when run as root: an account of its own, and binaries it can reach
    with contextlib.suppress(KeyError):
        return pwd.getpwnam("pgserver")
    subprocess.run(["useradd", "--system", "pgserver"], check=True, capture_output=True)
    for folder in bindir.parents:
        folder.chmod(folder.stat().st_mode | 0o001)  # o+x: traverse only
    return pwd.getpwnam("pgserver")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# One server per test process, however many modules import the fixture (each import is a
# separate fixture definition to pytest, and would otherwise start its own server).
_server: dict[str, str] = {}


def _start_pg_server(stop: list[Callable[[], None]]) -> str:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries (initdb) on this machine")
    # initdb refuses to run as root; run the server as the 'postgres' account then.
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="drawbridge-pg-"))
    stop.append(lambda: shutil.rmtree(base, ignore_errors=True))
    if os.geteuid() == 0:
        account = _server_account(bindir)
        os.chown(base, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", account.pw_name, "--"]
    data, port = base / "data", _free_port()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    subprocess.run([*prefix, *initdb], check=True, capture_output=True, timeout=120)
    hba = data / "pg_hba.conf"
    hba.write_text(
        f"host all +{PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
        "host all all 127.0.0.1/32 trust\nlocal all all trust\n"
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    # -l: the server must not inherit our pipes, or waiting for pg_ctl never ends.
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-l", str(base / "log"), "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
        timeout=60,
    )

    def stop_server() -> None:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)

    stop.insert(0, stop_server)
    _control.update(pg_ctl=pg_ctl, log=str(base / "log"), options=options)
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}"


_control: dict[str, Any] = {}


class PgControl:
    """Stop and start this session's own PostgreSQL server (outage tests)."""

    def __init__(self, pg_ctl: list[str], log: str, options: str) -> None:
        self._pg_ctl, self._log, self._options = pg_ctl, log, options

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: sessions are terminated, as on an operator's restart."""
        subprocess.run([*self._pg_ctl, "-m", "fast", "-w", "stop"], check=True, **_QUIET)

    def start(self) -> None:
        """Start it again (a no-op if it runs) and wait until it accepts connections."""
        status = subprocess.run([*self._pg_ctl, "status"], **_QUIET)
        if status.returncode == 0:
            return
        start = [*self._pg_ctl, "-l", self._log, "-o", self._options, "-w", "start"]
        subprocess.run(start, check=True, **_QUIET)


_QUIET: dict[str, Any] = {"capture_output": True, "timeout": 60}


@pytest.fixture(name="pg_control")
def fixture_pg_control(pg_server: str) -> Iterator[PgControl]:
    """Control over the PostgreSQL server behind `pg_server`; started again afterwards."""
    if not _control:
        pytest.skip("the PostgreSQL server is not this test session's own (DRAWBRIDGE_TEST_PG_URL)")
    control = PgControl(**_control)
    try:
        yield control
    finally:
        control.start()


@pytest.fixture(scope="session", name="pg_server")
def fixture_pg_server() -> Iterator[str]:
    """URL (without database name) of a PostgreSQL server for this test session."""
    if importlib.util.find_spec("asyncpg") is None:
        pytest.skip("asyncpg is not installed")
    own = os.environ.get("DRAWBRIDGE_TEST_PG_URL")
    if own:
        yield own.rsplit("/", 1)[0]
        return
    if "url" in _server:
        yield _server["url"]
        return
    stop: list[Callable[[], None]] = []
    try:
        _server["url"] = _start_pg_server(stop)
        yield _server["url"]
    finally:
        for step in stop:
            with contextlib.suppress(Exception):
                step()


async def _create_pg_database(server: str) -> str:
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server.replace("postgresql+asyncpg", "postgresql") + "/postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{server}/{name}"


@pytest.fixture(params=BACKENDS, name="db_url")
async def fixture_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'drawbridge.db'}"
    server = request.getfixturevalue("pg_server")
    return await _create_pg_database(server)


@pytest.fixture(name="sqlite_url")
async def fixture_sqlite_url(tmp_path: Path) -> str:
    """A URL to a not yet existing SQLite file in a folder that does not exist either."""
    return f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'drawbridge.db'}"


@pytest.fixture(name="pg_url")
async def fixture_pg_url(pg_server: str) -> str:
    """A URL to an empty database on this session's PostgreSQL server."""
    return await _create_pg_database(pg_server)


@pytest.fixture(name="db")
async def fixture_db(db_url: str) -> AsyncIterator[Database]:
    """A started database on each backend."""
    async with Database(db_url) as database:
        yield database
