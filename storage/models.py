"""SQLModel tables; the migrations in migrations/versions/ create exactly these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

# Closed sets the database enforces with CHECK constraints (kept in sync with the migration).
JOB_STATES = ("queued", "running", "rendered", "delivered", "failed", "cancelled")
LEDGER_KINDS = ("reserve", "settle", "release", "grant", "reset")
ACTION_KINDS: tuple[str, ...] = ("reroll", "variations", "upscale", "original", "cancel", "delete")
# issue 15: zoom out, pan, make square, fix faces (actions.kind has no CHECK constraint)
ACTION_KINDS += (
    "zoom15",
    "zoom2",
    "pan_left",
    "pan_right",
    "pan_up",
    "pan_down",
    "square",
    "faces",
    "control_map",
)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back timezone-aware.

    SQLite keeps no offset and returns naive values; PostgreSQL's timestamptz returns aware
    ones. Normalising here lets the rest of the code compare datetimes without caring.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite's DATETIME renders the wall clock only, so the offset must already be UTC.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _job_fk(name: str) -> Any:
    # Deleting a job (retention) takes its buttons and result rows with it.
    fk = ForeignKey("jobs.id", ondelete="CASCADE", name=name)
    return Column(String(32), fk, nullable=False)


class User(SQLModel, table=True):
    """Someone who talked to the bot on one platform."""

    __tablename__ = "users"

    key: str = Field(primary_key=True, max_length=128)  # "platform:user_id"
    platform: str = Field(max_length=32)
    display_name: str = Field(default="", max_length=256)
    locale: str = Field(default="en", max_length=16)
    created_at: datetime = _created()


class QuotaAccount(SQLModel, table=True):
    """Credit balance of one user; the daily bucket belongs to the quota day in `period`."""

    __tablename__ = "quota_accounts"
    __table_args__ = (
        CheckConstraint("daily_left >= 0", name="ck_quota_accounts_daily_left"),
        CheckConstraint("bonus >= 0", name="ck_quota_accounts_bonus"),
    )

    user_key: str = Field(primary_key=True, max_length=128)
    allowance: int
    period: str = Field(max_length=10)  # 'YYYY-MM-DD'
    daily_left: int
    bonus: int = 0
    # Daily part of the latest reserve: RETURNING only sees post-update values, so the
    # conditional UPDATE stores its split here to report it without a second read.
    last_reserve_daily: int = 0
    updated_at: datetime = _created()


class QuotaLedger(SQLModel, table=True):
    """Append-only record of every credit movement; `daily`/`bonus` are signed deltas."""

    __tablename__ = "quota_ledger"
    __table_args__ = (
        UniqueConstraint("job_id", "kind", name="uq_quota_ledger_job_kind"),
        CheckConstraint(
            "kind IN ('reserve', 'settle', 'release', 'grant', 'reset')",
            name="ck_quota_ledger_kind",
        ),
        Index("ix_quota_ledger_user_key", "user_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_key: str = Field(max_length=128)
    job_id: str | None = Field(default=None, max_length=200)  # or a "grant:…"/"reset:…" ref
    kind: str = Field(max_length=16)
    period: str = Field(max_length=10)  # quota day whose daily bucket `daily` moved
    daily: int = 0
    bonus: int = 0
    created_at: datetime = _created()


class QuotaLedgerDay(SQLModel, table=True):
    """Ledger rows pruned after LEDGER_KEEP_DAYS, summed per quota day, user and kind.

    `daily` and `bonus` are the sums of the pruned rows' signed deltas, kept apart so the
    quota invariant (storage/quota.py) still adds up exactly; `day` is the rows' `period`.
    """

    __tablename__ = "quota_ledger_days"

    day: str = Field(primary_key=True, max_length=10)
    user_key: str = Field(primary_key=True, max_length=128)
    kind: str = Field(primary_key=True, max_length=16)
    count: int = Field(default=0, sa_type=BigInteger)
    daily: int = Field(default=0, sa_type=BigInteger)
    bonus: int = Field(default=0, sa_type=BigInteger)


class Job(SQLModel, table=True):
    """One generation request and everything needed to resume or answer it after a restart."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'running', 'rendered', 'delivered', 'failed', 'cancelled')",
            name="ck_jobs_state",
        ),
        Index("ix_jobs_state_created", "state", "created_at"),
        Index("ix_jobs_user_state", "user_key", "state"),
        Index("ix_jobs_platform_state", "platform", "state"),
        # one job per command a platform delivered (NULLs never collide)
        Index("uq_jobs_platform_source", "platform", "source", unique=True),
        Index("ix_jobs_notice", "notice"),
    )

    id: str = Field(primary_key=True, max_length=32)
    user_key: str = Field(max_length=128)
    platform: str = Field(max_length=32)
    chat_id: str = Field(default="", max_length=128)
    state: str = Field(default="queued", max_length=16)
    mode: str = Field(default="txt2img", max_length=16)
    prompt: str = Field(default="", sa_type=Text)
    params: str = Field(default="{}", sa_type=Text)  # JSON: the request as the core stored it
    cost: int = 0
    attempts: int = 0
    backend: str | None = Field(default=None, max_length=512)
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _created()
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reply_ref: str | None = Field(default=None, sa_type=Text)  # JSON: adapter's reply handle
    result_refs: str = Field(default="[]", sa_type=Text)  # JSON list of image refs
    # The instance (instances.id) that runs and delivers this job; None: nobody's (orphan).
    owner: str | None = Field(default=None, max_length=64)
    rendered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # What proves the running render on `backend` is this job's (the WebUI's job_timestamp or
    # the request's task id), once the dispatcher saw it: a new owner interrupts only that.
    backend_task: str | None = Field(default=None, max_length=128)
    # The command it came from ("<chat>:<message id>", a button press id): the same command
    # delivered twice (replayed after a crash, seen by two processes) is one job.
    source: str | None = Field(default=None, max_length=128)
    # A message the user is owed about how the job ended, kept until the platform confirmed
    # it: "due" (the "could not deliver, refunded" notice), then "sent" (or "dropped" when the
    # platform refused it for good: the chat is gone). None: nothing owed.
    notice: str | None = Field(default=None, max_length=16)


class UserSettings(SQLModel, table=True):
    """A user's saved defaults; None means "use the preset's value"."""

    __tablename__ = "user_settings"

    user_key: str = Field(primary_key=True, max_length=128)
    preset: str | None = Field(default=None, max_length=64)
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    negative: str | None = Field(default=None, sa_type=Text)
    locale: str | None = Field(default=None, max_length=16)
    updated_at: datetime = _created()
    # favourite LoRAs ([[name, weight], …]) and styles ([name, …]) as JSON text (0006)
    loras: str | None = Field(default=None, sa_type=Text)
    styles: str | None = Field(default=None, sa_type=Text)


class Action(SQLModel, table=True):
    """What a button on a delivered message does, so it still works after a restart."""

    __tablename__ = "actions"
    __table_args__ = (Index("ix_actions_job_id", "job_id"),)

    key: str = Field(primary_key=True, max_length=16)
    job_id: str = Field(sa_column=_job_fk("fk_actions_job_id_jobs"))
    image_index: int = 0
    kind: str = Field(max_length=16)
    created_at: datetime = _created()


class Result(SQLModel, table=True):
    """One image a job produced; the bytes live in the image store under `image_ref`."""

    __tablename__ = "results"
    __table_args__ = (
        Index("ix_results_job_id", "job_id"),
        Index("ix_results_created_at", "created_at"),
        Index("ix_results_image_ref", "image_ref"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(sa_column=_job_fk("fk_results_job_id_jobs"))
    image_index: int = 0
    image_ref: str = Field(max_length=128)
    seed: int = Field(default=-1, sa_type=BigInteger)  # WebUI seeds reach 2**32 - 1
    width: int = 0
    height: int = 0
    infotext: str = Field(default="", sa_type=Text)
    created_at: datetime = _created()


class Instance(SQLModel, table=True):
    """A running drawbridge process; it owns jobs while its lease is current."""

    __tablename__ = "instances"

    id: str = Field(primary_key=True, max_length=64)
    platforms: str = Field(default="", max_length=256)  # comma-separated, e.g. "discord,telegram"
    host: str = Field(default="", max_length=256)
    pid: int = 0
    # Processes with the same node share a kernel boot and PID namespace: `pid` means the same
    # process to all of them, so they can tell a dead one from a live one without waiting.
    node: str = Field(default="", max_length=128)
    started_at: datetime = _created()
    heartbeat_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class Ban(SQLModel, table=True):
    """A user who may not use the bot until `until` (None: until unbanned)."""

    __tablename__ = "bans"

    user_key: str = Field(primary_key=True, max_length=128)
    until: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    reason: str = Field(default="", max_length=500)
    by: str = Field(default="", max_length=128)
    created_at: datetime = _created()


class AuditEntry(SQLModel, table=True):
    """One job as it ended, kept AUDIT_RETENTION_DAYS: separate from jobs and results, which
    image retention deletes."""

    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_user_key", "user_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _created()
    job_id: str = Field(max_length=32)
    user_key: str = Field(max_length=128)
    platform: str = Field(max_length=32)
    chat: str = Field(default="", max_length=128)
    prompt: str = Field(default="", sa_type=Text)
    negative: str = Field(default="", sa_type=Text)
    mode: str = Field(default="", max_length=16)
    width: int = 0
    height: int = 0
    model: str = Field(default="", max_length=256)
    seed: int = Field(default=-1, sa_type=BigInteger)
    cost: int = 0
    outcome: str = Field(default="", max_length=16)
    result_hash: str = Field(default="", max_length=512)
    backend: str = Field(default="", max_length=256)
    wait_seconds: float = 0.0
    run_seconds: float = 0.0


metadata = SQLModel.metadata
