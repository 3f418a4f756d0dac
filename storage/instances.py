"""One owner per job: running instances hold leases; jobs of a dead owner are claimed.

Every drawbridge process that takes work (`drawbridge run`, `drawbridge draw`) registers
an instance: its id, the platforms it serves, host, pid and a lease (`expires_at`) that its
heartbeat keeps pushing forward. A job records the instance that owns it (jobs.owner) and
every transition compare-and-sets that owner (storage/lifecycle.py).

An owner is gone when its row has been removed (deregistered on a clean stop, or deleted by
a claimer because its lease expired) or, quicker, when it ran on the same node (same kernel
boot and PID namespace) and its pid no longer runs. `claim_orphans` takes, in one
transaction, the non-final jobs of the claimer's platforms whose owner is gone: running ones
go back to queued (their render is lost), rendered ones are to be sent again, queued ones
queued again, failed ones that still owe their user a notice (jobs.notice 'due': "could not
deliver, refunded") have it sent; orphaned CLI jobs cannot be resumed by anyone and are failed and refunded by
whoever claims them. A live instance's jobs are never claimed: on PostgreSQL rows are
locked FOR UPDATE SKIP LOCKED so two claimers never take the same job, on SQLite BEGIN
IMMEDIATE serialises claimers.

Why leases and not PostgreSQL advisory locks: one mechanism for both databases (SQLite has
no advisory locks); any number of instances can run side by side, each owning its own jobs
(Telegram-only beside Discord-only, `drawbridge draw` beside a bot), where one advisory lock
would make every process but one a standby; a session lock dies with its connection, so a
PostgreSQL restart or a pool reconnect would silently drop ownership while the process runs
on; and a lease is visible in a table (who owns what, since when) rather than in
pg_locks. The price is a bounded takeover delay: a dead owner's jobs move after its lease
expires (at once on the same node). Lease times use the database's clock on PostgreSQL, so
hosts with skewed clocks still agree; SQLite is one host's file, and its clock.

A live instance whose lease lapsed (a long database outage, a frozen process) finds its row
gone: heartbeat returns False and claim_orphans raises LeaseLost. It must drop the jobs it
held in memory (their transitions would fail the owner check anyway) and register again.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, and_, delete, func, or_, select, update

from storage import lifecycle, quota
from storage.jobs import JobSnapshot, row_snapshots, rows_to_jobs
from storage.lifecycle import NON_FINAL, UNRESUMABLE_PLATFORMS
from storage.models import Instance, Job, metadata, utcnow
from storage.vocab import JobState, LeaseLost

if TYPE_CHECKING:
    from storage._conn import Connections

INSTANCES = metadata.tables["instances"]
JOBS = metadata.tables["jobs"]
ORPHANED_CLI = "not resumable: the drawbridge draw that started it has stopped"


Cursor = tuple[datetime, str]  # (created_at, id) of the last queued job a batch took


@dataclass(frozen=True)
class Orphans:
    """Jobs claim_orphans took over (their rows as read), by what the new owner must do."""

    queued: list[JobSnapshot] = field(default_factory=list)  # queue again (oldest first)
    requeued: list[str] = field(default_factory=list)  # ids in `queued` that were running
    # job id → (backend, backend_task) of a requeued job whose render may still run there
    renders: dict[str, tuple[str, str]] = field(default_factory=dict)
    rendered: list[JobSnapshot] = field(default_factory=list)  # send the stored result again
    # CLI jobs: ended, refunded
    failed: list[tuple[JobSnapshot, int]] = field(default_factory=list)
    # failed jobs whose "could not deliver, refunded" notice is still due, with the refund
    notices: list[tuple[JobSnapshot, int]] = field(default_factory=list)
    # With a `limit`: where the next batch starts (None: this sweep is done) and, on a
    # sweep's first batch, how many queued jobs are left after it
    cursor: Cursor | None = None
    remaining: int = 0


def node_id() -> str:
    """Kernel boot id + PID namespace: processes sharing it can check each other's pids."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""  # no /proc: only leases tell the dead from the living
    return f"{boot}/{namespace}"[:128]


def pid_running(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process here; unsure counts as running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def new_instance_id() -> str:
    """A unique instance id that says where it runs, e.g. 'gpu-box-4242-1f2e3d4c'."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(4)}"


def _now(conn: Connection) -> datetime:
    # PostgreSQL's clock (transaction start) for every host alike; SQLite: this host's.
    if conn.dialect.name == "postgresql":
        value: datetime = conn.execute(select(func.now())).scalar_one()
        return value
    return utcnow()


def _register(
    conn: Connection, instance: str, platforms: list[str], lease_seconds: float, node: str
) -> None:
    now = _now(conn)
    conn.execute(delete(INSTANCES).where(INSTANCES.c.id == instance))
    conn.execute(
        INSTANCES.insert(),
        {
            "id": instance,
            "platforms": ",".join(platforms),
            "host": socket.gethostname()[:256],
            "pid": os.getpid(),
            "node": node,
            "started_at": now,
            "heartbeat_at": now,
            "expires_at": now + timedelta(seconds=lease_seconds),
        },
    )


def _heartbeat(conn: Connection, instance: str, lease_seconds: float) -> bool:
    now = _now(conn)
    stmt = (
        update(INSTANCES)
        .where(INSTANCES.c.id == instance)
        .values(heartbeat_at=now, expires_at=now + timedelta(seconds=lease_seconds))
    )
    return conn.execute(stmt).rowcount == 1


def _deregister(conn: Connection, instance: str) -> None:
    conn.execute(delete(INSTANCES).where(INSTANCES.c.id == instance))


def _bury_the_dead(conn: Connection, me: str, node: str) -> None:
    now = _now(conn)
    dead = [
        row.id
        for row in conn.execute(
            select(INSTANCES.c.id, INSTANCES.c.pid, INSTANCES.c.node, INSTANCES.c.expires_at)
        )
        if row.id != me
        and (row.expires_at < now or (node and row.node == node and not pid_running(row.pid)))
    ]
    if dead:
        conn.execute(delete(INSTANCES).where(INSTANCES.c.id.in_(dead)))


def _claim(
    conn: Connection,
    instance: str,
    platforms: list[str],
    lease_seconds: float,
    today: str | None,
    node: str,
    limit: int | None = None,
    after: Cursor | None = None,
) -> Orphans:
    if not _heartbeat(conn, instance, lease_seconds):
        raise LeaseLost()
    _bury_the_dead(conn, instance, node)
    wanted = sorted(set(platforms) | UNRESUMABLE_PLATFORMS)
    gone = or_(JOBS.c.owner.is_(None), JOBS.c.owner.not_in(select(INSTANCES.c.id)))
    orphaned = (JOBS.c.platform.in_(wanted), gone)
    oldest_first = (JOBS.c.created_at, JOBS.c.id)
    page: list[Any] = []
    if limit is None:
        candidates = select(JOBS).where(JOBS.c.state.in_(NON_FINAL), *orphaned)
        jobs = list(conn.execute(_locked(candidates.order_by(*oldest_first))))
    else:
        # A batch: the few running and rendered ones with the first batch of a sweep, then
        # queued ones oldest first after the cursor. One state, so ix_jobs_state_created
        # walks them in order and stops after `limit`: each batch costs its own rows only.
        jobs = []
        if after is None:
            busy = (JobState.RUNNING.value, JobState.RENDERED.value)
            others = select(JOBS).where(JOBS.c.state.in_(busy), *orphaned)
            jobs += conn.execute(_locked(others.order_by(*oldest_first)))
        queued_now = select(JOBS).where(JOBS.c.state == JobState.QUEUED.value, *orphaned)
        if after is not None:
            at, job_id = after
            later = or_(JOBS.c.created_at > at, and_(JOBS.c.created_at == at, JOBS.c.id > job_id))
            queued_now = queued_now.where(later)
        page = list(conn.execute(_locked(queued_now.order_by(*oldest_first).limit(limit))))
        jobs += page
    owed: list[Any] = []
    if after is None:  # once per sweep, with its first batch (ix_jobs_notice finds them)
        due = select(JOBS).where(
            JOBS.c.notice == lifecycle.NOTICE_DUE,
            JOBS.c.state == JobState.FAILED.value,
            *orphaned,
        )
        owed = list(conn.execute(_locked(due.order_by(*oldest_first))))
    if not jobs and not owed:
        return Orphans()
    cursor: Cursor | None = None
    remaining = 0
    if limit is not None and len(page) == limit:
        cursor = (page[-1].created_at, page[-1].id)
        if after is None:  # counted once per sweep (it reads every row); the Lease counts down
            left = select(func.count()).select_from(JOBS)
            left = left.where(JOBS.c.state == JobState.QUEUED.value, *orphaned)
            remaining = int(conn.execute(left).scalar_one()) - limit
    taken = [job.id for job in (*jobs, *owed)]
    conn.execute(update(JOBS).where(JOBS.c.id.in_(taken)).values(owner=instance))
    queued: list[str] = []
    requeued: list[str] = []
    renders: dict[str, tuple[str, str]] = {}
    rendered: list[str] = []
    failed: list[tuple[str, int]] = []
    for job in jobs:
        if job.platform in UNRESUMABLE_PLATFORMS:
            refunded = lifecycle.fail(conn, job.id, owner=instance, error=ORPHANED_CLI, today=today)
            failed.append((job.id, refunded or 0))
        elif job.state == JobState.RENDERED.value:
            rendered.append(job.id)
        else:
            if job.state == JobState.RUNNING.value:
                if job.backend and job.backend_task:
                    renders[job.id] = (job.backend, job.backend_task)
                lifecycle.requeue(conn, job.id, owner=instance, error=job.error)
                requeued.append(job.id)
            queued.append(job.id)
    # Hand back the rows as they are now (requeued ones lost backend and started_at).
    fresh = {
        job.id: job for job in row_snapshots(conn.execute(select(JOBS).where(JOBS.c.id.in_(taken))))
    }
    notices = [(fresh[job.id], quota.released(conn, job.id)) for job in owed]
    return Orphans(
        queued=[fresh[job_id] for job_id in queued],
        requeued=requeued,
        renders=renders,
        rendered=[fresh[job_id] for job_id in rendered],
        failed=[(fresh[job_id], refunded) for job_id, refunded in failed],
        notices=notices,
        remaining=remaining,
        cursor=cursor,
    )


def _locked(stmt: Select[Any]) -> Select[Any]:
    # PostgreSQL: rows another claimer holds are skipped, not waited for; SQLite ignores it
    return stmt.with_for_update(skip_locked=True, of=JOBS)


def _live(conn: Connection) -> list[Instance]:
    rows = conn.execute(select(INSTANCES).order_by(INSTANCES.c.started_at))
    return [Instance.model_validate(dict(row._mapping)) for row in rows]


def _owned(conn: Connection, instance: str) -> list[Job]:
    stmt = (
        select(JOBS)
        .where(JOBS.c.owner == instance, JOBS.c.state.in_(NON_FINAL))
        .order_by(JOBS.c.created_at, JOBS.c.id)
    )
    return rows_to_jobs(conn.execute(stmt))


class InstanceRepo:
    """Register, heartbeat and deregister instances; claim the jobs of dead ones."""

    def __init__(self, db: Connections) -> None:
        self._db = db
        self._node = node_id()

    async def register(
        self, instance: str, platforms: Iterable[str], *, lease_seconds: float
    ) -> None:
        """Record this process as `instance` serving `platforms`, leased for
        `lease_seconds` (renew with `heartbeat` well before that)."""
        tx = partial(
            _register,
            instance=instance,
            platforms=sorted(set(platforms)),
            lease_seconds=lease_seconds,
            node=self._node,
        )
        await self._db.write_tx(tx, again=tx)

    async def heartbeat(self, instance: str, *, lease_seconds: float) -> bool:
        """Extend the lease; False if the row is gone (presumed dead: register again)."""
        tx = partial(_heartbeat, instance=instance, lease_seconds=lease_seconds)
        return await self._db.write_tx(tx, again=tx)

    async def deregister(self, instance: str) -> None:
        """A clean stop: remove the row, so others may claim what is left at once."""
        tx = partial(_deregister, instance=instance)
        await self._db.write_tx(tx, again=tx)

    async def claim_orphans(
        self,
        instance: str,
        platforms: Sequence[str],
        *,
        lease_seconds: float,
        today: str | None = None,
        limit: int | None = None,
        after: Cursor | None = None,
    ) -> Orphans:
        """Renew `instance`'s lease, then take over the non-final jobs of `platforms` (and
        orphaned CLI jobs) whose owner is gone, in one transaction. Raises LeaseLost if
        `instance` is not registered (any more). `today` is the quota day for refunds.
        With `limit`, a batch: at most that many queued jobs (oldest first, after the cursor
        `after`), the running and rendered ones with the first; the result's `cursor` starts
        the next batch (None when no more) and the first says how many are `remaining`. A
        large takeover so goes in short transactions, each costing only its own rows."""
        tx = partial(
            _claim,
            instance=instance,
            platforms=list(platforms),
            lease_seconds=lease_seconds,
            today=today,
            node=self._node,
            limit=limit,
            after=after,
        )
        # Not repeated after a lost COMMIT: a landed claim's jobs are this instance's now,
        # and `owned` lists them; a second claim would not return them.
        return await self._db.write_tx(tx)

    async def live(self) -> list[Instance]:
        """Registered instances, oldest first (expired ones until someone claims)."""
        return await self._db.read_tx(_live)

    async def owned(self, instance: str) -> list[Job]:
        """The non-final jobs `instance` owns, oldest first."""
        return await self._db.read_tx(partial(_owned, instance=instance))
