"""Users and their saved defaults."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select

from storage._sql import upsert
from storage.models import User, UserSettings, metadata, utcnow

if TYPE_CHECKING:
    from storage._conn import Connections

USERS = metadata.tables["users"]
SETTINGS = metadata.tables["user_settings"]
SETTING_FIELDS = ("preset", "width", "height", "steps", "negative", "locale", "loras", "styles")
SETTINGS_CACHE_SIZE = 4096  # users whose settings are kept in memory, least recently used out


def _upsert(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    refresh = ["platform", "display_name", "locale"]
    stmt = upsert(conn.dialect.name, USERS, values, ["key"], refresh)
    return dict(conn.execute(stmt.returning(*USERS.c)).one()._mapping)


def _get(conn: Connection, key: str) -> User | None:
    row = conn.execute(select(USERS).where(USERS.c.key == key)).first()
    return None if row is None else User.model_validate(dict(row._mapping))


_GET_SETTINGS = select(SETTINGS).where(SETTINGS.c.user_key == bindparam("b_key"))


def _get_settings(conn: Connection, key: str) -> dict[str, Any] | None:
    # a module-level statement: raw-capable (read inline on SQLite, storage/_sqlite.py)
    row = conn.execute(_GET_SETTINGS, {"b_key": key}).first()
    return None if row is None else dict(row._asdict())


def _save_settings(conn: Connection, values: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    stmt = upsert(conn.dialect.name, SETTINGS, values, ["user_key"], [*fields, "updated_at"])
    return dict(conn.execute(stmt.returning(*SETTINGS.c)).one()._mapping)


class UserRepo:
    """Who the bot has seen, and their /settings."""

    def __init__(self, db: Connections, *, cache_size: int = SETTINGS_CACHE_SIZE) -> None:
        self._db = db
        # get_settings runs on every submit. Cached per Database: this instance's
        # save_settings keeps it current (writes from another process are not seen).
        # Values are column dicts (None: never saved), so callers get their own objects.
        self._settings: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._cache_size = cache_size
        # Only what no save overlapped is cached: a save bumps `_saves` when it starts, and
        # counts in `_saving` while it runs.
        self._saves = 0
        self._saving = 0
        self._loading: dict[str, asyncio.Future[dict[str, Any] | None]] = {}

    async def upsert(
        self, key: str, platform: str, display_name: str = "", locale: str = "en"
    ) -> User:
        """Record a user, or refresh their name and locale; created_at is kept."""
        values = {
            "key": key,
            "platform": platform,
            "display_name": display_name,
            "locale": locale,
            "created_at": utcnow(),
        }
        tx = partial(_upsert, values=values)
        return User.model_validate(await self._db.write_tx(tx, again=tx))

    async def get(self, key: str) -> User | None:
        """The user, or None."""
        return await self._db.read_tx(partial(_get, key=key))

    async def get_settings(self, key: str) -> UserSettings | None:
        """The user's saved defaults, or None if they never saved any."""
        if key in self._settings:
            self._settings.move_to_end(key)
            cached = self._settings[key]
            return None if cached is None else UserSettings.model_validate(cached)
        # One read per user however many of their commands miss the cache at once (a burst
        # of five /draw is one read, not five queued behind each other's).
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load_settings(key))
            loading.add_done_callback(partial(self._loaded, key))
        values = await asyncio.shield(loading)
        return None if values is None else UserSettings.model_validate(values)

    def _loaded(self, key: str, done: asyncio.Future[Any]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]

    async def _load_settings(self, key: str) -> dict[str, Any] | None:
        saves, quiet = self._saves, self._saving == 0
        values = await self._db.read_tx(partial(_get_settings, key=key), inline=True)
        if quiet and saves == self._saves:
            self._remember(key, values)
        return values

    def _remember(self, key: str, values: dict[str, Any] | None) -> None:
        self._settings[key] = values
        self._settings.move_to_end(key)
        while len(self._settings) > self._cache_size:
            self._settings.popitem(last=False)

    async def save_settings(self, key: str, **fields: Any) -> UserSettings:
        """Set the given fields (None clears one); fields not named keep their value."""
        unknown = set(fields) - set(SETTING_FIELDS)
        if unknown:
            raise TypeError(f"save_settings() got unknown fields {sorted(unknown)}")
        values = {"user_key": key, **fields, "updated_at": utcnow()}
        tx = partial(_save_settings, values=values, fields=list(fields))
        self._saves += 1
        saves, alone = self._saves, self._saving == 0
        self._saving += 1
        self._settings.pop(key, None)
        self._loading.pop(key, None)  # a read in flight may predate this save: not joined
        try:
            saved = await self._db.write_tx(tx, again=tx)
        finally:
            self._saving -= 1
        if alone and saves == self._saves:  # no save overlapped: this row is the newest
            self._remember(key, saved)
        return UserSettings.model_validate(saved)
