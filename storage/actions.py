"""Button payloads: a short key in callback_data / custom_id points at a stored action."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from storage.models import ACTION_KINDS, Action

if TYPE_CHECKING:
    from storage.db import Database

_KEY_BYTES = 9  # 12 URL-safe characters: fits Telegram's 64-byte callback_data with room


class ActionRepo:
    """Actions behind message buttons, kept so buttons work after a restart."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, job_id: str, image_index: int, kind: str) -> str:
        """Store an action for a job's image; returns its key (≤ 12 URL-safe characters)."""
        if kind not in ACTION_KINDS:
            raise ValueError(f"unknown action kind {kind!r}; expected one of {ACTION_KINDS}")
        for _ in range(3):
            key = secrets.token_urlsafe(_KEY_BYTES)
            try:
                async with self._db.session() as session:
                    session.add(Action(key=key, job_id=job_id, image_index=image_index, kind=kind))
                    await session.commit()
            except IntegrityError:
                # A key collision (≈ never) is retried; anything else, e.g. an unknown job.
                if await self.get(key) is None:
                    raise
                continue
            return key
        raise RuntimeError("could not find a free action key")

    async def get(self, key: str) -> Action | None:
        """The action, or None (unknown or deleted with its job)."""
        async with self._db.session(readonly=True) as session:
            return await session.get(Action, key)
