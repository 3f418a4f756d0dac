"""user_settings.loras and .styles: a user's favourite LoRAs and styles for /draw.

Both are JSON text (LoRAs as [[name, weight], …], styles as [name, …]); NULL is none. Downgrade
drops them (the favourites are lost, every other setting stays).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("loras", "styles")


def upgrade() -> None:
    """Add the two nullable columns."""
    with op.batch_alter_table("user_settings") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop them (SQLite: batch mode rebuilds the table)."""
    with op.batch_alter_table("user_settings") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
