"""quota_ledger_days: old ledger rows summed per quota day, user and kind.

The ledger grew by two rows per job forever. Rows older than LEDGER_KEEP_DAYS (of ended jobs
only) are now folded into one row per (day, user, kind) with the count and the summed daily
and bonus deltas, and deleted (storage/prune.py), so balances still equal the ledger's sums.

Downgrade folds each aggregate back into ONE 'reset'-kind ledger row carrying its sums (the
0003 code counts only open 'reserve' rows as held, so the balance and the invariant survive;
the per-kind counts are lost), then drops the table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

days = sa.table(
    "quota_ledger_days",
    sa.column("day", sa.String),
    sa.column("user_key", sa.String),
    sa.column("kind", sa.String),
    sa.column("daily", sa.BigInteger),
    sa.column("bonus", sa.BigInteger),
)
ledger = sa.table(
    "quota_ledger",
    sa.column("user_key", sa.String),
    sa.column("job_id", sa.String),
    sa.column("kind", sa.String),
    sa.column("period", sa.String),
    sa.column("daily", sa.Integer),
    sa.column("bonus", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    """Create the (empty) aggregate table."""
    op.create_table(
        "quota_ledger_days",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("user_key", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("daily", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    """Put every aggregate's sums back into the ledger as one row, then drop the table."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(days.c.day, days.c.user_key, days.c.kind, days.c.daily, days.c.bonus)
    ).all()
    # SQLite stores the wall clock of UTC (storage/models.py's UTCDateTime).
    now = datetime.now(UTC)
    stamp = now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now
    entries = [
        {
            "user_key": row.user_key,
            "job_id": f"pruned:{row.day}:{row.kind}:{row.user_key}",
            "kind": "reset",
            "period": row.day,
            "daily": int(row.daily),
            "bonus": int(row.bonus),
            "created_at": stamp,
        }
        for row in rows
    ]
    if entries:
        op.bulk_insert(ledger, entries)
    op.drop_table("quota_ledger_days")
