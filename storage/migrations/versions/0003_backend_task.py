"""jobs.backend_task and jobs.source.

backend_task: what proves a running render on its backend is this job's. A process that dies
mid-render leaves the WebUI drawing an orphan; the instance that claims the job interrupts it
first, but only when the backend's current job is provably this one.

source: the platform command a job came from, unique per bot, so a command delivered twice
(Telegram replays updates a killed process had fetched but not confirmed) is one job.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable columns (no row has one yet) and the unique index."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("backend_task", sa.String(128), nullable=True))
        batch.add_column(sa.Column("source", sa.String(128), nullable=True))
    op.create_index("uq_jobs_platform_source", "jobs", ["platform", "source"], unique=True)


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("uq_jobs_platform_source", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("source")
        batch.drop_column("backend_task")
