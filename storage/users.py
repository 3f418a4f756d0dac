"""Users and their saved defaults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from storage._sql import upsert
from storage.models import User, UserSettings, metadata, utcnow

if TYPE_CHECKING:
    from storage.db import Database

USERS = metadata.tables["users"]
SETTINGS = metadata.tables["user_settings"]
SETTING_FIELDS = ("preset", "width", "height", "steps", "negative", "locale")


class UserRepo:
    """Who the bot has seen, and their /settings."""

    def __init__(self, db: Database) -> None:
        self._db = db

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
        async with self._db.session(readonly=True) as session:
            return await session.get(UserSettings, key)

    async def save_settings(self, key: str, **fields: Any) -> UserSettings:
        """Set the given fields (None clears one); fields not named keep their value."""
        unknown = set(fields) - set(SETTING_FIELDS)
        if unknown:
            raise TypeError(f"save_settings() got unknown fields {sorted(unknown)}")
        values = {"user_key": key, **fields, "updated_at": utcnow()}
        stmt = upsert(self._db.dialect, SETTINGS, values, ["user_key"], [*fields, "updated_at"])
        async with self._db.write() as conn:
            row = (await conn.execute(stmt.returning(*SETTINGS.c))).one()
        return UserSettings.model_validate(dict(row._mapping))
