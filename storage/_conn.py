"""What a repository needs of the database, as a Protocol, so that repositories do not import
`storage.db` (which builds them): one-transaction writes and reads, and the dialect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy import Connection

T = TypeVar("T")
Tx = Callable[[Connection], T]


class Connections(Protocol):
    """The started database as its repositories use it (`storage.db.Database` is one)."""

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        ...

    async def write_tx(self, fn: Tx[T], *, again: Tx[T] | None = None, inline: bool = False) -> T:
        """Run `fn(conn)` as ONE write transaction, retrying transient faults."""
        ...

    async def read_tx(self, fn: Tx[T], *, inline: bool = False) -> T:
        """Run `fn(conn)` in a read-only transaction, retried alike."""
        ...
