"""Users and their saved defaults."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from storage._sql import upsert
from storage.models import User, UserSettings, metadata, utcnow

if TYPE_CHECKING:
    from storage._conn import Connections

USERS = metadata.tables["users"]
SETTINGS = metadata.tables["user_settings"]
SETTING_FIELDS = ("preset", "width", "height", "steps", "negative", "locale")
SETTINGS_CACHE_SIZE = 4096  # users whose settings are kept in memory, least recently used out


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
        stmt = upsert(
            self._db.dialect, USERS, values, ["key"], ["platform", "display_name", "locale"]
        )
        async with self._db.write() as conn:
            row = (await conn.execute(stmt.returning(*USERS.c))).one()
        return User.model_validate(dict(row._mapping))

    async def get(self, key: str) -> User | None:
        """The user, or None."""
        async with self._db.session(readonly=True) as session:
            return await session.get(User, key)

    async def get_settings(self, key: str) -> UserSettings | None:
        """The user's saved defaults, or None if they never saved any."""
        if key in self._settings:
            self._settings.move_to_end(key)
            cached = self._settings[key]
            return None if cached is None else UserSettings.model_validate(cached)
        saves, quiet = self._saves, self._saving == 0
        async with self._db.session(readonly=True) as session:
            row = await session.get(UserSettings, key)
        if quiet and saves == self._saves:
            self._remember(key, None if row is None else row.model_dump())
        return row

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
        stmt = upsert(self._db.dialect, SETTINGS, values, ["user_key"], [*fields, "updated_at"])
        self._saves += 1
        saves, alone = self._saves, self._saving == 0
        self._saving += 1
        self._settings.pop(key, None)
        try:
            async with self._db.write() as conn:
                row = (await conn.execute(stmt.returning(*SETTINGS.c))).one()
        finally:
            self._saving -= 1
        saved = dict(row._mapping)
        if alone and saves == self._saves:  # no save overlapped: this row is the newest
            self._remember(key, saved)
        return UserSettings.model_validate(saved)
