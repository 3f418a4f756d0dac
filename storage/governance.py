"""Bans and the audit: who may not use the bot, and every job as it ended."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select

from storage._sql import upsert
from storage.models import AuditEntry, Ban, metadata, utcnow

if TYPE_CHECKING:
    from storage._conn import Connections

BANS = metadata.tables["bans"]
AUDIT = metadata.tables["audit"]


def _ban(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    stmt = upsert(conn.dialect.name, BANS, values, ["user_key"], ["until", "reason", "by"])
    return dict(conn.execute(stmt.returning(*BANS.c)).one()._mapping)


def _unban(conn: Connection, key: str) -> bool:
    return bool(conn.execute(delete(BANS).where(BANS.c.user_key == key)).rowcount)


def _get(conn: Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute(select(BANS).where(BANS.c.user_key == key)).first()
    return None if row is None else dict(row._mapping)


def _all(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(BANS).order_by(BANS.c.created_at))]


class BanRepo:
    """Bans, checked on every command of a user."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    async def ban(self, key: str, *, until: datetime | None, reason: str = "", by: str = "") -> Ban:
        """Ban `key` until `until` (None: until unbanned); a second ban replaces the first."""
        values = {"user_key": key, "until": until, "reason": reason[:500], "by": by[:128]}
        values["created_at"] = utcnow()
        tx = partial(_ban, values=values)
        return Ban.model_validate(await self._db.write_tx(tx, again=tx))

    async def unban(self, key: str) -> bool:
        """Lift a ban; False if there was none."""
        tx = partial(_unban, key=key)
        return await self._db.write_tx(tx, again=tx)

    async def active(self, key: str, now: datetime | None = None) -> Ban | None:
        """The ban on `key` if it is still in force."""
        row = await self._db.read_tx(partial(_get, key=key))
        if row is None:
            return None
        ban = Ban.model_validate(row)
        if ban.until is not None and ban.until <= (now or utcnow()):
            return None
        return ban

    async def all(self) -> list[Ban]:
        """Every ban row (ended ones too, until unbanned)."""
        return [Ban.model_validate(r) for r in await self._db.read_tx(_all)]


def _audit(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(AUDIT).values(**values))


def _entries(
    conn: Connection, since: datetime | None, user: str | None, limit: int | None
) -> list[dict[str, Any]]:
    stmt = select(AUDIT).order_by(AUDIT.c.at, AUDIT.c.id)
    if since is not None:
        stmt = stmt.where(AUDIT.c.at >= since)
    if user is not None:
        stmt = stmt.where(AUDIT.c.user_key == user)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def _forget(conn: Connection, before: datetime) -> int:
    return int(conn.execute(delete(AUDIT).where(AUDIT.c.at < before)).rowcount)


class AuditRepo:
    """One row per job as it ended (delivered, failed, cancelled)."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    async def record(self, **values: Any) -> None:
        """Write one entry (`at` defaults to now)."""
        values.setdefault("at", utcnow())
        await self._db.write_tx(partial(_audit, values=values))

    async def entries(
        self, *, since: datetime | None = None, user: str | None = None, limit: int | None = None
    ) -> list[AuditEntry]:
        """Entries from `since`, of `user`, oldest first."""
        rows = await self._db.read_tx(partial(_entries, since=since, user=user, limit=limit))
        return [AuditEntry.model_validate(r) for r in rows]

    async def forget(self, before: datetime) -> int:
        """Delete entries older than `before` (AUDIT_RETENTION_DAYS); how many."""
        tx = partial(_forget, before=before)
        return await self._db.write_tx(tx, again=tx)
