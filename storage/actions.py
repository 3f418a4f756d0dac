"""Button payloads: a short key in callback_data / custom_id points at a stored action."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from storage.models import ACTION_KINDS, Action

if TYPE_CHECKING:
    from storage._conn import Connections

_KEY_BYTES = 9  # 12 URL-safe characters: fits Telegram's 64-byte callback_data with room


class ActionRepo:
    """Actions behind message buttons, kept so buttons work after a restart."""

    def __init__(self, db: Connections) -> None:
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

    async def create_many(self, items: Sequence[tuple[str, int, str]]) -> list[str]:
        """Store one action per (job_id, image_index, kind) in one transaction; keys in order."""
        unknown = {kind for _, _, kind in items if kind not in ACTION_KINDS}
        if unknown:
            raise ValueError(f"unknown action kinds {sorted(unknown)}; expected {ACTION_KINDS}")
        if not items:
            return []
        for _ in range(3):
            keys = [secrets.token_urlsafe(_KEY_BYTES) for _ in items]
            try:
                async with self._db.session() as session:
                    session.add_all(
                        Action(key=key, job_id=job_id, image_index=index, kind=kind)
                        for key, (job_id, index, kind) in zip(keys, items, strict=True)
                    )
                    await session.commit()
            except IntegrityError:
                # As in create: a key collision (≈ never) retries the batch; others propagate.
                if not await self._any_exists(keys):
                    raise
                continue
            return keys
        raise RuntimeError("could not find free action keys")

    async def _any_exists(self, keys: Sequence[str]) -> bool:
        async with self._db.session(readonly=True) as session:
            for key in keys:
                if await session.get(Action, key) is not None:
                    return True
        return False

    async def get(self, key: str) -> Action | None:
        """The action, or None (unknown or deleted with its job)."""
        async with self._db.session(readonly=True) as session:
            return await session.get(Action, key)
