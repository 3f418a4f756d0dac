"""Button payloads: a short key in callback_data / custom_id points at a stored action."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from storage.lifecycle import new_action_key
from storage.models import ACTION_KINDS, Action, metadata, utcnow

if TYPE_CHECKING:
    from storage._conn import Connections

ACTIONS = metadata.tables["actions"]


def _create(conn: Connection, job_id: str, wanted: list[tuple[int, str]], keys: list[str]) -> None:
    now = utcnow()
    rows = [
        {"key": key, "job_id": job_id, "image_index": index, "kind": kind, "created_at": now}
        for key, (index, kind) in zip(keys, wanted, strict=True)
    ]
    conn.execute(ACTIONS.insert(), rows)


def _create_again(
    conn: Connection, job_id: str, wanted: list[tuple[int, str]], keys: list[str]
) -> None:
    # After a lost COMMIT: the keys are ours, so finding the first one means all landed.
    if conn.execute(select(ACTIONS.c.key).where(ACTIONS.c.key == keys[0])).first() is None:
        _create(conn, job_id, wanted, keys)


def _get(conn: Connection, key: str) -> Action | None:
    row = conn.execute(select(ACTIONS).where(ACTIONS.c.key == key)).first()
    return None if row is None else Action.model_validate(dict(row._mapping))


def _for_job(conn: Connection, job_id: str) -> list[Action]:
    stmt = select(ACTIONS).where(ACTIONS.c.job_id == job_id).order_by(ACTIONS.c.image_index)
    return [Action.model_validate(dict(row._mapping)) for row in conn.execute(stmt)]


class ActionRepo:
    """Actions behind message buttons, kept so buttons work after a restart."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    async def create(self, job_id: str, image_index: int, kind: str) -> str:
        """Store an action for a job's image; returns its key (≤ 12 URL-safe characters)."""
        return (await self.create_many(job_id, [(image_index, kind)]))[0]

    async def create_many(self, job_id: str, actions: Sequence[tuple[int, str]]) -> list[str]:
        """Store several (image index, kind) actions of one job in one transaction; their
        keys in order. Keys have 72 random bits: a collision (≈ never) is an IntegrityError."""
        wanted = list(actions)
        for _, kind in wanted:
            if kind not in ACTION_KINDS:
                raise ValueError(f"unknown action kind {kind!r}; expected one of {ACTION_KINDS}")
        if not wanted:
            return []
        keys = [new_action_key() for _ in wanted]
        await self._db.write_tx(
            partial(_create, job_id=job_id, wanted=wanted, keys=keys),
            again=partial(_create_again, job_id=job_id, wanted=wanted, keys=keys),
        )
        return keys

    async def get(self, key: str) -> Action | None:
        """The action, or None (unknown or deleted with its job)."""
        return await self._db.read_tx(partial(_get, key=key))

    async def for_job(self, job_id: str) -> list[Action]:
        """A job's actions (its result's buttons), by image index."""
        return await self._db.read_tx(partial(_for_job, job_id=job_id))
