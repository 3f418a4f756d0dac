"""Dialect-specific statement builders, kept here so repositories stay portable."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

S = TypeVar("S")


def _insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"drawbridge supports SQLite and PostgreSQL, not {dialect}")


def insert_ignore(
    dialect: str, table: Table, values: Mapping[str, Any], conflict: Sequence[str]
) -> Insert:
    """INSERT that does nothing when a row with the same `conflict` columns exists."""
    return _insert(dialect, table).values(**values).on_conflict_do_nothing(index_elements=conflict)


def upsert(
    dialect: str,
    table: Table,
    values: Mapping[str, Any],
    conflict: Sequence[str],
    update: Sequence[str],
) -> Insert:
    """INSERT, or UPDATE the `update` columns to the new values when the row exists.

    With empty `values` the columns come from the parameters the statement is executed with.
    """
    stmt = _insert(dialect, table)
    if values:
        stmt = stmt.values(**values)
    return stmt.on_conflict_do_update(
        index_elements=conflict, set_={name: stmt.excluded[name] for name in update}
    )


def upsert_add(dialect: str, table: Table, conflict: Sequence[str], add: Sequence[str]) -> Insert:
    """INSERT, or add the new values of the `add` columns to the existing row's."""
    stmt = _insert(dialect, table)
    return stmt.on_conflict_do_update(
        index_elements=conflict, set_={name: table.c[name] + stmt.excluded[name] for name in add}
    )


class BuiltOnce(dict[Hashable, S]):
    """A statement built once per key, on first use (module-level constants): per dialect
    name, or per shape (which columns, which branch) with bound parameters for the values,
    so that SQLAlchemy's caches and storage/_sqlite.py's RawConnection compile each once."""

    def __init__(self, build: Callable[[Any], S]) -> None:
        super().__init__()
        self._build = build

    def __missing__(self, key: Hashable) -> S:
        stmt = self[key] = self._build(key)
        return stmt
