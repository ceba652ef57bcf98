"""Incidents from monitoring alerts (app/models/incident.py): `incident`, one per alert group, and
`incident_alert`, its alerts by fingerprint. New tables only: nothing to backfill, instant on any size.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "incident",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("group_key_hash", sa.String(64), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("receiver", sa.Text(), nullable=True),
        sa.Column("group_labels", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", JSON, nullable=False),
        sa.Column("as_of_seq", sa.BigInteger(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('open','resolved')", name="ck_incident_status"),
    )
    op.create_index("ix_incident_group_key_hash", "incident", ["group_key_hash"], unique=True)
    op.create_index("ix_incident_status_id", "incident", ["status", "id"])
    op.create_table(
        "incident_alert",
        sa.Column("incident_id", sa.Uuid(), primary_key=True),
        sa.Column("fingerprint", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("annotations", JSON, nullable=False),
        sa.Column("starts_at", TS, nullable=True),
        sa.Column("ends_at", TS, nullable=True),
        sa.Column("generator_url", sa.Text(), nullable=True),
        sa.Column("ci_id", sa.Uuid(), nullable=True),
        sa.Column("bound_by", sa.String(200), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('firing','resolved')", name="ck_incident_alert_status"),
    )
    op.create_index("ix_incident_alert_ci_id", "incident_alert", ["ci_id"])


def downgrade() -> None:
    op.drop_index("ix_incident_alert_ci_id", "incident_alert")
    op.drop_table("incident_alert")
    op.drop_index("ix_incident_status_id", "incident")
    op.drop_index("ix_incident_group_key_hash", "incident")
    op.drop_table("incident")
