"""Jobs: what was asked, by whom, where to answer, and how far it got."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, select, update

from storage import lifecycle
from storage.lifecycle import NON_FINAL, RenderedImage
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
    # one read of the system's randomness (5 bits a character; 32 letters, so no bias),
    # not one per character: a burst of /draw made 17 000 urandom calls for 1000 jobs
    bits = int.from_bytes(secrets.token_bytes((5 * length + 7) // 8))
    return "".join(_ID_ALPHABET[(bits >> (5 * i)) & 31] for i in range(length))


def job_values(
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
    owner: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Every column of a new job row, not yet stored, as a dict: what the submit inserts,
    without building and validating a table model (~0.3 ms on every /draw's way in)."""
    return {
        **_JOB_DEFAULTS,
        "id": id or new_job_id(),
        "user_key": user_key,
        "platform": platform,
        "chat_id": chat_id,
        "state": JobState(state).value,
        "mode": Mode(mode).value,
        "prompt": prompt,
        "params": _json_text(params),
        "cost": cost,
        "reply_ref": _json_text(reply_ref),
        "created_at": created_at or utcnow(),
        "owner": owner,
        "source": source,
    }


def build_job(**values: Any) -> Job:
    """A new job row, not yet stored (see `JobRepo.create`); `job_values` names the fields."""
    return Job(**job_values(**values))


# Every column of a job row and its default, from the model itself (so they cannot drift)
_JOB_DEFAULTS: dict[str, Any] = Job(id="", user_key="", platform="").model_dump()


def rows_to_jobs(rows: Iterable[Any]) -> list[Job]:
    """Job objects from `select(JOBS)` rows."""
    return [Job.model_validate(dict(row._mapping)) for row in rows]


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """A job row as read, without the ORM: what a takeover hands the engine. Building a
    table model validates and instruments every field (~0.2 ms a row, 20 s for a takeover
    of 100 000 jobs); this costs microseconds. Same fields as models.Job."""

    id: str
    user_key: str
    platform: str
    chat_id: str
    state: str
    mode: str
    prompt: str
    params: str
    cost: int
    attempts: int
    backend: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    reply_ref: str | None
    result_refs: str
    owner: str | None
    rendered_at: datetime | None
    delivered_at: datetime | None
    backend_task: str | None
    source: str | None
    notice: str | None = None


def row_snapshots(rows: Iterable[Any]) -> list[JobSnapshot]:
    """JobSnapshots from `select(JOBS)` rows."""
    return [JobSnapshot(**row._mapping) for row in rows]


def _get(conn: Connection, id: str) -> Job | None:
    found = rows_to_jobs(conn.execute(select(JOBS).where(JOBS.c.id == id)))
    return found[0] if found else None


def _insert(conn: Connection, values: dict[str, Any], *, repeat: bool = False) -> None:
    if repeat and _get(conn, values["id"]) is not None:
        return  # the lost COMMIT had landed
    conn.execute(JOBS.insert(), values)


def _set_state(
    conn: Connection,
    id: str,
    values: dict[str, Any],
    only_from: list[str] | None,
    *,
    repeat: bool = False,
) -> bool:
    if repeat:
        stored = _get(conn, id)
        if stored is not None and stored.state == values["state"]:
            return True
    stmt = update(JOBS).where(JOBS.c.id == id).values(**values)
    if only_from is not None:
        # Compare-and-set, e.g. cancel only while still queued, even against a worker.
        stmt = stmt.where(JOBS.c.state.in_(only_from))
    return conn.execute(stmt).rowcount == 1


def _set_reply_ref(conn: Connection, id: str, owner: str | None, reply_ref: str) -> bool:
    # raw-capable: a NON_FINAL job of this owner is a `_move` from any of those states
    return lifecycle.move(conn, id, owner, NON_FINAL, reply_ref=reply_ref)


def _list_by_state(conn: Connection, states: list[str]) -> list[Job]:
    stmt = select(JOBS).where(JOBS.c.state.in_(states)).order_by(JOBS.c.created_at, JOBS.c.id)
    return rows_to_jobs(conn.execute(stmt))


def _requeue_running(conn: Connection) -> list[str]:
    running = JobState.RUNNING.value
    stmt = select(JOBS.c.id).where(JOBS.c.state == running).order_by(JOBS.c.created_at)
    ids = [str(row[0]) for row in conn.execute(stmt)]
    if ids:
        conn.execute(
            update(JOBS)
            .where(JOBS.c.id.in_(ids), JOBS.c.state == running)
            .values(state=JobState.QUEUED.value, started_at=None, backend=None)
        )
    return ids


def _count_active(conn: Connection, user_key: str) -> int:
    stmt = select(func.count()).where(JOBS.c.user_key == user_key, JOBS.c.state.in_(_ACTIVE))
    return int(conn.execute(stmt).scalar_one())


def _delete_finished_before(conn: Connection, before: datetime) -> int:
    stmt = delete(JOBS).where(
        JOBS.c.state.not_in(NON_FINAL),
        JOBS.c.finished_at.is_not(None),
        JOBS.c.finished_at < before,
    )
    return int(conn.execute(stmt).rowcount)


class JobRepo:
    """Create, look up and move jobs between states (the transitions: storage/lifecycle.py)."""

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
        owner: str | None = None,
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
            owner=owner,
        )
        values = job.model_dump()
        await self._db.write_tx(
            partial(_insert, values=values), again=partial(_insert, values=values, repeat=True)
        )
        return job

    async def get(self, id: str) -> Job | None:
        """The job, or None."""
        return await self._db.read_tx(partial(_get, id=id))

    async def set_state(
        self,
        id: str,
        state: JobState | str,
        *,
        only_from: Iterable[JobState | str] | None = None,
        **fields: Any,
    ) -> bool:
        """Move a job to `state` and set `fields`; False if no job (in `only_from`) matched.

        A low-level tool: the engine's moves are the transitions below. started_at /
        finished_at default to now when entering RUNNING / a final state; reply_ref /
        result_refs take JSON text (or a value to serialise).
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
        states = None if only_from is None else [JobState(s).value for s in only_from]
        if states == []:
            return False
        tx = partial(_set_state, id=id, values=values, only_from=states)
        return await self._db.write_tx(tx, again=partial(tx, repeat=True))

    async def list_by_state(self, states: Iterable[JobState | str]) -> list[Job]:
        """Jobs in any of `states`, oldest first."""
        wanted = [JobState(s).value for s in states]
        return await self._db.read_tx(partial(_list_by_state, states=wanted))

    async def requeue_running(self) -> list[str]:
        """Jobs left running by a stopped process go back to queued; their ids.

        Takes every running job, whoever owns it: only for a database one process uses
        (InstanceRepo.claim_orphans is the owner-aware way).
        """
        return await self._db.write_tx(_requeue_running, again=_requeue_running)

    async def count_active(self, user_key: str) -> int:
        """How many of the user's jobs are queued or running."""
        return await self._db.read_tx(partial(_count_active, user_key=user_key))

    async def delete_finished_before(self, before: datetime) -> int:
        """Delete final jobs finished before `before` (their actions and results go too)."""
        tx = partial(_delete_finished_before, before=before)
        return await self._db.write_tx(tx, again=tx)

    # --- the transitions (storage/lifecycle.py), each one transaction ---------------------

    async def start(self, id: str, *, owner: str | None, backend: str, attempts: int) -> bool:
        """queued → running on `backend`; False if not queued or not `owner`'s."""
        tx = partial(lifecycle.start, job_id=id, owner=owner, backend=backend, attempts=attempts)
        return await self._db.write_tx(tx, again=tx, inline=True)

    async def requeue(self, id: str, *, owner: str | None, error: str | None = None) -> bool:
        """running → queued (render lost, or retried on another backend)."""
        tx = partial(lifecycle.requeue, job_id=id, owner=owner, error=error)
        return await self._db.write_tx(tx, again=tx)

    async def bind(self, id: str, *, owner: str | None, task: str) -> bool:
        """Record what proves the backend's running render is this job's; False if not running."""
        tx = partial(lifecycle.bind, job_id=id, owner=owner, task=task)
        return await self._db.write_tx(tx, again=tx, inline=True)

    async def set_reply_ref(
        self, id: str, reply_ref: str | dict[str, Any], *, owner: str | None
    ) -> bool:
        """Where the job's conversation is now (its status message moved); False if ended."""
        tx = partial(_set_reply_ref, id=id, owner=owner, reply_ref=_json_text(reply_ref))
        return await self._db.write_tx(tx, again=tx, inline=True)

    async def render(
        self,
        id: str,
        *,
        owner: str | None,
        images: Sequence[RenderedImage],
        actions: Sequence[tuple[int, str]] = (),
    ) -> list[str] | None:
        """running → rendered with its result rows and button keys; the keys, or None."""
        tx = partial(lifecycle.render, job_id=id, owner=owner, images=images, actions=actions)
        return await self._db.write_tx(tx, again=tx)

    async def deliver(self, id: str, *, owner: str | None) -> bool:
        """rendered → delivered and settled, once the platform confirmed the upload."""
        tx = partial(lifecycle.deliver, job_id=id, owner=owner)
        return await self._db.write_tx(tx, again=tx)

    async def fail(
        self,
        id: str,
        *,
        owner: str | None,
        error: str,
        today: str | None = None,
        notice: bool = False,
    ) -> int | None:
        """Any non-final state → failed and released (`notice`: a message to the user owed
        until `notified`); credits refunded, or None."""
        tx = partial(
            lifecycle.fail, job_id=id, owner=owner, error=error, today=today, notice=notice
        )
        return await self._db.write_tx(tx, again=tx)

    async def notified(self, id: str, *, sent: bool = True) -> bool:
        """The notice the job owed was sent (or, `sent=False`, refused for good)."""
        tx = partial(lifecycle.notified, job_id=id, sent=sent)
        return await self._db.write_tx(tx, again=tx)

    async def cancel(self, id: str, *, owner: str | None, today: str | None = None) -> int | None:
        """queued or running → cancelled and released; credits refunded, or None."""
        tx = partial(lifecycle.cancel, job_id=id, owner=owner, today=today)
        return await self._db.write_tx(tx, again=tx)

    # --- /history (issue 15) ----------------------------------------------------------------
    async def delivered_of(self, user_key: str, *, limit: int, offset: int = 0) -> list[Job]:
        """A user's delivered jobs, newest first (one page of /history)."""
        return await self._db.read_tx(
            partial(_delivered_of, user_key=user_key, limit=limit, offset=offset)
        )

    async def count_delivered(self, user_key: str) -> int:
        """How many delivered jobs a user has (for the page count)."""
        return await self._db.read_tx(partial(_count_delivered, user_key=user_key))


def _delivered_of(conn: Connection, user_key: str, limit: int, offset: int) -> list[Job]:
    stmt = (
        select(JOBS)
        .where(JOBS.c.user_key == user_key, JOBS.c.state == JobState.DELIVERED.value)
        .order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return rows_to_jobs(conn.execute(stmt))


def _count_delivered(conn: Connection, user_key: str) -> int:
    stmt = select(func.count()).where(
        JOBS.c.user_key == user_key, JOBS.c.state == JobState.DELIVERED.value
    )
    return int(conn.execute(stmt).scalar_one())
