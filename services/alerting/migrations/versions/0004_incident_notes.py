"""What responders learn, as notes on incidents; incidents' titles searchable.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(32), nullable=False, index=True),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("title", sa.String(300)))
    incidents = sa.table(
        "incidents", sa.column("id", sa.String), sa.column("body", sa.JSON), sa.column("title")
    )
    conn = op.get_bind()
    for row in conn.execute(sa.select(incidents.c.id, incidents.c.body)).all():
        title = str(row.body.get("title", ""))[:300]
        conn.execute(incidents.update().where(incidents.c.id == row.id).values(title=title))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("title")
    op.drop_table("notes")
