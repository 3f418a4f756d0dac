"""A job's life, written down in one place: its states, its transitions, its crash recovery.

    submit ──► queued ──start──► running ──render──► rendered ──deliver──► delivered
                 ▲  │              │  │                  │
                 │  └──cancel──┐   │  └──cancel──┐       │
                 └───requeue───┼───┘             ▼       ▼
                               └────────────► cancelled  failed ◄──fail── (any non-final)

Final states: delivered, failed, cancelled. Every transition is ONE transaction that
compare-and-sets the from-state AND the owner (the instance that runs the job, see
storage/instances.py), so a job moves only from where its owner believes it is, and an
instance that lost its job (lease expired, job claimed by another) cannot move it any more.

| transition | from            | writes, in one transaction                                  |
|------------|-----------------|-------------------------------------------------------------|
| submit     | (none)          | user upsert + quota reservation (ledger 'reserve') + job row |
|            |                 | state queued, owner = the submitting instance                |
| start      | queued          | state running, backend, attempts, started_at                 |
| requeue    | running         | state queued, error; backend, backend_task, started_at cleared |
| render     | running         | state rendered, rendered_at, result_refs, one `results` row |
|            |                 | per image, the result's button keys (`actions`)              |
| deliver    | rendered        | state delivered, delivered_at, finished_at + ledger 'settle' |
| fail       | any non-final   | state failed, error, finished_at + ledger 'release'          |
|            |                 | (+ notice 'due' when the result could not be delivered)      |
| (notified) | failed          | notice 'due' → 'sent' (or 'dropped'): the platform answered  |
| (bind)     | running         | backend_task: what proves the backend's current render is it |
| cancel     | queued, running | state cancelled, finished_at + ledger 'release'              |

The picture is stored (image file first, by the caller, then `render`) before anything is
sent; the reservation is settled only by `deliver`, i.e. after the platform confirmed the
upload; a job that ends without a delivery is refunded by the same transaction that ends it.
So no crash point leaves a reservation open without a job that will still close it:

| crash (kill -9, power, lost DB) ...     | state left | recovery (claim_orphans, then engine)  |
|-----------------------------------------|------------|----------------------------------------|
| before the submit commits               | nothing    | nothing was charged; no "Got it" sent  |
| while queued                            | queued     | queued again in the new owner's queue  |
| during the WebUI call (render lost)     | running    | back to queued, drawn again            |
| after the image file, before render     | running    | back to queued (the file is retention's) |
| after render, during/after the upload   | rendered   | sent again from the stored images      |
| after the upload, before deliver commits | rendered   | sent again (at-least-once; settled once) |
| inside any transaction                  | the before-state: the transaction rolled back |

Jobs of the CLI (`drawbridge draw`, platform "cli") cannot be resumed: the terminal that
waited for them is gone. Whoever claims an orphaned cli job fails and refunds it.

Retries: each transition is repeat-safe after a COMMIT whose answer was lost (the job is
then already in the to-state with the same owner, and the call reports success; the ledger's
UNIQUE(job_id, kind) makes a second settle or release impossible anyway), so the database
layer may run it again (Database.write_tx's `again`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Update, bindparam, or_, select, update

from storage import quota
from storage._sql import BuiltOnce
from storage.models import ACTION_KINDS, metadata, utcnow
from storage.vocab import JobState

JOBS = metadata.tables["jobs"]
RESULTS = metadata.tables["results"]
ACTIONS = metadata.tables["actions"]

# States a job can still leave; their reservation is open.
NON_FINAL = (JobState.QUEUED.value, JobState.RUNNING.value, JobState.RENDERED.value)
CANCELLABLE = (JobState.QUEUED.value, JobState.RUNNING.value)
# Platforms whose jobs cannot be resumed by another process or after a restart.
UNRESUMABLE_PLATFORMS = frozenset({"cli"})
# jobs.notice: a message the user is owed about how the job ended (see `fail`, `notified`)
NOTICE_DUE, NOTICE_SENT, NOTICE_DROPPED = "due", "sent", "dropped"
_KEY_BYTES = 9  # 12 URL-safe characters: fits Telegram's 64-byte callback_data with room


@dataclass(frozen=True)
class RenderedImage:
    """One image of a render, already in the image store under `image_ref`."""

    image_ref: str
    seed: int
    width: int
    height: int
    infotext: str = ""


def new_action_key() -> str:
    """A short random key for a button (≤ 12 URL-safe characters)."""
    return secrets.token_urlsafe(_KEY_BYTES)


def _owned(unowned: bool) -> ColumnElement[bool]:
    """The job's owner is the parameter b_owner (`unowned`: jobs nobody owns)."""
    return JOBS.c.owner.is_(None) if unowned else JOBS.c.owner == bindparam("b_owner")


def _moving(from_states: tuple[str, ...], unowned: bool, columns: tuple[str, ...]) -> Update:
    return (
        update(JOBS)
        # equalities, not IN: a literal IN list is expanded per execution ("post-compile")
        .where(
            JOBS.c.id == bindparam("b_id"),
            or_(*(JOBS.c.state == state for state in from_states)),
            _owned(unowned),
        )
        .values({c: bindparam(f"v_{c}", type_=JOBS.c[c].type) for c in columns})
    )


_MOVE = BuiltOnce(lambda shape: _moving(*shape))
_IS = BuiltOnce(
    lambda shape: select(JOBS.c.id).where(
        JOBS.c.id == bindparam("b_id"), JOBS.c.state == shape[0], _owned(shape[1])
    )
)


def move(
    conn: Connection, job_id: str, owner: str | None, from_states: Sequence[str], **values: Any
) -> bool:
    """Set `values` on the job if it is in one of `from_states` and `owner`'s; whether it was.
    Raw-capable (one statement per shape)."""
    stmt = _MOVE[tuple(from_states), owner is None, tuple(values)]
    params = {"b_id": job_id, "b_owner": owner, **{f"v_{c}": v for c, v in values.items()}}
    return conn.execute(stmt, params).rowcount == 1


def _is(conn: Connection, job_id: str, owner: str | None, state: JobState) -> bool:
    # A repeat finds the job already moved by this owner: the earlier attempt landed.
    stmt = _IS[state.value, owner is None]
    return conn.execute(stmt, {"b_id": job_id, "b_owner": owner}).first() is not None


def start(conn: Connection, job_id: str, *, owner: str | None, backend: str, attempts: int) -> bool:
    """queued → running on `backend`; False if the job is not queued (or not `owner`'s)."""
    values = {
        "state": JobState.RUNNING.value,
        "backend": backend,
        "attempts": attempts,
        "backend_task": None,
    }
    if move(conn, job_id, owner, [JobState.QUEUED.value], started_at=utcnow(), **values):
        return True
    return _is(conn, job_id, owner, JobState.RUNNING)


def requeue(conn: Connection, job_id: str, *, owner: str | None, error: str | None = None) -> bool:
    """running → queued (the render was lost or will be retried); False if not running."""
    values = {
        "state": JobState.QUEUED.value,
        "backend": None,
        "backend_task": None,
        "started_at": None,
    }
    if move(conn, job_id, owner, [JobState.RUNNING.value], error=error, **values):
        return True
    return _is(conn, job_id, owner, JobState.QUEUED)


def bind(conn: Connection, job_id: str, *, owner: str | None, task: str) -> bool:
    """Record what proves the running render on the job's backend is this job's (not a state
    change: a new owner interrupts the orphan render only when it still matches)."""
    return move(conn, job_id, owner, [JobState.RUNNING.value], backend_task=task)


def render(
    conn: Connection,
    job_id: str,
    *,
    owner: str | None,
    images: Sequence[RenderedImage],
    actions: Sequence[tuple[int, str]] = (),
) -> list[str] | None:
    """running → rendered: the images' result rows, result_refs and the button keys for
    `actions` ((image index, kind) pairs) together. Returns the keys in the order asked, or
    None if the job was not running (cancelled meanwhile, or no longer `owner`'s)."""
    wanted = list(actions)
    if len(set(wanted)) != len(wanted):
        raise ValueError("each (image index, kind) action once")
    for _, kind in wanted:
        if kind not in ACTION_KINDS:
            raise ValueError(f"unknown action kind {kind!r}; expected one of {ACTION_KINDS}")
    now = utcnow()
    refs = json.dumps([image.image_ref for image in images])
    moved = move(
        conn,
        job_id,
        owner,
        [JobState.RUNNING.value],
        state=JobState.RENDERED.value,
        rendered_at=now,
        result_refs=refs,
    )
    if not moved:
        if not _is(conn, job_id, owner, JobState.RENDERED):
            return None
        stored = select(ACTIONS.c.image_index, ACTIONS.c.kind, ACTIONS.c.key).where(
            ACTIONS.c.job_id == job_id
        )
        found = {(row.image_index, row.kind): row.key for row in conn.execute(stored)}
        return [found[action] for action in wanted if action in found]
    if images:
        conn.execute(
            RESULTS.insert(),
            [
                {
                    "job_id": job_id,
                    "image_index": i,
                    "image_ref": image.image_ref,
                    "seed": image.seed,
                    "width": image.width,
                    "height": image.height,
                    "infotext": image.infotext,
                    "created_at": now,
                }
                for i, image in enumerate(images)
            ],
        )
    keys = [new_action_key() for _ in wanted]
    if wanted:
        conn.execute(
            ACTIONS.insert(),
            [
                {
                    "key": key,
                    "job_id": job_id,
                    "image_index": index,
                    "kind": kind,
                    "created_at": now,
                }
                for key, (index, kind) in zip(keys, wanted, strict=True)
            ],
        )
    return keys


def deliver(conn: Connection, job_id: str, *, owner: str | None) -> bool:
    """rendered → delivered and the reservation settled: call it once the platform confirmed
    the upload. False if the job was not rendered (or not `owner`'s)."""
    now = utcnow()
    state = JobState.DELIVERED.value
    if move(
        conn,
        job_id,
        owner,
        [JobState.RENDERED.value],
        state=state,
        delivered_at=now,
        finished_at=now,
    ):
        quota.settle(conn, job_id)
        return True
    return _is(conn, job_id, owner, JobState.DELIVERED)


def fail(
    conn: Connection,
    job_id: str,
    *,
    owner: str | None,
    error: str,
    today: str | None = None,
    notice: bool = False,
) -> int | None:
    """Any non-final state → failed, and the reservation released; returns the credits
    refunded, or None if the job had already ended (or is not `owner`'s). `notice`: the user
    is owed a message about it (notice 'due') until `notified` says the platform took it."""
    owed = {"notice": NOTICE_DUE} if notice else {}
    return _end(conn, job_id, owner, NON_FINAL, JobState.FAILED, today, error=error, **owed)


def notified(conn: Connection, job_id: str, *, sent: bool = True) -> bool:
    """The notice a failed job owed is done with: 'sent' (the platform confirmed it) or, with
    `sent=False`, 'dropped' (the platform refused it for good). Any owner may say so: the
    message is out either way. False if no notice was due."""
    stmt = (
        update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.notice == NOTICE_DUE)
        .values(notice=NOTICE_SENT if sent else NOTICE_DROPPED)
    )
    return conn.execute(stmt).rowcount == 1


def cancel(
    conn: Connection, job_id: str, *, owner: str | None, today: str | None = None
) -> int | None:
    """queued or running → cancelled, and the reservation released; returns the credits
    refunded, or None if the job was neither (or is not `owner`'s)."""
    return _end(conn, job_id, owner, CANCELLABLE, JobState.CANCELLED, today)


def _end(
    conn: Connection,
    job_id: str,
    owner: str | None,
    from_states: Sequence[str],
    to: JobState,
    today: str | None,
    **values: Any,
) -> int | None:
    if move(conn, job_id, owner, from_states, state=to.value, finished_at=utcnow(), **values):
        return quota.release(conn, job_id, today)
    if _is(conn, job_id, owner, to):
        return quota.released(conn, job_id)
    return None
