"""bans and audit: who may not use the bot, and one row per job as it ended.

The audit is its own table, without a foreign key to jobs: image retention deletes jobs and
results, the audit stays for AUDIT_RETENTION_DAYS.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create both tables."""
    op.create_table(
        "bans",
        sa.Column("user_key", sa.String(128), primary_key=True),
        _when("until", nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
        _when("created_at"),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        _when("at"),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("user_key", sa.String(128), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("chat", sa.String(128), nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("negative", sa.Text, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("result_hash", sa.String(512), nullable=False),
        sa.Column("backend", sa.String(256), nullable=False),
        sa.Column("wait_seconds", sa.Float, nullable=False),
        sa.Column("run_seconds", sa.Float, nullable=False),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_user_key", "audit", ["user_key"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_audit_user_key", table_name="audit")
    op.drop_index("ix_audit_at", table_name="audit")
    op.drop_table("audit")
    op.drop_table("bans")
