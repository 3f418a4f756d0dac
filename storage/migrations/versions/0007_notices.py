"""jobs.notice: the "could not deliver, refunded" message a user is owed, kept until sent.

A result the platform never confirmed is refunded by the transaction that fails its job; the
same transaction marks the notice due ("due"), and it is marked "sent" once the platform
confirmed it. A process that stops before the platform is back leaves it due: whoever takes
over the job's bot (a restart, another instance) sends it. A column rather than a table: a job
owes at most one such notice, and everything it says (chat, language, job, refund) is the
job's already; it goes with the job when retention deletes it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable column (nothing is owed yet) and its index."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("notice", sa.String(16), nullable=True))
    op.create_index("ix_jobs_notice", "jobs", ["notice"])


def downgrade() -> None:
    """Drop them again (notices still due are not sent)."""
    op.drop_index("ix_jobs_notice", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("notice")
