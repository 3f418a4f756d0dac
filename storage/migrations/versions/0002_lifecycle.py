"""Job lifecycle and owners: rendered/delivered states, job owner, instances with leases.

'done' was written before the upload and the settle after it, so a 'done' row means:
settled → 'delivered'; released (the upload failed and was refunded) → 'failed'; still
reserved (the process died between upload and settle) → 'rendered', so the new recovery
sends it again and settles it only when the platform confirms. Jobs without a reservation
(none was needed) become 'delivered'.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = "state IN ('queued', 'running', 'done', 'failed', 'cancelled')"
NEW_STATES = "state IN ('queued', 'running', 'rendered', 'delivered', 'failed', 'cancelled')"
# Between the two: the data moves while either set of values is allowed.
BOTH_STATES = (
    "state IN ('queued', 'running', 'done', 'rendered', 'delivered', 'failed', 'cancelled')"
)

jobs = sa.table(
    "jobs",
    sa.column("id", sa.String),
    sa.column("state", sa.String),
    sa.column("error", sa.Text),
    sa.column("finished_at", sa.DateTime(timezone=True)),
    sa.column("rendered_at", sa.DateTime(timezone=True)),
    sa.column("delivered_at", sa.DateTime(timezone=True)),
)
ledger = sa.table("quota_ledger", sa.column("job_id", sa.String), sa.column("kind", sa.String))


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _has(kind: str) -> sa.Exists:
    return sa.exists().where(ledger.c.job_id == jobs.c.id, ledger.c.kind == kind)


def _swap_check(old: str, new: str) -> None:
    # SQLite: batch mode rebuilds the table (foreign keys are off while migrating, see
    # storage.db.migrate); PostgreSQL: plain ALTER TABLE.
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("ck_jobs_state", type_="check")
        batch.create_check_constraint("ck_jobs_state", sa.text(new))


def upgrade() -> None:
    """Add owner and lifecycle columns, move 'done' rows, create instances."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=True))
        batch.add_column(_timestamp("rendered_at", nullable=True))
        batch.add_column(_timestamp("delivered_at", nullable=True))
    _swap_check(OLD_STATES, BOTH_STATES)
    done = jobs.c.state == "done"
    op.execute(
        jobs.update()
        .where(done, _has("release"))
        .values(state="failed", error=sa.func.coalesce(jobs.c.error, "delivery failed"))
    )
    op.execute(
        jobs.update()
        .where(done, _has("reserve"), ~_has("settle"))
        .values(state="rendered", rendered_at=jobs.c.finished_at, finished_at=None)
    )
    op.execute(
        jobs.update()
        .where(done)
        .values(state="delivered", rendered_at=jobs.c.finished_at, delivered_at=jobs.c.finished_at)
    )
    _swap_check(BOTH_STATES, NEW_STATES)
    op.create_index("ix_jobs_platform_state", "jobs", ["platform", "state"])
    op.create_table(
        "instances",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("platforms", sa.String(256), nullable=False),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(128), nullable=False),
        _timestamp("started_at"),
        _timestamp("heartbeat_at"),
        _timestamp("expires_at"),
    )


def downgrade() -> None:
    """Back to 0001: rendered and delivered rows become 'done' again."""
    op.drop_table("instances")
    op.drop_index("ix_jobs_platform_state", table_name="jobs")
    _swap_check(NEW_STATES, BOTH_STATES)
    op.execute(
        jobs.update()
        .where(jobs.c.state.in_(["rendered", "delivered"]))
        .values(state="done", finished_at=sa.func.coalesce(jobs.c.finished_at, jobs.c.rendered_at))
    )
    _swap_check(BOTH_STATES, OLD_STATES)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("delivered_at")
        batch.drop_column("rendered_at")
        batch.drop_column("owner")
