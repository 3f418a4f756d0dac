"""Initial schema: users, quota accounts and ledger, jobs, settings, actions, results.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    # storage.models.UTCDateTime renders as this; the type decorator itself needs no DDL.
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "users",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        _timestamp("created_at"),
    )
    op.create_table(
        "quota_accounts",
        sa.Column("user_key", sa.String(128), primary_key=True),
        sa.Column("allowance", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("daily_left", sa.Integer(), nullable=False),
        sa.Column("bonus", sa.Integer(), nullable=False),
        sa.Column("last_reserve_daily", sa.Integer(), nullable=False),
        _timestamp("updated_at"),
        sa.CheckConstraint("daily_left >= 0", name="ck_quota_accounts_daily_left"),
        sa.CheckConstraint("bonus >= 0", name="ck_quota_accounts_bonus"),
    )
    op.create_table(
        "quota_ledger",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_key", sa.String(128), nullable=False),
        sa.Column("job_id", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("daily", sa.Integer(), nullable=False),
        sa.Column("bonus", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        sa.UniqueConstraint("job_id", "kind", name="uq_quota_ledger_job_kind"),
        sa.CheckConstraint(
            "kind IN ('reserve', 'settle', 'release', 'grant', 'reset')",
            name="ck_quota_ledger_kind",
        ),
    )
    op.create_index("ix_quota_ledger_user_key", "quota_ledger", ["user_key"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_key", sa.String(128), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("backend", sa.String(512), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        sa.Column("reply_ref", sa.Text(), nullable=True),
        sa.Column("result_refs", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed', 'cancelled')",
            name="ck_jobs_state",
        ),
    )
    op.create_index("ix_jobs_state_created", "jobs", ["state", "created_at"])
    op.create_index("ix_jobs_user_state", "jobs", ["user_key", "state"])
    op.create_table(
        "user_settings",
        sa.Column("user_key", sa.String(128), primary_key=True),
        sa.Column("preset", sa.String(64), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=True),
        sa.Column("negative", sa.Text(), nullable=True),
        sa.Column("locale", sa.String(16), nullable=True),
        _timestamp("updated_at"),
    )
    op.create_table(
        "actions",
        sa.Column("key", sa.String(16), primary_key=True),
        sa.Column(
            "job_id",
            sa.String(32),
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name="fk_actions_job_id_jobs"),
            nullable=False,
        ),
        sa.Column("image_index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        _timestamp("created_at"),
    )
    op.create_index("ix_actions_job_id", "actions", ["job_id"])
    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "job_id",
            sa.String(32),
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name="fk_results_job_id_jobs"),
            nullable=False,
        ),
        sa.Column("image_index", sa.Integer(), nullable=False),
        sa.Column("image_ref", sa.String(128), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("infotext", sa.Text(), nullable=False),
        _timestamp("created_at"),
    )
    op.create_index("ix_results_job_id", "results", ["job_id"])
    op.create_index("ix_results_created_at", "results", ["created_at"])
    op.create_index("ix_results_image_ref", "results", ["image_ref"])


def downgrade() -> None:
    """Drop every table, dependants first."""
    for table in (
        "results",
        "actions",
        "user_settings",
        "jobs",
        "quota_ledger",
        "quota_accounts",
        "users",
    ):
        op.drop_table(table)
