"""Each alert's recent windows (observed, expected and band), for its chart.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_series",
        sa.Column("alert_id", sa.String(32), primary_key=True),
        sa.Column("points", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alert_series")
