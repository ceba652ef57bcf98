"""Business service maps (app/models/service_map.py): the CIs of each service's map by layer, each
service's resolution status, the hosts its entry points name, and the keeper's place in the change
feed. New tables only: nothing to backfill (the keeper maps every service on its first pass).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "service_map_member",
        sa.Column("service_id", sa.Uuid(), primary_key=True),
        sa.Column("ci_id", sa.Uuid(), primary_key=True),
        sa.Column("layer", sa.String(16), nullable=False),
    )
    op.create_index("ix_service_map_member_ci", "service_map_member", ["ci_id"])
    op.create_table(
        "service_map_state",
        sa.Column("service_id", sa.Uuid(), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("entry_points", JSON, nullable=False),
        sa.Column("as_of_seq", SEQ, nullable=False),
        sa.Column("refreshed_at", TS, nullable=False),
    )
    op.create_table(
        "service_entry_key",
        sa.Column("service_id", sa.Uuid(), primary_key=True),
        sa.Column("key", sa.String(512), primary_key=True),
    )
    op.create_index("ix_service_entry_key_key", "service_entry_key", ["key"])
    op.create_table(
        "service_map_cursor",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("seq", SEQ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_map_cursor")
    op.drop_index("ix_service_entry_key_key", "service_entry_key")
    op.drop_table("service_entry_key")
    op.drop_table("service_map_state")
    op.drop_index("ix_service_map_member_ci", "service_map_member")
    op.drop_table("service_map_member")
