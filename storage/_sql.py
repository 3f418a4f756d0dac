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


class PerDialect(dict[str, S]):
    """A statement built once per dialect name, on first use (module-level constants)."""

    def __init__(self, build: Callable[[str], S]) -> None:
        super().__init__()
        self._build = build

    def __missing__(self, dialect: str) -> S:
        stmt = self[dialect] = self._build(dialect)
        return stmt


class Shaped(dict[Hashable, S]):
    """Statements built once per shape (which columns, which branch) with bound parameters
    for the values, instead of once per call: SQLAlchemy's caches and storage/_sqlite.py's
    RawConnection then compile each shape once."""

    def __init__(self, build: Callable[..., S]) -> None:
        super().__init__()
        self._build = build

    def of(self, *shape: Hashable) -> S:
        """The statement of this shape (`build(*shape)`), built on first use."""
        stmt = self.get(shape)
        if stmt is None:
            stmt = self[shape] = self._build(*shape)
        return stmt
