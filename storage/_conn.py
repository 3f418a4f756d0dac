"""What a repository needs of the database, as a Protocol, so that repositories do not import
`storage.db` (which builds them): sessions, transactions, the dialect and the SQLite writer."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from storage._sqlite import SQLiteWriter

T = TypeVar("T")


class Connections(Protocol):
    """The started database as its repositories use it (`storage.db.Database` is one)."""

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        ...

    @property
    def sqlite_writer(self) -> SQLiteWriter | None:
        """The one-hop transaction runner of an SQLite file database, else None."""
        ...

    async def run_sqlite(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` as one write transaction in the writer thread."""
        ...

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a write transaction."""
        ...

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a read-only transaction."""
        ...

    def session(self, *, readonly: bool = False) -> AbstractAsyncContextManager[AsyncSession]:
        """An ORM session."""
        ...
