"""Jobs: what was asked, by whom, where to answer, and how far it got."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, update
from sqlmodel import select

from storage import _sqlite as lite
from storage.models import Job, metadata, utcnow
from storage.vocab import JobState, Mode

if TYPE_CHECKING:
    from storage._conn import Connections

JOBS = metadata.tables["jobs"]

# No 0/o, 1/l: job ids are read off screens and typed into /cancel.
_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)
_SETTABLE = frozenset(
    {
        "started_at",
        "finished_at",
        "backend",
        "error",
        "attempts",
        "cost",
        "reply_ref",
        "result_refs",
    }
)


def _json_text(value: Any) -> Any:
    # Columns hold JSON text as the core wrote it; other values are serialised here.
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def new_job_id(length: int = 8) -> str:
    """A short random job id (32**8 ≈ 10**12 values)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def build_job(
    *,
    user_key: str,
    platform: str,
    prompt: str,
    params: str | dict[str, Any],
    cost: int,
    mode: Mode | str = Mode.TXT2IMG,
    chat_id: str = "",
    reply_ref: str | dict[str, Any] | None = None,
    id: str | None = None,
    state: JobState | str = JobState.QUEUED,
    created_at: datetime | None = None,
) -> Job:
    """A new job row, not yet stored (see `JobRepo.create`)."""
    return Job(
        id=id or new_job_id(),
        user_key=user_key,
        platform=platform,
        chat_id=chat_id,
        state=JobState(state).value,
        mode=Mode(mode).value,
        prompt=prompt,
        params=_json_text(params),
        cost=cost,
        reply_ref=_json_text(reply_ref),
        created_at=created_at or utcnow(),
    )


class JobRepo:
    """Create, look up and move jobs between states."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    async def create(
        self,
        *,
        user_key: str,
        platform: str,
        prompt: str,
        params: str | dict[str, Any],
        cost: int,
        mode: Mode | str = Mode.TXT2IMG,
        chat_id: str = "",
        reply_ref: str | dict[str, Any] | None = None,
        id: str | None = None,
        state: JobState | str = JobState.QUEUED,
        created_at: datetime | None = None,
    ) -> Job:
        """Store a new job (queued unless told otherwise); `id` defaults to `new_job_id()`.

        `params` and `reply_ref` are JSON text; a dict is serialised first.
        """
        job = build_job(
            user_key=user_key,
            platform=platform,
            prompt=prompt,
            params=params,
            cost=cost,
            mode=mode,
            chat_id=chat_id,
            reply_ref=reply_ref,
            id=id,
            state=state,
            created_at=created_at,
        )
        async with self._db.session() as session:
            session.add(job)
            await session.commit()
        return job

    async def get(self, id: str) -> Job | None:
        """The job, or None."""
        async with self._db.session(readonly=True) as session:
            return await session.get(Job, id)

    async def set_state(
        self,
        id: str,
        state: JobState | str,
        *,
        only_from: Iterable[JobState | str] | None = None,
        **fields: Any,
    ) -> bool:
        """Move a job to `state` and set `fields`; False if no job (in `only_from`) matched.

        started_at / finished_at default to now when entering RUNNING / a final state;
        reply_ref / result_refs take JSON text (or a value to serialise).
        """
        unknown = set(fields) - _SETTABLE
        if unknown:
            raise TypeError(f"set_state() cannot set {sorted(unknown)}")
        new_state = JobState(state)
        values = {"state": new_state.value, **fields}
        for name in ("reply_ref", "result_refs"):
            if name in values:
                values[name] = _json_text(values[name])
        if new_state is JobState.RUNNING:
            values.setdefault("started_at", utcnow())
        if new_state.final:
            values.setdefault("finished_at", utcnow())
        if self._db.sqlite_writer is not None:
            return await self._set_state_sqlite(id, values, only_from)
        stmt = update(JOBS).where(JOBS.c.id == id).values(**values)
        if only_from is not None:
            # Compare-and-set, e.g. cancel only while still queued, even against a worker.
            stmt = stmt.where(JOBS.c.state.in_([JobState(s).value for s in only_from]))
        async with self._db.write() as conn:
            result = await conn.execute(stmt)
        return result.rowcount == 1

    async def _set_state_sqlite(
        self,
        id: str,
        values: dict[str, Any],
        only_from: Iterable[JobState | str] | None,
    ) -> bool:
        # The same UPDATE as the SQLAlchemy path; column names come from _SETTABLE only.
        names = sorted(values)
        sql = f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in names)} WHERE id = ?"
        params: list[Any] = [
            lite.ts(values[n]) if isinstance(values[n], datetime) else values[n] for n in names
        ]
        params.append(id)
        if only_from is not None:
            states = [JobState(s).value for s in only_from]
            if not states:
                return False
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            params.extend(states)
        return await self._db.run_sqlite(lambda conn: conn.execute(sql, params).rowcount == 1)

    async def list_by_state(self, states: Iterable[JobState | str]) -> list[Job]:
        """Jobs in any of `states`, oldest first."""
        wanted = [JobState(s).value for s in states]
        stmt = select(Job).where(JOBS.c.state.in_(wanted)).order_by(JOBS.c.created_at, JOBS.c.id)
        async with self._db.session(readonly=True) as session:
            return list((await session.exec(stmt)).all())

    async def requeue_running(self) -> list[str]:
        """On startup: jobs left running by a stopped process go back to queued; their ids."""
        running = JobState.RUNNING.value
        async with self._db.write() as conn:
            stmt = select(JOBS.c.id).where(JOBS.c.state == running).order_by(JOBS.c.created_at)
            ids = [str(row[0]) for row in await conn.execute(stmt)]
            if ids:
                await conn.execute(
                    update(JOBS)
                    .where(JOBS.c.state == running)
                    .values(state=JobState.QUEUED.value, started_at=None, backend=None)
                )
        return ids

    async def count_active(self, user_key: str) -> int:
        """How many of the user's jobs are queued or running."""
        stmt = select(func.count()).where(JOBS.c.user_key == user_key, JOBS.c.state.in_(_ACTIVE))
        async with self._db.read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def delete_finished_before(self, before: datetime) -> int:
        """Delete final jobs finished before `before` (their actions and results go too)."""
        stmt = delete(JOBS).where(
            JOBS.c.state.not_in(_ACTIVE),
            JOBS.c.finished_at.is_not(None),
            JOBS.c.finished_at < before,
        )
        async with self._db.write() as conn:
            result = await conn.execute(stmt)
        return result.rowcount
