"""The alert store as the first release with migrations found it: alerts, incidents,
the notification outbox, Slack message references and the schema marker.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "opswatch_meta",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(64)),
    )
    op.bulk_insert(meta, [{"key": "schema", "value": "2"}])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("region", sa.String(64)),
        sa.Column("channel", sa.String(64)),
        sa.Column("platform", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("incident_id", sa.String(32)),
        sa.Column("label", sa.String(16)),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
    )
    op.create_index("ix_alerts_fingerprint", "alerts", ["fingerprint"])
    op.create_index("ix_alerts_incident_id", "alerts", ["incident_id"])
    op.create_index("ix_alerts_started", "alerts", ["started_at", "id"])
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("resolved_at", sa.String(32)),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
    )
    op.create_index("ix_incidents_active", "incidents", ["active"])
    op.create_index("ix_incidents_opened", "incidents", ["opened_at", "id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dedupe", sa.String(200), nullable=False, unique=True),
        sa.Column("receiver", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("due_at", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_until", sa.String(32)),
        sa.Column("claimed_by", sa.String(32)),
        sa.Column("done", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.String(16)),
        sa.Column("detail", sa.String(500)),
    )
    op.create_index("ix_outbox_done", "outbox", ["done"])
    op.create_table(
        "deliveries",
        sa.Column("receiver", sa.String(64), primary_key=True),
        sa.Column("incident_id", sa.String(32), primary_key=True),
        sa.Column("ref", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for table in ("deliveries", "outbox", "incidents", "alerts", "opswatch_meta"):
        op.drop_table(table)
