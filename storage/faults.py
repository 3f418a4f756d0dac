"""Which database errors are worth retrying, and which mean the disk is full.

Transient: the connection was lost or refused (PostgreSQL restarting, network), SQLite's
database was locked or busy beyond busy_timeout, PostgreSQL chose this transaction as the
victim of a serialization failure or deadlock, or is short of connections. Each of these
rolled the transaction back, so running it again is safe; the one exception, a connection
lost during COMMIT, is handled by the caller (storage.db.Database.write_tx).
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL = 5, 6, 13
# Class 08: connection exception; 57P01-57P03: admin/crash shutdown, cannot connect now;
# 40001 serialization failure, 40P01 deadlock, 53300 too many connections.
_PG_CONNECTION_CLASS = "08"
_PG_SHUTDOWN = frozenset({"57P01", "57P02", "57P03"})
_PG_TRANSIENT = _PG_SHUTDOWN | {"40001", "40P01", "53300"}
_PG_DISK_FULL = "53100"


def _causes(error: BaseException) -> list[BaseException]:
    chain = [error]
    orig = getattr(error, "orig", None)
    if isinstance(orig, BaseException):
        chain.append(orig)
    for item in list(chain):
        if item.__cause__ is not None:
            chain.append(item.__cause__)
    return chain


def _sqlstate(error: BaseException) -> str | None:
    for item in _causes(error):
        code = getattr(item, "sqlstate", None) or getattr(item, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _sqlite_code(error: BaseException) -> int | None:
    for item in _causes(error):
        if isinstance(item, sqlite3.Error):
            code = getattr(item, "sqlite_errorcode", None)
            return None if code is None else int(code) & 0xFF  # primary code of extended ones
    return None


def is_disk_full(error: BaseException) -> bool:
    """SQLITE_FULL, or PostgreSQL's disk_full."""
    return _sqlite_code(error) == _SQLITE_FULL or _sqlstate(error) == _PG_DISK_FULL


def is_disconnect(error: BaseException) -> bool:
    """The connection is gone (SQLAlchemy invalidated it, or it could not be opened)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    code = _sqlstate(error)
    if code is not None and (code.startswith(_PG_CONNECTION_CLASS) or code in _PG_SHUTDOWN):
        return True
    return any(isinstance(item, OSError) for item in _causes(error))


def is_transient(error: BaseException) -> bool:
    """Whether the same transaction may succeed if run again a little later."""
    if is_disk_full(error):
        return False
    if _sqlite_code(error) in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return True
    code = _sqlstate(error)
    if code is not None and (code in _PG_TRANSIENT or code.startswith(_PG_CONNECTION_CLASS)):
        return True
    return is_disconnect(error)
