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
    """Refused while a depends_on relationship Karta keeps for a service map exists (its only sighting
    of source `service_mapping`): below 0013 nothing would keep or end it, and deleting it here would
    end it without its change record (0006: ending a relationship is the service's job)."""
    relationship = sa.table("relationship", sa.column("id"), sa.column("type"))
    sighting = sa.table("relationship_source", sa.column("relationship_id"), sa.column("source"))
    ours = sa.exists().where(sighting.c.relationship_id == relationship.c.id, sighting.c.source == "service_mapping")
    others = sa.exists().where(sighting.c.relationship_id == relationship.c.id, sighting.c.source != "service_mapping")
    owned = op.get_bind().execute(sa.select(sa.func.count()).select_from(relationship)
                                  .where(relationship.c.type == "depends_on", ours, ~others)).scalar()
    if owned:
        raise RuntimeError(f"{owned} depends_on relationships are kept by Karta for service maps (source "
                           "service_mapping): remove the services' entry_points (or delete those relationships "
                           "through the API) and let the keeper end them before downgrading below 0013")
    op.drop_table("service_map_cursor")
    op.drop_index("ix_service_entry_key_key", "service_entry_key")
    op.drop_table("service_entry_key")
    op.drop_table("service_map_state")
    op.drop_index("ix_service_map_member_ci", "service_map_member")
    op.drop_table("service_map_member")
